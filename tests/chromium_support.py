"""Debian's Chromium for the tests that drive a real browser (tests/browser, the pages'
policy test in tests/ui): installed with apt-get on first use when the tests run as root, as
appliance/servers.py installs the servers; outside CI a machine without it skips those tests,
in CI it fails them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> Path:
    """The Chromium executable, installing it first when it is missing and apt-get can."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "chromium"], capture_output=True, timeout=900, check=False
        )
        if CHROMIUM.exists():
            return CHROMIUM
    message = "Chromium is not installed: run `apt-get install -y chromium` as root"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
