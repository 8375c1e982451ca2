"""Runs the phantom data set writer (mri_service.phantom.cli)."""

from mri_service.phantom.cli import main

raise SystemExit(main())
