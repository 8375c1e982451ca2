"""The skin-lesion classifier: a small Keras CNN and its SavedModel export."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from servicekit.classifier.savedmodel import export_keras
from skin_service.domain import DEFAULT_INPUT_SIZE, LABELS
from skin_service.model_card import INPUT_KEY, OUTPUT_KEY, SIGNATURE_NAME, latest_version


def build_model(
    input_size: int = DEFAULT_INPUT_SIZE, labels: Sequence[str] = LABELS
) -> keras.Model:
    """Returns an uncompiled CNN: (size, size, 3) floats in [0, 1] in, label softmax out.

    Small enough to train in minutes on two CPU cores. The augmentation layers act only
    in training; at inference (and in the export) they pass images through unchanged.
    """
    images = keras.Input((input_size, input_size, 3), name=INPUT_KEY)
    x = _augmentation()(images)
    # A strided stem halves the resolution at once: the lesion's features are not fine.
    x = layers.Conv2D(24, 3, strides=2, padding="same", use_bias=False)(x)
    x = _normalised_relu(x)
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = _normalised_relu(x)
        x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(x)
        x = _normalised_relu(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(len(labels), activation="softmax", name=OUTPUT_KEY)(x)
    return keras.Model(images, outputs, name="skin_lesion_cnn")


def _augmentation() -> keras.Sequential:
    # A lesion has no up or down; cameras and lights differ. Brightness and contrast stay
    # small because colour is one of the features that tell the classes apart.
    return keras.Sequential(
        [
            layers.RandomFlip("horizontal_and_vertical"),
            layers.RandomRotation(0.05, fill_mode="reflect"),
            layers.RandomBrightness(0.1, value_range=(0.0, 1.0)),
            layers.RandomContrast(0.1, value_range=(0.0, 1.0)),
        ],
        name="augmentation",
    )


def _normalised_relu(x: keras.KerasTensor) -> keras.KerasTensor:
    # A faster-moving average than the default 0.99: runs here are only a few hundred steps.
    return layers.ReLU()(layers.BatchNormalization(momentum=0.9)(x))


def export_model(model: keras.Model, model_dir: Path, version: int) -> Path:
    """Writes the model as a SavedModel into model_dir/version, TF Serving's layout.

    servicekit.classifier.savedmodel.export_keras: the one signature maps `images`
    (float32 [None, S, S, 3] in [0, 1]) to `probabilities`; an existing version folder
    is replaced only once the new one is complete. Returns the version folder.
    """
    return export_keras(model, model_dir / str(version), int(model.input_shape[1]))


def load_for_inference(
    model_dir: Path, version: int | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """Returns batch -> probabilities for a version under model_dir (default: the latest).

    It calls the exported serving signature, exactly what TF Serving would run.
    """
    chosen = latest_version(model_dir) if version is None else version
    loaded = tf.saved_model.load(str(model_dir / str(chosen)))
    signature = loaded.signatures[SIGNATURE_NAME]

    def predict(batch: np.ndarray) -> np.ndarray:
        outputs = signature(**{INPUT_KEY: tf.constant(batch, dtype=tf.float32)})
        return np.asarray(outputs[OUTPUT_KEY].numpy())

    # The signature's concrete function needs the loaded object kept alive.
    predict.loaded = loaded  # type: ignore[attr-defined]
    return predict
