"""medimg's DICOM receiver: a C-STORE SCP that analyses a PACS's studies and sends results back."""
