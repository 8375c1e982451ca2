"""Breast-MRI series analysis: DICOM series in, slices that show a tumour out (BreastWise)."""
