"""The result of a series analysis as DICOM: a TID 1500 Measurement Report and key images.

Both objects are made with highdicom, belong to the analysed study (its patient and study
modules are copied from the source images) and reference those images by SOPInstanceUID,
so that a PACS files them with the study and a viewer (OHIF among them) shows them beside
the images:

- the **Measurement Report** (Comprehensive 3D SR, TID 1500) holds one planar-ROI group
  (TID 1410) per flagged slice. Its region is the whole pre-contrast image of the slice,
  because the models judge whole slices and say nothing about where in the slice the
  tumour is; both models' probabilities are measurements of that group, each naming the
  images its model read (the `single` model the pre-contrast image, the `scantype` model
  the three post-contrast ones) and the model as its algorithm (TID 4019); the fused
  decision is its qualitative evaluation "Tumor: Present". A study with no flagged slice
  gets one group over every image read, "Tumor: Absent": the models found nothing.
- the **Key Object Selection** document ("Of Interest") names every image the models read
  of each flagged slice. A KOS must reference at least one image, so there is none when
  no slice is flagged.

The models' identity is the report's device observer, the algorithm of each measurement
and the contributing equipment; demonstration models say "NOT FOR CLINICAL USE" in the
series description, the device's model name and the equipment's contribution description.
The documents are marked preliminary and unverified: nobody has read them yet.

Their UIDs derive from the analysed images and the model's name and version, so that the
same study analysed again by the same models gives the same SOPInstanceUIDs: a PACS
replaces the earlier report rather than filing a second one.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from mri_service import domain
from mri_service.fusion import SliceResult
from mri_service.ingest.study import InstanceHeader, Study
from mri_service.model_card import ModelCard

MANUFACTURER = "medimg"
# Series numbers of the derived series: high, so that they sort after the scanner's own.
REPORT_SERIES_NUMBER = 9901
KEY_IMAGES_SERIES_NUMBER = 9902
NOT_FOR_CLINICAL_USE = "NOT FOR CLINICAL USE"
# pydicom's root, as the phantom's UIDs use: UIDs derived from their sources, not random.
_UID_PREFIX = "1.2.826.0.1.3680043.8.498."
_TUMOR = codes.SCT.Tumor  # SCT 108369006, "Tumor" (also "Neoplasm")
_PROBABILITY = codes.DCM.Probability  # DCM 122157
_NO_UNITS = codes.UCUM.NoUnits  # UCUM "1"


@dataclass(frozen=True)
class DicomReports:
    """The result's DICOM Part 10 files: the Measurement Report, and the KOS or b"" when none."""

    measurement_report: bytes
    key_images: bytes


def build_reports(
    results: Sequence[SliceResult], card: ModelCard, study: Study, attributes: Dataset
) -> DicomReports:
    """Returns the Measurement Report and the key images of one analysed study.

    Args:
        results: every slice's result, in the study's anatomical order.
        card: the models that made them.
        study: the study they were made from (its phases' headers name the images).
        attributes: the study's patient and study modules, as its images carry them.

    Raises:
        ValueError: results and study disagree on the number of slices.
    """
    if len(results) != study.slice_count:
        raise ValueError(f"{len(results)} results for a study of {study.slice_count} slices")
    flagged = [r for r in results if r.positive]
    evidence = _evidence(study, attributes)
    seed = [study.study_uid, card.name, str(card.version)]
    seed += [h.sop_instance_uid for phase in study.phases for h in phase.slices]
    sources = _Sources(flagged, card, study, evidence, seed)
    report = sources.measurement_report()
    key_images = sources.key_images() if flagged else b""
    return DicomReports(report, key_images)


