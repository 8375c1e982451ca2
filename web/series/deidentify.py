"""De-identification of what the web tier keeps of a study: PS3.15 Basic Profile, Retain UIDs.

The web tier keeps, once a job has its answer, a de-identified copy of the uploaded study
and its de-identified SR and KOS (web/README.md, "What is kept of a study"). This module
is the only place that does it: pure functions over DICOM bytes and zip files, given a
seed that pseudonymises one job's objects alike (the same replacement names, IDs and date
shift in its images, its SR and its KOS, so they still belong together) and is then
thrown away, so nobody can map the replacements back.

It applies the Basic Application Level Confidentiality Profile of DICOM PS3.15 Annex E
with these options, each listed in DeidentificationMethodCodeSequence:

- Retain UIDs (113110): every UID is kept, so the SR's and the KOS's references resolve
  to the hospital's own images and the results can go back into its PACS.
- Retain Longitudinal Temporal Information with Modified Dates (113107): dates and their
  times are shifted back by one random offset per job (62 to 730 days), not removed, so
  the order of the acquisitions and the SR's content date stay meaningful.
- Clean Structured Content (113104) and Clean Descriptors (113105), SR and KOS only:
  their content tree is kept (it is the result) and so are their series and contribution
  descriptions (the MRI service writes "NOT FOR CLINICAL USE" there for demo models, and
  that label must stay wherever the result is shown), with names replaced, dates shifted
  and any text that quotes the patient's name, ID, birth date or accession number
  emptied. Every other description (the study's, the images' series descriptions) is
  removed, as the Basic Profile says; the analysis already read them from the original.

Not applied: Clean Pixel Data. MR images carry no burned-in text; an object that says it
has some (BurnedInAnnotation YES), a secondary capture (a screenshot) and an encapsulated
document (a PDF) are left out of the copy instead, as are non-DICOM members (a
metadata.csv, a README, a thumbnail) and the DICOMDIR, whose content nobody can vouch for.
Member names are rewritten from UIDs, since folders of an export may be named after the
patient.

Library: dicognito 0.19.0 rather than deid 0.4.13 (both tried). dicognito needs only
pydicom and rewrites every element by its VR, in nested sequences too (every person name,
every date, the known IDs, addresses, institutions), which is what an SR's content tree
needs, and it takes extra element handlers, through which the profile's own removals and
the Retain UIDs option are added here. deid brings matplotlib (for pixel cleaning) into
the web image, and its shipped recipe removes every UID and every date and time, the
opposite of Retain UIDs; it would have to be rewritten as a recipe of its own anyway.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pydicom
from dicognito.anonymizer import Anonymizer
from dicognito.element_anonymizer import ElementAnonymizer
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

DICOGNITO_VERSION: Final = "0.19.0"

COMPREHENSIVE_3D_SR: Final = "1.2.840.10008.5.1.4.1.1.88.34"
KEY_OBJECT_SELECTION: Final = "1.2.840.10008.5.1.4.1.1.88.59"
_SR_CLASS_PREFIX: Final = "1.2.840.10008.5.1.4.1.1.88."
_MEDIA_DIRECTORY: Final = "1.2.840.10008.1.3.10"
# Objects whose content is an image or document of anything at all, burned-in text included.
_LEFT_OUT_CLASS_PREFIXES: Final = (
    "1.2.840.10008.5.1.4.1.1.7",  # secondary captures
    "1.2.840.10008.5.1.4.1.1.104.",  # encapsulated PDF, CDA, STL ...
    "1.2.840.10008.5.1.4.1.1.77.1.",  # visible-light photographs and video
)

# (code value, code meaning) of the DCM codes of PS3.16 CID 7050.
BASIC_PROFILE: Final = ("113100", "Basic Application Confidentiality Profile")
RETAIN_UIDS: Final = ("113110", "Retain UIDs Option")
MODIFIED_DATES: Final = (
    "113107",
    "Retain Longitudinal Temporal Information Modified Dates Option",
)
CLEAN_STRUCTURED_CONTENT: Final = ("113104", "Clean Structured Content Option")
CLEAN_DESCRIPTORS: Final = ("113105", "Clean Descriptors Option")

# Attributes of PS3.15 Table E.1-1 whose Basic Profile action is X or Z (removed or
# emptied) and that dicognito does not already replace by their VR (person names, dates)
# or by name (its IDs, addresses, institution): free text, patient characteristics, the
# request's and the procedure's descriptions and comments, device identity. Emptying
# instead of removing keeps Type 2 attributes present.
_EMPTIED: Final = frozenset({"PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID"})
_REMOVED: Final = frozenset(
    {
        "AcquisitionComments",
        "AcquisitionDeviceProcessingDescription",
        "AcquisitionProtocolDescription",
        "ActualHumanPerformersSequence",
        "AdditionalPatientHistory",
        "AdmissionID",
        "AdmittingDiagnosesCodeSequence",
        "AdmittingDiagnosesDescription",
        "Allergies",
        "Arbitrary",
        "AuthorObserverSequence",
        "CommentsOnThePerformedProcedureStep",
        "ConfidentialityConstraintOnPatientDataDescription",
        "ContentCreatorIdentificationCodeSequence",
        "ContributionDescription",
        "CustodialOrganizationSequence",
        "DataSetTrailingPadding",
        "DerivationDescription",
        "DeviceSerialNumber",
        "DigitalSignaturesSequence",
        "DischargeDiagnosisDescription",
        "DistributionAddress",
        "DistributionName",
        "EncryptedAttributesSequence",
        "EthnicGroup",
        "FrameComments",
        "GantryID",
        "GeneratorID",
        "HumanPerformerOrganization",
        "IconImageSequence",
        "IdentifyingComments",
        "ImageComments",
        "ImagePresentationComments",
        "ImagingServiceRequestComments",
        "InstitutionCodeSequence",
        "InsurancePlanIdentification",
        "IntendedRecipientsOfResultsIdentificationSequence",
        "InterpretationApproverSequence",
        "InterpretationAuthor",
        "InterpretationDiagnosisDescription",
        "InterpretationIDIssuer",
        "InterpretationRecorder",
        "InterpretationText",
        "InterpretationTranscriber",
        "IssuerOfAdmissionID",
        "IssuerOfPatientID",
        "IssuerOfServiceEpisodeID",
        "LastMenstrualDate",
        "MACParametersSequence",
        "MedicalAlerts",
        "ModifiedAttributesSequence",
        "ModifyingDeviceID",
        "OrderCallbackPhoneNumber",
        "OrderEnteredBy",
        "OrderEntererLocation",
        "OriginalAttributesSequence",
        "OtherPatientIDsSequence",
        "ParticipantSequence",
        "PatientAge",
        "PatientBirthTime",
        "PatientComments",
        "PatientInstitutionResidence",
        "PatientPrimaryLanguageCodeSequence",
        "PatientPrimaryLanguageModifierCodeSequence",
        "PatientSexNeutered",
        "PatientSize",
        "PatientState",
        "PatientTransportArrangements",
        "PatientWeight",
        "PerformedLocation",
        "PerformedProcedureStepDescription",
        "PerformedStationAETitle",
        "PerformedStationGeographicLocationCodeSequence",
        "PerformedStationName",
        "PerformedStationNameCodeSequence",
        "PerformingPhysicianIdentificationSequence",
        "PersonAddress",
        "PersonIdentificationCodeSequence",
        "PersonTelephoneNumbers",
        "PhysiciansOfRecordIdentificationSequence",
        "PhysiciansReadingStudyIdentificationSequence",
        "PlateID",
        "PreMedication",
        "PregnancyStatus",
        "ProtocolName",
        "ReasonForStudy",
        "ReasonForTheImagingServiceRequest",
        "ReferencedDigitalSignatureSequence",
        "ReferencedPatientAliasSequence",
        "ReferencedPatientSequence",
        "ReferencedSOPInstanceMACSequence",
        "ReferringPhysicianAddress",
        "ReferringPhysicianIdentificationSequence",
        "ReferringPhysicianTelephoneNumbers",
        "RequestAttributesSequence",
        "RequestedContrastAgent",
        "RequestedProcedureComments",
        "RequestedProcedureDescription",
        "RequestedProcedureLocation",
        "RequestingPhysicianIdentificationSequence",
        "ResultsComments",
        "ResultsDistributionListSequence",
        "ResultsIDIssuer",
        "ScheduledHumanPerformersSequence",
        "ScheduledPatientInstitutionResidence",
        "ScheduledPerformingPhysicianIdentificationSequence",
        "ScheduledProcedureStepDescription",
        "ScheduledProcedureStepLocation",
        "ScheduledStationAETitle",
        "ScheduledStationGeographicLocationCodeSequence",
        "ScheduledStationName",
        "ScheduledStationNameCodeSequence",
        "ScheduledStudyLocation",
        "ScheduledStudyLocationAETitle",
        "SeriesDescription",
        "ServiceEpisodeDescription",
        "ServiceEpisodeID",
        "SmokingStatus",
        "SpecialNeeds",
        "StudyComments",
        "StudyDescription",
        "StudyIDIssuer",
        "TextComments",
        "TextString",
        "TopicAuthor",
        "TopicKeywords",
        "TopicSubject",
        "TopicTitle",
        "VerifyingObserverIdentificationCodeSequence",
        "VisitComments",
    }
)
# Kept in an SR or a KOS, cleaned by _clean_text: their content is the result (Clean
# Structured Content), and the MRI service writes the demo label into these descriptions
# (Clean Descriptors). Removed from anything else, as the Basic Profile says; the study's
# own descriptions (StudyDescription, copied from the images) go from the SR and KOS too.
_STRUCTURED_CONTENT: Final = frozenset(
    {"ContentSequence", "ContributionDescription", "SeriesDescription"}
)
# Value representations of text that may quote an identifier; VRs of codes, numbers and
# UIDs cannot hold a name.
_TEXT_VRS: Final = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
# A member larger than this is no image of an MR study; it is left out unread.
MAX_MEMBER_BYTES: Final = 512 * 1024 * 1024
_READ_BYTES: Final = 1024 * 1024


class NotDeidentifiable(ValueError):
    """The bytes are no DICOM object this module can de-identify (unreadable, or not DICOM)."""


def _tags(keywords: Iterable[str]) -> frozenset[int]:
    tags = set()
    for keyword in keywords:
        tag = pydicom.datadict.tag_for_keyword(keyword)
        if tag is None:  # a typo here would silently keep an attribute: refuse to start
            raise RuntimeError(f"{keyword} is not a DICOM keyword")
        tags.add(tag)
    return frozenset(tags)


_EMPTIED_TAGS: Final = _tags(_EMPTIED)
_REMOVED_TAGS: Final = _tags(_REMOVED)
_STRUCTURED_TAGS: Final = _tags(_STRUCTURED_CONTENT)


class _RetainUids(ElementAnonymizer):
    """The Retain UIDs option: every UI element stays as it is (dicognito would replace it)."""

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        """Keeps a UID; tells dicognito the element is handled."""
        return data_element.VR == "UI"

    def describe_actions(self) -> Iterator[str]:
        """Describes the action."""
        yield "Keep every UI element (Retain UIDs Option)"


class _BasicProfileRemovals(ElementAnonymizer):
    """The Basic Profile's X and Z actions that dicognito does not take, and private tags."""

    def __init__(self, *, structured: bool) -> None:
        self._structured = structured

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        """Removes or empties the element when the profile says so; tells whether it did."""
        tag = data_element.tag
        if tag.is_private or _is_curve_or_overlay_text(tag):
            del dataset[tag]
            return True
        if tag in _EMPTIED_TAGS:
            data_element.value = None
            return True
        if tag in _STRUCTURED_TAGS:
            if self._structured:
                return False  # kept, for dicognito and then _clean_text to clean
            del dataset[tag]
            return True
        if tag in _REMOVED_TAGS:
            del dataset[tag]
            return True
        return False

    def describe_actions(self) -> Iterator[str]:
        """Describes the actions."""
        yield "Remove private attributes, curves, overlay data and comments"
        yield "Remove or empty the Basic Profile's X and Z attributes dicognito keeps"


