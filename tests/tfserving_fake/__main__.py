"""Runs the fake TF Serving: `python -m tests.tfserving_fake --port 8500 --model_name skin ...`."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from tests.tfserving_fake.server import FakeTfServing


def main() -> int:
    """Serves until SIGTERM; takes the flags of `tensorflow_model_server` it understands."""
    parser = argparse.ArgumentParser(prog="python -m tests.tfserving_fake")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: any free one)")
    parser.add_argument("--model_name", default="default")
    parser.add_argument("--model_base_path", type=Path, required=True)
    args = parser.parse_args()
    fake = FakeTfServing(args.model_base_path, model_name=args.model_name, port=args.port)
    port = fake.start()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        fake.stop(1)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"fake TF Serving: model {args.model_name!r} on 127.0.0.1:{port}", flush=True)
    fake.wait_for_termination()
    return 0


if __name__ == "__main__":
    sys.exit(main())
