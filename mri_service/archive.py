"""Builds the TorchServe archives (.mar) of an MRI model set from the weights the service loads.

`python -m mri_service.archive --model-dir DIR --out DIR [--prefix mri-]` writes
`<prefix>single.mar` and `<prefix>scantype.mar`. Each packs the handler
(`mri_service/torchserve_handler.py`), the network's definition
(`mri_service/model.py`, as `model.py`), a `slice_model.json` with what the handler
needs to rebuild the network, and the model's state_dict: the very `single.pt` /
`scantype.pt` the embedded backend loads, so both backends run the same numbers.
The archive's version is the model card's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from mri_service.domain import MODEL_NAMES
from mri_service.model_card import ModelCard, load_model_card, weights_file
from mri_service.torchserve_handler import CONFIG_FILE, MODEL_SOURCE, SliceModelConfig

PACKAGE_DIR = Path(__file__).resolve().parent
HANDLER = PACKAGE_DIR / "torchserve_handler.py"
NETWORK = PACKAGE_DIR / "model.py"
DEFAULT_PREFIX = "mri-"


class ArchiveError(RuntimeError):
    """torch-model-archiver failed; the message carries what it printed."""


def archive_name(model_name: str, prefix: str = DEFAULT_PREFIX) -> str:
    """Returns the TorchServe model name of one model of the set (the .mar's stem)."""
    return f"{prefix}{model_name}"


def slice_model_config(card: ModelCard, model_name: str) -> SliceModelConfig:
    """Returns what the handler needs to rebuild one model of the set."""
    return SliceModelConfig(
        model=model_name,
        in_channels=card.in_channels(model_name),
        width=card.width,
        input_size=card.input_size,
        version=card.version,
    )


def build_archive(
    model_dir: Path, card: ModelCard, model_name: str, out_dir: Path, *, prefix: str
) -> Path:
    """Builds one model's .mar in out_dir, replacing an older one; returns its path.

    Raises:
        ArchiveError: torch-model-archiver failed.
    """
    name = archive_name(model_name, prefix)
    with tempfile.TemporaryDirectory(prefix="mri-archive-") as staging:
        # The extra files keep their names inside the archive: model.py must be called
        # what the handler looks for, whatever mri_service calls its module.
        network = Path(staging) / MODEL_SOURCE
        network.write_bytes(NETWORK.read_bytes())
        config = Path(staging) / CONFIG_FILE
        config.write_text(slice_model_config(card, model_name).to_json())
        command = [
            # The archiver's console script is this entry point; running it with this
            # interpreter needs no PATH and finds the archiver installed beside mri_service.
            sys.executable,
            "-m",
            "model_archiver.model_packaging",
            "--model-name",
            name,
            "--version",
            str(card.version),
            "--serialized-file",
            str(model_dir / weights_file(model_name)),
            "--handler",
            str(HANDLER),
            "--extra-files",
            f"{network},{config}",
            "--export-path",
            str(out_dir),
            "--force",
        ]
        # No shell, and every argument is built here from the archive's own paths.
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise ArchiveError(f"torch-model-archiver failed for {name}:\n{result.stderr.strip()}")
    return out_dir / f"{name}.mar"


def build_archives(
    model_dir: Path, out_dir: Path, *, prefix: str = DEFAULT_PREFIX
) -> dict[str, Path]:
    """Builds one .mar per model of the set in model_dir; returns model name -> archive.

    Raises:
        FileNotFoundError: model_dir holds no model card.
        ValueError: the card is malformed or a weights file is missing.
        ArchiveError: torch-model-archiver failed.
    """
    card = load_model_card(model_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {
        name: build_archive(model_dir, card, name, out_dir, prefix=prefix) for name in MODEL_NAMES
    }


def main(argv: list[str] | None = None) -> int:
    """Builds the archives named on the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mri_service.archive", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model-dir", type=Path, required=True, help="an MRI model set")
    parser.add_argument("--out", type=Path, required=True, help="where the .mar files go")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="TorchServe model name prefix")
    args = parser.parse_args(argv)
    try:
        archives = build_archives(args.model_dir, args.out, prefix=args.prefix)
    except (OSError, ValueError, ArchiveError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in archives.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
