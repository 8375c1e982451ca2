"""Trains both MRI slice models on phantoms or labelled series and writes the model set."""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional
from tqdm import tqdm

from mri_service import domain, fusion
from mri_service.backends.embedded import load_classifier
from mri_service.model import DEMO_WIDTH, SliceClassifier
from mri_service.model_card import (
    CARD_FILE,
    MARKDOWN_CARD_FILE,
    ModelCard,
    load_model_card,
    weights_file,
)
from mri_service.training_data import Slices, load_datasets
from servicekit.argtypes import bounded
from servicekit.files import staged_folder
from servicekit.train_command import TrainingError, run_command, training_record

PROG = "medimg train mri"
DEFAULT_OUT = Path(__file__).parent / "models" / "mri-demo"
# Share of positive slices in each training batch: they are a small minority of slices.
POSITIVE_SHARE = 0.5
MAX_SHIFT = 0.05  # of the input side, for the random-shift augmentation


def main(argv: list[str] | None = None) -> int:
    """Trains, evaluates and writes a model set as argv (sys.argv[1:] when None) asks."""
    return run_command(PROG, build_parser(), train, argv, summary=_fused_summary)


def _fused_summary(card: ModelCard) -> str:
    fused = card.metrics["fused"]
    return f"fused sensitivity {fused['sensitivity']:.3f}, specificity {fused['specificity']:.3f}"


_positive_int = bounded(int, "a whole number", at_least=1)
_positive_float = bounded(float, "a number", more_than=0.0)
_share = bounded(float, "a number", at_least=0.0, at_most=1.0)
_split = bounded(float, "a number", more_than=0.0, under=1.0)
_width = bounded(float, "a number", more_than=0.0, at_most=1.0)


