"""Tests of `medimg analyze-series`: upload messages, the probability strip and the summary."""

from __future__ import annotations

import io
from pathlib import Path

from medimg.v1 import series_analysis_service_pb2 as pb

from medimg_cli.__main__ import main
from medimg_cli.series import (
    Progress,
    block,
    format_analysis,
    format_ranges,
    format_strip,
    upload_messages,
)


def response(
    single: list[float], scantype: list[float], flagged: list[int]
) -> pb.AnalyzeSeriesResponse:
    return pb.AnalyzeSeriesResponse(
        disease="mri",
        positive_slice_indices=flagged,
        slices=[
            pb.SliceFinding(
                slice_index=i,
                positive=i in flagged,
                model_scores=[
                    pb.ModelSliceScore(model_name="single", probability=a),
                    pb.ModelSliceScore(model_name="scantype", probability=b),
                ],
            )
            for i, (a, b) in enumerate(zip(single, scantype, strict=True))
        ],
        slice_count=len(single),
        model_name="mri-demo",
        model_version="1",
        demo_model=True,
    )


def test_the_upload_opens_with_metadata_then_carries_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "series.zip"
    data = bytes(range(256)) * 40
    path.write_bytes(data)
    sent: list[int] = []
    messages = list(upload_messages(path, "mri", chunk_bytes=4096, on_sent=sent.append))
    assert messages[0].metadata.disease == "mri"
    assert messages[0].metadata.total_size_bytes == len(data)
    assert b"".join(m.chunk_data for m in messages[1:]) == data
    assert sent == [4096, 4096, 2048]


def test_a_bar_rises_with_the_probability() -> None:
    assert [block(p) for p in (0.0, 0.5, 1.0, 1.7, -1.0)] == [" ", "▄", "█", "█", " "]


def test_the_strip_has_a_row_per_model_and_marks_flagged_slices() -> None:
    strip = format_strip(response([0.0, 1.0, 0.5], [1.0, 1.0, 0.0], [1]))
    assert strip.splitlines() == [
        "          0",
        "single     █▄",
        "scantype  ██",
        "flagged    ^",
    ]


def test_the_strip_wraps_long_series_with_a_ruler_per_block() -> None:
    count = 25
    strip = format_strip(response([0.2] * count, [0.9] * count, [12]), width=20)
    lines = strip.splitlines()
    assert len(lines) == 8
    assert lines[0].split() == ["0", "10"]
    assert lines[4].split() == ["20"]
    assert lines[3].index("^") == len("scantype  ") + 12


def study() -> pb.StudySummary:
    return pb.StudySummary(
        study_instance_uid="1.2.3",
        phases=[
            pb.SelectedPhase(
                phase=phase,
                series_instance_uid=f"1.2.3.{number}",
                series_description=f"dyn {phase}",
                series_number=number,
                image_count=3,
            )
            for number, phase in enumerate(("pre", "1st_pass", "2nd_pass", "3rd_pass"), start=5)
        ],
        unused_series=[
            pb.UnusedSeries(
                series_instance_uid="1.2.3.1",
                series_description="localizer",
                series_number=1,
                modality="MR",
                image_count=3,
                reason="a localiser",
            ),
            pb.UnusedSeries(series_instance_uid="1.2.3.99", modality="SR", reason="not an image"),
        ],
        skipped_files=[
            pb.SkippedFile(path=f"notes/{i}.txt", reason="not a DICOM file") for i in range(22)
        ],
        slice_count=3,
        ordered_by="position",
        selected_by="series",
    )


def with_images(answer: pb.AnalyzeSeriesResponse) -> pb.AnalyzeSeriesResponse:
    for finding in answer.slices:
        finding.images.append(
            pb.SliceImage(
                phase="pre",
                sop_instance_uid=f"1.2.3.5.{finding.slice_index}",
                instance_number=40 - finding.slice_index,
            )
        )
        finding.images.append(
            pb.SliceImage(phase="1st_pass", sop_instance_uid="1.2.3.6.0", instance_number=7)
        )
    answer.study.CopyFrom(study())
    return answer


def test_each_flagged_slice_is_named_by_its_index_and_its_instance_number() -> None:
    answer = with_images(response([0.9, 0.9, 0.1], [0.9, 0.8, 0.2], [0, 1]))
    answer.slices[1].images[0].ClearField("instance_number")
    text = format_analysis("case.zip", answer)
    lines = text.splitlines()
    start = lines.index(
        "flagged slices (index from 0, then the pre-contrast image's number and UID):"
    )
    assert lines[start + 1 : start + 4] == [
        "  slice 0  InstanceNumber 40  single 0.90  scantype 0.90  1.2.3.5.0",
        "  slice 1  no InstanceNumber  single 0.90  scantype 0.80  1.2.3.5.1",
        "",
    ]


def test_the_summary_lists_the_selected_and_unused_series_and_the_skipped_files() -> None:
    lines = format_analysis(
        "case.zip", with_images(response([0.1] * 3, [0.1] * 3, []))
    ).splitlines()
    assert "flagged slices" not in "\n".join(lines)
    start = lines.index("study 1.2.3 (phases by series, slices by position)")
    assert lines[start + 1 : start + 9] == [
        "selected series:",
        "  pre       #5  dyn pre       3 images",
        "  1st_pass  #6  dyn 1st_pass  3 images",
        "  2nd_pass  #7  dyn 2nd_pass  3 images",
        "  3rd_pass  #8  dyn 3rd_pass  3 images",
        "unused series:",
        "  #1  localizer         MR, 3 files  a localiser",
        "  #-  (no description)  SR, 0 files  not an image",
    ]
    skipped = lines.index("skipped files (22):")
    assert lines[skipped + 1] == "  notes/0.txt: not a DICOM file"
    assert lines[skipped + 21] == "  … and 2 more"


def test_flagged_slices_read_as_ranges() -> None:
    assert format_ranges([3, 4, 5, 9, 11, 12]) == "3-5, 9, 11-12"
    assert format_ranges([]) == ""


def test_the_summary_names_the_flagged_slices_and_warns_about_the_demo_model() -> None:
    text = format_analysis("case.zip", response([0.9, 0.9, 0.1], [0.9, 0.8, 0.2], [0, 1]))
    assert text.splitlines()[0] == "case.zip: 3 slices, 2 flagged: 0-1"
    assert "mri-demo 1" in text
    assert "not for clinical use" in text


def test_progress_off_a_terminal_prints_quarters_then_analysing() -> None:
    stream = io.StringIO()
    progress = Progress(100, stream=stream)
    for _ in range(4):
        progress.sent(25)
    progress.close()
    assert stream.getvalue().splitlines() == [
        "uploading: 25%",
        "uploading: 50%",
        "uploading: 75%",
        "uploading: 100%",
        "uploaded; analysing",
    ]


def test_a_missing_file_is_refused_before_any_call(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["analyze-series", "/nonexistent/series.zip"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_an_unreachable_gateway_says_how_to_start_it(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "series.zip"
    path.write_bytes(b"PK")
    code = main(["--gateway", "127.0.0.1:1", "analyze-series", str(path), "--timeout", "2"])
    assert code == 1
    assert "medimg up" in capsys.readouterr().err
