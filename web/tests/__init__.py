"""Tests of the web tier (Django); conftest.py configures Django for them."""
