"""MRI ingest benchmark: what extra series beside the DCE phases cost, measured side by side.

Run with `make bench` (or `python -m tests.bench.mri_ingest_bench`). Prints, from one run
in this process, median of REPEATS:
  (f) the floor: each file the models use read whole from the zip, parsed and decoded
      into its plane once (`read_slice` with no survey), nothing else;
  (a) `load_study` of a generated 4 x 64-slice 256x256 DCE study alone (BreastWise zip);
  (b) `load_study` of the same study with as many images again in other series beside it
      (an "ax t1" of 64 slices, a "4th pass" of 64, a 3-image localiser, metadata.csv),
      which are surveyed and never decoded;
  (c) the header reads of those extra files alone (`survey_file` on each);
with the target (b) <= 1.1 x ((f) + (c)): a study with extra series costs no more than
reading the files it uses plus one header read of the others. (b) / ((a) + (c)) shows
what the other series alone add. The ratio goes through tests/bench/report.py (printed,
and recorded in var/bench/results.json); it is reported, not asserted. BENCH_QUICK=1 uses
4 x 32 slices and 3 repeats.
"""

from __future__ import annotations

import functools
import io
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from mri_service.ingest import IngestLimits, load_study
from mri_service.ingest.archive import ZipSource
from mri_service.ingest.dicom import read_slice
from mri_service.ingest.redact import Redactor
from mri_service.ingest.survey import survey_file
from mri_service.phantom import PhantomSpec, generate_series, write_series_zip
from tests.bench import report

TARGET = 1.1
# slices per phase and repeats: the full run's, and BENCH_QUICK's
FULL_SLICES, FULL_REPEATS = 64, 7
QUICK_SLICES, QUICK_REPEATS = 32, 3
INPUT_SIZE = 128
LIMITS = IngestLimits()


def _retagged(data: bytes, description: str, number: int, series_uid: str, index: int) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.SeriesDescription, ds.SeriesNumber, ds.SeriesInstanceUID = description, number, series_uid
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(index)])
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def with_extra_series(source: Path, target: Path) -> tuple[Path, list[str]]:
    """Writes source plus other series of the same study; returns the zip and their entries."""
    extra: list[str] = []
    with zipfile.ZipFile(source) as given, zipfile.ZipFile(target, "w") as out:
        names = given.namelist()
        for name in names:
            out.writestr(zipfile.ZipInfo(name), given.read(name), zipfile.ZIP_DEFLATED, 1)
        plans: list[tuple[str, str, int, int | None]] = [
            ("pre", "ax t1", 11, None),
            ("3rd_pass", "ax dyn 4th pass", 12, None),
            ("pre", "3 Plane Loc", 13, 3),
        ]
        for phase, description, number, count in plans:
            uid = generate_uid(entropy_srcs=[description])
            files = sorted(n for n in names if f"/{phase}/" in n)[:count]
            for index, name in enumerate(files):
                entry = f"extra/{number}/{index:04d}.dcm"
                data = _retagged(given.read(name), description, number, uid, index)
                out.writestr(zipfile.ZipInfo(entry), data, zipfile.ZIP_DEFLATED, 1)
                extra.append(entry)
        out.writestr("metadata.csv", "Series UID,Series Description\n" * 50)
        extra.append("metadata.csv")
    return target, extra


def _medians_s(works: list[Callable[[], object]], repeats: int) -> list[float]:
    """Returns each work's median time, the works taken in turn so drift hits all alike."""
    times: list[list[float]] = [[] for _ in works]
    for repeat in range(repeats + 1):
        for index, work in enumerate(works):
            started = time.perf_counter()
            work()
            if repeat:  # the first round warms the page cache and the decoders
                times[index].append(time.perf_counter() - started)
    return [statistics.median(t) for t in times]


def _survey(zip_path: Path, entries: list[str]) -> None:
    source = ZipSource(zip_path, LIMITS)
    try:
        for entry in entries:
            survey_file(entry, functools.partial(source.read, entry), LIMITS, Redactor())
    finally:
        source.close()


def _floor(zip_path: Path, entries: list[str]) -> None:
    source = ZipSource(zip_path, LIMITS)
    try:
        for entry in entries:
            read_slice(entry, source.read(entry), LIMITS, [INPUT_SIZE])
    finally:
        source.close()


def main() -> int:
    """Measures (f), (a), (b) and (c), prints and records the ratio; returns 0 unless it crashed."""
    started = time.perf_counter()
    quick = report.quick()
    slices, repeats = (QUICK_SLICES, QUICK_REPEATS) if quick else (FULL_SLICES, FULL_REPEATS)
    with tempfile.TemporaryDirectory(prefix="mri-ingest-bench-") as tmp:
        work = Path(tmp)
        print(f"generating 4 x {slices} slices of 256x256 ...", flush=True)
        series = generate_series(PhantomSpec(slices=slices, size=256, lesion=True, seed=7))
        alone = write_series_zip(series, work / "alone.zip")
        beside, extra = with_extra_series(alone, work / "beside.zip")
        study = load_study(beside, INPUT_SIZE, LIMITS).study
        used = [h.entry for phase in study.phases for h in phase.slices]
        f, a, b, c = _medians_s(
            [
                lambda: _floor(alone, used),
                lambda: load_study(alone, INPUT_SIZE, LIMITS),
                lambda: load_study(beside, INPUT_SIZE, LIMITS),
                lambda: _survey(beside, extra),
            ],
            repeats,
        )
    print()
    print(
        f"MRI ingest benchmark (4 x {slices} slices, 256x256; extra series beside the DCE phases)"
    )
    print(f"(f) floor: the {len(used)} used files read once:  {f * 1000:7.0f} ms")
    print(f"(a) the DCE study alone:                 {a * 1000:7.0f} ms")
    print(f"(b) with {len(extra)} other files beside:      {b * 1000:7.0f} ms")
    print(f"(c) one header read of those {len(extra)} files: {c * 1000:7.0f} ms")
    unused = ", ".join(f"'{u.description}'" for u in study.unused)
    print(f"    unused: {unused}; skipped: {len(study.skipped)} file(s)")
    print(f"(b)/((a)+(c)), what the other series add: {b / (a + c):.2f}")
    row = report.ratio(
        "MRI study with extra series / (floor + header reads)",
        report.Figure("(b) with extra series", b * 1000, "ms"),
        report.Figure("(f)+(c) floor + header reads", (f + c) * 1000, "ms"),
        "<=",
        TARGET,
        report.Figure("(a) DCE study alone (beside)", a * 1000, "ms"),
    )
    notes = {"slices": slices, "repeats": repeats, "extra_files": len(extra)}
    report.finish("mri_ingest", [row], started, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
