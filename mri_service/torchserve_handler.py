"""TorchServe handler of the MRI slice models, and the wire format it shares with the backend.

Wire format (TorchServe's gRPC `Predictions`, one request = one batch of slices):

- request: `input["slices"]` holds the bytes of `np.save` of a float32 array
  (N, C, S, S) in [0, 255], exactly what `domain.model_inputs` makes; C and S must
  be the archive's `in_channels` and `input_size`. Read with `allow_pickle=False`.
- response: `prediction` holds the bytes of `np.save` of a float32 array (N,): the
  tumour probability of each slice, in order.

TorchServe's own `batch_size` stays 1: the service already batches slices, and a
TorchServe batch of several requests would only be answered request by request.

Inside TorchServe this file runs on its own: the archive (see `mri_service.archive`)
packs it with `model.py` (a copy of `mri_service/model.py`), `slice_model.json` and
the state_dict, and TorchServe's worker imports this module without `mri_service`
being installed. So the module imports only numpy and the standard library at the
top; torch is imported when the model loads (which also keeps the service's
`torchserve` backend, which imports the codec below, free of torch), the network's
class is loaded from the archive's `model.py` by path, and TorchServe's
`PredictionException` only when a request is refused.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

INPUT_KEY = "slices"
CONFIG_FILE = "slice_model.json"  # written by mri_service.archive
MODEL_SOURCE = "model.py"  # mri_service/model.py, packed as an extra file
# TorchServe answers a PredictionException with its code; 400 reaches a gRPC
# caller as INVALID_ARGUMENT, where any other exception becomes 503 "Prediction failed".
BAD_REQUEST = 400


@dataclass(frozen=True)
class SliceModelConfig:
    """What the handler needs to rebuild the network around the packed state_dict."""

    model: str  # "single" or "scantype"
    in_channels: int
    width: float
    input_size: int
    version: int

    def to_json(self) -> str:
        """Returns the config as the archive stores it."""
        return json.dumps(self.__dict__, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SliceModelConfig:
        """Reads a config written by `to_json`."""
        raw = json.loads(text)
        return cls(
            model=str(raw["model"]),
            in_channels=int(raw["in_channels"]),
            width=float(raw["width"]),
            input_size=int(raw["input_size"]),
            version=int(raw["version"]),
        )


def encode_array(array: np.ndarray) -> bytes:
    """Returns the `np.save` bytes of an array, never pickled."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def decode_array(payload: bytes | bytearray) -> np.ndarray:
    """Returns the array in `np.save` bytes.

    Raises:
        ValueError: the bytes are not an `.npy` array, or hold Python objects.
    """
    try:
        # read_array, unlike np.load, reads nothing but the .npy format (no .npz zips).
        array: np.ndarray = np.lib.format.read_array(io.BytesIO(payload), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"not an .npy array ({exc})") from None
    return array


def check_slices(slices: np.ndarray, config: SliceModelConfig) -> None:
    """Checks a decoded request against the model.

    Raises:
        ValueError: a message that says what the batch should have been.
    """
    expected = f"(N, {config.in_channels}, {config.input_size}, {config.input_size})"
    if slices.dtype != np.float32:
        raise ValueError(f"slices must be float32, got {slices.dtype}")
    if slices.ndim != 4 or slices.shape[1:] != (
        config.in_channels,
        config.input_size,
        config.input_size,
    ):
        raise ValueError(f"slices must have shape {expected}, got {list(slices.shape)}")
    if slices.shape[0] == 0:
        raise ValueError("slices hold no slice")
    if not np.isfinite(slices).all():
        raise ValueError("slices hold NaN or infinite values")


def _refusal(message: str) -> Exception:
    """Returns the exception that makes TorchServe answer 400 with this message."""
    try:
        from ts.utils.util import PredictionException  # type: ignore[import-untyped]
    except ImportError:  # outside TorchServe
        return ValueError(message)
    refusal: Exception = PredictionException(message, BAD_REQUEST)
    return refusal


def _load_network_class(source: Path) -> Any:
    """Returns SliceClassifier from the archive's copy of mri_service/model.py."""
    spec = importlib.util.spec_from_file_location("mri_archive_slice_model", source)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {source.name} from the model archive")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SliceClassifier


class SliceHandler:
    """Loads one slice model from an unpacked archive and answers batches of slices."""

    def __init__(self) -> None:
        self.config: SliceModelConfig | None = None
        self._model: torch.nn.Module | None = None
        self._device = "cpu"

    @property
    def initialized(self) -> bool:
        """Returns True once the model is loaded."""
        return self._model is not None

    def initialize(self, context: Any) -> None:
        """Builds the network from the archive's config and loads its state_dict.

        `context` is TorchServe's `ts.context.Context`: `system_properties["model_dir"]`
        (the unpacked archive), `system_properties["gpu_id"]` (set by TorchServe when it
        gives this worker a GPU) and `manifest` are read. On a GPU the model runs on the
        worker's device; the answer is the same float32 probabilities either way.
        """
        import torch

        model_dir = Path(context.system_properties["model_dir"])
        config = SliceModelConfig.from_json((model_dir / CONFIG_FILE).read_text())
        network = _load_network_class(model_dir / MODEL_SOURCE)
        model = network(config.in_channels, width=config.width)
        weights = model_dir / context.manifest["model"]["serializedFile"]
        # weights_only: a state_dict is plain tensors; never unpickle arbitrary objects.
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        gpu_id = context.system_properties.get("gpu_id")
        if gpu_id is not None and torch.cuda.is_available():
            self._device = f"cuda:{gpu_id}"
        self._model = model.to(self._device).eval()
        self.config = config
        logger.info(
            "loaded MRI %s model version %d on %s; torch uses %d threads",
            config.model,
            config.version,
            self._device,
            torch.get_num_threads(),
        )

    def predict(self, slices: np.ndarray) -> np.ndarray:
        """Returns float32 (N,) probabilities for checked float32 (N, C, S, S) slices."""
        import torch

        if self._model is None:
            raise RuntimeError("the handler is not initialized")
        with torch.inference_mode():
            logits = self._model(torch.from_numpy(slices).to(self._device))
            probabilities: np.ndarray = torch.sigmoid(logits).cpu().numpy()
        return probabilities.astype(np.float32, copy=False).reshape(-1)

    def handle(self, requests: Sequence[Mapping[str, Any]]) -> list[bytes]:
        """Answers each TorchServe request of the batch with its encoded probabilities."""
        if self.config is None:
            raise RuntimeError("the handler is not initialized")
        answers = []
        for request in requests:
            payload = request.get(INPUT_KEY)
            if not isinstance(payload, bytes | bytearray):
                raise _refusal(f"the request has no {INPUT_KEY!r} input of .npy bytes")
            try:
                slices = decode_array(payload)
                check_slices(slices, self.config)
            except ValueError as exc:
                raise _refusal(f"{self.config.model} model: {exc}") from None
            answers.append(encode_array(self.predict(slices)))
        return answers


_handler = SliceHandler()


def handle(data: Sequence[Mapping[str, Any]] | None, context: Any) -> list[bytes] | None:
    """TorchServe's entry point: loads the model when data is None, else answers data."""
    if not _handler.initialized:
        _handler.initialize(context)
    if data is None:
        return None
    return _handler.handle(data)
