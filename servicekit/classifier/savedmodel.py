"""SavedModels in TF Serving's layout: their card, export, signature check and backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from servicekit.batcher import PredictFn
from servicekit.classifier.backends import CardBackend
from servicekit.classifier.card import CARD_FILE, ModelCard
from servicekit.classifier.errors import ModelMismatch
from servicekit.errors import ModelNotReady
from servicekit.files import staged_folder

# TensorFlow is imported only where a model is exported or loaded, so that reading a card
# (settings, tools, tests) stays light.
SIGNATURE_NAME = "serving_default"
INPUT_KEY = "images"
OUTPUT_KEY = "probabilities"

# A tensor's shape as a model server reports it; None for a dimension of any size.
Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class SavedModelCard(ModelCard):
    """A card for a SavedModel: `<model_dir>/<version>/saved_model.pb`, the card beside.

    The signature's name and keys are on the card, so TF Serving and the embedded
    backend call the same signature, and a service checks it before serving.
    """

    signature_name: str = SIGNATURE_NAME
    input_key: str = INPUT_KEY
    output_key: str = OUTPUT_KEY

    def details(self) -> Sequence[str]:
        """Returns the Markdown lines on the signature's input, output and files."""
        size = self.input_size
        return (
            f"- Input: `{self.input_key}`, float32 [batch, {size}, {size}, 3], RGB in [0, 1]",
            f"- Output: `{self.output_key}`, float32 [batch, {len(self.labels)}], softmax",
            f"- Signature: `{self.signature_name}`; files: `<version>/saved_model.pb` "
            f"(TF Serving layout), `{CARD_FILE}`",
        )


CardT = TypeVar("CardT", bound=SavedModelCard)


def latest_version(model_dir: Path) -> int:
    """Returns the highest numeric version folder under model_dir, as TF Serving picks it.

    Raises:
        FileNotFoundError: there is no version folder with a saved_model.pb.
    """
    versions = [
        int(child.name)
        for child in model_dir.iterdir()
        if child.name.isdigit() and (child / "saved_model.pb").is_file()
    ] if model_dir.is_dir() else []  # fmt: skip
    if not versions:
        raise FileNotFoundError(f"no SavedModel version folder under {model_dir}")
    return max(versions)


def export_keras(model: Any, target: Path, input_size: int, *, channels: int = 3) -> Path:
    """Writes a Keras model as the SavedModel folder target (`<model_dir>/<version>`).

    The one signature, SIGNATURE_NAME, maps INPUT_KEY (float32 [None, S, S, channels]
    in [0, 1]) to OUTPUT_KEY (float32 [None, labels]), with the model in inference mode.
    An existing folder is replaced only once the new one is complete.
    """
    import keras  # only the training side needs Keras; serving loads the SavedModel alone
    import tensorflow as tf

    def serve(images: Any) -> dict[str, Any]:
        return {OUTPUT_KEY: model(images, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name=SIGNATURE_NAME,
        fn=serve,
        input_signature=[
            tf.TensorSpec([None, input_size, input_size, channels], tf.float32, name=INPUT_KEY)
        ],
    )
    with staged_folder(target) as staging:
        archive.write_out(str(staging), verbose=False)
    return target


def check_signature(
    card: SavedModelCard,
    *,
    inputs: Mapping[str, tuple[str, Shape]],
    outputs: Mapping[str, tuple[str, Shape]],
    channels: int = 3,
) -> None:
    """Checks that a signature takes and returns what the card promises.

    Args:
        card: the model card.
        inputs: the signature's inputs, as key -> (dtype name, shape).
        outputs: the signature's outputs, as key -> (dtype name, shape).
        channels: the channels of one input.

    Raises:
        ModelMismatch: a key is missing, or a dtype or shape differs.
    """
    size = card.input_size
    expected = {
        "input": (card.input_key, inputs, (None, size, size, channels)),
        "output": (card.output_key, outputs, (None, len(card.labels))),
    }
    for kind, (key, tensors, shape) in expected.items():
        if key not in tensors:
            raise ModelMismatch(
                f"signature {card.signature_name!r} has no {kind} {key!r} "
                f"(it has {', '.join(sorted(tensors)) or 'none'})"
            )
        dtype, actual = tensors[key]
        if dtype != "float32" or actual != shape:
            raise ModelMismatch(
                f"{kind} {key!r} of signature {card.signature_name!r} is {dtype} {_text(actual)}; "
                f"the model card expects float32 {_text(shape)}"
            )


def _text(shape: Shape) -> str:
    return "[" + ", ".join("None" if dim is None else str(dim) for dim in shape) + "]"


def _shape(spec: Any) -> Shape:
    return tuple(spec.shape.as_list())


def load_signature(model_dir: Path, version: int, card: SavedModelCard) -> PredictFn:
    """Returns batch -> scores through the card's signature of one version under model_dir.

    It calls the exported serving signature, exactly what TF Serving would run.

    Raises:
        ModelNotReady: the version cannot be loaded or lacks the signature.
        ModelMismatch: the signature is unlike the card's.
    """
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(model_dir / str(version)))
    except (OSError, ValueError, tf.errors.OpError) as exc:
        raise ModelNotReady(
            f"the SavedModel version {version} cannot be loaded ({type(exc).__name__})"
        ) from exc
    if card.signature_name not in loaded.signatures:
        raise ModelNotReady(
            f"the SavedModel has no signature {card.signature_name!r} "
            f"(it has {', '.join(sorted(loaded.signatures)) or 'none'})"
        )
    signature = loaded.signatures[card.signature_name]
    _, input_specs = signature.structured_input_signature
    check_signature(
        card,
        inputs={k: (spec.dtype.name, _shape(spec)) for k, spec in input_specs.items()},
        outputs={k: (s.dtype.name, _shape(s)) for k, s in signature.structured_outputs.items()},
    )

    def predict(batch: np.ndarray) -> np.ndarray:
        outputs = signature(**{card.input_key: tf.constant(batch, dtype=tf.float32)})
        return np.asarray(outputs[card.output_key].numpy())

    # The signature's concrete function needs the loaded object kept alive.
    predict.loaded = loaded  # type: ignore[attr-defined]
    return predict


class SavedModelBackend(CardBackend[CardT]):
    """The `embedded` backend of a SavedModel: the latest version, run in process.

    The directory has TF Serving's layout, so the artifact served here is the one TF
    Serving serves. A service subclasses it to name its card type, domain and setting.
    """

    def open(self, card: CardT) -> tuple[PredictFn, int]:
        """Loads the latest version and checks its signature against the card."""
        try:
            version = latest_version(self._model_dir)
        except FileNotFoundError:
            raise ModelNotReady(
                f"{self.setting} has no version folder with a saved_model.pb"
            ) from None
        return load_signature(self._model_dir, version, card), version
