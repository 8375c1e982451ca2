"""A job's study and slice identities as the job row stores them (JSON), and how they read."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from web.gateway_client import SliceImage, StudySummary

# The phase whose InstanceNumber names a slice: the pre-contrast one, which the thumbnails show.
NAMING_PHASE = "pre"
PHASE_LABELS = {
    "pre": "Pre-contrast",
    "1st_pass": "1st post-contrast",
    "2nd_pass": "2nd post-contrast",
    "3rd_pass": "3rd post-contrast",
}
SELECTED_BY = {
    "folders": "by folder (pre/, 1st_pass/, 2nd_pass/, 3rd_pass/)",
    "series": "one series per phase, by description and acquisition time",
    "multiphase": "the temporal positions of one multiphase series",
}
ORDERED_BY = {
    "position": "by position along the slice normal",
    "instance_number": "by InstanceNumber",
}
# A CD export zipped on a Mac skips a file or two per image: the page lists this many.
SKIPPED_SHOWN = 50


def study_json(study: StudySummary) -> dict[str, Any]:
    """Returns the summary as the job stores it; {} when the service described no study."""
    if not study.study_instance_uid and not study.phases:
        return {}
    return asdict(study)


def slice_images_json(images: Iterable[SliceImage]) -> list[dict[str, Any]]:
    """Returns a slice's image in each phase as the job stores it, in phase order."""
    return [asdict(image) for image in images]


def instance_number(finding: Mapping[str, Any], phase: str = NAMING_PHASE) -> int | None:
    """Returns the InstanceNumber of a stored slice's image in a phase, None when unknown."""
    for image in finding.get("images", ()):
        if image.get("phase") == phase:
            number = image.get("instance_number")
            return number if isinstance(number, int) else None
    return None


def slice_label(finding: Mapping[str, Any]) -> str:
    """Returns how a person reads a slice: "7 (InstanceNumber 12)", or "7" without one."""
    number = instance_number(finding)
    index = finding["index"]
    return f"{index} (InstanceNumber {number})" if number is not None else str(index)


def study_display(study: Mapping[str, Any]) -> dict[str, Any] | None:
    """Returns a stored study with the words a page shows beside its codes; None if unknown."""
    if not study:
        return None
    skipped = list(study.get("skipped_files", ()))
    return {
        **study,
        "phases": [
            {**phase, "label": PHASE_LABELS.get(phase.get("phase", ""), phase.get("phase", ""))}
            for phase in study.get("phases", ())
        ],
        "selected_by_text": SELECTED_BY.get(study.get("selected_by", ""), ""),
        "ordered_by_text": ORDERED_BY.get(study.get("ordered_by", ""), ""),
        "skipped_shown": skipped[:SKIPPED_SHOWN],
        "skipped_more": max(0, len(skipped) - SKIPPED_SHOWN),
    }