@dataclass(frozen=True)
class _Sources:
    """What both documents are made from; each document is one method."""

    flagged: Sequence[SliceResult]
    card: ModelCard
    study: Study
    evidence: dict[str, Dataset]
    seed: list[str]  # what the documents' UIDs are derived from

    def measurement_report(self) -> bytes:
        """Returns the TID 1500 Measurement Report: a group per flagged slice, or "Absent"."""
        groups: list[
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
            | hd.sr.MeasurementsAndQualitativeEvaluations
        ] = [_finding(result, self.card, self.study) for result in self.flagged]
        content = hd.sr.MeasurementReport(
            observation_context=_observation_context(self.card),
            procedure_reported=codes.SCT.MagneticResonanceImagingOfBreast,
            imaging_measurements=groups or [_no_finding(self.card, self.study)],
        )
        sr = hd.sr.Comprehensive3DSR(
            content=content,
            is_complete=True,
            is_final=False,
            is_verified=False,
            **self._document("tumour slices", REPORT_SERIES_NUMBER),
        )
        return _part10(sr)

    def key_images(self) -> bytes:
        """Returns the Key Object Selection of every phase's image of each flagged slice."""
        referenced = [
            self.evidence[h.sop_instance_uid]
            for result in self.flagged
            for h in _images(self.study, result.index, domain.PHASES)
        ]
        labels = ", ".join(
            _slice_label(self.study.phase(domain.PRE).slices[r.index], r.index)
            for r in self.flagged
        )
        content = hd.ko.KeyObjectSelection(
            document_title=codes.DCM.OfInterest,
            referenced_objects=referenced,
            observer_device_context=_device_context(self.card),
            description=_short(
                f"Flagged by {self.card.name} v{self.card.version}: {labels}", self.card
            ),
        )
        kos = hd.ko.KeyObjectSelectionDocument(
            content=content,
            **self._document("key images", KEY_IMAGES_SERIES_NUMBER),
        )
        return _part10(kos)

    def _document(self, what: str, series_number: int) -> dict[str, Any]:
        """Returns what both documents say of themselves: evidence, identity, series, equipment."""
        return {
            "evidence": list(self.evidence.values()),
            "series_instance_uid": _uid(self.seed, f"{what} series"),
            "series_number": series_number,
            "sop_instance_uid": _uid(self.seed, what),
            "instance_number": 1,
            "manufacturer": MANUFACTURER,
            "contributing_equipment": [_equipment(self.card)],
            "series_description": _description(self.card, what),
        }


def _finding(
    result: SliceResult, card: ModelCard, study: Study
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    """Returns one flagged slice as a planar-ROI group over its whole pre-contrast image."""
    pre = study.phase(domain.PRE).slices[result.index]
    label = _slice_label(pre, result.index)
    scores = dict(result.scores)
    measurements = [
        hd.sr.Measurement(
            name=_PROBABILITY,
            value=float(scores[model]),
            unit=_NO_UNITS,
            algorithm_id=_algorithm(card, model),
            referenced_images=[
                hd.sr.SourceImageForMeasurement(h.sop_class_uid, h.sop_instance_uid)
                for h in _images(study, result.index, domain.MODEL_PHASES[model])
            ],
        )
        for model in domain.MODEL_NAMES
    ]
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(_UID_PREFIX, [study.study_uid, pre.sop_instance_uid, "finding"]),
            identifier=f"Tumour, {label}",
        ),
        referenced_region=hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=_whole_image(pre),
            source_image=hd.sr.SourceImageForRegion(pre.sop_class_uid, pre.sop_instance_uid),
        ),
        finding_type=_TUMOR,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Breast)],
        algorithm_id=_algorithm(card, "fused"),
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(_TUMOR, codes.SCT.Present)],
    )


def _no_finding(card: ModelCard, study: Study) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    """Returns the one group of a study with no flagged slice: "Tumor: Absent" in all it read.

    TID 1500 needs at least one group, and "nothing found" is a finding a reader needs.
    """
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=generate_uid(_UID_PREFIX, [study.study_uid, "no finding"]),
            identifier="Tumour, whole study",
        ),
        finding_type=_TUMOR,
        finding_sites=[hd.sr.FindingSite(codes.SCT.Breast)],
        algorithm_id=_algorithm(card, "fused"),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(_TUMOR, codes.SCT.Absent)],
        source_images=[
            hd.sr.SourceImageForMeasurementGroup(h.sop_class_uid, h.sop_instance_uid)
            for phase in study.phases
            for h in phase.slices
        ],
    )


