"""A throw-away PostgreSQL server for the tests: Debian's ``postgresql`` binaries
(``/usr/lib/postgresql/*/bin``, or initdb on PATH), ``initdb`` + ``pg_ctl`` in a temporary
folder, listening on a unix socket only (no TCP port to collide with or to expose).
Started once per session, on first use; tests that need it are skipped, with the
reason, where the binaries or psycopg are missing (CI installs both: .ci/run).

PostgreSQL refuses to run as root, so under root (CI, containers) the server runs as
the ``postgres`` user the Debian package creates, through ``runuser``.

``catalog_backend`` is a parametrised fixture (``sqlite``, ``postgresql``); a test
module takes its database URL from :func:`db_url`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BACKENDS = ["sqlite", "postgresql"]


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl (newest Debian version first), or None."""
    found = shutil.which("initdb")
    candidates = ([str(Path(found).parent)] if found else []) + sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for folder in candidates:
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


@dataclass
class PgServer:
    bindir: Path
    socket_dir: Path
    user: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=str(self.socket_dir), user=self.user, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _runner() -> tuple[list[str], str | None]:
    """The command prefix that runs the server's tools as a non-root user, and that
    user's name (None: the current user)."""
    if os.geteuid() != 0:
        return [], None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
    if not shutil.which("runuser"):
        pytest.skip("running as root and runuser (util-linux) is missing")
    return ["runuser", "-u", "postgres", "--"], "postgres"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PgServer]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: "
                    "apt-get install postgresql")
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install -e '.[postgres]'")
    prefix, user = _runner()
    # /tmp: short, since a unix socket path holds ~100 characters (TMPDIR may be long)
    base = Path(tempfile.mkdtemp(prefix="clipfind-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
    if user:
        info = pwd.getpwnam(user)
        os.chown(base, info.pw_uid, info.pw_gid)
    data, log = base / "data", base / "server.log"
    db_user = "clipfind"

    def tool(*args: str) -> None:
        proc = subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {proc.stderr[-2000:]}\n{tail}")

    try:
        tool(str(bindir / "initdb"), "-D", str(data), "-U", db_user, "-A", "trust",
             "-E", "UTF8", "--locale=C", "--no-sync")
        tool(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
             f"-k {base} -c listen_addresses='' -c fsync=off -c full_page_writes=off "
             "-c synchronous_commit=off -c max_connections=200", "start")
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        yield PgServer(bindir, base, db_user)
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module", params=BACKENDS)
def catalog_backend(request: pytest.FixtureRequest) -> str:
    """Run a module's tests once on SQLite and once on PostgreSQL."""
    return request.param  # type: ignore[no-any-return]


def db_url(request: pytest.FixtureRequest, backend: str) -> str | None:
    """``None`` (the collection's own SQLite file) or a fresh PostgreSQL database."""
    if backend == "sqlite":
        return None
    server: PgServer = request.getfixturevalue("postgres_server")
    return server.new_database()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Run a test once on SQLite and once on PostgreSQL, each with a fresh catalog."""
    return request.param  # type: ignore[no-any-return]


def on_backend(request: pytest.FixtureRequest, settings: Any, backend: str) -> Any:
    """``settings`` with its catalog on ``backend``: unchanged for SQLite (the collection's
    own file), a fresh database on the session's PostgreSQL server otherwise."""
    url = db_url(request, backend)
    return settings if url is None else settings.model_copy(update={"db_url": url})
