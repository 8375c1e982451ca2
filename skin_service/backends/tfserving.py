"""The `tfserving` backend: calls TensorFlow Serving's PredictionService over gRPC."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from servicekit.batcher import PredictFn
from servicekit.channels import MODEL_SERVER_CHANNEL_OPTIONS, call_status
from servicekit.classifier.backends import CardBackend
from servicekit.classifier.errors import BackendRejected, ModelMismatch
from servicekit.classifier.savedmodel import Shape, check_signature
from servicekit.errors import (
    BackendTimeout,
    BackendUnavailable,
    MedimgError,
    ModelNotReady,
    QueueFull,
)
from skin_service.backends import MODEL_DIR_SETTING
from skin_service.domain import SKIN
from skin_service.model_card import ModelCard
from skin_service.settings import TfServingSettings

logger = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"

# Status codes of a Predict call, as the caller should see them. Messages never carry
# TF Serving's address or its details, which go to the log instead.
_PREDICT_ERRORS: Mapping[grpc.StatusCode, Callable[[], MedimgError]] = {
    grpc.StatusCode.UNAVAILABLE: lambda: BackendUnavailable(
        "the model server cannot be reached; retry shortly"
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: lambda: BackendTimeout(
        "the model server did not answer in time"
    ),
    grpc.StatusCode.RESOURCE_EXHAUSTED: lambda: QueueFull(
        "the model server is overloaded; retry later"
    ),
    grpc.StatusCode.NOT_FOUND: lambda: ModelNotReady(
        "the model server is not serving the skin model right now; retry shortly"
    ),
}


def _tensor_info(signature: Any) -> dict[str, tuple[str, Shape]]:
    return {
        key: (tf.dtypes.as_dtype(info.dtype).name, _shape(info.tensor_shape))
        for key, info in signature.items()
    }


def _shape(tensor_shape: Any) -> Shape:
    return tuple(None if dim.size < 0 else int(dim.size) for dim in tensor_shape.dim)


class TfServingBackend(CardBackend[ModelCard]):
    """Sends each batch to TF Serving's `Predict` and reads the probabilities back.

    The model card comes from SKIN_MODEL_DIR, the same directory TF Serving's
    `--model_base_path` points at; `load` asks TF Serving for the model's metadata and
    checks that the served signature matches the card.
    """

    name = "tfserving"
    card_type = ModelCard
    domain = SKIN
    setting = MODEL_DIR_SETTING

    def __init__(self, model_dir: Path, settings: TfServingSettings) -> None:
        super().__init__(model_dir)
        self._settings = settings
        self._channel = grpc.insecure_channel(
            settings.address, options=MODEL_SERVER_CHANNEL_OPTIONS
        )
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._input_key = ""
        self._output_key = ""
        self._label_count = 0

    def _model_spec(self) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(
            name=self._settings.model_name, signature_name=self._settings.signature_name
        )
        if self._settings.model_version is not None:
            spec.version.value = self._settings.model_version
        return spec

    def _describe_model(self) -> str:
        version = self._settings.model_version
        latest = "its latest version" if version is None else f"version {version}"
        return f"model {self._settings.model_name!r} ({latest})"

    def open(self, card: ModelCard) -> tuple[PredictFn, int]:
        """Checks that TF Serving serves the model with the card's signature.

        Raises:
            ModelNotReady: TF Serving cannot be reached, does not serve the model, or
                serves a signature unlike the card's.
        """
        # The signature is whatever SKIN_TFSERVING_SIGNATURE names; the card keeps the rest.
        card = dataclasses.replace(card, signature_name=self._settings.signature_name)
        logger.info(
            "asking TF Serving at %s for %s", self._settings.address, self._describe_model()
        )
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=self._model_spec(), metadata_field=[SIGNATURE_DEF_FIELD]
        )
        request.model_spec.ClearField("signature_name")
        try:
            response = self._stub.GetModelMetadata(request, timeout=self._settings.timeout_s)
        except grpc.RpcError as exc:
            raise self._load_error(exc) from None
        signatures = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata[SIGNATURE_DEF_FIELD].Unpack(signatures):
            raise ModelMismatch("TF Serving's metadata holds no signature map")
        signature = signatures.signature_def.get(card.signature_name)
        if signature is None:
            raise ModelMismatch(
                f"TF Serving's {self._describe_model()} has no signature "
                f"{card.signature_name!r} (SKIN_TFSERVING_SIGNATURE)"
            )
        check_signature(
            card, inputs=_tensor_info(signature.inputs), outputs=_tensor_info(signature.outputs)
        )
        self._input_key, self._output_key = card.input_key, card.output_key
        self._label_count = len(card.labels)
        return self._send, response.model_spec.version.value

    def _load_error(self, exc: grpc.RpcError) -> ModelNotReady:
        code, details = call_status(exc)
        logger.warning("TF Serving GetModelMetadata failed: %s %s", code.name, details)
        if code == grpc.StatusCode.UNAVAILABLE:
            return ModelNotReady("TF Serving cannot be reached at SKIN_TFSERVING_ADDRESS")
        if code == grpc.StatusCode.NOT_FOUND:
            return ModelNotReady(
                f"TF Serving does not serve {self._describe_model()}; check "
                "SKIN_TFSERVING_MODEL_NAME and SKIN_TFSERVING_MODEL_VERSION against its "
                "--model_name and model folders"
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ModelNotReady("TF Serving did not answer within SKIN_TFSERVING_TIMEOUT_SECONDS")
        return ModelNotReady(f"TF Serving refused to describe the model ({code.name})")

    def _send(self, batch: np.ndarray) -> np.ndarray:
        """Returns the class probabilities of each preprocessed image of the batch.

        Raises:
            BackendUnavailable: TF Serving cannot be reached.
            BackendTimeout: TF Serving did not answer within SKIN_TFSERVING_TIMEOUT_SECONDS.
            QueueFull: TF Serving is overloaded.
            ModelNotReady: TF Serving no longer serves the model.
            BackendRejected: TF Serving refused the request or answered something else.
        """
        info = self.info()
        request = predict_pb2.PredictRequest(
            model_spec=self._model_spec(), output_filter=[self._output_key]
        )
        request.inputs[self._input_key].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.float32))
        try:
            response = self._stub.Predict(request, timeout=self._settings.timeout_s)
        except grpc.RpcError as exc:
            raise self._predict_error(exc) from None
        if self._output_key not in response.outputs:
            raise BackendRejected(f"the model server's answer has no {self._output_key!r} output")
        probabilities: np.ndarray = tf.make_ndarray(response.outputs[self._output_key])
        if probabilities.shape != (len(batch), self._label_count):
            raise BackendRejected(
                f"the model server answered shape {list(probabilities.shape)} for "
                f"{len(batch)} images and {self._label_count} labels"
            )
        served = str(response.model_spec.version.value)
        if response.model_spec.HasField("version") and served != info.version:
            # TF Serving moved to another version on its own: report the one that answered.
            logger.info("TF Serving now serves version %s (was %s)", served, info.version)
            self._info = dataclasses.replace(info, version=served)
        return probabilities.astype(np.float32, copy=False)

    def _predict_error(self, exc: grpc.RpcError) -> MedimgError:
        code, details = call_status(exc)
        logger.warning("TF Serving Predict failed: %s %s", code.name, details)
        make = _PREDICT_ERRORS.get(code)
        if make is not None:
            return make()
        return BackendRejected(
            f"the model server refused the request ({code.name}); the service log has details"
        )

    def close(self) -> None:
        """Closes the channel to TF Serving."""
        self._channel.close()
