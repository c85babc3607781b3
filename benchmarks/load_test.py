"""Load test of the HTTP API: searches at a fixed rate from this process against
``clipfind serve`` (uvicorn, a second process, on loopback), first with the server idle,
then while a ``POST /index`` job encodes new photos. Zero errors expected; prints
p50/p95/p99 latency per phase and their ratio (measured side by side in one run).

Open loop: requests are sent on a fixed schedule whatever the server's pace, and each
latency is measured from its scheduled time, so a stalled server shows up as latency
instead of silently lowering the rate. Bounded: ``--idle-seconds`` + at most
``--job-seconds``, and at most ``--max-requests`` in all.

    python -m benchmarks.load_test                      # ViT-B-32 (random weights)
    python -m benchmarks.load_test --model tiny --rate 20
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import ROOT, latency, out_dir, percentile, print_table, warn_if_busy, write_json

PHRASES = ["a dog on a beach", "a red car", "people at a market", "a plate of food", "a cat",
           "snow on mountains", "a train station", "a kitchen", "a man playing tennis",
           "a bowl of fruit", "a city street at night", "children playing football",
           "a bird on a branch", "a boat on the water", "a bedroom", "a bus", "an airplane"]
WORDS = ["small", "old", "blue", "bright", "busy", "quiet", "wet", "sunny", "tiny", "big"]


@dataclass
class Phase:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    def row(self) -> dict[str, Any]:
        lat = self.latencies_ms
        seconds = max(1e-9, self.ended - self.started)
        return {"phase": self.name, "requests": len(lat) + len(self.errors),
                "errors": len(self.errors), **latency(lat or [float("nan")]),
                "p99_ms": round(percentile(lat, 0.99), 3) if lat else None,
                "max_ms": round(max(lat), 3) if lat else None,
                "rate_per_s": round((len(lat) + len(self.errors)) / seconds, 2)}


def prepare(args: argparse.Namespace, work: Path) -> tuple[str, Path]:
    """A model spec and a root with two halves: ``a`` indexed now, ``b`` left to the job."""
    from benchmarks.photos import photo_set

    if args.model == "tiny":
        sys.path.insert(0, str(ROOT))
        import open_clip

        from tests.fakes import save_tiny_checkpoint

        open_clip.add_model_config(ROOT / "tests" / "model_configs")
        spec = f"local-dir:{save_tiny_checkpoint('tiny-clip-test', work / 'tiny-model')}"
    else:
        from benchmarks.common import model_spec

        spec = model_spec()
    source = sorted(photo_set("small", args.photos).glob("*.jpg"))
    root = work / "photos"
    shutil.rmtree(root, ignore_errors=True)
    for i, src in enumerate(source):
        dest = root / ("a" if i < len(source) // 2 else "b") / src.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)
    return spec, root


def clipfind(*argv: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from api.cli import main; sys.exit(main())", *argv]


def start_server(spec: str, data: Path, root: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        clipfind("serve", "--port", "0", "--json", "--model", spec, "--data-dir", str(data),
                 "--root", str(root)),
        stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env, cwd=ROOT)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        raise SystemExit(f"clipfind serve did not start; see {log}")
    return proc, json.loads(line)["url"]


class Load:
    """Fires searches on a fixed schedule from a thread pool; records per phase."""

    def __init__(self, url: str, rate: float, ids: list[int], max_requests: int) -> None:
        self.client = httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=64))
        self.rate = rate
        self.ids = ids
        self.budget = max_requests
        self.pool = ThreadPoolExecutor(max_workers=48)
        self.rng = random.Random(0)

    def request(self) -> tuple[str, dict[str, Any]]:
        roll = self.rng.random()
        if roll < 0.4:  # a query many users type: the text cache answers
            return "/search", {"q": self.rng.choice(PHRASES), "k": 40}
        if roll < 0.8:  # a fresh text: the text tower runs
            return "/search", {"q": f"a {self.rng.choice(WORDS)} {self.rng.choice(PHRASES)}", "k": 40}
        return "/search", {"item": self.rng.choice(self.ids), "k": 40}  # more like this

    def _one(self, phase: Phase, due: float, path: str, params: dict[str, Any]) -> None:
        try:
            r = self.client.get(path, params=params)
            took = (time.perf_counter() - due) * 1000
            if r.status_code == 200 and isinstance(r.json().get("results"), list):
                phase.latencies_ms.append(took)
            else:
                phase.errors.append(f"{r.status_code}: {r.text[:200]}")
        except Exception as exc:  # a refused or dropped connection is an error too
            phase.errors.append(f"{type(exc).__name__}: {exc}")

    def run(self, phase: Phase, until: Any, max_seconds: float) -> None:
        """Send at ``rate`` until ``until()`` is true or ``max_seconds`` pass."""
        phase.started = start = time.perf_counter()
        futures = []
        n = 0
        while self.budget > 0 and not until() and time.perf_counter() - start < max_seconds:
            due = start + n / self.rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(self.pool.submit(self._one, phase, due, *self.request()))
            n += 1
            self.budget -= 1
        for f in futures:
            f.result()
        phase.ended = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["vit-b-32", "tiny"], default="vit-b-32")
    parser.add_argument("--photos", type=int, default=240, help="half indexed first, half by the job")
    parser.add_argument("--rate", type=float, default=10.0, help="searches per second")
    parser.add_argument("--idle-seconds", type=float, default=15.0)
    parser.add_argument("--job-seconds", type=float, default=90.0, help="cap on the job phase")
    parser.add_argument("--max-requests", type=int, default=2000)
    args = parser.parse_args()

    work = out_dir("load")
    spec, root = prepare(args, work)
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    print(f"indexing {len(list((root / 'a').iterdir()))} photos before the test ...", flush=True)
    subprocess.run(clipfind("index", str(root / "a"), "--model", spec, "--data-dir", str(data),
                            "--json"), check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    busy = warn_if_busy()
    proc, url = start_server(spec, data, root, work / "serve.log")
    try:
        result = run_load(args, url)
    finally:
        proc.terminate()
        proc.wait(30)
    result.update(model=args.model, photos=args.photos, other_load=busy)
    write_json("load_test", result)
    if result["errors"]:
        raise SystemExit(f"{result['errors']} requests failed")


def run_load(args: argparse.Namespace, url: str) -> dict[str, Any]:
    ids = [h["id"] for h in httpx.get(f"{url}/search", params={"q": "a photo", "k": 200}).json()["results"]]
    load = Load(url, args.rate, ids, args.max_requests)
    load.run(Phase("warm-up"), lambda: False, 2.0)
    idle = Phase("idle")
    print(f"phase idle: {args.rate:g} searches/s for {args.idle_seconds:g} s", flush=True)
    load.run(idle, lambda: False, args.idle_seconds)
    job = httpx.post(f"{url}/index", json={}).json()
    state: dict[str, Any] = {"status": job["status"]}
    job_started = time.perf_counter()

    def watch() -> None:
        while state["status"] in ("queued", "running"):
            time.sleep(0.25)
            state.update(httpx.get(f"{url}/jobs/{job['id']}").json())
        state["seconds"] = round(time.perf_counter() - job_started, 2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    during = Phase("during index job")
    print(f"phase during index job: {args.rate:g} searches/s until the job ends", flush=True)
    load.run(during, lambda: state["status"] not in ("queued", "running"), args.job_seconds)
    watcher.join(args.job_seconds)
    rows = [idle.row(), during.row()]
    print_table(f"searches at {args.rate:g}/s against {url} (open loop)", rows,
                ["phase", "requests", "errors", "p50_ms", "p95_ms", "p99_ms", "max_ms", "rate_per_s"])
    summary = state.get("summary") or {}
    print(f"\nindex job: {state['status']} in {state.get('seconds')} s, "
          f"{summary.get('encoded')} photos encoded ({summary.get('images_per_second')} img/s)")
    ratio = {k: round(rows[1][k] / rows[0][k], 2) for k in ("p50_ms", "p95_ms") if rows[0][k]}
    print(f"latency during the job / idle: p50 x{ratio.get('p50_ms')}, p95 x{ratio.get('p95_ms')}")
    for err in (idle.errors + during.errors)[:5]:
        print("error:", err)
    return {"rate_per_s": args.rate, "phases": rows, "ratio_during_over_idle": ratio,
            "job": {k: state.get(k) for k in ("status", "seconds", "error")} | {"summary": summary},
            "errors": len(idle.errors) + len(during.errors)}


if __name__ == "__main__":
    main()
