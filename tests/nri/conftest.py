"""Fixtures for the NRI plugin tests: a private containerd 2.1.9 with NRI enabled."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from nrisupport import Containerd


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    # Short path under /tmp: unix socket paths are limited to 107 bytes.
    base = Path(tempfile.mkdtemp(prefix="mnnri-", dir="/tmp"))
    ctd = Containerd(base)
    ctd.start()
    try:
        yield ctd
    finally:
        ctd.stop()
        shutil.rmtree(base, ignore_errors=True)
