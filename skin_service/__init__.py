"""Skin-lesion classification service: melanoma, common nevus, atypical nevus."""