def _is_curve_or_overlay_text(tag: BaseTag) -> bool:
    """Tells whether tag is in a curve group (50xx) or is overlay data or comments (60xx)."""
    return 0x5000 <= tag.group <= 0x50FF or (
        0x6000 <= tag.group <= 0x60FF and tag.element in (0x3000, 0x4000)
    )


def _anonymizer(seed: str, *, structured: bool) -> Anonymizer:
    anonymizer = Anonymizer(seed=seed)
    # Handlers added later run first: the UIDs are kept before anything else looks.
    anonymizer.add_element_handler(_BasicProfileRemovals(structured=structured))
    anonymizer.add_element_handler(_RetainUids())
    return anonymizer


def _identifiers(ds: Dataset) -> tuple[str, ...]:
    """Returns the patient's identifying strings as the original headers hold them, uppercase.

    Each name component of three or more characters counts, so a free text naming the
    patient by surname only is caught too.
    """
    found: set[str] = set()
    for keyword in ("PatientID", "OtherPatientIDs", "PatientBirthDate", "AccessionNumber"):
        value = ds.get(keyword)
        values = value if isinstance(value, MultiValue) else [value]
        found.update(str(v).strip().upper() for v in values if v)
    for keyword in ("PatientName", "OtherPatientNames", "PatientBirthName"):
        value = ds.get(keyword)
        values = value if isinstance(value, MultiValue) else [value]
        for name in values:
            if not name:
                continue
            text = str(name).upper()
            found.add(text)
            found.update(part for part in text.replace("=", "^").split("^") if len(part) >= 3)
    return tuple(sorted(v for v in found if len(v) >= 3))


