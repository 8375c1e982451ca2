"""Tests of the DCE selection rules on headers as scanners write them (no pixels, no files)."""

from __future__ import annotations

import dataclasses

import pytest

from mri_service.domain import PHASES
from mri_service.errors import SeriesRejected
from mri_service.ingest.layout import folder_hint
from mri_service.ingest.selection import SelectionRules, select_dce, split_phases
from mri_service.ingest.study import MR_IMAGE_STORAGE, InstanceHeader

RULES = SelectionRules()
SLICES = 3
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def header(series: str, description: str, index: int, **changes: object) -> InstanceHeader:
    base = InstanceHeader(
        entry=f"{series}/{index}",
        sop_class_uid=MR_IMAGE_STORAGE,
        sop_instance_uid=f"1.2.{abs(hash((series, index, str(changes)))) % 10**12}",
        modality="MR",
        study_uid="1.2.3",
        series_uid=f"1.2.3.{series}",
        series_number=int(series) if series.isdigit() else None,
        series_description=description,
        patient_key="p",
        frame_of_reference_uid="1.2.3.9",
        image_type=("ORIGINAL", "PRIMARY"),
        rows=64,
        columns=64,
        frames=1,
        pixel_spacing=(1.0, 1.0),
        orientation=AXIAL,
        position=(0.0, 0.0, float(index)),
        instance_number=index + 1,
        acquisition_number=1,
        temporal_position=None,
        trigger_time_ms=None,
        acquisition_time_s=None,
        content_time_s=None,
        series_time_s=None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def series(number: int, description: str, **changes: object) -> list[InstanceHeader]:
    return [header(str(number), description, i, **changes) for i in range(SLICES)]


def duke(*extra: list[InstanceHeader]) -> list[InstanceHeader]:
    """Returns the Duke collection's four dynamic series, 90 s apart, plus the extra ones."""
    names = ["ax dyn pre", "ax dyn 1st pass", "ax dyn 2nd pass", "ax dyn 3rd pass"]
    phases = [
        h
        for n, name in enumerate(names)
        for h in series(n + 3, name, acquisition_time_s=36000.0 + 90 * n)
    ]
    return [h for part in extra for h in part] + phases


def test_the_duke_series_are_the_phases_in_time_order_and_the_rest_is_listed() -> None:
    headers = duke(
        series(1, "3 Plane Loc"),
        series(2, "ax t1"),
        series(7, "ax dyn 4th pass", acquisition_time_s=36400.0),
        series(8, "Ax T1 SUB 1st"),
        series(9, "ax dyn pre", image_type=("DERIVED", "SECONDARY")),
        series(10, "PR", modality="PR", sop_class_uid="1.2.840.10008.5.1.4.1.1.11.1"),
    )
    headers.reverse()  # the order of files says nothing

    selection = select_dce(headers, RULES, folder_hint(headers))

    assert selection.selected_by == "series"
    assert [p.description for p in selection.phases] == [
        "ax dyn pre",
        "ax dyn 1st pass",
        "ax dyn 2nd pass",
        "ax dyn 3rd pass",
    ]
    assert [(u.number, u.reason) for u in selection.unused] == [
        (1, "not a dynamic acquisition (by its description: a localiser, T2, diffusion ...)"),
        (2, "not a dynamic acquisition (by its description)"),
        (7, "a later post-contrast phase: the models read the first three"),
        (8, "not a dynamic acquisition (by its description: a localiser, T2, diffusion ...)"),
        (9, "derived images (ImageType DERIVED: a subtraction, MIP or reformat)"),
        (10, "modality PR, not MR"),
    ]


def test_without_times_the_series_number_orders_the_phases() -> None:
    headers = [
        h
        for n, name in [(6, "dyn ph3"), (3, "dyn ph0"), (5, "dyn ph2"), (4, "dyn ph1")]
        for h in series(n, name)
    ]

    selection = select_dce(headers, RULES, None)

    assert [p.description for p in selection.phases] == ["dyn ph0", "dyn ph1", "dyn ph2", "dyn ph3"]


@pytest.mark.parametrize(
    "key",
    [
        "temporal_position",  # GE, Philips: TemporalPositionIdentifier
        "acquisition_number",  # Siemens: one AcquisitionNumber per phase
        "trigger_time_ms",  # only time tells the phases apart at each position
    ],
)
def test_a_multiphase_series_is_split_into_its_phases_in_time_order(key: str) -> None:
    headers = []
    for phase in (3, 1, 4, 2):  # files of the phases interleaved
        value: object = phase * 1000.0 if key == "trigger_time_ms" else phase
        extra = {} if key == "trigger_time_ms" else {"trigger_time_ms": phase * 1000.0}
        headers += series(5, "Ax Vibrant MultiPhase", **{key: value, **extra})
        if key == "trigger_time_ms":
            headers[-SLICES:] = [
                dataclasses.replace(h, entry=f"{h.entry}-{phase}") for h in headers[-SLICES:]
            ]

    phases = split_phases(headers)
    selection = select_dce(headers, RULES, None)

    assert [p.temporal_position for p in phases] == [1, 2, 3, 4]
    assert [{h.trigger_time_ms for h in p.images} for p in phases] == [
        {1000.0},
        {2000.0},
        {3000.0},
        {4000.0},
    ]
    assert selection.selected_by == "multiphase"
    assert [len(p.images) for p in selection.phases] == [SLICES] * 4


def test_a_siemens_2d_series_with_an_acquisition_number_per_slice_is_one_phase() -> None:
    headers = [dataclasses.replace(h, acquisition_number=i) for i, h in enumerate(series(5, "x"))]

    assert len(split_phases(headers)) == 1


def test_a_study_without_four_dynamic_phases_is_refused_with_the_series_found() -> None:
    headers = duke(series(1, "localizer"))
    headers = [h for h in headers if h.series_description != "ax dyn 3rd pass"]

    with pytest.raises(SeriesRejected) as caught:
        select_dce(headers, RULES, None)

    assert caught.value.reason == "SERIES_NO_DCE"
    message = caught.value.message
    assert "among the study's 4 series" in message
    assert "series 1 'localizer' (MR, 3 images: not a dynamic acquisition" in message
    assert "series 3 'ax dyn pre' (MR, 3 images: a dynamic series, but too few of them)" in message


def test_two_multiphase_dynamic_series_are_refused_as_ambiguous() -> None:
    headers = []
    for number in (5, 6):
        for phase in range(1, 5):
            headers += series(number, "Ax Vibrant MultiPhase", temporal_position=phase)

    with pytest.raises(SeriesRejected) as caught:
        select_dce(headers, RULES, None)

    assert caught.value.reason == "SERIES_AMBIGUOUS_DCE"
    assert "series 5 'Ax Vibrant MultiPhase', series 6 'Ax Vibrant MultiPhase'" in (
        caught.value.message
    )


def test_the_rules_are_configurable() -> None:
    headers = [h for n in range(4) for h in series(n + 1, f"site protocol {n}")]
    with pytest.raises(SeriesRejected):
        select_dce(headers, RULES, None)

    selection = select_dce(headers, SelectionRules(dynamic=r"site protocol"), None)

    assert [p.number for p in selection.phases] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="dynamic series pattern is not a valid regex"):
        SelectionRules(dynamic="(")


