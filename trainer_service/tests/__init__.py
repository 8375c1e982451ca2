"""Tests of the trainer service."""
