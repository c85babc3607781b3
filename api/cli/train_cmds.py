"""``clipfind train``, ``eval`` and ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from clipfind.api.cli.common import (
    CollectionOpt,
    DataDirOpt,
    DbUrlOpt,
    DeviceOpt,
    JsonOpt,
    ModelOpt,
    TextPrecisionOpt,
    console,
    emit_json,
    make_settings,
    open_collection,
    progress_bar,
    score_text,
)
from clipfind.api.cli.detect_cmds import DetectorOpt, OwlModelOpt

SYNTHETIC = "synthetic:"


def train(
    data: Annotated[str, typer.Argument(help="Training pairs: a CSV/JSONL of image,caption, a COCO "
                    "captions JSON, an ImageFolder, or synthetic:N (N generated shape pictures).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Start from an open_clip spec "
                     "(NAME/PRETRAINED, hf-hub:..., local-dir:PATH: fine-tuning) or a config "
                     "(a JSON file or a registered NAME: random weights).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the checkpoint "
                   "(load it with --model local-dir:OUT).")],
    val: Annotated[str | None, typer.Option(help="Validation pairs (same formats); default: "
                   "--val-fraction of DATA.")] = None,
    images_dir: Annotated[Path | None, typer.Option(help="Folder the CSV/JSONL/COCO image paths "
                          "are relative to.")] = None,
    templates: Annotated[str, typer.Option(help="Prompt templates that turn ImageFolder class "
                         "names into captions.")] = "imagenet-short",
    loss: Annotated[str, typer.Option(help="clip (softmax) or siglip (sigmoid).")] = "clip",
    epochs: Annotated[int, typer.Option(min=1)] = 10,
    batch_size: Annotated[int, typer.Option(min=2)] = 64,
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 5e-4,
    weight_decay: Annotated[float, typer.Option()] = 0.1,
    warmup: Annotated[float, typer.Option(help="Warm-up: a fraction of all steps (<1) or steps.")] = 0.05,
    accum_steps: Annotated[int, typer.Option(min=1, help="Batches per optimizer step.")] = 1,
    lock_image: Annotated[bool, typer.Option(help="Keep the image tower fixed (LiT).")] = False,
    lock_text: Annotated[bool, typer.Option(help="Keep the text tower fixed.")] = False,
    crop_scale: Annotated[float, typer.Option(help="Random resized crop down to this share of "
                          "the image (1 = off).")] = 1.0,
    flip: Annotated[bool, typer.Option(help="Random horizontal flips (not for data where left "
                    "and right are named).")] = False,
    colour_jitter: Annotated[float, typer.Option(help="Brightness/contrast/saturation jitter "
                             "(0 = off; hue is never changed).")] = 0.0,
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.1,
    patience: Annotated[int | None, typer.Option(help="Stop after this many epochs without a "
                        "better validation recall.")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/train_state.pt.")] = False,
    validate_first: Annotated[bool, typer.Option(help="Validate the starting model too "
                              "(epoch 0 in the table).")] = False,
    json: JsonOpt = False,
) -> None:
    """Contrastive training: fine-tune a pretrained model or train one from a config."""
    from clipfind.training.model import Augment
    from clipfind.training.trainer import TrainConfig
    from clipfind.training.trainer import train as run_train

    train_data, val_data = _datasets(data, val, images_dir, templates, seed)
    cfg = TrainConfig(
        model=model, out=out, loss=loss, epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, warmup=warmup, accum_steps=accum_steps, lock_image=lock_image,
        lock_text=lock_text, val_fraction=val_fraction, patience=patience, seed=seed,
        threads=threads, resume=resume, validate_first=validate_first,
        augment=Augment(crop_scale=(crop_scale, 1.0) if crop_scale < 1 else None, flip=flip,
                        colour_jitter=colour_jitter),
    )
    update, bar = progress_bar("training", enabled=True)
    with bar:
        result = run_train(cfg, train_data, val_data,
                           progress=(lambda s, t, _info: update(s, t)) if update else None)
    if json:
        emit_json(result.as_dict())
        return
    _print_history(result)
    console().print(f"best epoch {result.best_epoch} saved to {out} — use it with "
                    f"--model local-dir:{out}", markup=False, highlight=False)


def _datasets(data: str, val: str | None, images_dir: Path | None, templates: str,
              seed: int) -> tuple[Any, Any]:
    from clipfind.templates import load_templates
    from clipfind.training.data import load_pairs

    def one(source: str, val_seed: int) -> Any:
        if source.startswith(SYNTHETIC):
            from clipfind.training.synthetic import ShapesDataset

            return ShapesDataset(int(source.removeprefix(SYNTHETIC)), seed=val_seed)
        return load_pairs(Path(source), images_dir, load_templates(templates), seed)

    train_data = one(data, seed)
    if val is not None:
        return train_data, one(val, seed + 1)
    if data.startswith(SYNTHETIC):  # fresh pictures, not a slice of the training ones
        from clipfind.training.synthetic import ShapesDataset

        return train_data, ShapesDataset(max(64, len(train_data) // 8), seed=seed + 1,
                                         random_captions=False)
    return train_data, None


def _print_history(result: Any) -> None:
    from rich.table import Table

    keys = ["text_to_image_R@1", "text_to_image_R@5", "image_to_text_R@1", "image_to_text_R@5"]
    names = ["t→i R@1", "t→i R@5", "i→t R@1", "i→t R@5"]
    if any("zero_shot_top1" in h.recall for h in result.history):
        keys, names = [*keys, "zero_shot_top1"], [*names, "zero-shot top-1"]
    table = Table("epoch", "train loss", "val loss", *names, "lr")
    for h in result.history:
        r = h.recall
        cells = [f"{r[k]:.3f}" if k in r else "-" for k in keys]
        table.add_row(str(h.epoch), "-" if h.train_loss is None else f"{h.train_loss:.4f}",
                      "-" if h.val_loss is None else f"{h.val_loss:.4f}", *cells, f"{h.lr:.2e}")
    console().print(table)


def evaluate(
    data: Annotated[Path | None, typer.Argument(help="A captions dataset (CSV/JSONL/COCO) for "
                    "retrieval, or an ImageFolder / CSV of image,label for zero-shot.")] = None,
    task: Annotated[str, typer.Option(help="auto, retrieval, zeroshot or index.")] = "auto",
    index: Annotated[bool, typer.Option("--index", help="Index quality of the collection: "
                     "recall@k of its FAISS index against exact search.")] = False,
    templates: Annotated[str, typer.Option(help="Prompt templates for zero-shot: imagenet (80), "
                         "imagenet-short, simple, plain, or a .json/.txt file.")] = "imagenet-short",
    images_dir: Annotated[Path | None, typer.Option(help="Base folder of the dataset's image paths.")] = None,
    k: Annotated[int, typer.Option("-k", help="k for index recall@k.")] = 10,
    queries: Annotated[int, typer.Option(help="Queries for index recall.")] = 200,
    index_kind: Annotated[str | None, typer.Option(help="Evaluate this index kind (flat, ivf-sq8) "
                          "built over the collection's vectors instead of its own index.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per model batch.")] = None,
    detection: Annotated[Path | None, typer.Option("--detection", help="COCO instances JSON: AP50 "
                         "and AP@[.5:.95] of zero-shot detection.")] = None,
    detector: DetectorOpt = None, owl_model: OwlModelOpt = None,
    model: ModelOpt = None, data_dir: DataDirOpt = None, collection: CollectionOpt = None,
    db_url: DbUrlOpt = None, device: DeviceOpt = None, text_precision: TextPrecisionOpt = None,
    json: JsonOpt = False,
) -> None:
    """Measure retrieval recall, zero-shot accuracy, zero-shot detection AP50, or the
    index's recall."""
    from clipfind.errors import QueryError

    settings = make_settings(model=model, data_dir=data_dir, collection=collection, db_url=db_url,
                             device=device, batch_size=batch_size, text_precision=text_precision,
                             owl_model=owl_model)
    if detection is not None:  # issue 5's evaluation, one command for all of them
        from clipfind.api.cli.detect_cmds import run_detection_eval

        run_detection_eval(settings, detection, images_dir, json, detector=detector)
        return
    task = "index" if index else task
    if task == "auto":
        if data is None:
            raise QueryError("give a dataset to evaluate on, or --index")
        task = _guess_task(data)
    if task == "index":
        from clipfind.training.evaluate import evaluate_index

        report: Any = evaluate_index(open_collection(settings), k=k, queries=queries, kind=index_kind)
    elif task in ("retrieval", "zeroshot"):
        if data is None:
            raise QueryError(f"{task} evaluation needs a dataset")
        report, precision = _evaluate_dataset(task, data, settings, templates, images_dir)
    else:
        raise QueryError(f"unknown task {task!r}: use auto, retrieval, zeroshot or index")
    if json:
        extra = {"text_precision": precision} if task in ("retrieval", "zeroshot") else {}
        emit_json({**report.as_dict(), **extra})
    else:
        _print_report(report)


