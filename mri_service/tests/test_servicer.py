"""The MRI servicer on a real in-process server: the whole path from zip chunks to findings."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pydicom
import pytest
import torch
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from medimg.v1 import model_info_pb2
from medimg.v1 import series_analysis_service_pb2 as pb
from medimg.v1 import series_analysis_service_pb2_grpc as pb_grpc
from PIL import Image

from gateway.upstream import FirstStatus
from mri_service import domain, fusion
from mri_service.analysis import SeriesAnalyzer
from mri_service.backends.embedded import EmbeddedBackend
from mri_service.ingest import load_series
from mri_service.ingest.limits import IngestLimits
from mri_service.model import SliceClassifier
from mri_service.model_card import ModelCard, weights_file
from mri_service.phantom import PhantomSpec, generate_series, write_series_zip
from mri_service.servicer import MriSeriesServicer, binding
from mri_service.tests.doubles import MeanBackend, mean_backends
from servicekit.backend import Backend
from servicekit.errors import BackendUnavailable
from servicekit.server import Server
from servicekit.settings import ServerSettings

INPUT_SIZE = 32
CHUNK = 8 * 1024


def card(**changes: object) -> ModelCard:
    fields: dict[str, object] = {
        "name": "mri-test",
        "version": 3,
        "width": 0.0625,
        "input_size": INPUT_SIZE,
        "threshold": 0.5,
        "data": "none",
        "demo_model": True,
        "trained_on": "2026-11-21",
    }
    fields.update(changes)
    return ModelCard(**fields)  # type: ignore[arg-type]


def doubles() -> dict[str, MeanBackend]:
    return mean_backends(INPUT_SIZE)


@asynccontextmanager
async def serving(
    backends: dict[str, MeanBackend] | dict[str, Backend],
    spool: Path,
    *,
    model_card: ModelCard | None = None,
    **options: int,
) -> AsyncIterator[pb_grpc.SeriesAnalysisServiceAsyncStub]:
    analyzer = SeriesAnalyzer(
        backends,
        model_card or card(),
        spool_dir=spool,
        limits=IngestLimits(),
        batch_slices=options.get("batch_slices", 4),
        max_concurrent=options.get("max_concurrent", 2),
        max_queued=options.get("max_queued", 8),
    )
    settings = ServerSettings.from_env("MRI_", default_port=0, env={})
    server = Server(settings, [binding(MriSeriesServicer(analyzer))], lifecycle=analyzer)
    port = await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield pb_grpc.SeriesAnalysisServiceStub(channel)
    finally:
        await server.stop(0)


def messages(
    data: bytes, disease: str = "mri", preview_size_px: int = 0, dicom_reports: bool = False
) -> Iterator[pb.AnalyzeSeriesRequest]:
    meta = pb.SeriesUploadMetadata(
        disease=disease,
        total_size_bytes=len(data),
        preview_size_px=preview_size_px,
        dicom_reports=dicom_reports,
    )
    yield pb.AnalyzeSeriesRequest(metadata=meta)
    for start in range(0, len(data), CHUNK):
        yield pb.AnalyzeSeriesRequest(chunk_data=data[start : start + CHUNK])


async def analyse(
    stub: pb_grpc.SeriesAnalysisServiceAsyncStub,
    data: bytes,
    disease: str = "mri",
    *,
    preview_size_px: int = 0,
    dicom_reports: bool = False,
) -> pb.AnalyzeSeriesResponse:
    response: pb.AnalyzeSeriesResponse = await _upload(
        stub.AnalyzeSeries, messages(data, disease, preview_size_px, dicom_reports)
    )
    return response


async def inspect(
    stub: pb_grpc.SeriesAnalysisServiceAsyncStub, data: bytes, *, preview_size_px: int = 0
) -> pb.InspectSeriesResponse:
    response: pb.InspectSeriesResponse = await _upload(
        stub.InspectSeries, messages(data, preview_size_px=preview_size_px)
    )
    return response


async def _upload(method: Any, sent: Iterator[pb.AnalyzeSeriesRequest]) -> Any:
    async def requests() -> AsyncIterator[pb.AnalyzeSeriesRequest]:
        for message in sent:
            yield message

    # A refusal that comes before the upload is read races with the client's writes;
    # grpc then reports INTERNAL in place of the server's status (grpc/grpc#36066).
    # FirstStatus, the gateway's workaround, keeps the status the server sent.
    first_status = FirstStatus()
    call = method(requests(), timeout=30)
    call.add_done_callback(first_status)
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        raise first_status.server_error(error) from None


def reason_of(error: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(error)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return str(info.reason)


@pytest.fixture(scope="module")
def series_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    series = generate_series(PhantomSpec(slices=10, size=64, lesion=True, seed=5))
    return write_series_zip(series, tmp_path_factory.mktemp("series") / "case.zip")


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


async def test_it_fuses_both_models_over_every_slice_of_the_uploaded_zip(
    series_zip: Path, spool: Path
) -> None:
    backends = doubles()
    async with serving(backends, spool) as stub:
        response = await analyse(stub, series_zip.read_bytes())
    inputs = domain.model_inputs(load_series(series_zip, INPUT_SIZE))
    expected = fusion.analyse(
        {name: batch.mean(axis=(1, 2, 3)) / 255.0 for name, batch in inputs.items()}
    )
    assert response.slice_count == 10
    assert [f.slice_index for f in response.slices] == list(range(10))
    assert [f.positive for f in response.slices] == [r.positive for r in expected]
    assert list(response.positive_slice_indices) == [r.index for r in expected if r.positive]
    for finding, result in zip(response.slices, expected, strict=True):
        assert [s.model_name for s in finding.model_scores] == [n for n, _ in result.scores]
        got = [s.probability for s in finding.model_scores]
        np.testing.assert_allclose(got, [p for _, p in result.scores], atol=1e-5)
    assert (response.disease, response.model_name, response.model_version) == (
        "mri",
        "mri-test",
        "3",
    )
    assert response.demo_model
    assert response.timings.prepare_ms > 0 and response.timings.model_ms > 0
    assert list(spool.iterdir()) == []


def _headers(zip_path: Path) -> dict[str, pydicom.Dataset]:
    """Returns entry name -> header of every DICOM file in the zip, read with pydicom alone."""
    with zipfile.ZipFile(zip_path) as archive:
        return {
            name: pydicom.dcmread(io.BytesIO(archive.read(name)), stop_before_pixels=True)
            for name in archive.namelist()
            if name.endswith(".dcm")
        }


async def test_each_finding_names_its_dicom_images_and_the_answer_names_the_series(
    series_zip: Path, spool: Path
) -> None:
    async with serving(doubles(), spool) as stub:
        response = await analyse(stub, series_zip.read_bytes())

    headers = list(_headers(series_zip).values())
    by_uid = {str(ds.SOPInstanceUID): ds for ds in headers}
    for finding in response.slices:
        assert [image.phase for image in finding.images] == list(domain.PHASES)
        positions = set()
        for image in finding.images:
            ds = by_uid[image.sop_instance_uid]
            assert image.instance_number == int(ds.InstanceNumber)
            assert image.HasField("position_mm")
            positions.add(round(image.position_mm, 3))
            assert str(ds.SeriesDescription).endswith(image.phase)
        assert len(positions) == 1  # the same anatomical slice in every phase
    along = [f.images[0].position_mm for f in response.slices]
    assert along == sorted(along)
    study = response.study
    assert study.study_instance_uid == str(headers[0].StudyInstanceUID)
    assert [p.phase for p in study.phases] == list(domain.PHASES)
    assert [p.series_number for p in study.phases] == [1, 2, 3, 4]
    series_uids = {str(ds.SeriesDescription): str(ds.SeriesInstanceUID) for ds in headers}
    for phase in study.phases:
        assert series_uids[phase.series_description] == phase.series_instance_uid
        assert phase.image_count == 10 and not phase.HasField("temporal_position")
    assert (study.slice_count, study.ordered_by, study.selected_by) == (10, "position", "folders")
    assert list(study.unused_series) == [] and list(study.skipped_files) == []
    assert list(response.preview_png) == []


async def test_previews_come_with_the_answer_when_asked(series_zip: Path, spool: Path) -> None:
    async with serving(doubles(), spool) as stub:
        response = await analyse(stub, series_zip.read_bytes(), preview_size_px=40)

    assert len(response.preview_png) == 10
    expected = load_series(series_zip, 40)["pre"]
    for png, plane in zip(response.preview_png, expected, strict=True):
        image = Image.open(io.BytesIO(png))
        assert (image.format, image.mode, image.size) == ("PNG", "L", (40, 40))
        np.testing.assert_allclose(np.asarray(image), np.rint(plane), atol=1)


async def test_inspect_names_the_series_and_runs_no_model(series_zip: Path, spool: Path) -> None:
    backends = doubles()
    async with serving(backends, spool) as stub:
        analysed = await analyse(stub, series_zip.read_bytes())
        for backend in backends.values():
            backend.batch_sizes.clear()
        inspected = await inspect(stub, series_zip.read_bytes())
        previewed = await inspect(stub, series_zip.read_bytes(), preview_size_px=24)

    assert inspected.study == analysed.study
    assert list(inspected.preview_png) == []
    assert len(previewed.preview_png) == 10
    assert Image.open(io.BytesIO(previewed.preview_png[0])).size == (24, 24)
    assert all(backend.batch_sizes == [] for backend in backends.values())
    assert list(spool.iterdir()) == []


async def test_inspect_refuses_what_analysis_refuses(series_zip: Path, spool: Path) -> None:
    async with serving(doubles(), spool) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await inspect(stub, b"PK\x03\x04 this is not a whole zip")
        with pytest.raises(grpc.aio.AioRpcError) as too_large:
            await inspect(stub, series_zip.read_bytes(), preview_size_px=5000)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(refused.value) == "SERIES_DAMAGED"
    assert too_large.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "preview_size_px" in (too_large.value.details() or "")
    assert list(spool.iterdir()) == []


async def test_it_sends_slices_to_the_models_in_batches(series_zip: Path, spool: Path) -> None:
    backends = doubles()
    async with serving(backends, spool, batch_slices=4) as stub:
        await analyse(stub, series_zip.read_bytes())
    assert backends["single"].batch_sizes == [4, 4, 2]
    assert backends["scantype"].batch_sizes == [4, 4, 2]


async def test_a_hostile_zip_is_refused_and_the_next_series_is_still_analysed(
    series_zip: Path, spool: Path
) -> None:
    async with serving(doubles(), spool) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await analyse(stub, b"PK\x03\x04 this is not a whole zip")
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert reason_of(refused.value) == "SERIES_DAMAGED"
        assert list(spool.iterdir()) == []
        response = await analyse(stub, series_zip.read_bytes())
    assert response.slice_count == 10


async def test_it_needs_the_metadata_first(spool: Path) -> None:
    async def chunk_first() -> AsyncIterator[pb.AnalyzeSeriesRequest]:
        yield pb.AnalyzeSeriesRequest(chunk_data=b"PK")

    async with serving(doubles(), spool) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.AnalyzeSeries(chunk_first(), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata" in (refused.value.details() or "")


async def test_another_disease_is_not_found(series_zip: Path, spool: Path) -> None:
    async with serving(doubles(), spool) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await analyse(stub, series_zip.read_bytes(), disease="skin")
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_backend_that_fails_gives_unavailable(series_zip: Path, spool: Path) -> None:
    backends = doubles()
    async with serving(backends, spool) as stub:
        backends["scantype"].error = BackendUnavailable("TorchServe cannot be reached")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await analyse(stub, series_zip.read_bytes())
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert list(spool.iterdir()) == []


async def test_series_beyond_the_queue_are_refused_at_once(series_zip: Path, spool: Path) -> None:
    backends = doubles()
    data = series_zip.read_bytes()
    async with serving(backends, spool, max_concurrent=1, max_queued=0) as stub:
        backends["single"].gate.clear()
        first = asyncio.create_task(analyse(stub, data))
        await asyncio.sleep(1.0)  # the first series now holds the only slot, inside a model call
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await analyse(stub, data)
        backends["single"].gate.set()
        assert (await first).slice_count == 10
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_model_info_describes_the_series_analyser(spool: Path) -> None:
    async with serving(doubles(), spool) as stub:
        response = await stub.GetSeriesModelInfo(pb.GetSeriesModelInfoRequest(disease="mri"))
    model = response.model
    assert model.kind == model_info_pb2.MODEL_KIND_SERIES_ANALYZER
    assert (model.disease, model.model_name, model.model_version) == ("mri", "mri-test", "3")
    assert model.demo_model
    assert "not for clinical use" in model.description


async def test_it_refuses_weights_that_do_not_fit_the_card(tmp_path: Path, spool: Path) -> None:
    backends = doubles()
    with pytest.raises(Exception, match="single model takes 1 channel"):
        async with serving(backends, spool, model_card=card(input_size=64)):
            pass


async def test_real_torch_models_analyse_the_series(
    series_zip: Path, spool: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model_card = card()
    for name in domain.MODEL_NAMES:
        model = SliceClassifier(domain.MODEL_CHANNELS[name], width=model_card.width)
        torch.save(model.state_dict(), tmp_path / weights_file(name))
    model_card.save(tmp_path)
    backends = {name: EmbeddedBackend(tmp_path, name) for name in domain.MODEL_NAMES}
    async with serving(backends, spool, model_card=model_card) as stub:  # type: ignore[arg-type]
        response = await analyse(stub, series_zip.read_bytes())
    assert response.slice_count == 10
    for finding in response.slices:
        assert all(0.0 <= s.probability <= 1.0 for s in finding.model_scores)


async def test_series_in_progress_are_counted_for_the_autoscaler(
    series_zip: Path, spool: Path
) -> None:
    from mri_service.analysis import SERIES_IN_PROGRESS

    backends = doubles()
    async with serving(backends, spool) as stub:
        backends["single"].gate.clear()
        call = asyncio.create_task(analyse(stub, series_zip.read_bytes()))
        await asyncio.sleep(1.0)
        assert SERIES_IN_PROGRESS._value.get() == 1
        backends["single"].gate.set()
        await call
    assert SERIES_IN_PROGRESS._value.get() == 0
