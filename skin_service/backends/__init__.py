"""Model-server backends of the skin service, one small class each."""
