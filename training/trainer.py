"""Contrastive training of an open_clip model on ``(image, caption)`` pairs.

CLIP's softmax loss or SigLIP's sigmoid loss (open_clip's own ``ClipLoss`` /
``SigLipLoss``), AdamW with linear warm-up and cosine decay, optional locked towers
(LiT), gradient accumulation, a validation split with recall@K after every epoch, early
stopping on it, and a resumable training state. The best epoch's weights are written as
a ``local-dir:`` checkpoint folder (see :mod:`clipfind.checkpoint`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clipfind.checkpoint import save_checkpoint
from clipfind.training.data import PairDataset, Pairs, collate, split_indices
from clipfind.training.metrics import mean_recall, recall_at_k
from clipfind.training.model import Augment, Trainable, build_trainable, eval_transform, train_transform
from clipfind.training.state import EpochMetrics, RunState, load_state, save_state

log = logging.getLogger(__name__)

Progress = Callable[[int, int, dict[str, float]], None]
LOSSES = ("clip", "siglip")
CACHE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run is told; ``out`` receives the checkpoint folder."""

    model: str
    out: Path
    loss: str = "clip"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.1
    warmup: float = 0.05  # < 1: fraction of all optimizer steps; >= 1: steps
    accum_steps: int = 1
    lock_image: bool = False
    lock_text: bool = False
    augment: Augment = field(default_factory=Augment)
    val_fraction: float = 0.1
    patience: int | None = None  # epochs without a better val score (recall; zero-shot for classes)
    grad_clip: float | None = 1.0
    seed: int = 0
    threads: int | None = None
    workers: int = 0
    resume: bool = False
    validate_first: bool = False  # record the starting model's validation as epoch 0

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


@dataclass(frozen=True)
class TrainResult:
    out: Path
    history: list[EpochMetrics]
    best_epoch: int
    stopped_early: bool
    steps: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "best_epoch": self.best_epoch, "stopped_early": self.stopped_early,
                "steps": self.steps, "seconds": round(self.seconds, 2),
                "history": [asdict(h) for h in self.history]}


def train(cfg: TrainConfig, data: PairDataset, val: PairDataset | None = None,
          progress: Progress | None = None) -> TrainResult:
    """Train ``cfg.model`` on ``data`` (validated on ``val``, else on a held-out
    ``cfg.val_fraction`` of ``data``); returns the history and writes ``cfg.out``."""
    import torch

    if cfg.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, not {cfg.loss!r}")
    started = time.perf_counter()
    torch.set_num_threads(cfg.threads or max(1, os.cpu_count() or 1))
    torch.manual_seed(cfg.seed)
    tr = build_trainable(cfg.model, cfg.seed, sigmoid=cfg.loss == "siglip")
    _lock(tr.model, cfg.lock_image, cfg.lock_text)
    train_set, val_set = _split(cfg, tr, data, val)
    batch = min(cfg.batch_size, len(train_set))
    steps_per_epoch = max(1, len(train_set) // batch // cfg.accum_steps)
    total = steps_per_epoch * cfg.epochs
    opt = _optimizer(tr.model, cfg)
    warm = int(cfg.warmup * total) if cfg.warmup < 1 else int(cfg.warmup)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, warm, total))
    loss_fn = _loss_fn(cfg.loss)
    run = RunState()
    if cfg.resume:
        run = load_state(cfg.out, tr.model, opt, sched) or run
    if cfg.validate_first and val_set and not run.history:
        val_loss, recall = _validate(tr, val_set, batch, loss_fn)
        run.history.append(EpochMetrics(0, None, val_loss, recall, 0.0, 0.0))
        log.info("before training: val loss %.4f, %s", val_loss, _fmt(recall))
    for epoch in range(run.epoch, cfg.epochs):
        t0 = time.perf_counter()
        train_loss = _train_epoch(cfg, tr, train_set, batch, epoch, opt, sched, loss_fn, run, total, progress)
        val_loss, recall = _validate(tr, val_set, batch, loss_fn) if val_set else (None, {})
        metrics = EpochMetrics(epoch + 1, train_loss, val_loss, recall, sched.get_last_lr()[0],
                               time.perf_counter() - t0)
        run.history.append(metrics)
        log.info("epoch %d: train loss %.4f, val loss %s, %s", epoch + 1, train_loss,
                 f"{val_loss:.4f}" if val_loss is not None else "-", _fmt(recall))
        score = recall.get("zero_shot_top1", mean_recall(recall)) if recall else -train_loss
        if run.best_score is None or score > run.best_score:
            run.best_score, run.best_epoch, run.bad_epochs = score, epoch + 1, 0
            _save_model(tr, cfg)
        else:
            run.bad_epochs += 1
        run.epoch = epoch + 1
        save_state(cfg.out, tr.model, opt, sched, run)
        if cfg.patience is not None and run.bad_epochs >= cfg.patience:
            run.stopped_early = True
            log.info("no better validation recall for %d epochs: stopping", cfg.patience)
            break
    result = TrainResult(cfg.out, list(run.history), run.best_epoch, run.stopped_early, run.step,
                         time.perf_counter() - started)
    (cfg.out / "train_summary.json").write_text(json.dumps(
        {"config": cfg.as_dict(), **result.as_dict()}, indent=2))
    return result


