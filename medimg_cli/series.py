"""`medimg analyze-series`: streams a series zip to the gateway and draws the slice findings."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

import grpc
from medimg.v1 import series_analysis_service_pb2, series_analysis_service_pb2_grpc

from medimg_cli.client import DEMO_NOTICE, call_failed
from servicekit.request_context import REQUEST_ID_KEY, new_request_id

# Small enough that the upload bar moves, large enough that per-message cost is noise.
CHUNK_BYTES = 256 * 1024
# Eight heights of a bar, lowest first; a probability p is drawn as BLOCKS[round(p * 8)].
BLOCKS = " ▁▂▃▄▅▆▇█"
STRIP_WIDTH = 64
# The phase whose InstanceNumber names a slice, as on the web tier's series page.
NAMING_PHASE = "pre"
# A CD export can hold hundreds of files that are not images; the rest are counted.
MAX_SKIPPED_SHOWN = 20

Response = series_analysis_service_pb2.AnalyzeSeriesResponse


def upload_messages(
    path: Path,
    disease: str,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    on_sent: Callable[[int], None] | None = None,
    dicom_reports: bool = False,
) -> Iterator[series_analysis_service_pb2.AnalyzeSeriesRequest]:
    """Yields the metadata, then the file in chunks; on_sent(n) after each chunk of n bytes."""
    size = path.stat().st_size
    pb = series_analysis_service_pb2
    yield pb.AnalyzeSeriesRequest(
        metadata=pb.SeriesUploadMetadata(
            disease=disease, total_size_bytes=size, dicom_reports=dicom_reports
        )
    )
    with path.open("rb") as stream:
        while chunk := stream.read(chunk_bytes):
            yield pb.AnalyzeSeriesRequest(chunk_data=chunk)
            if on_sent is not None:
                on_sent(len(chunk))


def analyze_series(
    address: str,
    path: Path,
    *,
    disease: str,
    timeout_s: float,
    on_sent: Callable[[int], None] | None = None,
    dicom_reports: bool = False,
) -> Response:
    """Streams the zip at path to the gateway and returns the analysis.

    With `dicom_reports`, the answer also carries the result as DICOM (`write_reports`).

    Raises:
        CallFailed: the call ended with a status other than OK.
    """
    request_id = new_request_id()
    with grpc.insecure_channel(address) as channel:
        stub = series_analysis_service_pb2_grpc.SeriesAnalysisServiceStub(channel)
        try:
            response: Response = stub.AnalyzeSeries(
                upload_messages(path, disease, on_sent=on_sent, dicom_reports=dicom_reports),
                timeout=timeout_s,
                metadata=((REQUEST_ID_KEY, request_id),),
            )
        except grpc.RpcError as exc:
            raise call_failed(exc, request_id) from None
    return response


def write_reports(response: Response, folder: Path) -> list[Path]:
    """Writes the answer's DICOM report and key images into folder; returns the files written.

    `report-sr.dcm` (the TID 1500 Measurement Report) always; `key-images-kos.dcm` when a
    slice is flagged. They carry the patient's identity, as the study's images do.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in (
        ("report-sr.dcm", response.dicom_reports.measurement_report),
        ("key-images-kos.dcm", response.dicom_reports.key_images),
    ):
        if data:
            path = folder / name
            path.write_bytes(data)
            written.append(path)
    return written


def block(probability: float) -> str:
    """Returns the one-character bar of a probability between 0 and 1."""
    clamped = min(1.0, max(0.0, probability))
    return BLOCKS[round(clamped * (len(BLOCKS) - 1))]


def model_names(response: Response) -> list[str]:
    """Returns the models that scored the slices, in the order the service lists them."""
    names: list[str] = []
    for finding in response.slices:
        for score in finding.model_scores:
            if score.model_name not in names:
                names.append(score.model_name)
    return names


def format_strip(response: Response, *, width: int = STRIP_WIDTH) -> str:
    """Returns one row of bars per model and a row marking flagged slices, wrapped at width.

    Each column is a slice in anatomical order; each block rises with that model's
    probability; `^` marks a slice the fused result flags. A ruler labels every tenth slice.
    """
    names = model_names(response)
    label_width = max([len("flagged"), *(len(name) for name in names)])
    scores = {
        name: [
            next((s.probability for s in f.model_scores if s.model_name == name), 0.0)
            for f in response.slices
        ]
        for name in names
    }
    flags = ["^" if f.positive else " " for f in response.slices]
    lines: list[str] = []
    for start in range(0, len(response.slices), width):
        stop = min(start + width, len(response.slices))
        lines.append(" " * (label_width + 2) + _ruler(start, stop))
        for name in names:
            bars = "".join(block(p) for p in scores[name][start:stop])
            lines.append(f"{name.ljust(label_width)}  {bars}".rstrip())
        lines.append(f"{'flagged'.ljust(label_width)}  {''.join(flags[start:stop])}".rstrip())
    return "\n".join(lines)


def _ruler(start: int, stop: int) -> str:
    cells = [" "] * (stop - start)
    for index in range(start, stop):
        if index % 10 == 0:
            label = str(index)
            offset = index - start
            for i, char in enumerate(label[: len(cells) - offset]):
                cells[offset + i] = char
    return "".join(cells).rstrip()


def format_ranges(indices: Sequence[int]) -> str:
    """Returns slice indices as ranges: [3, 4, 5, 9] -> "3-5, 9"."""
    parts: list[str] = []
    run: list[int] = []
    for index in indices:
        if run and index != run[-1] + 1:
            parts.append(_range(run))
            run = []
        run.append(index)
    if run:
        parts.append(_range(run))
    return ", ".join(parts)


