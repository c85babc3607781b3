"""The resumable training state (``train_state.pt`` beside the checkpoint): weights,
optimizer, schedule, and where the run was (:class:`RunState`, its
:class:`EpochMetrics`). Written atomically after every epoch."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float | None
    val_loss: float | None
    recall: dict[str, float]
    lr: float
    seconds: float


@dataclass
class RunState:
    """What a resumed run needs: where it was, and the best epoch so far."""

    epoch: int = 0
    step: int = 0
    best_score: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[EpochMetrics] = field(default_factory=list)


def save_state(out: Path, model: Any, opt: Any, sched: Any, run: RunState) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
        "run": {k: v for k, v in asdict(run).items() if k != "history"},
        "history": [asdict(h) for h in run.history],
    }
    tmp = out / (STATE_FILE + ".tmp")
    torch.save(doc, tmp)
    os.replace(tmp, out / STATE_FILE)


def load_state(out: Path, model: Any, opt: Any, sched: Any) -> RunState | None:
    """Restore a run saved by :func:`save_state`; ``None`` when there is none."""
    import torch

    path = out / STATE_FILE
    if not path.is_file():
        return None
    doc = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(doc["model"])
    opt.load_state_dict(doc["optimizer"])
    sched.load_state_dict(doc["scheduler"])
    run = RunState(**doc["run"])
    run.history = [EpochMetrics(**h) for h in doc["history"]]
    log.info("resuming after epoch %d (step %d)", run.epoch, run.step)
    return run
