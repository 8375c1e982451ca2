"""Production-size skin: a random-weight MobileNetV2 at 224 px, measured as skin_bench does.

Part of tests/bench/production_bench.py. `keras.applications.MobileNetV2` (weights=None,
224x224x3 in, one softmax output per skin label) is exported with skin_service's own
`export_model` (a SavedModel in TF Serving's layout) beside its model card, into a
temporary directory. Then, as skin_bench measures the demo model: (a) the model-only
limit and (a') the decode-included limit (tests/bench/skin_limit.py, the 16 phone-size
JPEGs) on that model in this process, and (b) skin_service started with SKIN_MODEL_DIR
set to it, through the gateway, at concurrency 32. Row: (b) / (a') >= 0.9, recorded as
the bench `production_skin`. TensorFlow flushes subnormal floats to zero on its own, so
random weights cannot slow it through denormals. BENCH_QUICK=1: fewer calls, shorter
limits. Targets are reported, not asserted.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from skin_service import domain
from skin_service.model_card import ModelCard
from tests.bench import report, skin_bench, skin_limit
from tests.bench.gateway_bench import Result, Workload, start_stack
from tests.bench.production_bench import SEED, random_card_fields

TARGET_VS_LIMIT = 0.9
SIZE = 224
CONCURRENCY = 32


@dataclass(frozen=True)
class Sizes:
    """How much the part does: the full run's, or BENCH_QUICK's short form."""

    calls: int  # Diagnose calls at concurrency 32
    limit_s: float  # seconds per in-process limit


FULL = Sizes(calls=1600, limit_s=8.0)
QUICK = Sizes(calls=256, limit_s=3.0)


def write_model(model_dir: Path) -> Path:
    """Writes a random-weight MobileNetV2 at 224 px as skin_service's model dir; returns it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from skin_service.model import export_model

    keras.utils.set_random_seed(SEED)
    network = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3),
        weights=None,
        classes=len(domain.LABELS),
        classifier_activation="softmax",
    )
    model_dir.mkdir(parents=True)
    export_model(network, model_dir, 1)
    card = ModelCard(
        name="skin-mobilenetv2-random",
        labels=tuple(domain.LABELS),
        input_size=SIZE,
        training={"architecture": "keras.applications.MobileNetV2, weights=None"},
        **random_card_fields(),
    )
    card.save(model_dir)
    ModelCard.load(model_dir)  # as the service reads it
    return model_dir


async def served(model_dir: Path, images: list[bytes], calls: int) -> tuple[Result, float]:
    """Returns skin_service's Diagnose calls at 32 through the gateway, and its peak RSS."""
    env = {"SKIN_MODEL_DIR": str(model_dir)}
    with tempfile.TemporaryDirectory() as state_dir:
        skin, gateway = start_stack(Path(state_dir), Workload("skin", "skin_service", "SKIN_", env))
        try:
            result = await skin_bench.measure(gateway.address, images, CONCURRENCY, calls)
            rss = skin_bench.peak_rss_mib(skin)
        finally:
            gateway.terminate()
            skin.terminate()
    return result, rss


def main() -> int:
    """Builds the model, measures it, prints the table and records the row; 0 unless it crashed."""
    started = time.perf_counter()
    sizes = QUICK if report.quick() else FULL
    images = skin_bench.phone_jpegs()
    with tempfile.TemporaryDirectory(prefix="production-skin-") as tmp:
        print(f"building skin: MobileNetV2, {SIZE} px, random weights ...", flush=True)
        model_dir = write_model(Path(tmp) / "skin-mobilenetv2")
        backend = skin_limit.load_backend(model_dir)
        model_only = skin_limit.model_only(backend, sizes.limit_s)
        limit = skin_limit.decode_included(backend, images, sizes.limit_s)
        del backend
        result, rss = asyncio.run(served(model_dir, images, sizes.calls))
    print()
    print(f"production-size skin: MobileNetV2 at {SIZE} px, random weights")
    print(f"{'':<44} {'conc':>5} {'images/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    label = f"(a) model-only limit, batch {skin_limit.BATCH}, no decode"
    print(f"{label:<44} {'-':>5} {model_only:>10.0f}")
    label = f"(a') decode-included limit, {skin_limit.threads()} threads"
    print(f"{label:<44} {'-':>5} {limit:>10.0f}")
    print(skin_bench.row("(b) skin_service via gateway", CONCURRENCY, result))
    print(f"peak RSS: skin_service {rss:.0f} MiB")
    row = report.ratio(
        "production-size skin via gateway c=32 / decode-included limit",
        report.Figure("MobileNetV2 via gateway c=32", result.throughput, "img/s"),
        report.Figure("decode-included limit", limit, "img/s"),
        ">=",
        TARGET_VS_LIMIT,
        report.Figure("model-only limit (beside)", model_only, "img/s"),
    )
    notes = {
        "model": f"MobileNetV2 {SIZE} px, random weights",
        "calls_at_32": sizes.calls,
        "limit_seconds": sizes.limit_s,
        "p50_ms_at_32": result.percentile_ms(50),
        "p99_ms_at_32": result.percentile_ms(99),
        "peak_rss_mib": rss,
    }
    report.finish("production_skin", [row], started, notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
