"""Tests of the DICOM receiver: pure pieces, and real Orthanc, gateway and mri_service processes."""
