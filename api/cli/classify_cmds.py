"""``clipfind classify``, ``label``, ``labels list|show|export|delete``, ``index-texts``,
and the renderer behind ``clipfind search --texts``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from clipfind.api.cli.common import (
    CollectionOpt,
    DataDirOpt,
    DbUrlOpt,
    DeviceOpt,
    EngineOpt,
    JsonOpt,
    ModelOpt,
    console,
    emit_json,
    make_settings,
    open_clipfind,
    progress_bar,
    score_text,
)

LabelsOpt = Annotated[str | None, typer.Option("--labels", "-l", help="Comma-separated labels: "
                      "'cat,dog,car'.")]
LabelsFileOpt = Annotated[Path | None, typer.Option("--labels-file", help="Labels, one per line, "
                          "or a JSON/YAML list.")]
TemplatesOpt = Annotated[str | None, typer.Option("--templates", "-t", help="Prompt templates: "
                         "simple (default), imagenet (CLIP's 80), imagenet-short, plain, a "
                         ".txt/.json file, or one template with {}.")]
MultiOpt = Annotated[bool, typer.Option("--multi-label", help="Independent probability per "
                     "label (SigLIP: its sigmoid; CLIP: calibrated against background prompts).")]
BackgroundOpt = Annotated[str | None, typer.Option("--background", help="Comma-separated "
                          "'none of these' words a label must beat (default: object,thing,"
                          "something); 'none' switches the check off.")]

labels_app = typer.Typer(help="Inspect, export and delete stored label sets.",
                         no_args_is_help=True)


def _labels(labels: str | None, labels_file: Path | None) -> list[str]:
    from clipfind.errors import QueryError
    from clipfind.search.zeroshot.prompts import parse_labels, read_labels_file

    if labels and labels_file:
        raise QueryError("give --labels or --labels-file, not both")
    if labels_file:
        return read_labels_file(labels_file)
    return parse_labels(labels or "")


def _background(value: str | None) -> tuple[str, ...]:
    from clipfind.search.zeroshot.prompts import DEFAULT_BACKGROUND

    if value is None:
        return DEFAULT_BACKGROUND
    if value.strip().lower() == "none":
        return ()
    return tuple(w.strip() for w in value.split(",") if w.strip())


def classify(
    image: Annotated[str, typer.Argument(help="An image file, or an indexed item id (#N).")],
    labels: LabelsOpt = None, labels_file: LabelsFileOpt = None, templates: TemplatesOpt = None,
    multi_label: MultiOpt = False,
    top: Annotated[int | None, typer.Option("--top", "-k", help="Show the best N labels.")] = None,
    background: BackgroundOpt = None,
    model: ModelOpt = None, data_dir: DataDirOpt = None, collection: CollectionOpt = None,
    db_url: DbUrlOpt = None, device: DeviceOpt = None, engine: EngineOpt = None,
    json: JsonOpt = False,
) -> None:
    """Zero-shot classify one image: [{"label", "score"}] best first."""
    names = _labels(labels, labels_file)
    settings = make_settings(model=model, data_dir=data_dir, collection=collection,
                             db_url=db_url, device=device, engine=engine)
    result = open_clipfind(settings).classify(image, names, templates=templates,
                                              multi_label=multi_label, top=top,
                                              background=_background(background))
    if json:
        emit_json([s.as_dict() for s in result.scores])
        return
    out = console()
    given = {a.label for a in result.accepted}
    for s in result.scores:
        mark = "✓" if s.label in given else " "
        out.print(f"{score_text(s.score, 4):>8} {mark} {s.label}", markup=False, highlight=False)
    if result.none_of_these:
        out.print("none of these: no label beats the background prompts", markup=False)


def label(
    labels: LabelsOpt = None, labels_file: LabelsFileOpt = None, templates: TemplatesOpt = None,
    name: Annotated[str, typer.Option("--name", "-n", help="Label set name; an existing set "
                    "of that name is replaced.")] = "default",
    threshold: Annotated[float | None, typer.Option(help="Only give labels scoring at "
                         "least this.")] = None,
    top: Annotated[int | None, typer.Option("--top", "-k", help="Labels per item (default 1; "
                   "with --multi-label every accepted one).")] = None,
    path: Annotated[str | None, typer.Option("--path", help="Only items whose path matches "
                    "this glob.")] = None,
    multi_label: MultiOpt = False, background: BackgroundOpt = None,
    model: ModelOpt = None, data_dir: DataDirOpt = None, collection: CollectionOpt = None,
    db_url: DbUrlOpt = None, device: DeviceOpt = None, json: JsonOpt = False,
) -> None:
    """Label every indexed item from its stored vector (no image is decoded) and store
    the result as a named label set; `clipfind search --label LABEL` filters by it."""
    names = _labels(labels, labels_file)
    settings = make_settings(model=model, data_dir=data_dir, collection=collection,
                             db_url=db_url, device=device)
    clip = open_clipfind(settings)
    update, bar = progress_bar("labeling", enabled=not json)
    with bar:
        summary = clip.label(name, names, templates=templates, multi_label=multi_label,
                             threshold=threshold, top=top, path=path,
                             background=_background(background), progress=update)
    if json:
        emit_json(summary.as_dict())
        return
    out = console()
    out.print(f"label set {summary.name!r} ({summary.mode}): {summary.scored} items scored, "
              f"{summary.labelled} labelled, {summary.none_of_these} none of these, "
              f"{summary.seconds:.1f}s", markup=False, highlight=False)
    _print_counts(summary.counts)


def _print_counts(counts: dict[str, int]) -> None:
    out = console()
    for lb, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        out.print(f"{n:>8}  {lb}", markup=False, highlight=False)


@labels_app.command("list")
def labels_list(data_dir: DataDirOpt = None, collection: CollectionOpt = None,
                db_url: DbUrlOpt = None, json: JsonOpt = False) -> None:
    """The collection's label sets."""
    clip = open_clipfind(make_settings(data_dir=data_dir, collection=collection, db_url=db_url))
    sets = clip.label_sets()
    if json:
        emit_json([s.as_dict() for s in sets])
        return
    out = console()
    if not sets:
        out.print("no label sets yet: clipfind label --labels 'a,b,c' --name NAME")
    for s in sets:
        out.print(f"{s.name}: {len(s.labels)} labels, {s.labelled_items} items labelled, "
                  f"{s.created_at:%Y-%m-%d %H:%M}, {s.model}", markup=False, highlight=False)


