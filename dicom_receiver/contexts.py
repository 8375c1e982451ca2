"""The presentation contexts the receiver accepts: MR and its companions first, then the rest."""

from __future__ import annotations

from pydicom.uid import (
    BasicTextSRStorage,
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    EnhancedMRColorImageStorage,
    EnhancedMRImageStorage,
    EnhancedSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    KeyObjectSelectionDocumentStorage,
    LegacyConvertedEnhancedMRImageStorage,
    MammographyCADSRStorage,
    MRImageStorage,
    MRSpectroscopyStorage,
    ParametricMapStorage,
    SecondaryCaptureImageStorage,
    SegmentationStorage,
)
from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, build_context
from pynetdicom.presentation import PresentationContext

# The Verification SOP Class (C-ECHO).
VERIFICATION = "1.2.840.10008.1.1"
# pynetdicom refuses an SCP with more than 128 contexts (PS3.8 allows 128 per association).
MAX_CONTEXTS = 128
# Deflated syntaxes are left out: mri_service refuses them, and every SCU can fall back to an
# uncompressed syntax (Implicit VR Little Endian is always proposed). The rest, JPEG, JPEG-LS,
# JPEG 2000 and RLE included, are stored as received: the service decodes them.
DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"})
# pynetdicom's acceptor takes the first of its own syntaxes the requestor proposes: Explicit
# VR Little Endian first (it keeps every element's VR), then the compressed syntaxes (kept as
# archived, without a transcoding), Implicit VR Little Endian and Big Endian last.
EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE = (
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.2",
)
TRANSFER_SYNTAXES = [
    EXPLICIT_LE,
    *(
        uid
        for uid in ALL_TRANSFER_SYNTAXES
        if uid not in DEFLATED and uid not in {EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE}
    ),
    IMPLICIT_LE,
    EXPLICIT_BE,
]
# Always accepted: what a breast-MRI study holds and what a PACS sends along with it
# (reports, key images, segmentations, presentation states, screenshots).
PRIORITY_SOP_CLASSES = (
    MRImageStorage,
    EnhancedMRImageStorage,
    EnhancedMRColorImageStorage,
    LegacyConvertedEnhancedMRImageStorage,
    MRSpectroscopyStorage,
    Comprehensive3DSRStorage,
    ComprehensiveSRStorage,
    EnhancedSRStorage,
    BasicTextSRStorage,
    MammographyCADSRStorage,
    KeyObjectSelectionDocumentStorage,
    SegmentationStorage,
    ParametricMapStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    SecondaryCaptureImageStorage,
)


def accepted_sop_classes() -> list[str]:
    """Returns the storage SOP classes accepted, priority first, within the 128-context cap.

    One context goes to Verification (C-ECHO); the others are filled in pynetdicom's order
    of its storage classes, so the classes left out are rare ones (see README.md).
    """
    chosen = [str(uid) for uid in PRIORITY_SOP_CLASSES]
    for context in AllStoragePresentationContexts:
        uid = str(context.abstract_syntax)
        if len(chosen) >= MAX_CONTEXTS - 1:
            break
        if uid not in chosen:
            chosen.append(uid)
    return chosen


def supported_contexts() -> list[PresentationContext]:
    """Returns the contexts of the SCP: Verification, then each accepted storage class."""
    contexts = [build_context(VERIFICATION)]
    contexts += [build_context(uid, TRANSFER_SYNTAXES) for uid in accepted_sop_classes()]
    return contexts
