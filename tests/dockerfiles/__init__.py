"""Static checks of the container images: docker/*.Dockerfile, .dockerignore, build_images.sh.

No engine is needed: tests/support/dockerfile/ parses the Dockerfiles, and each of its rules
(a function returning violations) runs here on the real files and on a deliberately broken
text, which proves that it can fail. A plug-in disease service's Dockerfile
(docker/<name>.Dockerfile beside a <name>_service/component.json, written by `medimg
new-service`) follows the same rules; services scaffolded into a small checkout in a tmp
dir prove it, and that the build script finds them.
"""
