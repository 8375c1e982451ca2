"""A stand-in for TensorFlow Serving that speaks its real gRPC protocol, for tests only."""
