"""Production-size models beside the demo ones: the same tables and ratios, bigger networks.

Run with `make bench` (or `python -m tests.bench.production_bench`). The shipped demo
models are small enough to train on two cores; a hospital would deploy networks of the
size below. Both are built with random weights (nothing is downloaded or trained),
written in the layout their service loads unchanged, into a temporary directory, and
measured as skin_bench and mri_bench measure the demo models:

- skin (tests/bench/production_skin.py): `keras.applications.MobileNetV2` at 224 px via
  skin_service (SKIN_MODEL_DIR) through the gateway at concurrency 32, over its
  decode-included limit: >= 0.9.
- MRI (tests/bench/production_mri.py): the full-width VGG19 pair at 256 px via
  mri_service (MRI_MODEL_DIR) through the gateway, end to end, over its decode-included
  limit: >= 0.9.

Each part runs in a process of its own, as every other bench does: in one probe on the
development machine, torch's convolutions ran about a third slower with TensorFlow loaded
(and a model run) in the same process, which would make the MRI limit lower than the
service it is compared with.
The parts record their rows as the benches `production_skin` and `production_mri` of
the same results.json (this runner sets BENCH_RUN_ID when make bench has not). Targets
are reported, not asserted; the exit status is 1 when a part crashed.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import uuid
from typing import Any

from tests.support.processes import ROOT

PARTS = ("tests.bench.production_skin", "tests.bench.production_mri")
SEED = 2026


def random_card_fields() -> dict[str, Any]:
    """Returns the model card fields that say the model is an untrained benchmark model."""
    return {
        "version": 1,
        "data": "none: random weights, a production-size benchmark model (tests/bench)",
        "demo_model": True,
        "trained_on": datetime.date.today().isoformat(),
        "evaluation": "none: random weights, for timing only",
    }


def main() -> int:
    """Runs each part in a child process; returns 1 when one of them failed."""
    env = dict(os.environ)
    env.setdefault("BENCH_RUN_ID", f"production-{uuid.uuid4().hex[:12]}")
    status = 0
    for module in PARTS:
        if subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=env).returncode:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
