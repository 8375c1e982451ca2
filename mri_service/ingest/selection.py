"""Finds a study's dynamic contrast-enhanced (DCE) acquisition: a pre-contrast and three passes.

Rules in the spirit of MONAI Deploy's series selector, from DICOM attributes only, never
from file or folder names (except the explicit BreastWise folders `pre/`, `1st_pass/`,
`2nd_pass/`, `3rd_pass/`, taken as a hint when all four are present):

1. Only MR image storage series whose images are ORIGINAL (not DERIVED: no subtraction,
   MIP or reformat) and whose SeriesDescription does not match `excluded` (localisers,
   T2, diffusion, subtraction ...) are candidates.
2. A candidate holding several temporal phases is split into them: by
   TemporalPositionIdentifier (GE, Philips), else by AcquisitionNumber when each number
   covers the same slice positions (Siemens), else by time at each repeated position.
3. A multiphase series of at least four phases whose description matches `dynamic`
   (or that is the only one) is the DCE acquisition; otherwise the single-phase series
   whose descriptions match `dynamic`, ordered in time (AcquisitionTime, ContentTime,
   SeriesTime, then SeriesNumber) are.
4. The first phase in time is the pre-contrast; the next three are the passes; later
   passes are listed as unused.

Everything not chosen is returned with the reason, for the answer.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from mri_service.domain import PHASES
from mri_service.errors import SeriesRejected
from mri_service.ingest.archive import show
from mri_service.ingest.study import MR_IMAGE_STORAGE, InstanceHeader, UnusedSeries

# Duke / TCIA ("ax dyn pre", "ax dyn 1st pass"), GE ("Ax Vibrant MultiPhase"), Siemens
# ("t1_fl3d_tra_dynaVIEWS_spair", "fl3d dynamic"), Philips ("DCE THRIVE", "e-THRIVE dyn").
# Not "fl3d" alone: Siemens names every 3D FLASH so, the non-fat-saturated T1 included.
# Descriptions are matched with "_" and "-" read as spaces ("1st_pass" is "1st pass").
DEFAULT_DYNAMIC = (
    r"dyn|dce|vibrant|multi ?phase|thrive|twist|\bvista\b|\bpre\b|\bpost\b|"
    r"\bpass\b|\bph(ase)? ?\d"
)
DEFAULT_EXCLUDED = (
    r"\bloc(ali[sz]er)?\b|scout|survey|3 ?plane|calib|\bt2|stir|dwi|diff|\badc\b|"
    r"\bsub(traction)?\b|\bmip\b|\bmpr\b|\bcad\b|perfusion map|\bpe\b|\bser\b|"
    r"\bnon ?fs\b|\bnon ?fat"
)
MIN_PHASES = len(PHASES)


@dataclass(frozen=True)
class SelectionRules:
    """The patterns that say what a series is; both match SeriesDescription, case-insensitive."""

    dynamic: str = DEFAULT_DYNAMIC
    excluded: str = DEFAULT_EXCLUDED
    _compiled: dict[str, re.Pattern[str]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("dynamic", "excluded"):
            try:
                self._compiled[name] = re.compile(getattr(self, name), re.IGNORECASE)
            except re.error as error:
                raise ValueError(
                    f"the {name} series pattern is not a valid regex: {error}"
                ) from None

    def is_dynamic(self, description: str) -> bool:
        """Returns whether a description names a dynamic (DCE) acquisition."""
        return bool(self._compiled["dynamic"].search(_words(description)))

    def is_excluded(self, description: str) -> bool:
        """Returns whether a description names a series that is never a DCE phase."""
        return bool(self._compiled["excluded"].search(_words(description)))


def _words(description: str) -> str:
    return re.sub(r"[_\-]+", " ", description)


@dataclass(frozen=True)
class Candidate:
    """One temporal phase of a series: its images, in no particular order."""

    series_uid: str
    description: str
    number: int | None
    temporal_position: int | None  # from 1 inside a multiphase series, else None
    images: tuple[InstanceHeader, ...]

    @property
    def time(self) -> tuple[float, ...]:
        """Returns the phase's sort key in time: earliest acquisition, content, series time."""
        for values in (
            [h.trigger_time_ms / 1000 for h in self.images if h.trigger_time_ms is not None],
            [h.acquisition_time_s for h in self.images if h.acquisition_time_s is not None],
            [h.content_time_s for h in self.images if h.content_time_s is not None],
            [h.series_time_s for h in self.images if h.series_time_s is not None],
        ):
            if len(values) == len(self.images):
                return (min(values),)
        return ()


