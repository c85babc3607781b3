"""Who may write a collection at the same time. A writer *claims* what it will change
(:class:`Claim`): the items under some roots (an index run, ``forget``), every item (a
re-embed, a label run, any index run on SQLite), or the texts (``index-texts``). Claims
that overlap exclude each other: the later writer is refused at once with
:class:`CollectionBusyError`, naming the holder; claims that do not overlap proceed
together (on PostgreSQL, index runs on disjoint folders).

Two layers, as before: claim files in the collection folder, each held with ``flock``
for the run (so a crashed or killed run never leaves one held; the next registration
clears it), registered under a short ``flock`` on ``index.lock``; and on PostgreSQL,
advisory locks (:mod:`clipfind.store.pg_locks`) for writers on other machines that share
the catalog but not the folder."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from clipfind.errors import CollectionBusyError, StorageError
from clipfind.store.pg_locks import database_lock

LOCK_NAME = "index.lock"  # held only while a claim is registered (and by older versions)
CLAIMS_DIR = "writers"  # one file per live claim: writers/PID-N.json
_REGISTER_WAIT = 10.0  # seconds: registering takes milliseconds unless an old version holds it
_serial = itertools.count(1)


@dataclass(frozen=True)
class Claim:
    """What one writer changes. ``roots``: absolute folders whose items it writes;
    ``all_items``: every item; ``texts``: the texts. ``what`` names it in messages."""

    what: str = "index run"
    roots: tuple[str, ...] = ()
    all_items: bool = False
    texts: bool = False

    @classmethod
    def items_under(cls, roots: list[Path], what: str = "index run") -> Claim:
        """The items under ``roots``, by the path given and the path it resolves to."""
        paths: set[str] = set()
        for root in roots:
            paths.add(os.path.abspath(root))
            paths.add(os.path.realpath(root))
        return cls(what, tuple(sorted(paths)))

    def overlaps(self, other: Claim) -> bool:
        if self.texts and other.texts:
            return True
        if (self.all_items and (other.all_items or other.roots)) or (other.all_items and self.roots):
            return True
        return any(_nested(a, b) for a in self.roots for b in other.roots)

    def describe(self) -> str:
        if self.texts:
            return "the texts"
        return "every item" if self.all_items else ", ".join(self.roots)


def _nested(a: str, b: str) -> bool:
    """``a`` and ``b`` are the same folder, or one lies inside the other."""
    a, b = a.rstrip("/") + "/", b.rstrip("/") + "/"
    return a.startswith(b) or b.startswith(a)


def _busy(what: str, holder: str, collection: str, claim: str, where: str) -> CollectionBusyError:
    return CollectionBusyError(
        f"another {what} is in progress ({holder}) on collection '{collection}' "
        f"({claim}; {where}); wait for it to finish, then run this again."
    )


def _open_folder_file(path: Path, folder: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:  # a read-only collection folder: nothing can be written anyway
        raise StorageError(
            f"Cannot write the lock file {path} ({exc.strerror or exc}); nothing was changed. "
            f"Make {folder} writable, or choose another --data-dir (CLIPFIND_DATA_DIR)."
        ) from exc


@contextmanager
def _registering(folder: Path, collection: str) -> Iterator[None]:
    """``index.lock`` held exclusively while the claims are read and one is added."""
    path = folder / LOCK_NAME
    fd = _open_folder_file(path, folder)
    try:
        deadline = time.monotonic() + _REGISTER_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:  # a version that held it for a whole run
                    pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                    raise _busy(
                        "index run",
                        f"pid {pid if pid.isdigit() else 'unknown'}",
                        collection,
                        "every item",
                        str(path),
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def _live_claims(claims: Path) -> Iterator[tuple[dict[str, object], Path]]:
    """The claims whose writers still hold them; files of dead writers are removed."""
    for path in sorted(claims.glob("*.json")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # held: its writer is alive
                try:
                    yield json.loads(os.pread(fd, 65536, 0) or b"{}"), path
                except ValueError:
                    continue
                continue
            path.unlink(missing_ok=True)  # nobody holds it: a killed run's
        finally:
            os.close(fd)


def _as_claim(doc: dict[str, object]) -> Claim:
    roots = doc.get("roots") or []
    return Claim(
        str(doc.get("what") or "index run"),
        tuple(str(r) for r in roots) if isinstance(roots, list) else (),
        bool(doc.get("all_items")),
        bool(doc.get("texts")),
    )


@contextmanager
def file_lock(folder: Path, collection: str, claim: Claim | None = None) -> Iterator[None]:
    """Hold ``claim`` (default: every item) in the collection folder, or raise
    :class:`CollectionBusyError` naming the pid of a writer whose claim overlaps."""
    claim = claim or Claim(all_items=True)
    claims = folder / CLAIMS_DIR
    with _registering(folder, collection):
        try:
            claims.mkdir(exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"Cannot write the lock folder {claims} ({exc.strerror or exc}); nothing was "
                f"changed. Make {folder} writable, or choose another --data-dir "
                "(CLIPFIND_DATA_DIR)."
            ) from exc
        for doc, path in _live_claims(claims):
            held = _as_claim(doc)
            if held.overlaps(claim):
                raise _busy(
                    held.what, f"pid {doc.get('pid', 'unknown')}", collection, held.describe(), str(path)
                )
        mine = claims / f"{os.getpid()}-{next(_serial)}.json"
        fd = _open_folder_file(mine, folder)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # nobody else has it yet: the file is new
            doc = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "what": claim.what,
                "roots": list(claim.roots),
                "all_items": claim.all_items,
                "texts": claim.texts,
            }
            os.pwrite(fd, json.dumps(doc).encode(), 0)
        except BaseException:  # a full disk: no claim left behind
            mine.unlink(missing_ok=True)
            os.close(fd)
            raise
    try:
        yield
    finally:
        mine.unlink(missing_ok=True)
        os.close(fd)  # releases the flock


def holders(folder: Path) -> list[int]:
    """Pids of the writers that hold a claim on the collection in ``folder`` now."""
    found = []
    for path in sorted((folder / CLAIMS_DIR).glob("*.json")):
        try:
            found.append(int(json.loads(path.read_text())["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


@contextmanager
def writer_lock(folder: Path, engine: Engine, collection: str, claim: Claim | None = None) -> Iterator[None]:
    """Both layers, the folder's first (it names the holder's pid for certain)."""
    claim = claim or Claim(all_items=True)
    with file_lock(folder, collection, claim), database_lock(engine, collection, claim):
        yield
