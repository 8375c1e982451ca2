"""Studies as TCIA, CD and PACS exports and GE/Siemens multiphase series hold them: same findings.

Each layout is the phantom's BreastWise study re-tagged and re-packaged the way that
system writes it (`layouts/`). The shipped demo models read every one, and each must
give exactly the planes, and so the flagged slices, of the BreastWise layout of the same
images. Then one test per refusal rule, each on a study with one thing wrong.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mri_service import domain, fusion
from mri_service.backends.embedded import EmbeddedBackend
from mri_service.errors import SeriesRejected
from mri_service.ingest import IngestLimits, LoadedStudy, load_study, open_study
from mri_service.model_card import load_model_card
from mri_service.phantom import PhantomSeries, PhantomSpec, generate_series
from mri_service.settings import DEFAULT_MODEL_DIR
from mri_service.tests import layouts
from mri_service.tests.layouts import CANARY, Encoding, Fault

LIMITS = IngestLimits()
CARD = load_model_card(DEFAULT_MODEL_DIR)
Build = Callable[[PhantomSeries, Path], Path]


@pytest.fixture(scope="module")
def series() -> PhantomSeries:
    # Seed 11 puts a lesion the demo models flag in this small study.
    return generate_series(PhantomSpec(slices=12, size=64, lesion=True, seed=11))


@pytest.fixture(scope="module")
def backends() -> dict[str, EmbeddedBackend]:
    loaded = {name: EmbeddedBackend(DEFAULT_MODEL_DIR, name) for name in domain.MODEL_NAMES}
    for backend in loaded.values():
        backend.load()
    return loaded


@pytest.fixture(scope="module")
def reference(series: PhantomSeries, tmp_path_factory: pytest.TempPathFactory) -> LoadedStudy:
    zip_path = layouts.write_breastwise_zip(
        layouts.load_phases(series), tmp_path_factory.mktemp("ref") / "breastwise.zip"
    )
    return load_study(zip_path, CARD.input_size, LIMITS)


def flagged(loaded: LoadedStudy, backends: dict[str, EmbeddedBackend]) -> list[int]:
    inputs = domain.model_inputs(loaded.planes)
    scores = {name: backends[name].predict(batch).reshape(-1) for name, batch in inputs.items()}
    return fusion.positive_indices([r.positive for r in fusion.analyse(scores, CARD.threshold)])


LAYOUTS: dict[str, tuple[Build, str, list[tuple[str, str]]]] = {
    # name: (build, how the phases are found, the unused series: (description, reason))
    "tcia-duke": (
        lambda s, p: layouts.write_tcia_zip(s, p, fourth_pass=True, t1=True, localizer=True),
        "series",
        [
            ("3 Plane Loc", "not a dynamic acquisition (by its description: a localiser, T2, "),
            ("ax t1", "not a dynamic acquisition (by its description)"),
            ("ax dyn 4th pass", "a later post-contrast phase: the models read the first three"),
        ],
    ),
    "cd-dicomdir": (
        lambda s, p: layouts.write_dicomdir_zip(s, p, t1=True, localizer=True),
        "series",
        [("", ""), ("", "")],
    ),
    "cd-dicomdir-one-name-for-every-phase": (
        lambda s, p: layouts.write_dicomdir_zip(s, p, protocol=layouts.SIEMENS_SAME_NAME),
        "series",
        [],
    ),
    "pacs-numbered": (lambda s, p: layouts.write_pacs_export_zip(s, p), "series", []),
    "pacs-by-uid-with-dicomdir": (
        lambda s, p: layouts.write_pacs_export_zip(s, p, names="uid", t1=True),
        "series",
        [("", "")],
    ),
    "ge-multiphase": (lambda s, p: layouts.write_ge_multiphase_zip(s, p), "multiphase", []),
    "ge-multiphase-ser-names": (
        lambda s, p: layouts.write_ge_multiphase_zip(s, p, names="Ser"),
        "multiphase",
        [],
    ),
    "siemens-multiphase": (
        lambda s, p: layouts.write_siemens_multiphase_zip(s, p),
        "multiphase",
        [],
    ),
    "siemens-multiphase-numbers-per-acquisition": (
        lambda s, p: layouts.write_siemens_multiphase_zip(
            s, p, instance_numbers="per_acquisition", names="dcm"
        ),
        "multiphase",
        [],
    ),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_a_real_layout_gives_the_planes_and_findings_of_the_breastwise_layout(
    name: str,
    series: PhantomSeries,
    reference: LoadedStudy,
    backends: dict[str, EmbeddedBackend],
    tmp_path: Path,
) -> None:
    build, selected_by, unused = LAYOUTS[name]
    zip_path = build(series, tmp_path / f"{name}.zip")

    loaded = load_study(zip_path, CARD.input_size, LIMITS)

    for phase in domain.PHASES:
        np.testing.assert_allclose(loaded.planes[phase], reference.planes[phase], atol=1e-3)
    expected = flagged(reference, backends)
    assert expected, "the reference study must have flagged slices for this test to mean much"
    assert flagged(loaded, backends) == expected
    study = loaded.study
    assert study.selected_by == selected_by
    assert study.study_uid == reference.study.study_uid
    assert study.ordered_by == "position"
    assert len(study.unused) == len(unused)
    for got, (description, reason) in zip(study.unused, unused, strict=True):
        assert got.description.startswith(description) and got.reason.startswith(reason)
    positions = [[phase.position_mm(i) for i in range(study.slice_count)] for phase in study.phases]
    assert all(p == positions[0] for p in positions)


def test_the_tcia_download_lists_metadata_and_license_as_skipped(
    series: PhantomSeries, tmp_path: Path
) -> None:
    study = open_study(layouts.write_tcia_zip(series, tmp_path / "tcia.zip"), LIMITS)

    assert [(s.path, s.reason) for s in study.skipped] == [
        ("metadata.csv", "not a DICOM file"),
        ("LICENSE", "not a DICOM file"),
    ] or sorted(s.path for s in study.skipped) == ["LICENSE", "metadata.csv"]
    assert [p.description for p in study.phases] == [
        "ax dyn pre",
        "ax dyn 1st pass",
        "ax dyn 2nd pass",
        "ax dyn 3rd pass",
    ]
    assert [p.number for p in study.phases] == [3, 4, 5, 6]


def test_a_pacs_export_skips_its_dicomdir_thumbnails_and_clutter(
    series: PhantomSeries, tmp_path: Path
) -> None:
    zip_path = layouts.write_pacs_export_zip(series, tmp_path / "pacs.zip", dicomdir=True)

    study = open_study(zip_path, LIMITS)

    reasons = {s.reason for s in study.skipped}
    assert reasons == {
        "a DICOMDIR (the index of a CD or PACS export)",
        "not a DICOM file",
        "operating-system clutter",
    }
    assert any(s.path.endswith("THUMB.JPG") for s in study.skipped)
    assert any(s.path.startswith("__MACOSX/") for s in study.skipped)


def test_the_multiphase_phases_carry_their_temporal_position(
    series: PhantomSeries, tmp_path: Path
) -> None:
    study = open_study(layouts.write_ge_multiphase_zip(series, tmp_path / "ge.zip"), LIMITS)

    assert [p.temporal_position for p in study.phases] == [1, 2, 3, 4]
    assert len({p.series_uid for p in study.phases}) == 1
    assert {p.description for p in study.phases} == {"Ax Vibrant MultiPhase"}


@pytest.mark.parametrize(
    "encodings",
    [
        (Encoding.MONOCHROME1,),
        (Encoding.RESCALED,),
        (Encoding.HIGH_BITS,),
        (Encoding.SIGNED,),
        (Encoding.IMPLICIT_VR,),
        (Encoding.BIG_ENDIAN,),
        (Encoding.RLE,),
        (Encoding.JPEG_LS,),
        (Encoding.JPEG_2000,),
        (Encoding.JPEG_LOSSLESS_SV1,),
        (Encoding.MONOCHROME1, Encoding.JPEG_2000),
        (Encoding.SIGNED, Encoding.RLE),
    ],
    ids=lambda encodings: "+".join(encodings),
)
def test_the_same_images_in_any_encoding_give_the_same_findings(
    encodings: tuple[Encoding, ...],
    series: PhantomSeries,
    reference: LoadedStudy,
    backends: dict[str, EmbeddedBackend],
    tmp_path: Path,
) -> None:
    zip_path = layouts.write_encoded_zip(series, tmp_path / "encoded.zip", *encodings)

    loaded = load_study(zip_path, CARD.input_size, LIMITS)

    for phase in domain.PHASES:
        np.testing.assert_allclose(loaded.planes[phase], reference.planes[phase], atol=1e-2)
    assert flagged(loaded, backends) == flagged(reference, backends)


def test_the_deflated_syntax_is_refused_naming_it(series: PhantomSeries, tmp_path: Path) -> None:
    zip_path = layouts.write_encoded_zip(series, tmp_path / "deflated.zip", Encoding.DEFLATED)

    with pytest.raises(SeriesRejected) as caught:
        open_study(zip_path, LIMITS)

    assert caught.value.reason == "SERIES_TRANSFER_SYNTAX"
    assert "Deflated Explicit VR Little Endian" in caught.value.message


REFUSALS: dict[str, tuple[Fault, str, str, str]] = {
    # name: (fault, layout, reason, what the message must say)
    "same-series-in-every-folder": (
        Fault.DUPLICATE_SERIES,
        "breastwise",
        "SERIES_DUPLICATE_PHASE",
        "are the same images (they share SOPInstanceUIDs)",
    ),
    "retagged-copy-of-a-phase": (
        Fault.RETAGGED_COPY,
        "breastwise",
        "SERIES_DUPLICATE_PHASE",
        "the 2nd_pass phase (series 3 'phantom fat-sat T1 2nd_pass') holds exactly the pixels "
        "of the 1st_pass phase",
    ),
    "a-pass-of-another-patient": (
        Fault.OTHER_PATIENT,
        "tcia",
        "SERIES_MULTIPLE_PATIENTS",
        "'ax dyn 2nd pass'",
    ),
    "a-ct-in-a-phase-folder": (
        Fault.CT_MODALITY,
        "breastwise",
        "SERIES_NOT_MR",
        "'series/2nd_pass/' holds CT images",
    ),
    "a-ct-among-the-series": (
        Fault.CT_MODALITY,
        "tcia",
        "SERIES_NO_DCE",
        "'ax dyn 2nd pass' (CT, 12 images: modality CT, not MR)",
    ),
    "other-rows-and-columns": (
        Fault.RESAMPLED,
        "tcia",
        "SERIES_PHASE_GEOMETRY",
        "the 2nd_pass phase (series 5 'ax dyn 2nd pass') differs from the pre phase (series 3 "
        "'ax dyn pre') in Rows and Columns (48x48 against 64x64)",
    ),
    "other-pixel-spacing": (
        Fault.PIXEL_SPACING,
        "tcia",
        "SERIES_PHASE_GEOMETRY",
        "'ax dyn 2nd pass') differs from the pre phase (series 3 'ax dyn pre') in PixelSpacing",
    ),
    "other-orientation": (
        Fault.ORIENTATION,
        "tcia",
        "SERIES_PHASE_GEOMETRY",
        "in ImageOrientationPatient",
    ),
    "other-slice-positions": (
        Fault.SLICE_POSITIONS,
        "tcia",
        "SERIES_PHASE_GEOMETRY",
        "in ImagePositionPatient: slice 0 lies 3.00 mm away",
    ),
    "other-frame-of-reference": (
        Fault.FRAME_OF_REFERENCE,
        "tcia",
        "SERIES_PHASE_GEOMETRY",
        "in FrameOfReferenceUID",
    ),
    "only-three-dynamic-phases": (
        Fault.THREE_PHASES,
        "tcia",
        "SERIES_NO_DCE",
        "'ax dyn pre' (MR, 12 images: a dynamic series, but too few of them)",
    ),
    "two-studies": (
        Fault.TWO_STUDIES,
        "tcia",
        "SERIES_MULTIPLE_STUDIES",
        "belongs to another study than",
    ),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_a_study_with_one_thing_wrong_is_refused_naming_it_and_no_patient_data(
    name: str, series: PhantomSeries, tmp_path: Path
) -> None:
    fault, layout, reason, says = REFUSALS[name]
    zip_path = layouts.write_refusal_zip(
        series,
        tmp_path / f"{name}.zip",
        fault,
        layout=layout,  # type: ignore[arg-type]
        patient=CANARY,
    )

    with pytest.raises(SeriesRejected) as caught:
        load_study(zip_path, CARD.input_size, LIMITS)

    assert caught.value.reason == reason, caught.value.message
    assert says in caught.value.message
    assert caught.value.code == "INVALID_ARGUMENT"
    for secret in (CANARY.name, "CANARY", CANARY.patient_id, CANARY.birth_date):
        assert secret not in caught.value.message


def _renamed_entries(
    source: Path, target: Path, rename: Callable[[str], str], **changes: bytes
) -> Path:
    with zipfile.ZipFile(source) as given, zipfile.ZipFile(target, "w") as out:
        for name in given.namelist():
            out.writestr(rename(name), changes.get(name, given.read(name)))
    return target


def test_patient_identifiers_in_folder_names_are_scrubbed_from_messages_and_paths(
    series: PhantomSeries, tmp_path: Path
) -> None:
    # PACS viewers export to folders named by PatientName; NBIA names one by PatientID.
    pacs = layouts.write_pacs_export_zip(series, tmp_path / "pacs.zip", patient=CANARY)
    named = _renamed_entries(
        pacs, tmp_path / "named.zip", lambda n: n.replace("DATA/", "Canary^Patient 1901-01-01/")
    )
    tcia = layouts.write_tcia_zip(series, tmp_path / "tcia.zip", patient=CANARY)
    with zipfile.ZipFile(tcia) as archive:
        last = [n for n in archive.namelist() if n.endswith(".dcm")][-1]
    bad = _renamed_entries(tcia, tmp_path / "bad.zip", lambda n: n, **{last: b"not DICOM"})

    study = open_study(named, LIMITS)
    with pytest.raises(SeriesRejected) as caught:
        open_study(bad, LIMITS)

    said = [s.path for s in study.skipped] + [caught.value.message]
    assert any(path.startswith("[patient] [patient]/0001/") for path in said), said
    assert caught.value.reason == "SERIES_NOT_DICOM"
    assert "Duke-Breast-Cancer-MRI/[patient]/01-01-1990" in caught.value.message
    for text in said:
        for secret in ("CANARY", "Canary", CANARY.patient_id, "1901-01-01", "4711"):
            assert secret not in text, text
