"""Fixtures for running the `c360` command inside the test process."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest


@pytest.fixture
def quiet_logs() -> Iterator[None]:
    """Put the root logger and the umask back as they were after a test that runs `c360` in
    this process (the command installs its own log handler and a private umask)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        os.umask(umask)
