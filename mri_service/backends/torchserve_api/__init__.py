"""TorchServe's gRPC inference API (package org.pytorch.serve.grpc.inference), generated.

Regenerate from the installed TorchServe with
`python -m mri_service.backends.torchserve_api.generate`; a test fails when the
committed files differ from what that makes.
"""
