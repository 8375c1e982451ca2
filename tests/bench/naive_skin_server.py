"""A naive skin server for the benchmark: one image per call, no batching, as seed apps serve.

It loads the same SavedModel once and, for every call, decodes the image with the
same functions as skin_service and runs the model on a batch of one, on grpc's thread
pool. Test-only: it exists to measure what the dynamic batcher buys.
"""

from __future__ import annotations

import os
from concurrent import futures
from typing import Any

import grpc
import numpy as np
from medimg.v1 import diagnosis_service_pb2 as pb
from medimg.v1 import diagnosis_service_pb2_grpc as pb_grpc

from servicekit.classification import rank
from servicekit.images import ImageLimits, decode_image
from skin_service import domain
from skin_service.model_card import load_model_card
from skin_service.settings import DEFAULT_MODEL_DIR

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # after the log level, or TF floods the output


class NaiveSkinServicer(pb_grpc.DiagnosisServiceServicer):
    """Predicts each image alone, in the calling thread."""

    def __init__(self) -> None:
        self._card = load_model_card(DEFAULT_MODEL_DIR)
        model = tf.saved_model.load(str(DEFAULT_MODEL_DIR / str(self._card.version)))
        self._predict = model.signatures[self._card.signature_name]

    def Diagnose(self, request: pb.DiagnoseRequest, context: Any) -> pb.DiagnoseResponse:
        """Returns the diagnosis of one image, computed alone."""
        size = self._card.input_size
        image = decode_image(request.image, ImageLimits(), min_side=domain.decoded_side(size))
        batch = domain.preprocess(image, size)[np.newaxis]
        outputs = self._predict(**{self._card.input_key: tf.constant(batch)})
        ranked = rank(outputs[self._card.output_key].numpy()[0], self._card.labels)
        return pb.DiagnoseResponse(disease="skin", top_label=ranked.top_label)

    def GetModelInfo(
        self, request: pb.GetModelInfoRequest, context: Any
    ) -> pb.GetModelInfoResponse:
        """Not needed by the benchmark."""
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not served by the naive server")
        raise AssertionError("unreachable")


def main() -> None:
    """Serves on NAIVE_PORT until killed."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    pb_grpc.add_DiagnosisServiceServicer_to_server(NaiveSkinServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{os.environ['NAIVE_PORT']}")
    server.start()
    print("naive skin server ready", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
