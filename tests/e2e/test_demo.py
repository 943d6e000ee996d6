"""`make demo` runs the script tested here; this test runs it on the session's cluster.

With the cluster already up the demo leaves it running (it only tears down a cluster it started),
so the rest of the suite keeps its cluster. It asserts what the demo shows a newcomer: the
interface with its address inside the pod, the claim status, and the NIC back on the host.
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


def test_demo_shows_the_interface_in_the_pod_and_the_nic_back_on_the_host(
    multinet: Cluster,
) -> None:
    hack = str(Path(localcluster.__file__).parents[1])
    proc = subprocess.run(
        [sys.executable, "-m", "localcluster.demo"],
        env={**os.environ, "PYTHONPATH": hack},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    steps = [line for line in out.splitlines() if line.startswith("==> [")]
    assert len(steps) == 9, steps
    pod_part = out.split("==> [7]")[1].split("==> [8]")[0]
    assert "net1" in pod_part and "inet 198.51.100.10/24" in pod_part
    claim_part = out.split("==> [8]")[1].split("==> [9]")[0]
    assert '"podNetwork": "demo-net"' in claim_part
    assert '"interfaceName": "net1"' in claim_part
    back = out.split("==> [9]")[1]
    assert "host: " in back and "mn-demo0" in back and "198.51.100.10/24" in back
    assert "identical to before the pod" in back
    assert "demo complete" in out
    assert multinet.is_up()
