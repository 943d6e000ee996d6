"""`make demo` runs the script tested here; this test runs it on the session's 3-node cluster.

With the cluster already up the demo leaves it running (it only tears down a cluster it started).
It asserts what the demo shows a newcomer: multinet's pods on the nodes, two pods on two nodes
each with a net1 address from the pool, a ping between them over net1, and the NICs back home.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import localcluster
import pytest
from localcluster import Cluster

pytestmark = [pytest.mark.cluster, pytest.mark.root]


def test_demo_shows_two_pods_on_two_nodes_talking_over_net1_and_the_nics_back_home(
    nodes3: Cluster,
) -> None:
    hack = str(Path(localcluster.__file__).parents[1])
    proc = subprocess.run(
        [sys.executable, "-m", "localcluster.demo", "--nodes", str(nodes3.node_count)],
        env={**os.environ, "PYTHONPATH": hack},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    steps = [line for line in out.splitlines() if line.startswith("==> [")]
    assert len(steps) == 9, steps
    deployed = out.split("==> [2]")[1].split("==> [3]")[0]
    assert deployed.count("multinet-node-agent-") == nodes3.node_count
    assert "multinet-controller-" in deployed
    placed = out.split("==> [6]")[1].split("==> [7]")[0]
    assert "demo-a" in placed and "demo-b" in placed
    net1 = out.split("==> [7]")[1].split("==> [8]")[0]
    assert net1.count("inet 198.51.100.") == 2
    ping = out.split("==> [8]")[1].split("==> [9]")[0]
    assert "3 packets received" in ping and "0% packet loss" in ping
    back = out.split("==> [9]")[1]
    assert back.count("demo0 mtu") == 2
    assert "identical to before the pods" in back
    assert "demo complete" in out
    assert nodes3.is_up()