def build_parser() -> argparse.ArgumentParser:
    """Returns the parser of the training options."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Trains the two breast-MRI slice models (single: the fat-saturated pre "
        "slice; scantype: the three contrast passes) and writes a model set (single.pt, "
        "scantype.pt, model_card.json, MODEL_CARD.md). Without --data it trains on generated "
        "phantom series (demo models, not for clinical use).",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="folder of cases: CASE.zip or CASE/ in the upload layout (pre/, 1st_pass/, "
        "2nd_pass/, 3rd_pass/), labelled by CASE.json or CASE/labels.json holding "
        '{"positive_slices": [indices in anatomical order]}',
    )
    model = parser.add_argument_group("model and training")
    for group, flag, kind, default, metavar, text in (
        (data, "--validation-split", _split, 0.2, "SHARE",
         "with --data: share of the cases held out for evaluation"),
        (data, "--generated-count", _positive_int, 100, "N",
         "without --data: generated training series"),
        (data, "--evaluation-count", _positive_int, 60, "N",
         "without --data: held-out generated series, from another seed"),
        (data, "--slices", _positive_int, 32, "N", "slices per generated series"),
        (data, "--size", _positive_int, 256, "PX", "rows and columns of generated slices"),
        (data, "--positive-fraction", _share, 0.6, "SHARE",
         "share of generated series with a lesion"),
        (model, "--width", _width, DEMO_WIDTH, "W",
         "width multiplier of the VGG19 layout; 1.0 is the full network, for GPUs"),
        (model, "--input-size", _positive_int, domain.DEFAULT_INPUT_SIZE, "PX",
         "side of the square model input, a multiple of 32"),
        (model, "--epochs", _positive_int, 10, "N", "passes over the training slices"),
        (model, "--batch-size", _positive_int, 32, "N", "slices per step"),
        (model, "--learning-rate", _positive_float, 2e-3, "RATE",
         "AdamW's peak learning rate, one-cycle schedule"),
        (model, "--seed", int, 1, "N", "seed of the data, sampling, augmentation and weights"),
        (model, "--threads", _positive_int, min(os.cpu_count() or 1, 8), "N",
         "CPU threads for torch"),
    ):  # fmt: skip
        help_text = f"{text} (default: %(default)s)"
        group.add_argument(flag, type=kind, default=default, metavar=metavar, help=help_text)
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="model set folder, replaced as a whole (default: mri_service/models/mri-demo)",
    )
    parser.add_argument(
        "--version",
        type=_positive_int,
        metavar="N",
        help="version in the card (default: one above the version in --out, else 1)",
    )
    return parser


def train(args: argparse.Namespace, *, command: str) -> ModelCard:
    """Runs one training as parsed by build_parser and returns the card it wrote."""
    if args.input_size % 32 != 0:
        raise TrainingError(f"--input-size must be a multiple of 32, got {args.input_size}")
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(args.seed)
        fit_set, evaluation = load_datasets(args)
        models = {
            name: SliceClassifier(domain.MODEL_CHANNELS[name], args.width)
            for name in domain.MODEL_NAMES
        }
        started = time.monotonic()
        fit(models, fit_set, args)
        seconds = time.monotonic() - started
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    card = ModelCard(
        name=args.out.name,
        version=args.version or _next_version(args.out),
        width=args.width,
        input_size=args.input_size,
        threshold=fusion.DEFAULT_THRESHOLD,
        data=fit_set.description,
        demo_model=args.data is None,
        trained_on=datetime.date.today().isoformat(),
        evaluation=evaluation.description,
        training=_training_record(args, command, fit_set, seconds),
    )
    # A serving process reading --out sees the old set or the new one, never half of one.
    with staged_folder(args.out) as staging:
        staging.mkdir()
        for name, network in models.items():
            torch.save(network.state_dict(), staging / weights_file(name))
        # The card's numbers come from the written weights, loaded as serving loads them.
        loaded = {name: load_classifier(staging, card, name) for name in domain.MODEL_NAMES}
        card = replace(card, metrics=evaluate(loaded, evaluation, card.threshold))
        card.save(staging)
        (staging / MARKDOWN_CARD_FILE).write_text(card_markdown(card))
        load_model_card(staging)
    return card


def _next_version(out: Path) -> int:
    try:
        return load_model_card(out).version + 1
    except (OSError, ValueError):
        return 1


def fit(models: dict[str, SliceClassifier], data: Slices, args: argparse.Namespace) -> None:
    """Trains every model with AdamW, a one-cycle schedule and class-balanced batches."""
    if not data.labels.any() or data.labels.all():
        raise TrainingError("the training slices need both positive and negative examples")
    rng = np.random.default_rng(args.seed)
    steps = max(1, len(data) // args.batch_size)
    optimisers = {
        name: torch.optim.AdamW(m.parameters(), args.learning_rate, weight_decay=1e-4)
        for name, m in models.items()
    }
    schedules = {
        name: torch.optim.lr_scheduler.OneCycleLR(
            o, args.learning_rate, total_steps=steps * args.epochs
        )
        for name, o in optimisers.items()
    }
    # Oversampling rather than loss weights: each batch sees enough lesions to learn from.
    weights = np.where(
        data.labels, POSITIVE_SHARE / data.labels.sum(), (1 - POSITIVE_SHARE) / (~data.labels).sum()
    )
    for epoch in range(args.epochs):
        for model in models.values():
            model.train()
        started = time.monotonic()
        totals = dict.fromkeys(models, 0.0)
        right = dict.fromkeys(models, 0)
        order = rng.choice(len(data), size=steps * args.batch_size, p=weights / weights.sum())
        bar = _bar(steps, f"epoch {epoch + 1}/{args.epochs}")
        for step in range(steps):
            chosen = np.sort(order[step * args.batch_size : (step + 1) * args.batch_size])
            target = torch.from_numpy(data.labels[chosen].astype(np.float32))
            augment = _Augmentation.draw(rng, len(chosen), args.input_size)
            for name, model in models.items():
                batch = augment.apply(
                    torch.from_numpy(data.inputs[name][chosen].astype(np.float32))
                )
                logits = model(batch)
                loss = functional.binary_cross_entropy_with_logits(logits, target)
                optimisers[name].zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                optimisers[name].step()
                schedules[name].step()
                totals[name] += loss.item() / steps
                right[name] += int(((logits > 0) == (target > 0.5)).sum())
            if bar is not None:
                bar.set_postfix_str(
                    _shown(totals, right, step + 1, args.batch_size, steps), refresh=False
                )
                bar.update(1)
        if bar is not None:
            bar.close()
        took = time.monotonic() - started
        shown = _shown(totals, right, steps, args.batch_size, steps)
        print(f"epoch {epoch + 1}/{args.epochs}: {shown} ({took:.0f} s)", flush=True)


def _shown(
    totals: dict[str, float], right: dict[str, int], done: int, batch: int, steps: int
) -> str:
    return " ".join(
        f"{name} loss {totals[name] * steps / done:.3f} acc {right[name] / (done * batch):.3f}"
        for name in totals
    )


@dataclass(frozen=True)
class _Augmentation:
    """Random flips, shifts and intensity changes of one batch, the same for both models."""

    flips: np.ndarray  # bool (N,): mirror left-right (breasts are on both sides)
    shifts: np.ndarray  # int (N, 2): rows, columns
    gains: np.ndarray  # (N,)
    gammas: np.ndarray  # (N,)

    @classmethod
    def draw(cls, rng: np.random.Generator, count: int, size: int) -> _Augmentation:
        most = max(1, round(size * MAX_SHIFT))
        return cls(
            rng.random(count) < 0.5,
            rng.integers(-most, most + 1, (count, 2)),
            rng.uniform(0.9, 1.1, count),
            rng.uniform(0.8, 1.25, count),
        )

    def apply(self, batch: torch.Tensor) -> torch.Tensor:
        """Returns the augmented float32 (N, C, S, S) batch, still in [0, 255]."""
        size = batch.shape[-1]
        most = int(np.abs(self.shifts).max())
        padded = functional.pad(batch, (most, most, most, most))
        out = torch.empty_like(batch)
        for i, (dy, dx) in enumerate(self.shifts.tolist()):
            out[i] = padded[i, :, most + dy : most + dy + size, most + dx : most + dx + size]
        flips = torch.from_numpy(self.flips)[:, None, None, None]
        out = torch.where(flips, out.flip(-1), out)
        gains = torch.from_numpy(self.gains.astype(np.float32))[:, None, None, None]
        gammas = torch.from_numpy(self.gammas.astype(np.float32))[:, None, None, None]
        # Gamma changes the contrast between tissues a little, as scanners do.
        return torch.clamp(255.0 * (out / 255.0) ** gammas * gains, 0.0, 255.0)


def predict(model: SliceClassifier, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Returns each slice's probability, batch by batch, in inference mode."""
    model.eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = torch.from_numpy(inputs[start : start + batch_size].astype(np.float32))
            parts.append(torch.sigmoid(model(batch)).numpy())
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def evaluate(
    models: dict[str, SliceClassifier], data: Slices, threshold: float
) -> dict[str, dict[str, float]]:
    """Returns slice-level metrics of each model and of the fused decision (fusion.fuse)."""
    probabilities = {name: predict(model, data.inputs[name]) for name, model in models.items()}
    decisions = {name: np.asarray(fusion.decide(p, threshold)) for name, p in probabilities.items()}
    fused = np.zeros(len(data), dtype=bool)
    for series in np.unique(data.series):
        where = data.series == series
        fused[where] = fusion.fuse(
            decisions[domain.SINGLE][where].tolist(), decisions[domain.SCANTYPE][where].tolist()
        )
    metrics = {name: _rates(decisions[name], data.labels) for name in models}
    for name, p in probabilities.items():
        auc = roc_auc(p, data.labels)
        if auc == auc:  # NaN when the set lacks one class; JSON has no NaN
            metrics[name]["auc"] = round(auc, 4)
    metrics["fused"] = _rates(fused, data.labels)
    return metrics