@labels_app.command("show")
def labels_show(name: Annotated[str, typer.Argument(help="Label set name.")],
                data_dir: DataDirOpt = None, collection: CollectionOpt = None,
                db_url: DbUrlOpt = None, json: JsonOpt = False) -> None:
    """How many items got each label of a set."""
    clip = open_clipfind(make_settings(data_dir=data_dir, collection=collection, db_url=db_url))
    info = clip.label_set(name)
    if json:
        emit_json(info.as_dict())
        return
    doc = info.as_dict()
    params = ", ".join(f"{k}={v}" for k, v in info.params.items() if v not in (None, [], False))
    console().print(f"{info.name}: {len(info.labels)} labels, {info.model}, {doc['created_at']}\n"
                    f"  {params}\n  templates: {info.templates}", markup=False, highlight=False)
    _print_counts({**info.counts, "(none of these)": doc["none_of_these"]})


@labels_app.command("export")
def labels_export(
    name: Annotated[str, typer.Argument(help="Label set name.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, jsonl or coco.")] = "csv",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write "
                      "(default: standard output).")] = None,
    data_dir: DataDirOpt = None, collection: CollectionOpt = None, db_url: DbUrlOpt = None,
) -> None:
    """Write a label set as CSV, JSON Lines or COCO."""
    clip = open_clipfind(make_settings(data_dir=data_dir, collection=collection, db_url=db_url))
    if output is None:
        clip.export_label_set(name, fmt, sys.stdout)
        return
    if not output.parent.is_dir():
        from clipfind.errors import NotFoundError

        raise NotFoundError(f"cannot write {output}: folder {output.parent} does not exist")
    tmp = output.with_name(output.name + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8", newline="") as fh:
            n = clip.export_label_set(name, fmt, fh)
    except BaseException:  # an unknown set or format leaves no half-written file
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(output)
    typer.echo(f"wrote {n} labels to {output}", err=True)


@labels_app.command("delete")
def labels_delete(name: Annotated[str, typer.Argument(help="Label set name.")],
                  data_dir: DataDirOpt = None, collection: CollectionOpt = None,
                  db_url: DbUrlOpt = None, json: JsonOpt = False) -> None:
    """Delete a label set."""
    clip = open_clipfind(make_settings(data_dir=data_dir, collection=collection, db_url=db_url))
    clip.delete_label_set(name)
    if json:
        emit_json({"deleted": name})
    else:
        console().print(f"deleted label set {name!r}", markup=False, highlight=False)


def index_texts(
    file: Annotated[Path, typer.Argument(help="Texts: one per line, CSV with a 'text' (and "
                    "'id') column, or JSON Lines {\"id\", \"text\"}.")],
    replace: Annotated[bool, typer.Option("--replace", help="Drop texts not in FILE.")] = False,
    model: ModelOpt = None, data_dir: DataDirOpt = None, collection: CollectionOpt = None,
    db_url: DbUrlOpt = None, device: DeviceOpt = None, json: JsonOpt = False,
) -> None:
    """Add texts to the collection for image → text search (search --image X --texts)."""
    from clipfind.search.texts import read_texts_file

    pairs = read_texts_file(file)
    settings = make_settings(model=model, data_dir=data_dir, collection=collection,
                             db_url=db_url, device=device)
    summary = open_clipfind(settings).index_texts(pairs, replace=replace)
    if json:
        emit_json(summary.as_dict())
    else:
        console().print(f"texts: added {summary.added}, updated {summary.updated}, removed "
                        f"{summary.removed}, {summary.total} in all", markup=False)


def search_texts(settings: Any, terms: list[Any], k: int, json: bool) -> None:
    """``clipfind search ... --texts``: rank the collection's texts for the query."""
    hits = open_clipfind(settings).search_texts(terms, k=k)
    if json:
        emit_json({"query": [t.describe() for t in terms], "k": k,
                   "results": [h.as_dict() for h in hits]})
        return
    out = console()
    for rank, hit in enumerate(hits, start=1):
        key = f" [{hit.key}]" if hit.key and not hit.key.startswith("sha:") else ""
        out.print(f"{rank:>4}  {score_text(hit.score):>6}{key}  {hit.text}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command()(classify)
    app.command()(label)
    app.command("index-texts")(index_texts)
    app.add_typer(labels_app, name="labels")
