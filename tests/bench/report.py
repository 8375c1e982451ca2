"""The benchmarks' shared report: ratio rows against their targets, one table, results.json.

A bench builds a `Ratio` for each figure the issue sets a target on (a ratio of two
measured figures, or a count such as errors): its name, value, target with the
comparison (>= or <=), whether it is met, and the figures it came from. At its end it
calls `finish(bench, ratios)`, which prints the bench's rows side by side and merges them
into var/bench/results.json (relative to the repository root), written atomically.

One results.json describes one run: `make bench` sets BENCH_RUN_ID once for all the
benches it starts, so each merges its rows into the same document; a bench run on its own
(no BENCH_RUN_ID) starts a fresh document. `python -m tests.bench.report` prints the
combined table of the document and names the expected benches that wrote nothing (they
crashed). Targets are reported, never asserted: a missed target does not change any exit
status.

BENCH_QUICK=1 asks every bench for its short form (`quick()`); the document records it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from tests.support.processes import ROOT

RESULTS = ROOT / "var" / "bench" / "results.json"
SCHEMA = 1
Comparison = Literal[">=", "<="]
# The benches `make bench` runs, in order; the combined table names any that wrote nothing.
BENCHES = ("gateway", "skin", "mri", "mri_ingest", "web", "production_skin", "production_mri")
RUN_ID = os.environ.get("BENCH_RUN_ID") or f"solo-{uuid.uuid4().hex[:12]}"


def quick() -> bool:
    """Returns True when BENCH_QUICK asks for the short form of every scenario."""
    return os.environ.get("BENCH_QUICK", "").strip().lower() not in ("", "0", "false", "no")


@dataclass(frozen=True)
class Figure:
    """One measured figure a ratio is computed from."""

    name: str
    value: float
    unit: str

    def text(self) -> str:
        """Returns the figure as `name value unit`, with sensible precision."""
        return f"{self.name} {number(self.value)} {self.unit}".rstrip()


@dataclass(frozen=True)
class Ratio:
    """A figure with a target: its value, the target and comparison, the figures behind it."""

    name: str
    value: float
    target: float
    comparison: Comparison
    figures: tuple[Figure, ...] = field(default_factory=tuple)
    unit: str = ""  # "" for a plain ratio; "ms" or "errors" for a figure that is not one

    @property
    def met(self) -> bool:
        """Returns True when the value stands on the right side of the target (NaN: never)."""
        if math.isnan(self.value):
            return False
        if self.comparison == ">=":
            return self.value >= self.target
        return self.value <= self.target

    def to_json(self) -> dict[str, Any]:
        """Returns the row as results.json keeps it."""
        return {
            "name": self.name,
            "value": None if math.isnan(self.value) else self.value,
            "unit": self.unit,
            "target": self.target,
            "comparison": self.comparison,
            "met": self.met,
            "figures": {f.name: {"value": f.value, "unit": f.unit} for f in self.figures},
        }


def ratio(
    name: str,
    numerator: Figure,
    denominator: Figure,
    comparison: Comparison,
    target: float,
    *context: Figure,
) -> Ratio:
    """Returns numerator / denominator as a row; `context` figures are kept beside them."""
    value = numerator.value / denominator.value if denominator.value else math.nan
    return Ratio(name, value, target, comparison, (numerator, denominator, *context))


def number(value: float) -> str:
    """Returns a figure with three significant digits or so (a whole number as one)."""
    value = float(value)  # JSON reads a whole number back as an int
    if math.isnan(value):
        return "nan"
    if value.is_integer() and abs(value) < 1e6:
        return f"{value:.0f}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Returns (bench, row as results.json keeps it) pairs as one aligned table."""
    header = ("bench", "ratio", "value", "target", "verdict", "from")
    lines = [header]
    for bench, row in rows:
        value = math.nan if row["value"] is None else float(row["value"])
        unit = f" {row['unit']}" if row["unit"] else ""
        target = f"{'≥' if row['comparison'] == '>=' else '≤'} {number(row['target'])}{unit}"
        figures = row["figures"]
        parts = [Figure(name, f["value"], f["unit"]).text() for name, f in figures.items()]
        verdict = "met" if row["met"] else "MISSED"
        lines.append((bench, row["name"], number(value) + unit, target, verdict, "; ".join(parts)))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True))
        + "  "
        + line[-1]
        for line in lines
    )


