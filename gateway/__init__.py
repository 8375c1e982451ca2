"""The single gRPC entry point: routes each call to the service that owns its disease."""