@dataclass(frozen=True)
class Selection:
    """The four phases in PHASES order, how they were found, and the series left unused."""

    phases: tuple[Candidate, ...]
    selected_by: str  # "folders", "series" or "multiphase"
    unused: tuple[UnusedSeries, ...]


def _refuse(message: str, reason: str) -> SeriesRejected:
    return SeriesRejected(message, reason=reason)


def describe(number: int | None, description: str) -> str:
    """Returns how a series is named in messages: its number and description."""
    label = f"series {number}" if number is not None else "a series"
    return f"{label} '{description}'" if description else f"{label} (no description)"


def _series(headers: Sequence[InstanceHeader]) -> dict[str, list[InstanceHeader]]:
    grouped: dict[str, list[InstanceHeader]] = defaultdict(list)
    for header in headers:
        grouped[header.series_uid].append(header)
    return dict(grouped)


def _unused(images: Sequence[InstanceHeader], reason: str) -> UnusedSeries:
    first = images[0]
    return UnusedSeries(
        first.series_uid,
        first.series_description,
        first.series_number,
        first.modality,
        len(images),
        reason,
    )


def _not_candidate_reason(images: Sequence[InstanceHeader], rules: SelectionRules) -> str | None:
    first = images[0]
    if first.modality != "MR":
        return f"modality {first.modality or 'unknown'}, not MR"
    if any(h.sop_class_uid != MR_IMAGE_STORAGE for h in images):
        return "not MR Image Storage (enhanced multi-frame MR and other objects are not read)"
    if any(h.image_type[:1] == ("DERIVED",) for h in images):
        return "derived images (ImageType DERIVED: a subtraction, MIP or reformat)"
    if rules.is_excluded(first.series_description):
        return "not a dynamic acquisition (by its description: a localiser, T2, diffusion ...)"
    return None


def split_phases(images: Sequence[InstanceHeader]) -> list[Candidate]:
    """Returns the temporal phases of one series; one phase when it holds only one."""
    first = images[0]

    def candidate(part: Sequence[InstanceHeader], position: int | None) -> Candidate:
        return Candidate(
            first.series_uid, first.series_description, first.series_number, position, tuple(part)
        )

    for key in ("temporal_position", "acquisition_number"):
        groups: dict[int | None, list[InstanceHeader]] = defaultdict(list)
        for header in images:
            groups[getattr(header, key)].append(header)
        if len(groups) > 1 and None not in groups and _same_positions(list(groups.values())):
            ordered = [groups[k] for k in sorted(groups, key=lambda k: k or 0)]
            parts = sorted(ordered, key=lambda part: candidate(part, None).time)
            return [candidate(part, index + 1) for index, part in enumerate(parts)]
    by_position = _by_position(images)
    counts = {len(group) for group in by_position.values()}
    if by_position and len(counts) == 1 and counts != {1}:
        # Every position repeats as often: one image per phase there, told apart by time.
        phases = counts.pop()
        stacks = [
            sorted(group, key=lambda h: candidate([h], None).time) for group in by_position.values()
        ]
        return [candidate([s[i] for s in stacks], i + 1) for i in range(phases)]
    return [candidate(images, None)]


def _position_key(header: InstanceHeader) -> tuple[float, ...] | None:
    return None if header.position is None else tuple(round(v, 1) for v in header.position)


