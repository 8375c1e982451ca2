"""Shared foundation of every medimg gRPC service: bootstrap, interceptors, batcher, backends."""