def _split(cfg: TrainConfig, tr: Trainable, data: PairDataset,
           val: PairDataset | None) -> tuple[Pairs, Pairs | None]:
    tf_train = train_transform(tr.preprocess_cfg, cfg.augment)
    tf_eval = eval_transform(tr.preprocess_cfg)
    size = tr.preprocess_cfg.get("size", 224)
    pixels = int(np.prod(size)) if isinstance(size, list | tuple) else int(size) ** 2
    # Keep decoded, transformed pixels in memory when they fit: decoding each epoch
    # afresh costs more than the tiny models' forward pass.
    fits = (len(data) + len(val or ())) * pixels * 3 * 4 <= CACHE_BYTES
    cache_train = fits and cfg.augment == Augment()
    if val is not None:
        return (Pairs(data, range(len(data)), tf_train, cache_train),
                Pairs(val, range(len(val)), tf_eval, fits))
    train_idx, val_idx = split_indices(len(data), cfg.val_fraction, cfg.seed)
    if len(train_idx) < 2:
        raise ValueError(f"need at least 2 training pairs, have {len(train_idx)}")
    val_set = Pairs(data, val_idx, tf_eval, fits) if len(val_idx) >= 2 else None
    return Pairs(data, train_idx, tf_train, cache_train), val_set


def _lock(model: Any, image: bool, text: bool) -> None:
    """LiT: a locked tower keeps its weights (and runs in eval mode)."""
    for name, param in model.named_parameters():
        is_image = name.startswith("visual.")
        is_scale = name in ("logit_scale", "logit_bias")
        if (image and is_image) or (text and not is_image and not is_scale):
            param.requires_grad_(False)


def _optimizer(model: Any, cfg: TrainConfig) -> Any:
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # open_clip's rule: no decay on gains, biases, embeddings and the temperature
        skip = p.ndim < 2 or "embedding" in name or "logit_" in name or "bn" in name or "ln" in name
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is several times faster on CPU (a big token embedding)
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _loss_fn(kind: str) -> Callable[[Any, Any, Any], Any]:
    from open_clip.loss import ClipLoss, SigLipLoss

    if kind == "clip":
        clip = ClipLoss()
        return lambda img, txt, model: clip(img, txt, model.logit_scale.exp())
    sig = SigLipLoss()
    return lambda img, txt, model: sig(img, txt, model.logit_scale.exp(), model.logit_bias)


def _features(model: Any, pixels: Any, tokens: Any) -> tuple[Any, Any]:
    import torch.nn.functional as F

    from clipfind.text_tower import encode_tokens

    return (F.normalize(model.encode_image(pixels), dim=-1),
            F.normalize(encode_tokens(model, tokens), dim=-1))


