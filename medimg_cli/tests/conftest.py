"""Fixtures shared by the medimg command's tests."""

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture
def listener() -> Iterator[int]:
    """Yields the port of a socket that listens on 127.0.0.1, as another program would."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port: int = sock.getsockname()[1]
        yield port
