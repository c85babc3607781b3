"""Peak memory of the HTTP server under parallel image uploads (issue 13, item 9).

A server (uvicorn, a second process, on loopback, the colour encoder so the model costs
nothing) receives ``--parallel`` simultaneous ``POST /search`` uploads of one kind of
image at a time; its peak resident memory (VmHWM, reset between kinds through
/proc/PID/clear_refs) and its resident memory afterwards are read from /proc and
printed against the idle baseline. Kinds: a 12000x12000 PNG (a few hundred KB that
claims 144 Mpx: refused from its header by the 40 Mpx upload cap) and the largest
uploads the cap accepts (just under 40 Mpx) as RGB, RGBA, 16-bit grey and 1-bit PNG.

    .venv/bin/python -m benchmarks.upload_memory
    .venv/bin/python -m benchmarks.upload_memory --parallel 6 --slots 2

The ceiling the server states (api/http/limits.py): at most ``slots`` uploads are
decoded at once, so peak growth is about ``slots`` x the worst kind's own peak.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

SIDE_40MP = 6324  # 6324^2 = 39,992,976 pixels: just under the 40 Mpx upload cap


def png(mode: str, side: int) -> bytes:
    """A compressible PNG (a gradient), so a big image is a small upload."""
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    grey = np.add.outer(ramp, ramp) / 2
    if mode == "1":
        im = Image.new("1", (side, side), 0)
    elif mode == "I;16":
        im = Image.fromarray((grey * 257).astype(np.uint16))
    else:
        arr = np.repeat(grey.astype(np.uint8)[:, :, None], len(mode), axis=2)
        im = Image.fromarray(arr, mode)
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=9)
    return buf.getvalue()


def serve(data_dir: str, slots: int) -> None:
    """The server process: prints its port, then serves until killed."""
    import uvicorn

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from clipfind.api.http import create_app
    from clipfind.config import Settings
    from tests.fakes import ColourEncoder

    settings = Settings(data_dir=Path(data_dir), model="fake-colour", heavy_slots=slots,
                        max_upload_bytes=64 * 1024 * 1024)
    encoder = ColourEncoder()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, lambda _s, _c: encoder),
                                           host="127.0.0.1", port=0, log_level="warning"))

    class Announcing(uvicorn.Server):
        async def startup(self, sockets=None):  # type: ignore[no-untyped-def]
            await super().startup(sockets)
            print(self.servers[0].sockets[0].getsockname()[1], flush=True)

    server.__class__ = Announcing
    server.run()


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parallel", type=int, default=6)
    ap.add_argument("--slots", type=int, default=0, help="heavy slots (0 = one per core)")
    args = ap.parse_args()
    kinds = {"12000x12000 PNG (1-bit)": png("1", 12_000)}
    for mode in ("RGB", "RGBA", "I;16", "1"):
        kinds[f"{SIDE_40MP}x{SIDE_40MP} PNG ({mode})"] = png(mode, SIDE_40MP)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([sys.executable, "-m", "benchmarks.upload_memory", "--serve", tmp,
                                 str(args.slots)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            url = f"http://127.0.0.1:{proc.stdout.readline().strip()}"
            client = httpx.Client(base_url=url, timeout=600)
            client.get("/search", params={"q": "red"})  # warm: first request's allocations
            base = _kib(proc.pid, "VmRSS")
            print(f"server idle RSS: {base / 1024:.0f} MiB; {args.parallel} parallel uploads each:")
            rows = []
            for name, data in kinds.items():
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")  # reset VmHWM
                t0 = time.perf_counter()
                with ThreadPoolExecutor(args.parallel) as pool:
                    codes = list(pool.map(lambda body: client.post(
                        "/search", files={"image": ("x.png", body, "image/png")}).status_code,
                        [data] * args.parallel))
                rows.append({"upload": name, "bytes": len(data), "statuses": sorted(set(codes)),
                             "peak_growth_mib": round((_kib(proc.pid, "VmHWM") - base) / 1024),
                             "rss_after_mib": round(_kib(proc.pid, "VmRSS") / 1024),
                             "seconds": round(time.perf_counter() - t0, 1)})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        main()
