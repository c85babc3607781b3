"""Detection quality with the reference model, and what each part of the method buys.

The synthetic-shapes checks of :func:`search.evaluate_detection.evaluate_scenes` on 140
scenes (seeds 7, 1, 3 with 20 scenes each, 21 and 22 with 40; the tests use seed 7, the
defaults were tuned on 21 and 22), for the defaults and with one part at a time turned
off: picture-region proposals, the region-fit prior, partial queries, the 0.6 threshold,
and all of them (the method before they were added). Deterministic for a given
reference model; about a minute per configuration on 2 cores.

    .venv/bin/python -m benchmarks.detect_ablations
    .venv/bin/python -m benchmarks.detect_ablations --only defaults
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from benchmarks.common import print_table, write_json

SEEDS = ((7, 20), (1, 20), (3, 20), (21, 40), (22, 40))
# name: (DetectOptions changes, threshold or None for the default)
CONFIGS: dict[str, tuple[dict[str, Any], float | None]] = {
    "defaults": ({}, None),
    "no regions": ({"segments_per_query": 0}, None),
    "no region prior": ({"region_prior": 0.0}, None),
    "no partial queries": ({"partial_queries": False}, None),
    "threshold 0.5": ({}, 0.5),
    "none (previous method)": ({"segments_per_query": 0, "region_prior": 0.0,
                                "partial_queries": False}, 0.5),
}
METRICS = ("found", "clean", "absent_clean")


def run(encoder: Any, changes: dict[str, Any], threshold: float | None) -> dict[str, Any]:
    """The three metrics over all seeds (weighted by scene count) and per seed."""
    from clipfind.search.detect.detector import DEFAULT_OPTIONS
    from clipfind.training.evaluate_detection import evaluate_scenes

    opts = replace(DEFAULT_OPTIONS, **changes)
    per_seed = {seed: evaluate_scenes(encoder, n=n, seed=seed, options=opts, threshold=threshold)
                for seed, n in SEEDS}
    total = sum(n for _, n in SEEDS)
    row: dict[str, Any] = {m: round(sum(per_seed[s][m] * n for s, n in SEEDS) / total, 3)
                           for m in METRICS}
    for metric in ("found", "absent_clean"):
        row[f"{metric} per seed"] = " ".join(f"{per_seed[s][metric]:.3g}" for s, _ in SEEDS)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=list(CONFIGS), help="configurations to run")
    args = parser.parse_args()
    from clipfind.encoder import ClipEncoder
    from clipfind.training.reference import shipped_reference_model

    reference = shipped_reference_model()
    encoder = ClipEncoder(f"local-dir:{reference}", device="cpu")
    rows = []
    for name in args.only or list(CONFIGS):
        changes, threshold = CONFIGS[name]
        rows.append({"configuration": name, **run(encoder, changes, threshold)})
        print(rows[-1], flush=True)
    seeds = ", ".join(f"{s}x{n}" for s, n in SEEDS)
    print_table(f"Detection on synthetic scenes, reference model {reference.name} (seeds {seeds})",
                rows, ["configuration", *METRICS, "found per seed", "absent_clean per seed"])
    write_json("detect_ablations", {"reference": str(reference), "seeds": SEEDS, "rows": rows})


if __name__ == "__main__":
    main()
