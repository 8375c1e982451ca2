"""Tests of the medimg command line."""