def _clean_text(ds: Dataset, identifiers: tuple[str, ...]) -> None:
    """Empties every text element, in nested sequences too, that quotes an identifier."""
    if not identifiers:
        return

    def visit(dataset: Dataset, element: DataElement) -> None:
        if element.VR in _TEXT_VRS and element.value:
            values = element.value if isinstance(element.value, MultiValue) else [element.value]
            text = "\\".join(str(v) for v in values).upper()
            if any(identifier in text for identifier in identifiers):
                element.value = None

    ds.walk(visit)


def _method(ds: Dataset, codes: Iterable[tuple[str, str]]) -> None:
    """Records what was done: PatientIdentityRemoved, the method in words and in codes."""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [
        "PS3.15 Basic Application Confidentiality",
        *(meaning.removesuffix(" Option")[:64] for value, meaning in codes if value != "113100"),
        f"dicognito {DICOGNITO_VERSION}",
    ]
    sequence = Sequence()
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        sequence.append(item)
    ds.DeidentificationMethodCodeSequence = sequence


def deidentify_dataset(ds: Dataset, *, seed: str) -> None:
    """De-identifies one dataset in place (see the module's docstring); `seed` as for a job."""
    sop_class = str(ds.get("SOPClassUID", ""))
    structured = sop_class.startswith(_SR_CLASS_PREFIX)
    identifiers = _identifiers(ds)
    _anonymizer(seed, structured=structured).anonymize(ds)
    _clean_text(ds, identifiers)
    codes = [BASIC_PROFILE, RETAIN_UIDS, MODIFIED_DATES]
    if structured:
        codes += [CLEAN_STRUCTURED_CONTENT, CLEAN_DESCRIPTORS]
    _method(ds, codes)


