"""`python -m mri_service.phantom`: writes a data set of phantom series with their labels."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mri_service.phantom.dicom import write_series_zip
from mri_service.phantom.series import case_specs, generate_series, labels_json


def build_parser() -> argparse.ArgumentParser:
    """Returns the parser of the data set writer."""
    parser = argparse.ArgumentParser(
        prog="python -m mri_service.phantom",
        description="Writes generated breast-MRI series as DIR/case-NNNN.zip with labels in "
        "DIR/case-NNNN.json, the layout `medimg train mri --data` reads. Phantoms, not patients.",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--count", type=int, default=10, metavar="N", help="cases (default: 10)")
    parser.add_argument("--slices", type=int, default=32, help="slices per series (default: 32)")
    parser.add_argument("--size", type=int, default=256, help="rows and columns (default: 256)")
    parser.add_argument("--seed", type=int, default=0, help="data set seed (default: 0)")
    parser.add_argument(
        "--positive-fraction",
        type=float,
        default=0.5,
        metavar="F",
        help="share of cases with a lesion (default: 0.5)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Writes the data set argv asks for."""
    args = build_parser().parse_args(argv)
    if args.count < 1 or not 0.0 <= args.positive_fraction <= 1.0:
        print("--count must be at least 1 and --positive-fraction in [0, 1]", file=sys.stderr)
        return 2
    specs = case_specs(
        args.count,
        args.seed,
        slices=args.slices,
        size=args.size,
        positive_fraction=args.positive_fraction,
    )
    for index, spec in enumerate(specs, start=1):
        series = generate_series(spec)
        stem = args.out / f"case-{index:04d}"
        write_series_zip(series, stem.with_suffix(".zip"), wrap_folder=stem.name)
        stem.with_suffix(".json").write_text(json.dumps(labels_json(series)) + "\n")
        print(f"{stem.name}: {sum(series.positive)} of {series.slice_count} slices positive")
    return 0
