"""Real ``clipfind`` subprocesses (index runs, servers) with the colour encoder, slowed per
batch so that what they do overlaps, for the PostgreSQL concurrency tests. No tests here."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.fakes import solid

REPO = Path(__file__).resolve().parents[1]

# The model is the colour encoder (no weights to load), in the CLI and in a server alike;
# each batch of pictures takes CLIPFIND_TEST_DELAY seconds more, so runs overlap, and
# waits (up to 2 minutes) for the file CLIPFIND_TEST_GATE to exist, when one is named;
# pictures past the first batch wait (up to 5 minutes) while the file CLIPFIND_TEST_HOLD
# exists (a run paused half-way, holding its claim, with a batch committed; a batch may be
# encoded in parts).
CHILD = """
import os, sys, threading, time
import clipfind.api.cli.common as common
import clipfind.library as library
from tests.fakes import ColourEncoder

class Slow(ColourEncoder):
    seen = 0
    lock = threading.Lock()

    def encode_pixels(self, pixels):
        gate = os.environ.get("CLIPFIND_TEST_GATE")
        with Slow.lock:
            past_first = Slow.seen >= int(os.environ.get("CLIPFIND_BATCH_SIZE", "1"))
            Slow.seen += len(pixels)
        hold = os.environ.get("CLIPFIND_TEST_HOLD") if past_first else None
        deadline = time.monotonic() + 120
        while gate and not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        while hold and os.path.exists(hold) and time.monotonic() < deadline + 180:
            time.sleep(0.05)
        time.sleep(float(os.environ.get("CLIPFIND_TEST_DELAY", "0")))
        return super().encode_pixels(pixels)

common.make_encoder = lambda settings, coll: Slow()
library.default_encoder = lambda settings, coll: Slow()
from clipfind.api.cli import main
sys.exit(main(sys.argv[1:]))
"""


def fill(root: Path, n: int, start: int = 0) -> list[Path]:
    """``n`` pictures of distinct solid colours."""
    return [solid(root / f"img{i:03d}.png", (i * 37 % 256, 255 - i * 11 % 256, (i * 71) % 256))
            for i in range(start, start + n)]


def clipfind(*argv: str, delay: float = 0.0, batch_size: int = 4, gate: Path | None = None,
             hold: Path | None = None, **kw: Any) -> subprocess.Popen:
    """``clipfind ARGV`` in a child process, encoding ``batch_size`` pictures a batch."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CLIPFIND_TEST_DELAY": str(delay),
           "CLIPFIND_BATCH_SIZE": str(batch_size), "CLIPFIND_TEST_GATE": str(gate or ""),
           "CLIPFIND_TEST_HOLD": str(hold or "")}
    return subprocess.Popen([sys.executable, "-c", CHILD, *argv], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def announced(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, int]:
    """The ``(host, port)`` a ``clipfind serve --json`` prints once it listens."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        raise AssertionError(f"the server did not start: {proc.communicate()[1][-3000:]}")
    doc = json.loads(line)
    return doc["host"], int(doc["port"])


def finish(proc: subprocess.Popen, timeout: float = 180) -> str:
    """Wait for a process to exit by itself; its stderr."""
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(
            f"still running after {timeout}s: {proc.communicate()[1][-2000:]}") from None


def stop(proc: subprocess.Popen) -> str:
    """Stop a process (if still running); its stderr."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1]

