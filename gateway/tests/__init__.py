"""Unit and in-process tests of the gateway."""