def _in_folders(folders: dict[str, str]) -> list[InstanceHeader]:
    return [
        dataclasses.replace(h, entry=f"{folder}/IM{h.instance_number}")
        for number, (folder, description) in enumerate(folders.items(), start=1)
        for h in series(number, description)
    ]


def test_breastwise_folders_name_the_phases_whatever_the_descriptions() -> None:
    headers = _in_folders({f"case/{p}": "t1" for p in reversed(PHASES)} | {"case/other": "loc"})

    hint = folder_hint(headers)
    selection = select_dce(headers, RULES, hint)

    assert hint == {f"case/{p}": p for p in PHASES}
    assert selection.selected_by == "folders"
    assert [p.number for p in selection.phases] == [4, 3, 2, 1]
    assert [(u.number, u.reason) for u in selection.unused] == [(5, "outside the phase folders")]


def test_an_incomplete_set_of_breastwise_folders_is_refused_naming_the_missing_one() -> None:
    headers = _in_folders({"case/pre": "t1", "case/1st_pass": "t1", "case/3rd_pass": "t1"})

    with pytest.raises(SeriesRejected) as caught:
        folder_hint(headers)

    assert caught.value.reason == "SERIES_MISSING_PHASE"
    assert "no 'case/2nd_pass/'" in caught.value.message


def test_a_breastwise_folder_of_ct_images_is_refused_naming_the_folder() -> None:
    headers = _in_folders({f"case/{p}": "t1" for p in PHASES})
    headers = [
        dataclasses.replace(h, modality="CT") if "/2nd_pass/" in h.entry else h for h in headers
    ]

    with pytest.raises(SeriesRejected) as caught:
        select_dce(headers, RULES, folder_hint(headers))

    assert caught.value.reason == "SERIES_NOT_MR"
    assert "'case/2nd_pass/' holds CT images (series 3 't1')" in caught.value.message