def _by_position(images: Sequence[InstanceHeader]) -> dict[tuple[float, ...], list[InstanceHeader]]:
    grouped: dict[tuple[float, ...], list[InstanceHeader]] = defaultdict(list)
    for header in images:
        key = _position_key(header)
        if key is None:
            return {}
        grouped[key].append(header)
    return dict(grouped)


def _same_positions(groups: Sequence[Sequence[InstanceHeader]]) -> bool:
    """Returns whether every group covers the same slice positions (or the same count)."""
    keys = [sorted(map(str, (_position_key(h) for h in group))) for group in groups]
    return all(k == keys[0] for k in keys)


def select_dce(
    headers: Sequence[InstanceHeader], rules: SelectionRules, folder_hint: dict[str, str] | None
) -> Selection:
    """Returns the study's four DCE phases and the series not used.

    Args:
        headers: every DICOM image of one study.
        rules: the description patterns.
        folder_hint: folder -> phase when the upload uses the BreastWise folders, else None.

    Raises:
        SeriesRejected: no DCE acquisition (the message lists the series found), or the
            explicit folders hold something that is not one MR phase each.
    """
    if folder_hint is not None:
        return _from_folders(headers, folder_hint)
    series = _series(headers)
    unused: list[UnusedSeries] = []
    multiphase: list[list[Candidate]] = []
    single: list[Candidate] = []
    for images in series.values():
        reason = _not_candidate_reason(images, rules)
        if reason is not None:
            unused.append(_unused(images, reason))
            continue
        phases = split_phases(images)
        if len(phases) > 1:
            multiphase.append(phases)
        elif rules.is_dynamic(images[0].series_description):
            single.append(phases[0])
        else:
            unused.append(_unused(images, "not a dynamic acquisition (by its description)"))
    chosen, selected_by = _choose(multiphase, single, rules, unused)
    if chosen is None:
        raise _no_dce(series, unused)
    kept, later = chosen[:MIN_PHASES], chosen[MIN_PHASES:]
    for phase in later:
        unused.append(
            _unused(phase.images, "a later post-contrast phase: the models read the first three")
        )
    unused.sort(key=lambda u: (u.number is None, u.number or 0, u.description))
    return Selection(tuple(kept), selected_by, tuple(unused))


def _choose(
    multiphase: list[list[Candidate]],
    single: list[Candidate],
    rules: SelectionRules,
    unused: list[UnusedSeries],
) -> tuple[list[Candidate] | None, str]:
    """Returns the DCE phases in time order and how they were found, or None."""
    enough = [phases for phases in multiphase if len(phases) >= MIN_PHASES]
    named = [phases for phases in enough if rules.is_dynamic(phases[0].description)]
    pool = named or enough
    single = _one_geometry(single, unused)
    if len(single) >= MIN_PHASES and not named:
        for phases in multiphase:
            unused.append(_unused(_flatten(phases), "a multiphase series beside the DCE series"))
        return _in_time(single), "series"
    if len(pool) == 1:
        chosen = pool[0]
        for phases in multiphase:
            if phases is not chosen:
                unused.append(_unused(_flatten(phases), "another multiphase series"))
        for phase in single:
            unused.append(_unused(phase.images, "a dynamic series beside the multiphase DCE"))
        return chosen, "multiphase"
    if len(pool) > 1:
        names = ", ".join(describe(p[0].number, p[0].description) for p in pool)
        raise _refuse(
            f"the study holds more than one multiphase dynamic series ({names}); send the "
            "one to analyse",
            "SERIES_AMBIGUOUS_DCE",
        )
    for phases in multiphase:
        unused.append(_unused(_flatten(phases), f"only {len(phases)} temporal phases"))
    for phase in single:
        unused.append(_unused(phase.images, "a dynamic series, but too few of them"))
    return None, ""


def _geometry(candidate: Candidate) -> tuple[object, ...]:
    first = candidate.images[0]
    orientation = tuple(round(v, 2) for v in first.orientation or ())
    return (first.rows, first.columns, len(candidate.images), orientation)


