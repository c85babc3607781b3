"""``clipfind index``, ``search``, ``info`` and ``forget``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from clipfind.api.cli.common import (
    CollectionOpt,
    DataDirOpt,
    DbUrlOpt,
    DeviceOpt,
    EngineOpt,
    IndexMemoryOpt,
    JsonOpt,
    ModelOpt,
    TextPrecisionOpt,
    console,
    emit_json,
    make_settings,
    open_clipfind,
    progress_bar,
    score_text,
)
from clipfind.api.cli.detect_cmds import DetectorOpt, OwlModelOpt


def index(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files to index.")],
    exclude: Annotated[list[str], typer.Option("--exclude", "-x", help="Glob on path or "
                       "name to leave out; repeatable.")] = [],  # noqa: B006
    batch_size: Annotated[int | None, typer.Option(help="Images per model batch.")] = None,
    workers: Annotated[int | None, typer.Option(help="Decode threads (0 = auto).")] = None,
    reembed: Annotated[bool, typer.Option("--reembed", help="Switch the collection to "
                       "--model and re-encode every image.")] = False,
    prune: Annotated[bool, typer.Option("--prune/--keep-missing", help="Remove items whose "
                     "files are gone from the given folders (default), or keep them.")] = True,
    allow_removals: Annotated[bool, typer.Option("--allow-removals", help="Remove the items "
                              "of a root that is empty or on another device now, or most "
                              "of a root at once (refused otherwise: an unmounted drive "
                              "looks like that).")] = False,
    max_pixels: Annotated[int | None, typer.Option(help="Refuse images with more pixels.")] = None,
    index_memory: IndexMemoryOpt = None,
    ray: Annotated[str | None, typer.Option("--ray", metavar="ADDRESS", help="Decode and "
                   "encode on a running Ray cluster: auto, HOST:PORT or ray://HOST:PORT. Every "
                   "node must see the files at the same path. Needs clipfind[ray].")] = None,
    model: ModelOpt = None, data_dir: DataDirOpt = None, collection: CollectionOpt = None,
    db_url: DbUrlOpt = None, device: DeviceOpt = None, engine: EngineOpt = None,
    json: JsonOpt = False,
) -> None:
    """Index photos: new and changed files are encoded, moved files keep their vectors,
    deleted files leave the index. Safe to interrupt and re-run."""
    settings = make_settings(model=model, data_dir=data_dir, collection=collection,
                             index_memory=index_memory,
                             db_url=db_url, device=device, batch_size=batch_size,
                             workers=workers, max_pixels=max_pixels, engine=engine)
    clip = open_clipfind(settings)
    update, bar = progress_bar("indexing", enabled=True)
    with bar:
        summary = clip.index(paths, exclude=exclude, reembed=reembed, prune=prune,
                             progress=update, allow_removals=allow_removals,
                             confirm=ask_on_terminal, ray=ray)
    from clipfind.indexer.timings import describe, with_start

    timings = with_start(summary.timings, summary.seconds)  # + the process's start-up
    if json:
        emit_json({**summary.as_dict(), "timings": timings})
        return
    out = console()
    out.print(
        f"added {summary.added}, updated {summary.updated}, moved {summary.moved}, "
        f"removed {summary.removed}, unchanged {summary.unchanged}, "
        f"skipped {len(summary.skipped)}"
        + (f", still skipped {summary.still_skipped}" if summary.still_skipped else "")
        + f" — {summary.encoded} images encoded in "
        f"{summary.seconds:.1f}s ({summary.images_per_second:.1f} images/s)"
    )
    out.print(describe(timings), markup=False, highlight=False)
    for path, reason in summary.skipped[:50]:
        out.print(f"  skipped {path}: {reason}", markup=False, highlight=False)
    if len(summary.skipped) > 50:
        out.print(f"  … and {len(summary.skipped) - 50} more (clipfind info --json lists all)")


def ask_on_terminal(question: str) -> bool:
    """Removing most of a root: a person at a terminal is asked; a script is not (it
    needs --allow-removals)."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    return bool(typer.confirm(question, default=False, err=True))


