"""Diagnoses: image uploads, their results from the gateway, history and e-mail of results."""