def _rates(decided: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    positives, negatives = int(truth.sum()), int((~truth).sum())
    return {
        "sensitivity": round(float((decided & truth).sum()) / max(positives, 1), 4),
        "specificity": round(float((~decided & ~truth).sum()) / max(negatives, 1), 4),
        "accuracy": round(float((decided == truth).mean()) if len(truth) else 0.0, 4),
        "positive_slices": positives,
        "negative_slices": negatives,
    }


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Returns the area under the ROC curve (Mann-Whitney U with tied ranks averaged)."""
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0  # 1-based mean rank of each tie group
    ranks[order] = np.repeat(average, counts)
    return float((ranks[truth].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _training_record(
    args: argparse.Namespace, command: str, data: Slices, seconds: float
) -> dict[str, str | int | float]:
    return {
        **training_record(command, args, "epochs", "batch_size", "learning_rate"),
        "learning_rate_schedule": "one-cycle (AdamW, weight decay 1e-4)",
        "positive_share_per_batch": POSITIVE_SHARE,
        "augmentation": "left-right flips, shifts up to 5%, gain 0.9-1.1, gamma 0.8-1.25",
        "seed": args.seed,
        "training_slices": len(data),
        "training_positive_slices": int(data.labels.sum()),
        "training_seconds": round(seconds, 1),
        "threads": args.threads,
        "torch": torch.__version__,
    }


def card_markdown(card: ModelCard) -> str:
    """Returns the card as Markdown for people: models, data, metrics, command."""
    lines = [f"# Model card: {card.name}, version {card.version}", ""]
    if card.warning:
        lines += [f"**{card.warning}**", ""]
    lines += [
        f"- Trained on: {card.trained_on}",
        "- Models: `single` reads the fat-saturated pre-contrast slice (1 channel); `scantype` "
        "reads the 1st, 2nd and 3rd contrast passes of the same slice (3 channels). Each "
        "outputs the probability that the slice shows a tumour.",
        f"- Architecture: VGG19 layout (16 3x3 convolutions in 5 blocks, batch norm, global "
        f"average pooling head), width multiplier {card.width}: every layer has "
        f"{card.width} x VGG19's channels (at least 4). Width 1.0 is the full network, "
        "meant for GPU nodes; the small multiplier keeps the demo fast on a CPU.",
        f"- Input: float32 [batch, channels, {card.input_size}, {card.input_size}], each slice "
        "min-max normalised to [0, 255] after rescale slope and intercept "
        "(mri_service.domain.preprocess_slice); files `single.pt`, `scantype.pt` "
        f"(torch state_dicts), `{CARD_FILE}`",
        f"- Decision: a model calls a slice positive at probability >= {card.threshold}; the "
        "fused result (mri_service.fusion) is positive where both agree, or where they "
        "disagree next to a slice both call positive.",
        f"- Data: {card.data}",
        "",
        "## Evaluation (slice level)",
        "",
        card.evaluation,
        "",
        "| model | sensitivity | specificity | accuracy | AUC |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, values in card.metrics.items():
        auc = f"{values['auc']:.4f}" if "auc" in values else "-"
        lines.append(
            f"| {name} | {values['sensitivity']:.4f} | {values['specificity']:.4f} | "
            f"{values['accuracy']:.4f} | {auc} |"
        )
    lines += ["", "## Training", ""]
    command = card.training.get("command")
    if command:
        lines += ["Produced by:", "", "```", str(command), "```", ""]
    lines += [f"- {key}: {value}" for key, value in card.training.items() if key != "command"]
    return "\n".join(lines) + "\n"


def _bar(total: int, what: str) -> tqdm[Any] | None:
    """Returns a live bar on a terminal; elsewhere None, and each epoch prints one line."""
    if not sys.stderr.isatty():
        return None
    # leave=False: the bar gives way to the epoch's line, which never truncates.
    return tqdm(total=total, desc=what, unit="batch", leave=False, dynamic_ncols=True)


if __name__ == "__main__":
    raise SystemExit(main())
