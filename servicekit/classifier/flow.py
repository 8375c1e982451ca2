"""The steps of a classifier call, free of the servicer: start, readiness, answers."""

from __future__ import annotations

import asyncio

import numpy as np
from medimg.v1 import diagnosis_service_pb2

from servicekit import classification
from servicekit.backend import Backend, ModelInfo
from servicekit.batcher import DynamicBatcher
from servicekit.classifier.domain import ImageDomain
from servicekit.classifier.errors import ModelMismatch
from servicekit.errors import MedimgError, ModelNotReady

WARM_UP_TIMEOUT_S = 120.0


async def start_model(domain: ImageDomain, backend: Backend, batcher: DynamicBatcher) -> ModelInfo:
    """Loads the model, checks it fits the domain, starts the batcher and warms the model up.

    The warm-up is one blank input through the batcher, so the first caller does not
    pay for lazy initialisation, and a model that cannot take its own input or answers
    the wrong number of scores is refused before health says SERVING.

    Raises:
        ModelNotReady: the model cannot be loaded.
        ModelMismatch: its labels, or its answer to the blank input, are not the domain's.
    """
    await asyncio.to_thread(backend.load)
    info = backend.info()
    domain.check_model(info)
    await batcher.start()
    try:
        scores = await batcher.submit(domain.blank(info.input_height_px), timeout=WARM_UP_TIMEOUT_S)
        if scores.shape != (len(domain.labels),):
            raise ModelMismatch(
                f"the model answers {scores.shape} scores per image, "
                f"not one for each of the {len(domain.labels)} labels"
            )
    except MedimgError:
        await batcher.stop()
        raise
    except Exception as exc:  # a model that cannot take its own input: say so in one line
        await batcher.stop()
        raise ModelMismatch(f"the model fails on a blank input ({type(exc).__name__})") from exc
    return info


def ready_info(domain: ImageDomain, info: ModelInfo | None) -> ModelInfo:
    """Returns the started model's description; ModelNotReady while it is still starting."""
    if info is None:
        raise ModelNotReady(f"the {domain.disease} model is still loading; retry shortly")
    return info


def diagnose_response(
    domain: ImageDomain, scores: np.ndarray, info: ModelInfo
) -> diagnosis_service_pb2.DiagnoseResponse:
    """Returns the Diagnose answer for one input's scores: every label, highest first."""
    ranked = classification.rank(scores, domain.labels)
    return classification.to_diagnose_response(ranked, info, disease=domain.disease)


def model_info_response(
    domain: ImageDomain, info: ModelInfo
) -> diagnosis_service_pb2.GetModelInfoResponse:
    """Returns the GetModelInfo answer describing the loaded model."""
    model = classification.to_model_info(info, disease=domain.disease)
    return diagnosis_service_pb2.GetModelInfoResponse(model=model)