def _evidence(study: Study, attributes: Dataset) -> dict[str, Dataset]:
    """Returns, by SOPInstanceUID, a header-only dataset of every image the models read."""
    evidence: dict[str, Dataset] = {}
    for phase in study.phases:
        for header in phase.slices:
            ds = Dataset()
            for element in attributes:
                ds.add(element)
            ds.StudyInstanceUID = header.study_uid
            ds.SeriesInstanceUID = header.series_uid
            ds.SOPInstanceUID = header.sop_instance_uid
            ds.SOPClassUID = header.sop_class_uid
            ds.Modality = header.modality
            if header.rows and header.columns:  # an IMAGE reference, not a COMPOSITE one
                ds.Rows, ds.Columns = header.rows, header.columns
            for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
                if keyword not in ds:  # Type 2 in the SR's patient module: present, maybe empty
                    setattr(ds, keyword, None)
            for keyword in ("StudyDate", "StudyTime", "StudyID", "AccessionNumber"):
                if keyword not in ds:
                    setattr(ds, keyword, None)
            if "ReferringPhysicianName" not in ds:
                ds.ReferringPhysicianName = None
            evidence[header.sop_instance_uid] = ds
    return evidence


def _images(study: Study, index: int, phases: Sequence[str]) -> list[InstanceHeader]:
    return [study.phase(name).slices[index] for name in phases]


def _whole_image(header: InstanceHeader) -> np.ndarray:
    """Returns the closed outline of the whole image, in pixel coordinates (column, row)."""
    columns, rows = float(header.columns or 1), float(header.rows or 1)
    return np.array(
        [[0.0, 0.0], [columns, 0.0], [columns, rows], [0.0, rows], [0.0, 0.0]], dtype=np.float32
    )


def _slice_label(header: InstanceHeader, index: int) -> str:
    if header.instance_number is not None:
        return f"image {header.instance_number}"
    return f"slice {index + 1}"


def _observation_context(card: ModelCard) -> hd.sr.ObservationContext:
    return hd.sr.ObservationContext(observer_device_context=_device_context(card))


def _device_context(card: ModelCard) -> hd.sr.ObserverContext:
    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(_UID_PREFIX, [card.name, str(card.version), "device"]),
            name=f"{MANUFACTURER} {card.name}",
            manufacturer_name=MANUFACTURER,
            model_name=_short(f"{card.name} v{card.version}", card),
        ),
    )


def _algorithm(card: ModelCard, model: str) -> hd.sr.AlgorithmIdentification:
    """Returns the TID 4019 identity of one model of the set, or of their fusion."""
    parameters = [f"threshold={card.threshold:g}"]
    if model == "fused":
        parameters.append("positive when both models are; when they disagree, when a neighbour is")
    if card.demo_model:
        parameters.append(NOT_FOR_CLINICAL_USE)
    return hd.sr.AlgorithmIdentification(
        name=f"{card.name}/{model}", version=str(card.version), parameters=parameters
    )


def _equipment(card: ModelCard) -> hd.ContributingEquipment:
    return hd.ContributingEquipment(
        manufacturer=MANUFACTURER,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=_short(card.name, card),
        software_versions=str(card.version),
        contribution_description=card.warning if card.demo_model else "Breast-MRI slice models",
    )


def _description(card: ModelCard, what: str) -> str:
    return _short(f"{MANUFACTURER} {what}, {card.name} v{card.version}", card)


def _short(text: str, card: ModelCard) -> str:
    """Returns text with the demo flag, cut to the 64 characters of a LO value."""
    if not card.demo_model:
        return text[:64]
    suffix = f" - {NOT_FOR_CLINICAL_USE}"
    return text[: 64 - len(suffix)] + suffix


def _uid(seed: list[str], what: str) -> str:
    return str(generate_uid(_UID_PREFIX, [*seed, what]))


def _part10(document: Dataset) -> bytes:
    buffer = io.BytesIO()
    document.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