def search(
    query: Annotated[str | None, typer.Argument(help="Text, or a weighted mix: "
                     "'2:golden retriever + beach.jpg - leash + #42'.")] = None,
    image: Annotated[list[str], typer.Option("--image", "-i", "--example", help="Example image "
                     "file or item id (#N); repeatable.")] = [],  # noqa: B006
    negative: Annotated[list[str], typer.Option("--not", help="Text to steer away from; "
                        "repeatable.")] = [],  # noqa: B006
    k: Annotated[int, typer.Option("-k", "--top", help="Results per page.")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many results (paging).")] = 0,
    min_score: Annotated[float | None, typer.Option(help="Drop results below this cosine.")] = None,
    path: Annotated[str | None, typer.Option("--path", help="Only paths matching this glob.")] = None,
    after: Annotated[str | None, typer.Option(help="Taken on or after (YYYY[-MM[-DD]]).")] = None,
    before: Annotated[str | None, typer.Option(help="Taken on or before (YYYY[-MM[-DD]]).")] = None,
    label: Annotated[str | None, typer.Option(help="Only items with this label (LABEL or "
                     "SET:LABEL).")] = None,
    texts: Annotated[bool, typer.Option("--texts", help="Rank the collection's texts "
                     "(clipfind index-texts) instead of its images.")] = False,
    locate: Annotated[bool, typer.Option("--locate", help="Also box where the query's text "
                      "appears in each result (zero-shot detection; -k limits the work); with "
                      "example images alone, things like the first one (OWL).")] = False,
    detector: DetectorOpt = None, owl_model: OwlModelOpt = None,
    model: ModelOpt = None, data_dir: DataDirOpt = None, collection: CollectionOpt = None,
    db_url: DbUrlOpt = None, device: DeviceOpt = None, text_precision: TextPrecisionOpt = None,
    engine: EngineOpt = None, json: JsonOpt = False,
) -> None:
    """Search the collection by text, example images, or a weighted mix of both."""
    from clipfind.errors import QueryError
    from clipfind.search import build_terms

    settings = make_settings(model=model, data_dir=data_dir, collection=collection,
                             db_url=db_url, device=device, text_precision=text_precision,
                             owl_model=owl_model, engine=engine)
    terms = build_terms(query, image, negative)
    if not terms:
        raise QueryError("give a text query, --image, or both")
    if texts:  # image → text retrieval: api/cli/classify_cmds.py
        from clipfind.api.cli.classify_cmds import search_texts

        return search_texts(settings, terms, k, json)
    clip = open_clipfind(settings)
    page = clip.search(terms, k=k, offset=offset, path=path, after=after, before=before,
                       label=label, min_score=min_score)
    if locate:  # api/cli/detect_cmds.py
        from clipfind.api.cli.detect_cmds import render_located

        return render_located(clip, page, terms, json, detector)
    if json:
        emit_json(page.as_dict())
        return
    # Plain lines, not rich: a path stays whole on its line (for grep and copy-paste) and
    # as it is (rich would turn ":dog:" in a name into an emoji), and a one-shot query
    # does not import rich
    if not page.hits:
        print("no results")
    for rank, hit in enumerate(page.hits, start=offset + 1):
        print(f"{rank:>4}  {score_text(hit.score):>6}  #{hit.id:<6} {hit.path}")


def info(
    data_dir: DataDirOpt = None, collection: CollectionOpt = None, db_url: DbUrlOpt = None,
    json: JsonOpt = False,
) -> None:
    """Show the collection: model, counts, index type, skipped files and why."""
    settings = make_settings(data_dir=data_dir, collection=collection, db_url=db_url)
    # The setting, not the outcome: info loads no model (GET /info shows the outcome).
    doc = {**open_clipfind(settings).info().as_dict(), "text_precision": settings.text_precision}
    if json:
        emit_json(doc)
        return
    index = doc["index"]
    lines = [
        ("collection", doc["collection"]),
        ("model", f"{doc['model'] or '(none yet)'}" + (f" (dim {doc['dim']})" if doc["dim"] else "")),
        ("indexed", doc["indexed"]),
        ("skipped", doc["skipped"]),
        ("texts", doc.get("texts", 0)),
        ("index", f"{index['kind']}, {index['vectors']} vectors, generation {index['generation']}"),
        ("text", {"auto": "auto (int8 on CPU if it matches fp32 on a probe set, else fp32)"}.get(
            settings.text_precision, settings.text_precision)),
        ("engine", doc.get("engine") or "(nothing encoded yet)"),
        ("database", doc["database"]),
        ("data dir", doc["data_dir"]),
    ]
    out = console()
    for key, value in lines:  # soft_wrap: long paths stay whole, for grep and copy-paste
        out.print(f"{key:>10}: {value}", markup=False, highlight=False, soft_wrap=True)
    for row in doc["skipped_files"][:50]:
        out.print(f"  skipped {row['path']}: {row['reason']}", markup=False, highlight=False,
                  soft_wrap=True)
    if len(doc["skipped_files"]) > 50:
        out.print(f"  … and {len(doc['skipped_files']) - 50} more (--json lists all)")


def forget(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files to drop from the "
                     "collection (the files themselves are not touched).")],
    data_dir: DataDirOpt = None, collection: CollectionOpt = None, db_url: DbUrlOpt = None,
    json: JsonOpt = False,
) -> None:
    """Remove items under PATHS from the collection, e.g. a drive that is gone for good."""
    settings = make_settings(data_dir=data_dir, collection=collection, db_url=db_url)
    removed = open_clipfind(settings).forget(paths)
    if json:
        emit_json({"removed": removed})
    else:
        console().print(f"removed {removed} items")


def register(app: typer.Typer) -> None:
    for command in (index, search, info, forget):
        app.command()(command)