def _guess_task(data: Path) -> str:
    """An ImageFolder or a CSV with a label column means zero-shot; else retrieval."""
    if data.is_dir():
        return "zeroshot"
    if data.suffix.lower() == ".csv" and data.is_file():
        header = data.read_text(encoding="utf-8-sig").splitlines()[:1]
        cols = {c.strip().lower() for c in (header[0].split(",") if header else [])}
        if cols & {"label", "class", "category"} and not cols & {"caption", "text", "title"}:
            return "zeroshot"
    return "retrieval"


def _evaluate_dataset(task: str, data: Path, settings: Any, templates: str,
                      images_dir: Path | None) -> tuple[Any, str]:
    """The report, and the precision texts were encoded at."""
    from clipfind.encoder import ClipEncoder
    from clipfind.templates import load_templates
    from clipfind.training.data import load_labelled, load_pairs
    from clipfind.training.evaluate import evaluate_retrieval, evaluate_zero_shot

    encoder = ClipEncoder.from_settings(settings)
    update, bar = progress_bar("encoding", enabled=True)
    with bar:
        if task == "zeroshot":
            report = evaluate_zero_shot(encoder, load_labelled(data), load_templates(templates),
                                        settings.batch_size, update)
        else:
            report = evaluate_retrieval(encoder, load_pairs(data, images_dir),
                                        batch_size=settings.batch_size, progress=update)
    return report, encoder.text_precision


