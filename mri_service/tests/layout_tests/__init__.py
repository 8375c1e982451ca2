"""Tests of the layout builders (mri_service/tests/layouts): each zip holds what it claims."""
