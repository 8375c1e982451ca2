"""The torchserve backend, against a real TorchServe with token authorization, answers as embedded.

One TorchServe serves both archives for the module (built from the shipped demo set
when the checkout has it, else from a seeded set); its job queue holds one request so
that a small flood fills it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import psutil
import pytest

from mri_service import fusion
from mri_service.archive import archive_name, build_archives
from mri_service.backends.embedded import EmbeddedBackend
from mri_service.backends.torchserve import KEY_VARIABLE, QUEUE_FULL_TEXT, TorchServeBackend
from mri_service.backends.torchserve_api import inference_pb2, inference_pb2_grpc
from mri_service.domain import MODEL_NAMES
from mri_service.errors import ModelMismatch
from mri_service.model_card import ModelCard, load_model_card, weights_file
from mri_service.settings import TorchServeSettings
from mri_service.torchserve_handler import INPUT_KEY, encode_array
from servicekit.errors import BackendTimeout, BackendUnavailable, ModelNotReady, QueueFull
from tests.support.processes import free_port
from tests.support.torchserve import (
    TorchServe,
    running_torchserve,
    shipped_model_set,
    synthetic_slices,
    write_seeded_model_set,
)

pytestmark = pytest.mark.slow

SERVED = tuple(archive_name(name) for name in MODEL_NAMES)
SLICES = 24


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped demo set when this checkout has it, else a seeded one."""
    return shipped_model_set() or write_seeded_model_set(tmp_path_factory.mktemp("mri-models"))


@pytest.fixture(scope="module")
def card(model_dir: Path) -> ModelCard:
    return load_model_card(model_dir)