def _print_report(report: Any) -> None:
    from rich.table import Table

    doc = report.as_dict()
    out = console()
    if doc["task"] == "retrieval":
        table = Table("direction", "R@1", "R@5", "R@10",
                      title=f"retrieval: {doc['images']} images, {doc['captions']} captions")
        for d, name in (("text_to_image", "text → image"), ("image_to_text", "image → text")):
            table.add_row(name, *(f"{doc['recall'].get(f'{d}_R@{k}', 0):.3f}" for k in (1, 5, 10)))
        out.print(table)
    elif doc["task"] == "zeroshot":
        table = Table("class", "top-1", title=f"zero-shot: {doc['images']} images, {doc['classes']} "
                      f"classes, {doc['templates']} templates")
        for name, acc in sorted(doc["per_class"].items()):
            table.add_row(name, f"{acc:.3f}")
        out.print(table)
        out.print(f"top-1 {doc['top1']:.3f}   top-5 {doc['top5']:.3f}   mean per-class "
                  f"{doc['mean_per_class']:.3f}")
    else:
        out.print(f"index {doc['kind']} over {doc['vectors']} vectors: recall@{doc['k']} "
                  f"{doc['recall']:.3f} against exact search ({doc['queries']} queries)")
    if doc.get("skipped"):
        out.print(f"skipped {doc['skipped']} undecodable images")


def demo(data_dir: DataDirOpt = None, k: Annotated[int, typer.Option("-k", help="Results per "
         "search.")] = 5, json: JsonOpt = False) -> None:
    """Offline end-to-end demo: with the tiny reference CLIP shipped with clipfind, index a
    folder of synthetic shape pictures, search them by text and by example, label them and
    detect shapes, each answer checked against what was drawn."""
    from clipfind.api.demo import run_demo

    settings = make_settings(data_dir=data_dir)
    with _StageBar() as bar:
        report = run_demo(settings.data_dir, progress=bar.update, k=k)
    if json:
        emit_json(report.as_dict())
        return
    _print_demo(report, "" if data_dir is None else f" --data-dir {data_dir}")


class _StageBar:
    """One progress bar per demo stage, on a terminal only."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}
        self.progress: Any = None

    def __enter__(self) -> _StageBar:
        import sys

        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeRemainingColumn(), console=Console(stderr=True))
            self.progress.start()
        return self

    def update(self, stage: str, done: int, total: int) -> None:
        if self.progress is None:
            return
        if stage not in self.bars:
            self.bars[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.bars[stage], completed=done, total=total)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()


def _print_demo(report: Any, where: str) -> None:
    out = console()
    out.print(f"reference model: local-dir:{report.model_dir}", markup=False, highlight=False)
    out.print(f"indexed {report.indexed} synthetic photos from {report.photos} ({report.encoded} "
              f"encoded) in {report.index_seconds:.1f}s, collection 'demo'", markup=False, highlight=False)
    for r in report.searches:
        note = "  (colour-shape pair never seen in training)" if r.held_out else ""
        found = f"{r.correct}/{r.possible} {_plural(r.expected)}"
        out.print(f"\ntop-{len(r.hits)} for {r.query!r}: {found}{note}",
                  markup=False, highlight=False)
        for path, label, score in r.hits:
            mark = "✓" if label == r.expected else "✗"
            out.print(f"   {mark} {score_text(score):>6}  {Path(path).name}  ({label})",
                      markup=False, highlight=False)
    for section in report.sections:
        out.print(f"\n{section.title}", markup=False, highlight=False)
        for line in section.lines:
            out.print(f"   {line}", markup=False, highlight=False)
    out.print("\nIndex your own photos (downloads ViT-B-32 weights on first use, or point --model at a "
              "local-dir checkpoint):\n   clipfind index ~/Pictures\n"
              "   clipfind search \"a dog on a beach\"\n"
              "Search the demo collection yourself:\n"
              f"   clipfind search \"a pink star\" --collection demo{where}",
              markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command("eval")(evaluate)
    app.command()(demo)


def _plural(label: str) -> str:
    return label + ("es" if label.endswith(("s", "x", "ch", "sh")) else "s")
