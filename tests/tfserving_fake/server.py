"""TensorFlow Serving's PredictionService (Predict, GetModelMetadata) around a SavedModel.

It answers the way `tensorflow_model_server` does for one model with the default
version policy (the latest version folder): the same request and response messages,
the same status codes for the same mistakes, outputs serialised as TF Serving's
default does (typed value fields, not `tensor_content`). What it does not do: Classify,
Regress, MultiInference, model config files, batching, or version changes at run time.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from skin_service.model_card import latest_version

DEFAULT_SIGNATURE = "serving_default"  # what TF Serving calls when the request names none
SIGNATURE_DEF_FIELD = "signature_def"


def _abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    context.abort(code, message)
    raise AssertionError("context.abort returns only by raising")


def _as_proto_field(array: np.ndarray) -> tensor_pb2.TensorProto:
    """Returns the tensor as TF Serving's Predict sends it by default (Tensor::AsProtoField)."""
    if array.dtype != np.float32:
        return tf.make_tensor_proto(array)  # the skin model answers float32 only
    proto = tensor_pb2.TensorProto(
        dtype=tf.float32.as_datatype_enum,
        tensor_shape=tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in array.shape]
        ),
    )
    proto.float_val.extend(array.ravel().tolist())
    return proto


class FakePredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):  # type: ignore[misc]
    """Serves the latest version under model_base_path as model_name."""

    def __init__(
        self, model_base_path: Path, *, model_name: str, tensor_content: bool = False
    ) -> None:
        self.model_name = model_name
        self.version = latest_version(model_base_path)
        path = model_base_path / str(self.version)
        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
        # TF Serving reports the signatures of the "serve" MetaGraph, as written on disk.
        self._signature_defs = dict(saved_model.meta_graphs[0].signature_def)
        self._loaded = tf.saved_model.load(str(path))
        self._tensor_content = tensor_content
        self.predict_calls = 0
        # Faults a test injects: a status every call gets, and a delay before answering.
        self.fault: tuple[grpc.StatusCode, str] | None = None
        self.delay_s = 0.0

    def _servable(self, spec: model_pb2.ModelSpec, context: grpc.ServicerContext) -> None:
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fault is not None:
            _abort(context, *self.fault)
        wanted = spec.version.value if spec.HasField("version") else None
        if spec.name != self.model_name or wanted not in (None, self.version):
            which = f"Latest({spec.name})" if wanted is None else f"Specific({spec.name}, {wanted})"
            _abort(context, grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {which}")

    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context: Any
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        """Returns the served model's signature map, as TF Serving does."""
        self._servable(request.model_spec, context)
        if not request.metadata_field:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "GetModelMetadataRequest must specify at least one metadata_field",
            )
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                _abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Metadata field {field} is not supported",
                )
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in self._signature_defs.items():
            signatures.signature_def[key].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = self.version
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signatures)
        return response

    def Predict(
        self, request: predict_pb2.PredictRequest, context: Any
    ) -> predict_pb2.PredictResponse:
        """Runs the requested signature on the request's tensors."""
        self._servable(request.model_spec, context)
        self.predict_calls += 1
        name = request.model_spec.signature_name or DEFAULT_SIGNATURE
        signature_def = self._signature_defs.get(name)
        if signature_def is None or name not in self._loaded.signatures:
            _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{name}" not found.',
            )
        expected, sent = set(signature_def.inputs), set(request.inputs)
        if sent != expected:
            _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. "
                f"Missing but required: {{{','.join(sorted(expected - sent))}}}.",
            )
        for alias in request.output_filter:
            if alias not in signature_def.outputs:
                _abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output tensor alias not found in signature: {alias} Outputs expected to be "
                    f"in the set {{{','.join(sorted(signature_def.outputs))}}}.",
                )
        feeds = {}
        for alias, proto in request.inputs.items():
            try:
                array = tf.make_ndarray(proto)
            except (TypeError, ValueError):
                _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"tensor parsing error: {alias}")
            wanted = tf.dtypes.as_dtype(signature_def.inputs[alias].dtype)
            if tf.dtypes.as_dtype(array.dtype) != wanted:
                _abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Expects arg[0] to be {wanted.name} but "
                    f"{tf.dtypes.as_dtype(array.dtype).name} is provided",
                )
            feeds[alias] = tf.constant(array)
        try:
            outputs = self._loaded.signatures[name](**feeds)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc).splitlines()[0])
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.model_name
        response.model_spec.version.value = self.version
        response.model_spec.signature_name = name
        for alias in request.output_filter or signature_def.outputs:
            array = outputs[alias].numpy()
            encoded = (
                tf.make_tensor_proto(array) if self._tensor_content else _as_proto_field(array)
            )
            response.outputs[alias].CopyFrom(encoded)
        return response


class FakeTfServing:
    """A gRPC server on loopback with the fake PredictionService; start() returns its port."""

    def __init__(
        self,
        model_base_path: Path,
        *,
        model_name: str = "skin",
        host: str = "127.0.0.1",
        port: int = 0,
        tensor_content: bool = False,
    ) -> None:
        self.service = FakePredictionService(
            model_base_path, model_name=model_name, tensor_content=tensor_content
        )
        self._host = host
        self._requested_port = port
        self._server: grpc.Server | None = None
        self._stopped = threading.Event()
        self.port = 0

    @property
    def address(self) -> str:
        """Returns host:port, what SKIN_TFSERVING_ADDRESS would hold."""
        return f"{self._host}:{self.port}"

    def start(self) -> int:
        """Starts serving and returns the bound port."""
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="fake-tfserving"),
            options=[("grpc.max_receive_message_length", -1), ("grpc.so_reuseport", 0)],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self.service, server)
        self.port = server.add_insecure_port(f"{self._host}:{self._requested_port}")
        server.start()
        self._server = server
        return self.port

    def stop(self, grace: float | None = None) -> None:
        """Stops serving; calls in flight get `grace` seconds."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None

    def wait_for_termination(self) -> None:
        """Blocks until the server stops."""
        if self._server is not None:
            self._server.wait_for_termination()

    def __enter__(self) -> FakeTfServing:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(0)