def _range(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def pre_instance_number(finding: series_analysis_service_pb2.SliceFinding) -> int | None:
    """Returns the InstanceNumber of a slice's pre-contrast image, None when unknown."""
    for image in finding.images:
        if image.phase == NAMING_PHASE:
            return image.instance_number if image.HasField("instance_number") else None
    return None


def format_flagged(response: Response) -> list[str]:
    """Returns one line per flagged slice: its index, InstanceNumber, scores and SOPInstanceUID.

    The index counts from 0 in anatomical order, as the strip does; the InstanceNumber and
    the UID are the pre-contrast image's, to find the slice in a PACS or viewer.
    """
    rows = []
    for finding in response.slices:
        if not finding.positive:
            continue
        number = pre_instance_number(finding)
        pre = next((i for i in finding.images if i.phase == NAMING_PHASE), None)
        rows.append(
            (
                f"slice {finding.slice_index}",
                f"InstanceNumber {number}" if number is not None else "no InstanceNumber",
                "  ".join(f"{s.model_name} {s.probability:.2f}" for s in finding.model_scores),
                pre.sop_instance_uid if pre is not None else "",
            )
        )
    if not rows:
        return []
    return [
        "flagged slices (index from 0, then the pre-contrast image's number and UID):",
        *_table(rows),
    ]


def format_study(study: series_analysis_service_pb2.StudySummary) -> list[str]:
    """Returns the series the models read, the series left out and why, and skipped files."""
    if not study.study_instance_uid and not study.phases:
        return []
    how = ", ".join(
        part
        for part in (
            f"phases by {study.selected_by}" if study.selected_by else "",
            f"slices by {study.ordered_by}" if study.ordered_by else "",
        )
        if part
    )
    lines = [f"study {study.study_instance_uid}" + (f" ({how})" if how else "")]
    lines.append("selected series:")
    rows = [
        (
            phase.phase,
            _series_number(phase.series_number if phase.HasField("series_number") else None),
            phase.series_description or "(no description)",
            f"{phase.image_count} images"
            + (
                f", temporal position {phase.temporal_position}"
                if phase.HasField("temporal_position")
                else ""
            ),
        )
        for phase in study.phases
    ]
    lines += _table(rows)
    if study.unused_series:
        lines.append("unused series:")
        unused = [
            (
                _series_number(u.series_number if u.HasField("series_number") else None),
                u.series_description or "(no description)",
                f"{u.modality or '?'}, {u.image_count} files",
                u.reason,
            )
            for u in study.unused_series
        ]
        lines += _table(unused)
    if study.skipped_files:
        lines.append(f"skipped files ({len(study.skipped_files)}):")
        shown = study.skipped_files[:MAX_SKIPPED_SHOWN]
        lines += [f"  {f.path}: {f.reason}" for f in shown]
        if len(study.skipped_files) > len(shown):
            lines.append(f"  … and {len(study.skipped_files) - len(shown)} more")
    return lines


def _series_number(number: int | None) -> str:
    return f"#{number}" if number is not None else "#-"


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        (
            "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def format_analysis(name: str, response: Response) -> str:
    """Returns the summary line, the strip, the flagged slices, the study and the model line."""
    flagged = list(response.positive_slice_indices)
    summary = f"{name}: {response.slice_count} slices, {len(flagged)} flagged"
    summary += f": {format_ranges(flagged)}" if flagged else ""
    lines = [summary, "", format_strip(response), ""]
    for block_lines in (format_flagged(response), format_study(response.study)):
        if block_lines:
            lines += [*block_lines, ""]
    model = f"model {response.model_name} {response.model_version}".rstrip()
    if response.HasField("timings"):
        t = response.timings
        model += (
            f" · upload {t.upload_ms:.0f} ms, prepare {t.prepare_ms:.0f} ms,"
            f" models {t.model_ms:.0f} ms"
        )
    lines.append(model)
    if response.demo_model:
        lines.append(DEMO_NOTICE)
    return "\n".join(lines)


class Progress:
    """Shows the upload as a byte bar, then the analysis as elapsed time, on stderr.

    On a terminal the line redraws in place; otherwise a line is printed at each quarter
    of the upload and when analysis starts, so logs stay readable. The service answers
    once per series, so analysis progress is shown as elapsed time, not a percentage.
    """

    def __init__(self, total_bytes: int, stream: TextIO = sys.stderr) -> None:
        self._total = max(1, total_bytes)
        self._sent = 0
        self._stream = stream
        self._tty = stream.isatty()
        self._next_quarter = 1
        self._done = threading.Event()
        self._ticker: threading.Thread | None = None

    def sent(self, count: int) -> None:
        """Records count more bytes sent; starts the analysis clock after the last one."""
        self._sent += count
        fraction = self._sent / self._total
        if self._tty:
            filled = round(fraction * 30)
            self._write(f"\ruploading [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%}")
        while not self._tty and fraction >= self._next_quarter / 4:
            self._write(f"uploading: {self._next_quarter * 25}%\n")
            self._next_quarter += 1
        if self._sent >= self._total and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        started = time.monotonic()
        if not self._tty:
            self._write("uploaded; analysing\n")
            return
        while not self._done.wait(0.2):
            self._write(f"\ranalysing {time.monotonic() - started:5.1f} s" + " " * 30)

    def close(self) -> None:
        """Stops the clock and clears the progress line."""
        self._done.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._tty:
            self._write("\r" + " " * 50 + "\r")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()
