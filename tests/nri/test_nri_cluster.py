"""The plugin on the local cluster's containerd, beside the cluster's own plugins: pods created
through kubectl (so through the kubelet and CRI) produce the NRI traffic the agent relies on.

A second plugin instance with its own name (mntest<hex>, index 90) connects to the cluster's NRI
socket for the length of one test; its handler only acts on that test's pod.

Cases: RunPodSandbox arrives with the pod's UID, name and an existing netns; Stop arrives while the
netns still exists, then Remove; a plugin connecting after a pod exists finds it in Synchronize;
a failing RunPodSandbox fails the sandbox and its message (longer than one 4096-byte frame) reaches
the pod's events; a deliberately slow handler is answered in time with an error, the plugin stays
connected, and the sandbox fails saying so.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
import support
from helpers import wait_for
from localcluster import TEST_IMAGE, Cluster
from nrisupport import PluginThread, RecordingHandler

from multinet.nri import NRIPlugin, PluginSettings, PodSandbox

pytestmark = pytest.mark.cluster


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"nri-{secrets.token_hex(3)}"
    support.create_namespace(cluster, name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def _plugin(cluster: Cluster, handler: RecordingHandler) -> PluginThread:
    settings = PluginSettings(
        socket_path=str(cluster.nri_socket), name=f"mntest{secrets.token_hex(3)}", index="90"
    )
    return PluginThread(NRIPlugin(handler, settings))


def _create_pod(cluster: Cluster, namespace: str, name: str) -> str:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": TEST_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "3600"],
                }
            ],
        },
    }
    out = cluster.kubectl(
        "create", "-f", "-", "-o", "jsonpath={.metadata.uid}", input=json.dumps(pod)
    )
    return out.stdout.strip()


def _phase(cluster: Cluster, namespace: str, name: str) -> str:
    return cluster.kubectl(
        "get", "pod", name, "-n", namespace, "-o", "jsonpath={.status.phase}", check=False
    ).stdout


def _sandbox_failures(cluster: Cluster, namespace: str, name: str) -> list[str]:
    out = cluster.kubectl(
        "get",
        "events",
        "-n",
        namespace,
        "-o",
        "json",
        f"--field-selector=involvedObject.name={name},reason=FailedCreatePodSandBox",
    )
    return [e["message"] for e in json.loads(out.stdout)["items"]]


def _named(name: str) -> RecordingHandler:
    def mine(pod: PodSandbox) -> bool:
        return pod.name == name

    return RecordingHandler(only=mine)


def test_pod_lifecycle_events_carry_uid_and_netns(cluster: Cluster, namespace: str) -> None:
    name = f"p-{secrets.token_hex(3)}"
    handler = _named(name)
    with _plugin(cluster, handler) as thread:
        wait_for(lambda: thread.plugin.connected, timeout=15, what="plugin registered")
        uid = _create_pod(cluster, namespace, name)
        wait_for(lambda: handler.events(uid) == ["run"], timeout=60, what="RunPodSandbox")
        pod = handler.calls[0][1]
        assert (pod.uid, pod.name, pod.namespace) == (uid, name, namespace)
        assert pod.netns and pod.netns.startswith("/var/run/netns/"), pod.netns
        assert pod.ips, "CNI ran before RunPodSandbox: the pod has an address"
        wait_for(lambda: _phase(cluster, namespace, name) == "Running", timeout=60, what="Running")

        cluster.kubectl("delete", "pod", name, "-n", namespace, "--wait=false")
        wait_for(
            lambda: "remove" in handler.events(uid),
            timeout=150,
            what="RemovePodSandbox (kubelet GC)",
        )
        assert handler.events(uid) == ["run", "stop", "remove"], handler.events(uid)
        # The netns existed at Run and still at Stop (the last chance to move a device back).
        assert handler.netns_seen == [("run", True), ("stop", True)]
        assert thread.plugin.registrations == 1


def test_synchronize_lists_a_pod_that_already_exists(cluster: Cluster, namespace: str) -> None:
    name = f"p-{secrets.token_hex(3)}"
    uid = _create_pod(cluster, namespace, name)
    wait_for(lambda: _phase(cluster, namespace, name) == "Running", timeout=60, what="Running")
    handler = _named(name)
    with _plugin(cluster, handler) as thread:
        wait_for(lambda: thread.plugin.connected, timeout=15, what="plugin registered")
        found = [p for p in handler.syncs[0] if p.uid == uid]
        assert len(found) == 1, [p.uid for p in handler.syncs[0]]
        assert found[0].name == name and found[0].netns and found[0].ips


def test_failing_run_pod_sandbox_fails_the_sandbox_with_our_long_message(
    cluster: Cluster, namespace: str
) -> None:
    name = f"p-{secrets.token_hex(3)}"
    message = f"claim {namespace}/c1 device eth9: moving failed " + "." * 6000 + " END-OF-MESSAGE"
    handler = _named(name)
    handler.run_error = message
    with _plugin(cluster, handler) as thread:
        wait_for(lambda: thread.plugin.connected, timeout=15, what="plugin registered")
        _create_pod(cluster, namespace, name)
        events = wait_for(
            lambda: _sandbox_failures(cluster, namespace, name), timeout=60, what="sandbox failure"
        )
        assert any(f"claim {namespace}/c1 device eth9: moving failed" in e for e in events), events
        assert any("END-OF-MESSAGE" in e for e in events), "the whole message crossed the frames"
        assert thread.plugin.connected
        cluster.kubectl("delete", "pod", name, "-n", namespace, "--wait=false")


def test_slow_handler_is_answered_in_time_and_stays_connected(
    cluster: Cluster, namespace: str
) -> None:
    name = f"p-{secrets.token_hex(3)}"
    handler = _named(name)
    handler.run_delay = 4.0  # twice containerd's 2 s plugin_request_timeout
    with _plugin(cluster, handler) as thread:
        wait_for(lambda: thread.plugin.connected, timeout=15, what="plugin registered")
        _create_pod(cluster, namespace, name)
        events = wait_for(
            lambda: _sandbox_failures(cluster, namespace, name), timeout=60, what="sandbox failure"
        )
        assert any("not finished within" in e for e in events), events
        # Answered in time: containerd did not drop us, we never had to re-register.
        assert thread.plugin.connected and thread.plugin.registrations == 1
        cluster.kubectl("delete", "pod", name, "-n", namespace, "--wait=false")
        wait_for(lambda: "remove" in [k for k, _ in handler.calls], timeout=60, what="Remove")
        assert thread.plugin.registrations == 1
