"""``clipfind detect``, and the rendering behind ``clipfind search --locate``."""

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
    console,
    emit_json,
    make_encoder,
    make_settings,
    open_clipfind,
    open_collection,
    score_text,
)

DetectorOpt = Annotated[str | None, typer.Option("--detector", help="clip (the collection's "
                        "own model; the default), owlv2 or owlvit (OWL detectors, needs "
                        "clipfind[owl]; default: the CLIPFIND_DETECTOR setting).")]
OwlModelOpt = Annotated[str | None, typer.Option("--owl-model", help="OWL model: a Hugging Face "
                        "name (google/owlv2-base-patch16-ensemble) or a save_pretrained folder.")]


def detect(
    image: Annotated[Path, typer.Argument(help="The image to search in.")],
    query: Annotated[list[str], typer.Option("--query", "-q", help="What to find, e.g. "
                     "'a red car'; repeatable (queries compete for each box).")] = [],  # noqa: B006
    example: Annotated[Path | None, typer.Option("--example", help="Find things that look "
                       "like this picture (a crop), instead of --query: OWL's image-guided "
                       "detection.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Minimum score (default 0.6 for "
                         "CLIP's softmax, 0.1 for SigLIP's and OWL's sigmoid).")] = None,
    max_boxes: Annotated[int, typer.Option("--max", help="At most this many boxes.")] = 10,
    draw: Annotated[Path | None, typer.Option("--draw", help="Write the image with the "
                    "boxes drawn on it to this file (PNG, JPEG, ...).")] = None,
    detector: DetectorOpt = None, owl_model: OwlModelOpt = None,
    model: ModelOpt = None, data_dir: DataDirOpt = None, collection: CollectionOpt = None,
    db_url: DbUrlOpt = None, device: DeviceOpt = None, json: JsonOpt = False,
) -> None:
    """Zero-shot detection: box where each --query (or things like --example) appears
    in IMAGE, with the collection's own model or an OWL detector. Boxes are in the pixels
    of the image as displayed (EXIF orientation applied)."""
    from clipfind.errors import QueryError

    if example is not None and query:
        raise QueryError("give --query or --example, not both")
    settings = make_settings(model=model, data_dir=data_dir, collection=collection,
                             db_url=db_url, device=device, owl_model=owl_model)
    result = open_clipfind(settings).detect(image, list(query), threshold=threshold,
                                            max_boxes=max_boxes, detector=detector,
                                            example=example)
    found = result.detections
    if draw is not None:  # boxes are in the original's pixels: draw on the original
        from clipfind.imageio import load_image
        from clipfind.search.detect.draw import draw_detections

        picture = load_image(image, max_pixels=settings.max_pixels).image
        draw_detections(picture, found).save(draw)
    if json:
        emit_json({"image": str(image), **result.as_dict()})
        return
    out = console()
    if not found:
        out.print("no boxes above the threshold")
    for det in found:
        out.print(_line(det), markup=False, highlight=False)
    if draw is not None:
        out.print(f"drew {len(found)} boxes into {draw}", markup=False, highlight=False)


def render_located(clip: Any, page: Any, terms: Any, as_json: bool,
                   detector: str | None = None) -> None:
    """Print a search page with boxes for the query's text in each result (or, for a
    query of example images alone, boxes of things like the first one, found by OWL)."""
    from clipfind.search.detect.locate import locate_example, locate_texts

    example = locate_example(terms)
    if example is not None:
        boxes = clip.locate(page, detector=detector, example=example)
    else:
        boxes = clip.locate(page, locate_texts(terms), detector=detector)
    if as_json:
        doc = page.as_dict()
        for row in doc["results"]:
            row["boxes"] = [d.as_dict() for d in boxes.get(row["id"], [])]
        emit_json(doc)
        return
    out = console()
    if not page.hits:
        out.print("no results")
    for rank, hit in enumerate(page.hits, start=page.offset + 1):
        out.print(f"{rank:>4}  {score_text(hit.score):>6}  #{hit.id:<6} {hit.path}",
                  markup=False, highlight=False)
        for det in boxes.get(hit.id, []):
            out.print("        " + _line(det), markup=False, highlight=False)


def run_detection_eval(settings: Any, instances: Path, images_dir: Path | None, as_json: bool,
                       limit: int | None = None, template: str = "a photo of a {}",
                       detector: str | None = None) -> None:
    """``clipfind eval --detection instances.json``: AP50 and AP@[.5:.95] of zero-shot
    detection on a COCO-format file, with ``--detector`` (default: CLIP on ``--model``,
    else the collection's model)."""
    from clipfind.api.cli.common import progress_bar
    from clipfind.search.detect.choice import detector_kind
    from clipfind.training.evaluate_detection import evaluate_detection

    found_by, encoder = None, None
    if detector_kind(detector, settings) == "clip":
        encoder = make_encoder(settings, open_collection(settings))
    else:
        found_by = open_clipfind(settings).detector(detector)
    update, bar = progress_bar("detecting", enabled=True)
    with bar:
        doc = evaluate_detection(encoder, instances, images_dir, limit=limit, template=template,
                                 progress=update, detector=found_by)
    if as_json:
        emit_json(doc)
        return
    out = console()
    for name, ap in sorted(doc["per_category"].items(), key=lambda kv: -kv[1]):
        out.print(f"{ap:6.3f}  {name}", markup=False, highlight=False)
    out.print(f"AP50 {doc['AP50']:.3f}, AP@[.5:.95] {doc['AP']:.3f} over {doc['categories']} "
              f"categories, {doc['images']} images, {doc['detections']} boxes, "
              f"{doc['seconds']:.1f} s",
              markup=False, highlight=False)


def _line(det: Any) -> str:
    b = det.box
    return (f"{score_text(det.score):>6}  {det.label}  "
            f"[{b.xmin:.0f}, {b.ymin:.0f}, {b.xmax:.0f}, {b.ymax:.0f}]")


def register(app: typer.Typer) -> None:
    app.command()(detect)
