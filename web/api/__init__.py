"""The REST API (/api/v1/): diagnoses, models and tokens for programs, with an OpenAPI schema."""