@pytest.fixture(scope="module")
def model_store(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("model-store")
    build_archives(model_dir, store)
    return store


@pytest.fixture(scope="module")
def torchserve(model_store: Path) -> Iterator[TorchServe]:
    with running_torchserve(model_store, SERVED, job_queue_size=1) as server:
        print(f"TorchServe start to READY: {server.start_to_ready_s:.1f} s")
        yield server


@pytest.fixture(scope="module")
def batches(card: ModelCard) -> dict[str, np.ndarray]:
    """The same series as each model sees it: single reads channel 0 of the passes here."""
    passes = synthetic_slices(SLICES, 3, card.input_size, seed=5)
    return {"single": passes[:, :1].copy(), "scantype": passes}


def backend_pair(
    model_dir: Path, name: str, torchserve: TorchServe
) -> tuple[EmbeddedBackend, TorchServeBackend]:
    embedded = EmbeddedBackend(model_dir, name)
    remote = TorchServeBackend(model_dir, name, torchserve.settings())
    embedded.load()
    remote.load()
    return embedded, remote


@pytest.fixture(scope="module")
def backends(
    model_dir: Path, torchserve: TorchServe
) -> Iterator[dict[str, tuple[EmbeddedBackend, TorchServeBackend]]]:
    pairs = {name: backend_pair(model_dir, name, torchserve) for name in MODEL_NAMES}
    yield pairs
    for _, remote in pairs.values():
        remote.close()


def test_both_backends_return_the_same_probabilities(
    backends: dict[str, tuple[EmbeddedBackend, TorchServeBackend]],
    batches: dict[str, np.ndarray],
) -> None:
    for name, (embedded, remote) in backends.items():
        batch = batches[name]
        served = remote.predict(batch)
        assert served.shape == (SLICES, 1)
        assert served.dtype == np.float32
        np.testing.assert_allclose(served, embedded.predict(batch), rtol=0, atol=1e-5)
        np.testing.assert_allclose(
            remote.predict(batch[:1]), embedded.predict(batch[:1]), atol=1e-5
        )
        assert remote.predict(batch[:0]).shape == embedded.predict(batch[:0]).shape == (0, 1)
        same = dataclasses.replace(remote.info(), backend="embedded")
        assert same == embedded.info()
        assert remote.info().backend == "torchserve"


def test_the_fused_findings_are_identical(
    backends: dict[str, tuple[EmbeddedBackend, TorchServeBackend]],
    batches: dict[str, np.ndarray],
    card: ModelCard,
    model_dir: Path,
) -> None:
    findings = []
    for side in (0, 1):
        probabilities = {
            name: backends[name][side].predict(batches[name])[:, 0] for name in batches
        }
        decisions = {name: fusion.decide(p, card.threshold) for name, p in probabilities.items()}
        fused = fusion.fuse(decisions["single"], decisions["scantype"])
        findings.append((decisions, fusion.positive_indices(fused)))
    assert findings[1] == findings[0]
    if model_dir != shipped_model_set():  # the seeded set is made to give both answers
        assert 0 < len(findings[0][1]) < SLICES


def test_it_listens_on_loopback_only(torchserve: TorchServe) -> None:
    java = [p for p in psutil.Process(torchserve.popen.pid).children() if p.name() == "java"]
    listening = {
        c.laddr.ip for p in java for c in p.net_connections("inet") if c.status == "LISTEN"
    }
    assert listening, "TorchServe listens on nothing"
    assert listening <= {"127.0.0.1", "::ffff:127.0.0.1"}


@pytest.mark.parametrize("key", ["wrong-key", None, "management"], ids=["wrong", "none", "mgmt"])
def test_it_refuses_a_wrong_or_missing_inference_key(
    model_dir: Path, torchserve: TorchServe, batches: dict[str, np.ndarray], key: str | None
) -> None:
    key = torchserve.management_key if key == "management" else key
    backend = TorchServeBackend(model_dir, "single", torchserve.settings(inference_key=key))
    try:
        with pytest.raises(ModelNotReady, match=KEY_VARIABLE):
            backend.load()
        assert not backend.ready()
        with pytest.raises(BackendUnavailable, match=KEY_VARIABLE) as caught:
            backend.predict(batches["single"])
        assert caught.value.code == "UNAVAILABLE"
        assert key is None or key not in caught.value.message
    finally:
        backend.close()


def flood(call: object, count: int = 8) -> list[object]:
    """Runs call() count times at once; returns each result or exception."""

    def attempt(_: int) -> object:
        try:
            return call()  # type: ignore[operator]
        except Exception as exc:
            return exc

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return list(pool.map(attempt, range(count)))


def test_torchserve_reports_a_full_queue_as_internal(
    torchserve: TorchServe, card: ModelCard
) -> None:
    payload = encode_array(synthetic_slices(16, 3, card.input_size, seed=9))
    request = inference_pb2.PredictionsRequest(model_name=SERVED[1], input={INPUT_KEY: payload})
    metadata = (("authorization", f"Bearer {torchserve.inference_key}"),)
    with grpc.insecure_channel(torchserve.grpc_address) as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        results = flood(lambda: stub.Predictions(request, metadata=metadata, timeout=30))
    refused = [r for r in results if isinstance(r, grpc.RpcError)]
    assert refused, "a queue of one never filled"
    for error in refused:
        assert isinstance(error, grpc.Call)
        assert error.code() == grpc.StatusCode.INTERNAL
        assert QUEUE_FULL_TEXT in (error.details() or "")


def test_a_full_queue_is_resource_exhausted(
    backends: dict[str, tuple[EmbeddedBackend, TorchServeBackend]], card: ModelCard
) -> None:
    embedded, remote = backends["scantype"]
    batch = synthetic_slices(16, 3, card.input_size, seed=9)
    results = flood(lambda: remote.predict(batch))
    full = [r for r in results if isinstance(r, QueueFull)]
    answered = [r for r in results if isinstance(r, np.ndarray)]
    assert full, "a queue of one never filled"
    assert len(full) + len(answered) == len(results), results
    assert full[0].code == "RESOURCE_EXHAUSTED"
    for probabilities in answered:
        np.testing.assert_allclose(probabilities, embedded.predict(batch), atol=1e-5)


def test_a_batch_of_another_shape_is_a_model_mismatch(
    backends: dict[str, tuple[EmbeddedBackend, TorchServeBackend]],
    batches: dict[str, np.ndarray],
) -> None:
    _, single = backends["single"]
    with pytest.raises(ModelMismatch, match=r"python -m mri_service\.archive"):
        single.predict(batches["scantype"])


def test_it_refuses_to_load_a_card_the_served_model_does_not_fit(
    model_dir: Path, card: ModelCard, torchserve: TorchServe, tmp_path: Path
) -> None:
    other = tmp_path / "other-set"
    other.mkdir()
    for name in MODEL_NAMES:
        (other / weights_file(name)).write_bytes((model_dir / weights_file(name)).read_bytes())
    dataclasses.replace(card, input_size=card.input_size + 32).save(other)
    backend = TorchServeBackend(other, "scantype", torchserve.settings())
    try:
        with pytest.raises(ModelMismatch):
            backend.load()
        assert not backend.ready()
    finally:
        backend.close()


def test_it_refuses_to_load_a_model_torchserve_does_not_serve(
    model_dir: Path, torchserve: TorchServe
) -> None:
    backend = TorchServeBackend(model_dir, "single", torchserve.settings(model_prefix="other-"))
    try:
        with pytest.raises(ModelNotReady, match="MRI_TORCHSERVE_MODEL_PREFIX"):
            backend.load()
    finally:
        backend.close()


def test_a_late_answer_is_a_timeout(
    model_dir: Path, torchserve: TorchServe, card: ModelCard
) -> None:
    backend = TorchServeBackend(model_dir, "scantype", torchserve.settings(timeout_s=0.001))
    try:
        with pytest.raises(BackendTimeout, match="MRI_TORCHSERVE_TIMEOUT_SECONDS"):
            backend.predict(synthetic_slices(64, 3, card.input_size, seed=1))
    finally:
        backend.close()


def test_a_stopped_torchserve_is_unavailable_at_once(
    model_dir: Path, model_store: Path, batches: dict[str, np.ndarray]
) -> None:
    with running_torchserve(model_store, SERVED[:1]) as server:
        backend = TorchServeBackend(model_dir, "single", server.settings())
        backend.load()
        assert backend.predict(batches["single"]).shape == (SLICES, 1)
        server.stop()  # raises if a TorchServe process survives
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="cannot be reached"):
            backend.predict(batches["single"])
        assert time.monotonic() - started < 2.0
        backend.close()
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(server.root) in str(p.info)]
    assert not leftovers


def test_nothing_listening_is_unavailable_at_once(
    model_dir: Path, batches: dict[str, np.ndarray]
) -> None:
    address = f"127.0.0.1:{free_port()}"
    backend = TorchServeBackend(model_dir, "single", TorchServeSettings(address, "k", "mri-", 5))
    try:
        started = time.monotonic()
        with pytest.raises(ModelNotReady, match="cannot be reached"):
            backend.load()
        with pytest.raises(BackendUnavailable, match="cannot be reached"):
            backend.predict(batches["single"])
        assert time.monotonic() - started < 2.0
    finally:
        backend.close()
