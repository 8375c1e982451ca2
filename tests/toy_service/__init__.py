"""A test-only image service: a tiny real numpy model behind servicekit, never shipped."""
