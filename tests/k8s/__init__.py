"""Tests of the Kubernetes manifests in k8s/: rendering, schema validation and policy rules."""