def machine() -> dict[str, Any]:
    """Returns what the figures depend on: cores, load, Python and the frameworks' versions."""
    versions: dict[str, str | None] = {}
    for package in ("torch", "tensorflow", "grpcio", "pillow", "pydicom"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def now() -> str:
    """Returns the time as ISO 8601, to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def read(path: Path = RESULTS) -> dict[str, Any] | None:
    """Returns the results document, or None when there is none or it cannot be read."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def write(document: dict[str, Any], path: Path = RESULTS) -> None:
    """Writes the document atomically: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".results-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as out:
            json.dump(document, out, indent=2, sort_keys=False)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def record(
    bench: str,
    ratios: list[Ratio],
    seconds: float,
    notes: dict[str, Any] | None = None,
    path: Path = RESULTS,
) -> dict[str, Any]:
    """Merges one bench's rows into the document of this run; returns the document."""
    names = [r.name for r in ratios]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"rows named twice in {bench}: {', '.join(twice)}")
    document = read(path)
    if document is None or document.get("run", {}).get("id") != RUN_ID:
        document = {
            "schema": SCHEMA,
            "run": {"id": RUN_ID, "created": now(), "quick": quick(), "machine": machine()},
            "benches": {},
        }
    document["run"]["updated"] = now()
    document["benches"][bench] = {
        "finished": now(),
        "seconds": round(seconds, 1),
        "quick": quick(),
        "notes": notes or {},
        "ratios": {r.name: r.to_json() for r in ratios},
    }
    write(document, path)
    return document


def finish(
    bench: str, ratios: list[Ratio], started: float, notes: dict[str, Any] | None = None
) -> None:
    """Prints the bench's rows as one table and records them in results.json."""
    seconds = time.perf_counter() - started
    record(bench, ratios, seconds, notes)
    mode = "quick" if quick() else "full"
    print(f"\n{bench}: every ratio of this bench ({mode} run, {seconds:.0f} s)")
    print(table([(bench, r.to_json()) for r in ratios]))
    print(f"recorded in {RESULTS.relative_to(ROOT)} (run {RUN_ID})", flush=True)


def summary(document: dict[str, Any], expected: tuple[str, ...] = BENCHES) -> str:
    """Returns the combined table of a run, with a line for each bench that wrote nothing."""
    run = document.get("run", {})
    benches = document.get("benches", {})
    rows = [(name, row) for name, bench in benches.items() for row in bench["ratios"].values()]
    met = sum(1 for _, row in rows if row["met"])
    cores = run.get("machine", {}).get("cpu_count")
    lines = [
        f"every ratio of run {run.get('id')} ({'quick' if run.get('quick') else 'full'}, "
        f"created {run.get('created')}, {cores} cores): {met} of {len(rows)} targets met",
        table(rows),
    ]
    timing = ", ".join(f"{name} {bench['seconds']:.0f} s" for name, bench in benches.items())
    lines.append(f"bench times: {timing}")
    missing = [name for name in expected if name not in benches]
    if missing:
        lines.append(f"no results from: {', '.join(missing)} (crashed; see its output above)")
    return "\n".join(lines)


def main() -> None:
    """Prints the combined table of results.json; exits 1 when it is missing or incomplete."""
    parser = argparse.ArgumentParser(description="print the combined table of a bench run")
    parser.add_argument("--path", type=Path, default=RESULTS, help="the results document")
    args = parser.parse_args()
    document = read(args.path)
    if document is None:
        print(f"no results in {args.path}", file=sys.stderr)
        sys.exit(1)
    print()
    print(summary(document))
    if os.environ.get("BENCH_RUN_ID") and document["run"]["id"] != os.environ["BENCH_RUN_ID"]:
        print(f"{args.path} is from another run than this one", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