def _one_geometry(single: list[Candidate], unused: list[UnusedSeries]) -> list[Candidate]:
    """Returns the dynamic series of the most common geometry; lists the others as unused.

    The phases of one DCE acquisition share rows, columns, slice count and orientation;
    a series that only sounds dynamic (a differently planned pre-contrast T1) does not.
    Only when that geometry alone has four phases: otherwise the geometry check names
    the phase that differs and how, which says more than "no DCE found".
    """
    groups: dict[tuple[object, ...], list[Candidate]] = defaultdict(list)
    for candidate in single:
        groups[_geometry(candidate)].append(candidate)
    largest = max(groups.values(), key=len, default=[])
    if len(groups) <= 1 or len(largest) < MIN_PHASES:
        return single
    for candidate in single:
        if candidate not in largest:
            unused.append(
                _unused(
                    candidate.images,
                    "a dynamic-looking series whose geometry differs from the DCE phases",
                )
            )
    return largest


def _flatten(phases: Sequence[Candidate]) -> list[InstanceHeader]:
    return [h for phase in phases for h in phase.images]


def _in_time(phases: Sequence[Candidate]) -> list[Candidate]:
    """Returns phases in acquisition order: by time where every phase has one, else number."""
    if all(phase.time for phase in phases):
        return sorted(phases, key=lambda p: (p.time, p.number or 0))
    return sorted(phases, key=lambda p: (p.number is None, p.number or 0))


def _no_dce(series: dict[str, list[InstanceHeader]], unused: list[UnusedSeries]) -> SeriesRejected:
    found = "; ".join(
        f"{describe(u.number, u.description)} ({u.modality}, {u.image_count} images: {u.reason})"
        for u in sorted(unused, key=lambda u: (u.number is None, u.number or 0))
    )
    return _refuse(
        f"no dynamic contrast-enhanced acquisition (a pre-contrast and three post-contrast "
        f"phases) was found among the study's {len(series)} series: {found}",
        "SERIES_NO_DCE",
    )


def _from_folders(headers: Sequence[InstanceHeader], hint: dict[str, str]) -> Selection:
    """Returns the phases of the BreastWise folders: each folder one MR series, one phase."""
    by_phase: dict[str, list[InstanceHeader]] = defaultdict(list)
    unused_images: list[InstanceHeader] = []
    for header in headers:
        phase = hint.get(header.folder)
        if phase is None:
            unused_images.append(header)
        else:
            by_phase[phase].append(header)
    phases: list[Candidate] = []
    for phase in PHASES:
        folder = next(f for f, p in hint.items() if p == phase)
        images = by_phase.get(phase, [])
        if not images:
            raise _refuse(
                f"the folder {show(folder + '/')} holds no DICOM images; every phase folder "
                f"({', '.join(p + '/' for p in PHASES)}) needs the images of its phase",
                "SERIES_MISSING_PHASE",
            )
        _check_folder_phase(folder, images)
        first = images[0]
        phases.append(
            Candidate(
                first.series_uid, first.series_description, first.series_number, None, tuple(images)
            )
        )
    unused = [
        _unused(images, "outside the phase folders") for images in _series(unused_images).values()
    ]
    return Selection(tuple(phases), "folders", tuple(unused))


def _check_folder_phase(folder: str, images: Sequence[InstanceHeader]) -> None:
    first = images[0]
    if first.modality != "MR" or first.sop_class_uid != MR_IMAGE_STORAGE:
        raise _refuse(
            f"the folder {show(folder + '/')} holds {first.modality or 'non-MR'} images "
            f"({describe(first.series_number, first.series_description)}); every phase must "
            "be an MR acquisition",
            "SERIES_NOT_MR",
        )
    series = {h.series_uid for h in images}
    if len(series) > 1:
        raise _refuse(
            f"the folder {show(folder + '/')} holds images of {len(series)} series; each phase "
            "folder must hold one series",
            "SERIES_MISMATCHED_PHASES",
        )
