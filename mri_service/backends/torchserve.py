"""The `torchserve` backend: calls TorchServe's gRPC inference API (`Predictions`) for one model.

TorchServe serves each model of the set as `MRI_TORCHSERVE_MODEL_PREFIX` + its name,
from the archives `python -m mri_service.archive` builds out of MRI_MODEL_DIR. The
request and response bytes are those of `mri_service.torchserve_handler`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc
import numpy as np

from mri_service.backends import model_info, read_card
from mri_service.backends.torchserve_api import inference_pb2, inference_pb2_grpc
from mri_service.domain import MODEL_CHANNELS
from mri_service.errors import ModelMismatch
from mri_service.settings import TorchServeSettings
from mri_service.torchserve_handler import INPUT_KEY, decode_array, encode_array
from servicekit.backend import ModelInfo
from servicekit.channels import MODEL_SERVER_CHANNEL_OPTIONS, call_status
from servicekit.errors import (
    BackendTimeout,
    BackendUnavailable,
    MedimgError,
    ModelNotReady,
    QueueFull,
)

logger = logging.getLogger(__name__)

# What TorchServe 0.12 says, with status INTERNAL, when a model's job queue
# (job_queue_size) is full; over REST the same refusal is a 503.
QUEUE_FULL_TEXT = "has no worker to serve inference request"
MODEL_NOT_FOUND_TEXT = "Model not found"
# A handler that raises anything but a PredictionException makes TorchServe answer
# 503 "Prediction failed", which reaches a gRPC caller as UNAVAILABLE.
HANDLER_FAILED_TEXT = "Prediction failed"
KEY_VARIABLE = "MRI_TORCHSERVE_INFERENCE_KEY"


class TorchServeBackend:
    """Sends each batch of slices to TorchServe's `Predictions` and reads the probabilities.

    The model card comes from MRI_MODEL_DIR, the set the archives were built from;
    `load` sends one blank slice, which proves in one call that TorchServe is
    reachable, accepts the inference key, serves the model and takes the card's
    input shape. `predict` needs no `load`: TorchServe holds the model.
    """

    def __init__(self, model_dir: Path, model_name: str, settings: TorchServeSettings) -> None:
        self._model_dir = model_dir
        self._model_name = model_name
        self._settings = settings
        self._served_name = f"{settings.model_prefix}{model_name}"
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {settings.inference_key}"),)
            if settings.inference_key
            else ()
        )
        self._lock = threading.Lock()
        self._channel = grpc.insecure_channel(
            settings.address, options=MODEL_SERVER_CHANNEL_OPTIONS
        )
        self._stub = inference_pb2_grpc.InferenceAPIsServiceStub(self._channel)
        self._info: ModelInfo | None = None

    def load(self) -> None:
        """Checks with one blank slice that TorchServe serves the model as the card says; once.

        Raises:
            ModelNotReady: no card; TorchServe cannot be reached, refuses the key, does
                not serve the model, or serves one that takes another input shape.
        """
        with self._lock:
            if self._info is not None:
                return
            card = read_card(self._model_dir)
            size = card.input_size
            blank = np.zeros((1, MODEL_CHANNELS[self._model_name], size, size), np.float32)
            logger.info("asking TorchServe at %s for %s", self._settings.address, self._served_name)
            try:
                self.predict(blank)
            except ModelNotReady:
                raise
            except MedimgError as exc:
                raise ModelNotReady(exc.message) from None
            self._info = model_info(card, self._model_name, "torchserve")
            logger.info("TorchServe serves %s (version %d)", self._served_name, card.version)

    def ready(self) -> bool:
        """Returns True once TorchServe was found serving the model."""
        return self._info is not None

    def info(self) -> ModelInfo:
        """Returns the description of the served model (from MRI_MODEL_DIR's card)."""
        if self._info is None:
            raise ModelNotReady(f"the {self._model_name} model is not loaded yet")
        return self._info

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Returns float32 (N, 1) tumour probabilities for float32 (N, C, S, S) slices.

        Raises:
            BackendUnavailable: TorchServe cannot be reached, refuses the key, or failed.
            BackendTimeout: no answer within MRI_TORCHSERVE_TIMEOUT_SECONDS.
            QueueFull: TorchServe's job queue for the model is full.
            ModelNotReady: TorchServe does not serve the model.
            ModelMismatch: the served model refused the batch's shape, or answered
                something other than one probability per slice.
        """
        slices = np.ascontiguousarray(batch, dtype=np.float32)
        if len(slices) == 0:  # TorchServe's handler refuses an empty batch; nothing to ask
            return np.zeros((0, 1), np.float32)
        request = inference_pb2.PredictionsRequest(
            model_name=self._served_name, input={INPUT_KEY: encode_array(slices)}
        )
        try:
            response = self._stub.Predictions(
                request, timeout=self._settings.timeout_s, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            raise self._predict_error(exc, nbytes=slices.nbytes) from None
        try:
            probabilities = decode_array(response.prediction)
        except ValueError:
            probabilities = np.empty(0)
        if probabilities.dtype != np.float32 or probabilities.shape != (len(slices),):
            raise ModelMismatch(
                f"TorchServe's {self._served_name} answered {list(probabilities.shape)} "
                f"{probabilities.dtype} for {len(slices)} slices, not one float32 each: rebuild "
                "its archive with `python -m mri_service.archive`"
            )
        return probabilities.reshape(-1, 1)

    def _predict_error(self, exc: grpc.RpcError, *, nbytes: int) -> MedimgError:
        code, details = call_status(exc)
        logger.warning("TorchServe Predictions %s failed: %s %s", self._served_name, code, details)
        name = self._served_name
        if code == grpc.StatusCode.INTERNAL and QUEUE_FULL_TEXT in details:
            return QueueFull(f"TorchServe's queue for {name} is full; retry later")
        if code == grpc.StatusCode.INTERNAL and MODEL_NOT_FOUND_TEXT in details:
            return ModelNotReady(
                f"TorchServe does not serve {name}: register the archive built by "
                "`python -m mri_service.archive`, or check MRI_TORCHSERVE_MODEL_PREFIX"
            )
        if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            given = "a wrong or expired key" if self._metadata else "no key"
            return BackendUnavailable(
                f"TorchServe refused {given}: set {KEY_VARIABLE} to TorchServe's "
                "inference key (from its key_file.json)"
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return BackendTimeout(
                "TorchServe did not answer within MRI_TORCHSERVE_TIMEOUT_SECONDS "
                f"({self._settings.timeout_s:g} s)"
            )
        if code == grpc.StatusCode.UNAVAILABLE and HANDLER_FAILED_TEXT in details:
            return BackendUnavailable(f"TorchServe's {name} handler failed; see TorchServe's log")
        if code == grpc.StatusCode.UNAVAILABLE:
            return BackendUnavailable("TorchServe cannot be reached; retry shortly")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return ModelMismatch(
                f"TorchServe's {name} refused the batch, so it serves another model than "
                "MRI_MODEL_DIR: rebuild its archive with `python -m mri_service.archive`"
            )
        if code == grpc.StatusCode.CANCELLED:
            # TorchServe resets the stream of a request above its max_request_size.
            return BackendUnavailable(
                f"TorchServe dropped a batch of {nbytes / 2**20:.1f} MiB: lower "
                "MRI_BATCH_SLICES or raise TorchServe's max_request_size"
            )
        return BackendUnavailable(f"TorchServe failed the request ({code.name}); see the log")

    def close(self) -> None:
        """Closes the channel to TorchServe."""
        self._channel.close()
