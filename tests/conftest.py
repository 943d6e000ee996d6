"""Session fixtures on top of hack/localcluster: the real single-node cluster, an admin API client,
veth "NICs" on the node.

The cluster is shared: a running healthy cluster is reused; otherwise this session starts one and,
unless MULTINET_KEEP_CLUSTER is set or someone ran `python -m localcluster up` meanwhile (the
<state>/keep marker), stops it at the end, but only if no other test session still holds it
(each session keeps a shared flock on <state>/users.lock while it runs).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import support
from helpers import NicFactory
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from localcluster import Cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The many-node tests (tests/multinode) last: their 3-node cluster replaces the single-node
    one the other tests share, so they run once that is no longer needed."""
    items.sort(key=lambda item: "multinode" in item.path.parts)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The local cluster, up and Ready (started on demand; see support.shared_cluster)."""
    with support.shared_cluster() as started:
        yield started


@pytest.fixture(scope="session")
def k8s_api(cluster: Cluster) -> Iterator[k8s_client.ApiClient]:
    """A sync `kubernetes` ApiClient authenticated as cluster admin."""
    api = k8s_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def make_nic() -> Iterator[NicFactory]:
    """Factory: make_nic(prefix="mnt", addresses=("192.0.2.10/24",), mtu=1400, up=True) -> Nic.

    Creates a veth pair in the root netns: `nic.name` is the "NIC", `nic.peer` its far end. Names
    are `<prefix><6 hex>` (peer `...p`), unique across concurrent sessions. At teardown both ends
    are deleted wherever they are in the root netns; a NIC that was moved into a pod netns and
    came back, or that died with its netns, is fine.
    """
    factory = NicFactory()
    yield factory
    factory.cleanup()
