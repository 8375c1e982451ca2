"""Tests that hostile or malformed series zips are refused naming the entry, leaving nothing."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from mri_service.domain import PHASES
from mri_service.errors import SeriesRejected
from mri_service.ingest import IngestLimits, load_series, open_study
from mri_service.tests.hostile_zips import (
    corrupt_entry_data,
    gzip_bytes,
    ingest_zip,
    mark_encrypted,
    patch_header,
    phantom_zip,
    read_entries,
    rewrite,
    symlink_entry,
    tar_bytes,
    truncate,
    write_zip,
    zip_bytes,
)

SLICES = 4
LIMITS = IngestLimits()
FIRST = "case/pre/IM0001.dcm"
SECOND = "case/pre/IM0002.dcm"


@pytest.fixture(scope="module")
def valid_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return phantom_zip(tmp_path_factory.mktemp("valid") / "series.zip", slices=SLICES)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    folder = tmp_path / "spool"
    folder.mkdir()
    return folder


Build = Callable[[Path, Path], Path]  # (valid zip, target path) -> hostile zip


@dataclass(frozen=True)
class Hostile:
    build: Build
    names: str  # what the message must contain: the offending entry, quoted
    reason: str
    limits: IngestLimits = field(default_factory=IngestLimits)


def _adding(name: str | zipfile.ZipInfo, data: bytes = b"payload") -> Build:
    return lambda valid, target: rewrite(valid, target, add=[(name, data)])


def _replacing(name: str, data: bytes) -> Build:
    return lambda valid, target: rewrite(valid, target, change={name: data})


def _removing(test: Callable[[str], bool]) -> Build:
    return lambda valid, target: rewrite(valid, target, remove=test)


def _lying_bomb(valid: Path, target: Path) -> Path:
    rewrite(valid, target, change={SECOND: bytes(300_000)})
    return patch_header(target, SECOND, file_size=1000)


def _long_names(valid: Path, target: Path) -> Path:
    return write_zip(target, [(f"case/{i}{'x' * 3000}", b"") for i in range(10)])


def _renamed(valid: Path, target: Path) -> Path:
    entries = read_entries(valid)
    entries["case/2nd_pass/IM0099.dcm"] = entries.pop("case/2nd_pass/IM0003.dcm")
    return write_zip(target, entries.items())


def _second_set(valid: Path, target: Path) -> Path:
    entries = read_entries(valid)
    return write_zip(target, [*entries.items(), ("other/pre/IM0001.dcm", entries[FIRST])])


def _copy_then(patch: Callable[[Path], Path]) -> Build:
    def build(valid: Path, target: Path) -> Path:
        target.write_bytes(valid.read_bytes())
        return patch(target)

    return build


def _not_a_zip(valid: Path, target: Path) -> Path:
    target.write_bytes(b"%PDF-1.7 " * 500)
    return target


def _only_clutter(valid: Path, target: Path) -> Path:
    return write_zip(target, [("__MACOSX/case/._IM0001.dcm", b"x"), ("case/.DS_Store", b"x")])


HOSTILE: dict[str, Hostile] = {
    "parent-folder": Hostile(_adding("../evil.dcm"), "'../evil.dcm'", "SERIES_UNSAFE_ENTRY"),
    "parent-folder-inside": Hostile(
        _adding("case/../../evil.dcm"), "'case/../../evil.dcm'", "SERIES_UNSAFE_ENTRY"
    ),
    "absolute-path": Hostile(_adding("/tmp/evil.dcm"), "'/tmp/evil.dcm'", "SERIES_UNSAFE_ENTRY"),
    "backslashes": Hostile(
        _adding("case\\pre\\IM0009.dcm"), "'case\\pre\\IM0009.dcm'", "SERIES_UNSAFE_ENTRY"
    ),
    "drive-letter": Hostile(_adding("C:/evil.dcm"), "'C:/evil.dcm'", "SERIES_UNSAFE_ENTRY"),
    "empty-component": Hostile(
        _adding("case//pre/IM0009.dcm"), "'case//pre/IM0009.dcm'", "SERIES_UNSAFE_ENTRY"
    ),
    "symlink": Hostile(
        _adding(*symlink_entry("case/pre/IM0009.dcm")),
        "'case/pre/IM0009.dcm' is a symbolic link",
        "SERIES_UNSAFE_ENTRY",
    ),
    "duplicate-name": Hostile(
        _adding(FIRST, b"second copy"), f"'{FIRST}' appears twice", "SERIES_DUPLICATE_ENTRY"
    ),
    "encrypted": Hostile(
        _copy_then(lambda z: mark_encrypted(z, SECOND)), f"'{SECOND}'", "SERIES_ENCRYPTED"
    ),
    "unknown-compression": Hostile(
        _copy_then(lambda z: patch_header(z, SECOND, method=99)),
        f"'{SECOND}'",
        "SERIES_UNSUPPORTED_COMPRESSION",
    ),
    "entry-count": Hostile(
        _copy_then(lambda z: z),
        "'case/2nd_pass/IM0003.dcm' on",  # the 11th entry
        "SERIES_TOO_MANY_ENTRIES",
        IngestLimits(max_entries=10),
    ),
    "oversized-table-of-contents": Hostile(
        _long_names, "table of contents", "SERIES_TOO_MANY_ENTRIES", IngestLimits(max_entries=10)
    ),
    "total-size": Hostile(
        _copy_then(lambda z: z),
        # 9.4 kB a file: the sixth file, in phase then name order, crosses 50 kB.
        "'case/1st_pass/IM0002.dcm'",
        "SERIES_TOO_LARGE",
        IngestLimits(max_uncompressed_bytes=50_000),
    ),
    "entry-size": Hostile(
        _copy_then(lambda z: z),
        f"'{FIRST}' is larger than",
        "SERIES_ENTRY_TOO_LARGE",
        IngestLimits(max_entry_bytes=5_000),
    ),
    "compression-ratio": Hostile(
        _replacing(SECOND, bytes(300_000)), f"'{SECOND}'", "SERIES_COMPRESSION_RATIO"
    ),
    "header-understates-size": Hostile(_lying_bomb, f"'{SECOND}' is damaged", "SERIES_DAMAGED"),
    "nested-zip-by-name": Hostile(
        _adding("case/pre/more.zip", b"not even a zip"),
        "'case/pre/more.zip'",
        "SERIES_NESTED_ARCHIVE",
    ),
    "nested-tar-gz-by-name": Hostile(
        _adding("case/extra.tar.gz", b"x"), "'case/extra.tar.gz'", "SERIES_NESTED_ARCHIVE"
    ),
    "nested-zip-by-content": Hostile(
        _replacing(SECOND, zip_bytes({"a.dcm": b"x" * 100})), f"'{SECOND}'", "SERIES_NESTED_ARCHIVE"
    ),
    "nested-gzip-by-content": Hostile(
        _replacing(SECOND, gzip_bytes(b"x" * 100)), f"'{SECOND}'", "SERIES_NESTED_ARCHIVE"
    ),
    "nested-tar-by-content": Hostile(
        _replacing(SECOND, tar_bytes({"a.dcm": b"x" * 100})), f"'{SECOND}'", "SERIES_NESTED_ARCHIVE"
    ),
    "truncated-zip": Hostile(_copy_then(truncate), "not a readable zip", "SERIES_DAMAGED"),
    "corrupt-entry": Hostile(
        _copy_then(lambda z: corrupt_entry_data(z, SECOND)), f"'{SECOND}'", "SERIES_DAMAGED"
    ),
    "not-a-zip": Hostile(_not_a_zip, "not a readable zip", "SERIES_DAMAGED"),
    "second-set-of-phase-folders": Hostile(
        _second_set, "phase folders in more than one place ('case/' and 'other/')", "SERIES_LAYOUT"
    ),
    "named-dicom-but-is-not": Hostile(
        _adding("case/pre/sub/IM0001.dcm"), "'case/pre/sub/IM0001.dcm'", "SERIES_NOT_DICOM"
    ),
    "only-clutter": Hostile(_only_clutter, "holds no DICOM images", "SERIES_LAYOUT"),
    "missing-phase": Hostile(
        _removing(lambda name: "/3rd_pass/" in name), "'case/3rd_pass/'", "SERIES_MISSING_PHASE"
    ),
    "mismatched-counts": Hostile(
        _removing(lambda name: name == "case/1st_pass/IM0004.dcm"),
        "the 1st_pass phase (series 2 'phantom fat-sat T1 1st_pass') holds 3 slices",
        "SERIES_MISMATCHED_PHASES",
    ),
    "too-few-slices": Hostile(
        _copy_then(lambda z: z),
        "the pre phase (series 1 'phantom fat-sat T1 pre') holds 4 slices",
        "SERIES_SLICE_COUNT",
        IngestLimits(min_slices=5),
    ),
    "too-many-slices": Hostile(
        _copy_then(lambda z: z),
        "the pre phase (series 1 'phantom fat-sat T1 pre') holds 4 slices",
        "SERIES_SLICE_COUNT",
        IngestLimits(max_slices=3),
    ),
}


@pytest.mark.parametrize("kind", list(HOSTILE))
async def test_it_rejects_a_hostile_zip_naming_the_entry_and_leaves_nothing_behind(
    kind: str, valid_zip: Path, spool: Path, tmp_path: Path
) -> None:
    case = HOSTILE[kind]
    hostile = case.build(valid_zip, tmp_path / "hostile.zip")

    with pytest.raises(SeriesRejected) as caught:
        await ingest_zip(hostile, spool, case.limits)

    assert case.names in caught.value.message
    assert caught.value.reason == case.reason
    assert caught.value.code == "INVALID_ARGUMENT"
    assert list(spool.iterdir()) == []
    planes = await ingest_zip(valid_zip, spool, LIMITS)
    assert planes["pre"].shape == (SLICES, 16, 16)
    assert list(spool.iterdir()) == []


async def test_it_ignores_macos_clutter_and_folder_entries(
    valid_zip: Path, spool: Path, tmp_path: Path
) -> None:
    clutter = rewrite(
        valid_zip,
        tmp_path / "clutter.zip",
        add=[
            ("case/", b""),
            ("case/pre/", b""),
            ("__MACOSX/", b""),
            ("__MACOSX/case/pre/._IM0001.dcm", b"\x00\x05\x16\x07 resource fork"),
            ("case/.DS_Store", b"Bud1"),
            ("case/pre/.DS_Store", b"Bud1"),
        ],
    )

    planes = await ingest_zip(clutter, spool, LIMITS)
    expected = await ingest_zip(valid_zip, spool, LIMITS)

    for phase in PHASES:
        np.testing.assert_array_equal(planes[phase], expected[phase])


async def test_it_skips_files_and_folders_that_are_not_dicom_and_pairs_slices_by_position(
    valid_zip: Path, spool: Path, tmp_path: Path
) -> None:
    renamed = _renamed(valid_zip, tmp_path / "renamed.zip")
    extra = rewrite(
        renamed,
        tmp_path / "extra.zip",
        add=[("case/README.txt", b"notes"), ("notes.txt", b"more"), ("case/extra/", b"")],
    )

    study = open_study(extra, LIMITS)
    planes = await ingest_zip(extra, spool, LIMITS)
    expected = await ingest_zip(valid_zip, spool, LIMITS)

    assert [(s.path, s.reason) for s in study.skipped] == [
        ("case/README.txt", "not a DICOM file"),
        ("notes.txt", "not a DICOM file"),
    ]
    for phase in PHASES:
        np.testing.assert_array_equal(planes[phase], expected[phase])


async def test_it_accepts_phase_folders_without_a_wrapping_folder(
    spool: Path, tmp_path: Path
) -> None:
    unwrapped = phantom_zip(tmp_path / "unwrapped.zip", slices=SLICES, wrap_folder=None)

    planes = await ingest_zip(unwrapped, spool, LIMITS)

    assert set(planes) == set(PHASES)
    assert list(spool.iterdir()) == []


def test_it_bounds_the_bytes_actually_read_from_a_folder(valid_zip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "series"
    for name, data in read_entries(valid_zip).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    # A folder has no header to lie: only counting what is read can tell.
    with pytest.raises(SeriesRejected, match=re.escape("unpacks to more than 0.1 MB")):
        load_series(folder / "case", 16, IngestLimits(max_uncompressed_bytes=100_000))
    (folder / SECOND).write_bytes(bytes(20_000))
    with pytest.raises(SeriesRejected, match=re.escape("'pre/IM0002.dcm' is larger than")):
        load_series(folder / "case", 16, IngestLimits(max_entry_bytes=15_000))