def _read(data: bytes) -> Dataset:
    try:
        # Never force: a non-DICOM file would "parse" as an empty dataset.
        return pydicom.dcmread(io.BytesIO(data))
    except Exception as error:  # InvalidDicomError, struct.error, EOFError ... on bad bytes
        raise NotDeidentifiable(f"not a readable DICOM file ({type(error).__name__})") from None


def _write(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def deidentify_part10(data: bytes, *, seed: str) -> bytes:
    """Returns a de-identified copy of one DICOM Part 10 file (an SR, a KOS, an image).

    Raises:
        NotDeidentifiable: the bytes are not a DICOM file that reads.
    """
    ds = _read(data)
    try:
        deidentify_dataset(ds, seed=seed)
        return _write(ds)
    except NotDeidentifiable:
        raise
    except Exception as error:  # whatever a malformed value makes pydicom raise
        raise NotDeidentifiable(f"could not be de-identified ({type(error).__name__})") from None


@dataclass(frozen=True)
class StudyCopy:
    """What a de-identified copy of a study zip holds: DICOM objects kept, members left out."""

    kept: int
    left_out: int
    size_bytes: int


def _left_out(ds: Dataset) -> bool:
    """Tells whether an object stays out of the copy: a directory, or may show burned-in text."""
    sop_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
    if sop_class == _MEDIA_DIRECTORY or "DirectoryRecordSequence" in ds:
        return True
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        return True
    return sop_class.startswith(_LEFT_OUT_CLASS_PREFIXES)


def _member_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes | None:
    """Returns a member's bytes, or None when it is too large or does not read."""
    if info.file_size > MAX_MEMBER_BYTES:
        return None
    buffer = io.BytesIO()
    try:
        with archive.open(info) as member:
            while block := member.read(_READ_BYTES):
                buffer.write(block)
                if buffer.tell() > MAX_MEMBER_BYTES:  # a size that lied
                    return None
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError):
        return None  # encrypted, an unknown compression, a broken entry
    return buffer.getvalue()


def deidentify_study_zip(source: Path, target: Path, *, seed: str) -> StudyCopy:
    """Writes a de-identified copy of a study zip to target; the source is left as it is.

    Each DICOM object is de-identified (deidentify_dataset, one seed for all) and stored as
    `<SeriesInstanceUID>/<SOPInstanceUID>.dcm`; everything else is left out (see the
    module's docstring), as is a second object with a SOPInstanceUID already written.

    Raises:
        zipfile.BadZipFile: the source is not a zip.
    """
    kept = left_out = 0
    written: set[str] = set()
    with (
        zipfile.ZipFile(source) as archive,
        zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out,
    ):
        for info in archive.infolist():
            if info.is_dir():
                continue
            data = _member_bytes(archive, info)
            if data is None:
                left_out += 1
                continue
            try:
                ds = _read(data)
                if _left_out(ds):
                    left_out += 1
                    continue
                series_uid, sop_uid = str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
                deidentify_dataset(ds, seed=seed)
                name = f"{series_uid}/{sop_uid}.dcm"
                if name in written:
                    left_out += 1
                    continue
                entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                entry.compress_type = zipfile.ZIP_DEFLATED
                out.writestr(entry, _write(ds))
            except Exception:  # what cannot be de-identified is not kept
                left_out += 1
                continue
            written.add(name)
            kept += 1
    return StudyCopy(kept=kept, left_out=left_out, size_bytes=target.stat().st_size)
