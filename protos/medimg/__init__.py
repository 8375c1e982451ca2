"""Generated gRPC contracts of medimg; regenerate with `make protos`."""
