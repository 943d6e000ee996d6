"""Fixtures of the many-node tests: a 3-node local cluster (each node a sandbox with its own netns,
mounts and hostname) running multinet as users run it, deploy/base's Deployment and DaemonSet as
pods from the image `make image` builds.

These tests run last in a session (tests/conftest.py orders them): bringing up three nodes takes
the single-node cluster of the other tests down.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import support
from lab import LabNics
from localcluster import Cluster
from localcluster import multinet as deployment

NODES = 3


@pytest.fixture(scope="session")
def nodes3() -> Iterator[Cluster]:
    with support.shared_cluster(NODES) as cluster:
        deployment.deploy(cluster, say=lambda s: print(f"[multinet] {s}", flush=True))
        yield cluster


@pytest.fixture
def namespace(nodes3: Cluster) -> Iterator[str]:
    name = f"mn-{secrets.token_hex(3)}"
    support.create_namespace(nodes3, name)
    try:
        yield name
    finally:
        nodes3.kubectl("delete", "namespace", name, "--wait=true", "--timeout=180s", check=False)


@pytest.fixture
def lab_nics(nodes3: Cluster) -> Iterator[LabNics]:
    nics = LabNics()
    try:
        yield nics
    finally:
        nics.cleanup()
