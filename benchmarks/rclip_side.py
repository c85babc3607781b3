"""rclip 3's side of ``benchmarks.peer_rclip``: its data dir made from our checkpoint
(so it runs offline on exactly our weights), its indexing and query commands, measured.

rclip reads ``visual.onnx`` and ``textual.onnx`` from
``$RCLIP_DATADIR/ViT-B-32-256-datacomp_s34b_b86k/``, its tokenizer vocabulary from
``$RCLIP_DATADIR/tokenizer/`` and checks that its model's legal files exist, downloading
only what is missing. Its ONNX towers return un-normalised features (it normalises them).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

SUBDIR = "ViT-B-32-256-datacomp_s34b_b86k"
LEGAL = ("LICENSE", "OPENAI-CLIP-MIT.txt", "README.md", "THIRD_PARTY_NOTICES.md")
QUERY = "a dog"


def add_rclip_args(parser: Any, datadir_help: str) -> None:
    """``--venv`` (rclip's own virtualenv) and ``--datadir`` (its data dir)."""
    parser.add_argument("--venv", type=Path, default=Path("/work/venv-rclip"))
    parser.add_argument("--datadir", type=Path, default=Path("/work/rclip-data"), help=datadir_help)


def check_rclip(venv: Path, where: str) -> None:
    if not (venv / "bin" / "rclip").is_file():
        raise SystemExit(f"no rclip in {venv}; see {where}")


def prepare_rclip_data(datadir: Path, checkpoint: Path) -> None:
    """Our checkpoint's towers as rclip's ONNX files (once per checkpoint)."""
    import open_clip
    import torch

    from clipfind.encoder import ClipEncoder

    model_dir = datadir / SUBDIR
    stamp = model_dir / "exported-from.json"
    source = {
        "checkpoint": str(checkpoint),
        "mtime_ns": (checkpoint / "open_clip_model.safetensors").stat().st_mtime_ns,
    }
    if stamp.is_file() and json.loads(stamp.read_text()) == source:
        return
    model_dir.mkdir(parents=True, exist_ok=True)
    model = ClipEncoder(f"local-dir:{checkpoint}", device="cpu").model.eval()

    class Tower(torch.nn.Module):
        def __init__(self, fn) -> None:  # type: ignore[no-untyped-def]
            super().__init__()
            self.model, self.fn = model, fn

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.fn(x)

    probes = {
        "visual.onnx": (Tower(model.encode_image), torch.randn(2, 3, 256, 256)),
        "textual.onnx": (Tower(model.encode_text), open_clip.tokenize(["a dog", "a cat"])),
    }
    torch.backends.mha.set_fastpath_enabled(False)  # its fused op does not export
    for name, (tower, probe) in probes.items():
        with torch.no_grad():
            torch.onnx.export(
                tower,
                (probe,),
                str(model_dir / name),
                input_names=["input"],
                output_names=["output"],
                dynamic_axes={"input": {0: "n"}, "output": {0: "n"}},
                opset_version=17,
                dynamo=False,
            )
    vocab = Path(open_clip.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    (datadir / "tokenizer").mkdir(exist_ok=True)
    shutil.copy(vocab, datadir / "tokenizer" / vocab.name)
    for name in LEGAL:  # rclip only checks that they exist; these weights are random
        (datadir / name).write_text("random ViT-B-32-256 weights exported by clipfind's benchmark\n")
    stamp.write_text(json.dumps(source))


def run_measured(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, expect_json: bool = False
) -> dict:
    """Wall seconds, peak RSS (MB) and output of one command.

    The peak comes from GNU time (``/usr/bin/time -f %M``), a small process that forks the
    command: a child forked from this benchmark directly would report this process's own
    (model-sized) resident set as its ``ru_maxrss``, which Linux carries across fork."""
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r") as peak,
    ):
        started = time.perf_counter()
        timed = ["/usr/bin/time", "-f", "%M", "-o", peak.name, *cmd]
        proc = subprocess.run(timed, cwd=cwd, env=env, stdout=out, stderr=err, check=False)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
        lines = [ln for ln in peak.read().split() if ln.isdigit()]
    if proc.returncode != 0 or (expect_json and not stdout.lstrip().startswith("{")):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stdout[-1000:]}\n{stderr[-3000:]}")
    peak_kb = int(lines[-1]) if lines else float("nan")
    return {"wall_s": wall, "peak_rss_mb": peak_kb / 1024, "stdout": stdout, "stderr": stderr}


def rclip_env(datadir: Path) -> dict[str, str]:
    return {**os.environ, "RCLIP_DATADIR": str(datadir), "HF_HUB_OFFLINE": "1"}


def visual_session_load_s(venv: Path, datadir: Path) -> float:
    """Seconds rclip's lazy visual ONNX session takes to load (as rclip builds it)."""
    code = (
        "import time,sys; from rclip import model_download as m; m._import_onnxruntime(); "
        "t=time.perf_counter(); m.load_visual_query_session(); print(time.perf_counter()-t)"
    )
    run = run_measured([str(venv / "bin" / "python"), "-c", code], env=rclip_env(datadir))
    return float(run["stdout"].split()[-1])


def rclip_index(venv: Path, datadir: Path, folder: Path, batch_size: int, session_s: float) -> dict:
    (datadir / "db.sqlite3").unlink(missing_ok=True)
    run = run_measured(
        [str(venv / "bin" / "rclip"), "-b", str(batch_size), "-t", "1", QUERY],
        cwd=folder,
        env=rclip_env(datadir),
    )
    count = _count_rclip(datadir)
    rates = re.findall(r"\[[\d:]+<[\d:?]+,\s*([\d.]+)(images/s|s/images)\]", run["stderr"])
    if not rates:
        raise SystemExit(f"no rate in rclip's progress bar:\n{run['stderr'][-2000:]}")
    value, unit = rates[-1]
    bar_s = count / float(value) if unit == "images/s" else count * float(value)
    return {
        "encoded": count,
        "wall_s": run["wall_s"],
        "peak_rss_mb": run["peak_rss_mb"],
        "pipeline_ips": count / max(1e-6, bar_s - session_s),
        "bar_ips": count / bar_s,  # the bar's own rate: the session load left in
        "command_ips": count / run["wall_s"],
    }


def _count_rclip(datadir: Path) -> int:
    with sqlite3.connect(datadir / "db.sqlite3") as con:
        return con.execute("SELECT count(*) FROM images WHERE deleted IS NULL").fetchone()[0]


def rclip_query(venv: Path, datadir: Path, folder: Path, k: int) -> tuple[float, list[str]]:
    run = run_measured(
        [str(venv / "bin" / "rclip"), "-n", "-f", "-t", str(k), QUERY], cwd=folder, env=rclip_env(datadir)
    )
    return run["wall_s"], [line for line in run["stdout"].splitlines() if line.strip()]