def _train_epoch(cfg: TrainConfig, tr: Trainable, data: Pairs, batch: int, epoch: int, opt: Any,
                 sched: Any, loss_fn: Any, run: RunState, total: int, progress: Progress | None) -> float:
    import torch

    data.set_epoch(epoch)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    # A dataset that is random by construction may ask for its own order (hard-negative
    # batches, see ShapesDataset.group).
    shuffle = not getattr(data.data, "ordered", False)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=shuffle, drop_last=True,
                                         generator=gen, num_workers=cfg.workers, collate_fn=collate)
    tr.model.train()
    if cfg.lock_image:
        tr.model.visual.eval()
    losses: list[float] = []
    opt.zero_grad(set_to_none=True)
    for i, (pixels, captions) in enumerate(loader):
        img, txt = _features(tr.model, pixels, tr.tokenizer(captions))
        loss = loss_fn(img, txt, tr.model)
        (loss / cfg.accum_steps).backward()
        losses.append(float(loss.detach()))
        if (i + 1) % cfg.accum_steps:
            continue
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in tr.model.parameters() if p.requires_grad],
                                           cfg.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():  # CLIP's cap on the temperature
            tr.model.logit_scale.clamp_(0, math.log(100))
        run.step += 1
        if progress:
            progress(run.step, total, {"epoch": epoch + 1, "loss": float(np.mean(losses[-20:]))})
    return float(np.mean(losses)) if losses else float("nan")


def _validate(tr: Trainable, data: Pairs, batch: int, loss_fn: Any) -> tuple[float, dict[str, float]]:
    import torch

    tr.model.eval()
    imgs, txts, losses = [], [], []
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=False, collate_fn=collate)
    with torch.no_grad():
        for pixels, captions in loader:
            img, txt = _features(tr.model, pixels, tr.tokenizer(captions))
            if len(captions) > 1:
                losses.append(float(loss_fn(img, txt, tr.model)) * len(captions))
            imgs.append(img.numpy())
            txts.append(txt.numpy())
    image_vecs, text_vecs = np.concatenate(imgs), np.concatenate(txts)
    recall = recall_at_k(image_vecs, text_vecs, range(len(text_vecs)))
    top1 = _zero_shot_top1(tr, data, image_vecs)
    if top1 is not None:
        recall["zero_shot_top1"] = top1
    return sum(losses) / max(1, len(data)), recall


def _zero_shot_top1(tr: Trainable, data: Pairs, image_vecs: np.ndarray) -> float | None:
    """For class-labelled data (an ImageFolder), zero-shot accuracy over its classes: the
    metric that matters there, since captions repeat and recall@K cannot tell."""
    import torch
    import torch.nn.functional as F

    from clipfind.text_tower import encode_tokens

    templates = getattr(data.data, "templates", None)
    if not templates:
        return None
    labels = [data.data.pairs[i].caption for i in data.indices]  # type: ignore[attr-defined]
    classes = sorted(set(labels))
    if len(classes) < 2:
        return None
    with torch.no_grad():
        rows = [F.normalize(encode_tokens(tr.model, tr.tokenizer([t.replace("{}", c) for t in templates])),
                            dim=-1).mean(0) for c in classes]
    class_vecs = F.normalize(torch.stack(rows), dim=-1).numpy()
    pred = (image_vecs @ class_vecs.T).argmax(axis=1)
    return float(np.mean([classes[p] == label for p, label in zip(pred, labels, strict=True)]))


def _save_model(tr: Trainable, cfg: TrainConfig) -> None:
    save_checkpoint(tr.model, tr.model_cfg, cfg.out, tr.preprocess_cfg,
                    extra={"clipfind_training": {"source": tr.source, "loss": cfg.loss}})


def _fmt(recall: dict[str, float], keys: Sequence[str] = ("text_to_image_R@1", "image_to_text_R@1")) -> str:
    return ", ".join(f"{k} {recall[k]:.3f}" for k in keys if k in recall)
