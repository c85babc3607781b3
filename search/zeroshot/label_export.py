"""Write a label set for other tools: CSV, JSON Lines or COCO.

* ``csv``: one row per (item, label): ``item_id,path,label,score,rank``; scores are
  written with full precision, so reading the file back gives the stored set exactly.
* ``jsonl``: one line per labelled item: ``{"id", "path", "labels": [{"label",
  "score"}]}``, labels best first.
* ``coco``: a COCO-style document with ``images``, ``categories`` (one per label, in
  the set's order, ids from 1) and image-level ``annotations`` (``image_id``,
  ``category_id``, ``score``; no ``bbox``: these are classifications, not boxes).
"""

from __future__ import annotations

import csv
import json
from itertools import groupby
from typing import Any, TextIO

from clipfind.errors import QueryError
from clipfind.search.zeroshot.labeling import LabelRow, label_rows, label_set_summary

FORMATS = ("csv", "jsonl", "coco")
CSV_FIELDS = ("item_id", "path", "label", "score", "rank")


def export_label_set(catalog: Any, name: str, fmt: str, out: TextIO) -> int:
    """Write set ``name`` to ``out`` in ``fmt``; returns the number of labels written."""
    if fmt not in FORMATS:
        raise QueryError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    info = label_set_summary(catalog, name)
    rows = label_rows(catalog, name)
    if fmt == "csv":
        write_csv(rows, out)
    elif fmt == "jsonl":
        for item_id, group in groupby(rows, key=lambda r: r.item_id):
            group = list(group)
            out.write(json.dumps({"id": item_id, "path": group[0].path, "labels": [
                {"label": r.label, "score": r.score} for r in group]}, ensure_ascii=False) + "\n")
    else:
        json.dump(_coco(catalog, info, rows), out, ensure_ascii=False)
        out.write("\n")
    return len(rows)


def write_csv(rows: list[LabelRow], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in rows:
        writer.writerow((r.item_id, r.path, r.label, repr(float(r.score)), r.rank))


def read_csv(source: TextIO) -> list[LabelRow]:
    """Rows of a CSV export, as :func:`search.labeling.label_rows` returns them."""
    reader = csv.DictReader(source)
    if tuple(reader.fieldnames or ()) != CSV_FIELDS:
        raise QueryError(f"not a clipfind label CSV: header {reader.fieldnames}")
    return [LabelRow(int(r["item_id"]), r["path"], r["label"], float(r["score"]), int(r["rank"]))
            for r in reader]


def _coco(catalog: Any, info: Any, rows: list[LabelRow]) -> dict[str, Any]:
    cat_id = {label: i for i, label in enumerate(info.labels, start=1)}
    items = catalog.get_items({r.item_id for r in rows})
    images = [{"id": i, "file_name": it.path, "width": it.width, "height": it.height}
              for i, it in sorted(items.items())]
    annotations = [{"id": n, "image_id": r.item_id, "category_id": cat_id[r.label],
                    "score": r.score, "rank": r.rank}
                   for n, r in enumerate(rows, start=1)]
    return {
        "info": {"description": f"clipfind label set {info.name}", "model": info.model,
                 "templates": info.templates, "params": info.params,
                 "date_created": info.created_at.isoformat(timespec="seconds")},
        "images": images,
        "categories": [{"id": i, "name": label} for label, i in cat_id.items()],
        "annotations": annotations,
    }
