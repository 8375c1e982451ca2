"""A tiny SavedModel with the skin model's signature, for when the shipped model is absent."""

from __future__ import annotations

from pathlib import Path

from skin_service.domain import LABELS
from skin_service.model_card import ModelCard

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_MODEL_DIR = ROOT / "skin_service" / "models" / "skin-demo"
FIXTURE_INPUT_SIZE = 32


def shipped_model_present() -> bool:
    """Tells whether the trained demo model ships in this checkout."""
    return (SHIPPED_MODEL_DIR / "model_card.json").is_file()


def export_fixture_model(
    model_dir: Path, *, input_size: int = FIXTURE_INPUT_SIZE, version: int = 1
) -> Path:
    """Writes `<model_dir>/<version>/` and its card: the shipped model's layout and contract.

    The weights are seeded random numbers: the model means nothing, but its signature is
    the one the service and TF Serving rely on (`serving_default`, input `images`
    float32 [None, S, S, 3], output `probabilities` float32 [None, 3]).
    """
    import keras
    import tensorflow as tf

    inputs = keras.Input((input_size, input_size, 3))
    features = keras.layers.Conv2D(
        8, 3, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(seed=1)
    )(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    outputs = keras.layers.Dense(
        len(LABELS),
        activation="softmax",
        # Large weights spread the probabilities, so rankings differ from image to image.
        kernel_initializer=keras.initializers.RandomNormal(stddev=8.0, seed=2),
        bias_initializer=keras.initializers.RandomNormal(stddev=0.5, seed=3),
    )(pooled)
    model = keras.Model(inputs, outputs)

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"probabilities": model(images, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[
            tf.TensorSpec([None, input_size, input_size, 3], tf.float32, name="images")
        ],
    )
    archive.write_out(str(model_dir / str(version)), verbose=False)
    ModelCard(
        name="skin-fixture",
        version=version,
        labels=LABELS,
        input_size=input_size,
        data="none: seeded random weights, for tests",
        demo_model=True,
        trained_on="2026-01-01",
    ).save(model_dir)
    return model_dir
