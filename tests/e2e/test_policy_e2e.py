"""End to end: routing policy, tuning, dual stack, default route and CNI networks on a real node.

What a user checks from inside the pod's network namespace (`ip route show table N`, `ip rule`,
`ip neigh`, `sysctl`, `ethtool -k`, both address families, the default route), what the claim
status reports, the field named when a value is bad, and the host NIC exact after the pod goes.
For `mode: cni`: a bridge + host-local + tuning + bandwidth chain run from the node's CNI plugins,
two pods pinging each other over it, and DEL after the agent was SIGKILLed.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from localcluster import Cluster
from localcluster import multinet as deployment
from support import (
    agent_checkpoint,
    apply,
    claim,
    delete_pod,
    device_statuses,
    events_for,
    get,
    host_link,
    pod,
    podnetwork,
    wait_ready_network,
    wait_running,
)

from multinet.api import names

pytestmark = [pytest.mark.cluster, pytest.mark.root]

DUAL_STACK = {
    "type": "pool",
    "subnets": [
        {"subnet": "198.51.100.0/24", "gateway": "198.51.100.1", "rangeStart": "198.51.100.10"},
        {"subnet": "2001:db8:10::/64", "gateway": "2001:db8:10::1"},
    ],
}


def _network(cluster: Cluster, cleanup: list[str], **parameters: Any) -> str:
    name = f"e2p-{secrets.token_hex(3)}"
    apply(cluster, podnetwork(name, **parameters))
    cleanup.append(name)
    wait_ready_network(cluster, name)
    return name


def in_pod(netns: str, *command: str) -> str:
    """A command run in the pod's network namespace, with the host's own tools."""
    done = subprocess.run(
        ["nsenter", f"--net={netns}", *command], capture_output=True, text=True, check=True
    )
    return done.stdout


def pod_netns(cluster: Cluster, namespace: str, name: str) -> str:
    found = [
        a["netns"]
        for a in agent_checkpoint(cluster)["attachments"].values()
        if a["pod"] == f"{namespace}/{name}" and a["phase"] == "attached"
    ]
    assert found, f"no attachment of pod {namespace}/{name} in the agent's checkpoint"
    return str(found[0])


def pod_event(cluster: Cluster, namespace: str, name: str, needle: str) -> str:
    return wait_for(
        lambda: next((m for m in events_for(cluster, namespace, "Pod", name) if needle in m), None),
        timeout=90,
        what=f"a pod Event mentioning {needle}",
    )


def offloads(ifname: str) -> str:
    return subprocess.run(
        ["ethtool", "-k", ifname], capture_output=True, text=True, check=True
    ).stdout


def test_the_pod_gets_tables_rules_neighbours_sysctls_offloads_both_families_and_its_default(
    multinet: Cluster, make_nic: Any, e2e_namespace: str, network_cleanup: list[str]
) -> None:
    nic = make_nic(prefix="e2p")
    before, before_offloads = host_link(nic.name), offloads(nic.name)
    net = _network(
        multinet,
        network_cleanup,
        interfaces={"names": [nic.name]},
        interfaceName="net1",
        ipam=DUAL_STACK,
        defaultRoute=True,
        routes=[
            {"destination": "203.0.113.0/24", "gateway": "198.51.100.254", "table": 100},
            {"destination": "198.18.101.0/24", "gateway": "198.51.100.254", "metric": 30},
        ],
        rules=[{"priority": 100, "from": "198.51.100.0/24", "table": 100}],
        neighbors=[{"address": "198.51.100.254", "mac": "02:00:00:00:01:fe"}],
        sysctls={"net.ipv4.conf.net1.arp_ignore": "1", "net.ipv6.conf.net1.accept_ra": "0"},
        ethtool={"features": {"tx-checksumming": False}},
    )
    apply(multinet, claim(e2e_namespace, "nic", net), pod(e2e_namespace, "app", "nic"))
    wait_running(multinet, e2e_namespace, "app")
    netns = pod_netns(multinet, e2e_namespace, "app")

    assert "203.0.113.0/24 via 198.51.100.254 dev net1" in in_pod(
        netns, "ip", "route", "show", "table", "100"
    )
    assert "198.18.101.0/24 via 198.51.100.254 dev net1 metric 30" in in_pod(netns, "ip", "route")
    assert "100:\tfrom 198.51.100.0/24 lookup 100" in in_pod(netns, "ip", "rule")
    neighbours = in_pod(netns, "ip", "neigh", "show", "dev", "net1")
    assert "198.51.100.254 lladdr 02:00:00:00:01:fe PERMANENT" in neighbours
    assert in_pod(netns, "sysctl", "-n", "net.ipv4.conf.net1.arp_ignore").strip() == "1"
    assert in_pod(netns, "sysctl", "-n", "net.ipv6.conf.net1.accept_ra").strip() == "0"
    assert "tx-checksumming: off" in in_pod(netns, "ethtool", "-k", "net1")
    default4 = json.loads(in_pod(netns, "ip", "-j", "-4", "route", "show", "default"))
    default6 = json.loads(in_pod(netns, "ip", "-j", "-6", "route", "show", "default"))
    assert [(r["gateway"], r["dev"]) for r in default4] == [("198.51.100.1", "net1")]
    assert [(r["gateway"], r["dev"]) for r in default6] == [("2001:db8:10::1", "net1")]
    # The cluster network keeps its own subnet route on eth0.
    assert any(r.get("dev") == "eth0" for r in json.loads(in_pod(netns, "ip", "-j", "route")))

    status = device_statuses(multinet, e2e_namespace, "nic")[0]
    ips = status["networkData"]["ips"]
    assert [ip.split("/")[1] for ip in ips] == ["24", "64"], ips
    shown = multinet.kubectl("exec", "-n", e2e_namespace, "app", "--", "ip", "addr", "show", "net1")
    assert all(ip in shown.stdout for ip in ips)
    data = status["data"]
    assert data["defaultRoute"] == ["198.51.100.1", "2001:db8:10::1"]
    assert data["rules"] == [{"priority": 100, "source": "198.51.100.0/24", "table": 100}]
    assert data["sysctls"]["net.ipv4.conf.net1.arp_ignore"] == "1"
    assert data["ethtool"] == {"features": {"tx-checksumming": False}}
    assert data["neighbors"] == [{"address": "198.51.100.254", "mac": "02:00:00:00:01:fe"}]
    assert {"destination": "203.0.113.0/24", "gateway": "198.51.100.254", "table": 100} in data[
        "routes"
    ]

    delete_pod(multinet, e2e_namespace, "app")
    after = wait_for(lambda: host_link(nic.name), timeout=30, what=f"{nic.name} back on the host")
    assert after == before
    assert offloads(nic.name) == before_offloads


def test_bad_policy_values_are_refused_with_the_field_named(
    multinet: Cluster, make_nic: Any, e2e_namespace: str, network_cleanup: list[str]
) -> None:
    bad = f"e2p-bad-{secrets.token_hex(3)}"
    apply(
        multinet,
        podnetwork(bad, interfaces={"names": ["eth9"]}, rules=[{"priority": 5, "table": 7}]),
    )
    network_cleanup.append(bad)

    def not_ready() -> str | None:
        conds = get(multinet, "podnetwork", bad).get("status", {}).get("conditions", [])
        ready = next((c for c in conds if c["type"] == "Ready"), None)
        return ready["message"] if ready and ready["status"] == "False" else None

    message = wait_for(not_ready, timeout=60, what=f"PodNetwork {bad} Ready=False")
    assert "parameters.rules[0]: needs from or to" in message

    nic, nic2 = make_nic(prefix="e2q"), make_nic(prefix="e2r")
    before = host_link(nic.name)
    net = _network(
        multinet, network_cleanup, interfaces={"names": [nic.name]}, interfaceName="net1"
    )
    other = {"sysctls": {"net.ipv4.conf.eth0.rp_filter": "0"}}
    apply(multinet, claim(e2e_namespace, "nic", net, other), pod(e2e_namespace, "app", "nic"))
    event = pod_event(multinet, e2e_namespace, "app", "sysctls[")
    assert "names interface eth0, but this claim's interface in the pod is net1" in event
    assert get(multinet, "pod", "app", e2e_namespace)["status"]["phase"] == "Pending"
    assert host_link(nic.name) == before

    net2 = _network(multinet, network_cleanup, interfaces={"names": [nic2.name]})
    typo = {"ethtool": {"features": {"tx-checksuming": False}}}
    apply(multinet, claim(e2e_namespace, "nic2", net2, typo), pod(e2e_namespace, "app2", "nic2"))
    event = pod_event(multinet, e2e_namespace, "app2", "ethtool.features")
    assert "tx-checksuming: not a feature this node's kernel knows" in event
    assert "did you mean tx-checksumming?" in event


def _cni_config(name: str, bridge: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.18.100.0/24"}]]},
            },
            {"type": "tuning", "mtu": 1400, "sysctl": {"net.ipv4.conf.net1.arp_ignore": "1"}},
            {
                "type": "bandwidth",
                "ingressRate": 100_000_000,
                "ingressBurst": 1_000_000,
                "egressRate": 100_000_000,
                "egressBurst": 1_000_000,
            },
        ],
    }


def leases(network: str) -> set[str]:
    directory = Path("/var/lib/cni/networks") / network
    return {p.name for p in directory.glob("198.18.100.*")} if directory.exists() else set()


@pytest.fixture
def bridge_name() -> Any:
    name = f"mnbr{secrets.token_hex(3)}"
    yield name
    subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_a_cni_chain_connects_two_pods_and_is_deleted_after_an_agent_sigkill(
    multinet: Cluster,
    make_nic: Any,
    e2e_namespace: str,
    network_cleanup: list[str],
    bridge_name: str,
) -> None:
    uplink = make_nic(prefix="e2c")
    cni_name = f"e2c-{secrets.token_hex(3)}"
    net = _network(
        multinet,
        network_cleanup,
        interfaces={"names": [uplink.name]},
        interfaceName="net1",
        mode="cni",
        cni={"config": _cni_config(cni_name, bridge_name)},
    )
    for i in (1, 2):
        apply(
            multinet, claim(e2e_namespace, f"nic{i}", net), pod(e2e_namespace, f"app{i}", f"nic{i}")
        )
    for i in (1, 2):
        wait_running(multinet, e2e_namespace, f"app{i}")
    ips = [
        device_statuses(multinet, e2e_namespace, f"nic{i}")[0]["networkData"]["ips"] for i in (1, 2)
    ]
    assert all(len(ip) == 1 and ip[0].startswith("198.18.100.") for ip in ips), ips
    assert ips[0] != ips[1]
    assert len(leases(cni_name)) == 2

    netns = pod_netns(multinet, e2e_namespace, "app1")
    assert "mtu 1400" in in_pod(netns, "ip", "link", "show", "net1")  # tuning
    assert in_pod(netns, "sysctl", "-n", "net.ipv4.conf.net1.arp_ignore").strip() == "1"
    ping = multinet.kubectl(
        "exec",
        "-n",
        e2e_namespace,
        "app1",
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "3",
        ips[1][0].split("/")[0],
    )
    assert "1 packets received" in ping.stdout
    ports = json.loads(
        subprocess.run(
            ["ip", "-j", "link", "show", "master", bridge_name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert len(ports) == 2
    qdiscs = subprocess.run(
        ["tc", "qdisc", "show", "dev", ports[0]["ifname"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "tbf" in qdiscs  # bandwidth shapes on the host side of the pod's veth

    deployment.restart_agent(multinet, kill=True)
    for i in (1, 2):
        delete_pod(multinet, e2e_namespace, f"app{i}")
    wait_for(
        lambda: (
            not json.loads(
                subprocess.run(
                    ["ip", "-j", "link", "show", "master", bridge_name],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
        ),
        timeout=30,
        what=f"no ports left on {bridge_name}",
    )
    assert leases(cni_name) == set()  # host-local released both addresses
    cache = deployment.agent_state_dir(multinet) / "cni"
    assert not list(cache.glob("*.json")), "the CNI cache records are gone after DEL"


def test_a_host_device_cni_chain_takes_the_nic_and_gives_it_back_exact(
    multinet: Cluster, make_nic: Any, e2e_namespace: str, network_cleanup: list[str]
) -> None:
    nic = make_nic(prefix="e2h", addresses=("198.51.100.61/24",), mtu=1450)
    subprocess.run(
        ["ip", "route", "add", "203.0.113.0/24", "via", "198.51.100.1", "dev", nic.name],
        check=True,
    )
    before = host_link(nic.name)
    config = {
        "cniVersion": "1.0.0",
        "name": "e2e-hostdev",
        "type": "host-device",
        "ipam": {"type": "static", "addresses": [{"address": "203.0.113.70/24"}]},
    }
    net = _network(
        multinet,
        network_cleanup,
        interfaces={"names": [nic.name]},
        interfaceName="data0",
        mode="cni",
        cni={"config": json.dumps(config)},  # as a NetworkAttachmentDefinition holds it
    )
    apply(multinet, claim(e2e_namespace, "nic", net), pod(e2e_namespace, "app", "nic"))
    wait_running(multinet, e2e_namespace, "app")
    shown = multinet.kubectl(
        "exec", "-n", e2e_namespace, "app", "--", "ip", "addr", "show", "data0"
    )
    assert "203.0.113.70/24" in shown.stdout
    assert host_link(nic.name) is None  # the chain moved the NIC itself
    status = device_statuses(multinet, e2e_namespace, "nic")[0]
    assert status["networkData"]["ips"] == ["203.0.113.70/24"]
    # While in the pod the NIC stays published, so its allocation stays valid.
    slices = json.loads(multinet.kubectl("get", "resourceslices", "-o", "json").stdout)
    names = {d["name"] for s in slices["items"] for d in s["spec"].get("devices", [])}
    assert status["device"] in names

    delete_pod(multinet, e2e_namespace, "app")
    after = wait_for(lambda: host_link(nic.name), timeout=30, what=f"{nic.name} back on the host")
    assert after == before


def test_macvlan_mode_capacity_and_a_stable_mac(
    multinet: Cluster, make_nic: Any, e2e_namespace: str, network_cleanup: list[str]
) -> None:
    parent = make_nic(prefix="e2v")
    before = host_link(parent.name)
    net = _network(
        multinet,
        network_cleanup,
        interfaces={"names": [parent.name]},
        mode="macvlan",
        macvlanMode="private",
        interfacesPerParent=2,
        stableMac=True,
        interfaceName="net1",
        ipam={"type": "pool", "subnet": "198.51.100.0/28"},
    )

    def published() -> list[dict[str, Any]] | None:
        slices = json.loads(multinet.kubectl("get", "resourceslices", "-o", "json").stdout)
        found = [
            d
            for s in slices["items"]
            for d in s["spec"].get("devices", [])
            if d.get("attributes", {}).get(names.ATTRIBUTE, {}).get("string") == net
        ]
        return found or None

    devices = wait_for(published, timeout=30, what=f"devices of {net} published")
    # Either one shared device with capacity 2, or 2 slot devices: the cluster decides the form.
    capacity = [
        d["capacity"]["multinet.dev/interfaces"]["value"] for d in devices if "capacity" in d
    ]
    assert capacity == ["2"] or len(devices) == 2, devices

    apply(multinet, claim(e2e_namespace, "nic", net), pod(e2e_namespace, "app", "nic"))
    wait_running(multinet, e2e_namespace, "app")
    netns = pod_netns(multinet, e2e_namespace, "app")
    (link,) = json.loads(in_pod(netns, "ip", "-d", "-j", "link", "show", "net1"))
    assert link["linkinfo"]["info_data"]["mode"] == "private"
    first_mac = link["address"]
    assert int(first_mac[:2], 16) & 0x02  # locally administered
    delete_pod(multinet, e2e_namespace, "app")

    # The same pod name again: the same MAC.
    apply(multinet, pod(e2e_namespace, "app", "nic"))
    wait_running(multinet, e2e_namespace, "app")
    (again,) = json.loads(
        in_pod(pod_netns(multinet, e2e_namespace, "app"), "ip", "-j", "link", "show", "net1")
    )
    assert again["address"] == first_mac
    delete_pod(multinet, e2e_namespace, "app")
    assert host_link(parent.name) == before


def test_only_one_claim_of_a_pod_may_take_its_default_route(
    multinet: Cluster, make_nic: Any, e2e_namespace: str, network_cleanup: list[str]
) -> None:
    nets = []
    for prefix, subnet in (("e2x", "198.51.100"), ("e2y", "203.0.113")):
        nic = make_nic(prefix=prefix)
        nets.append(
            _network(
                multinet,
                network_cleanup,
                interfaces={"names": [nic.name]},
                ipam={"type": "pool", "subnet": f"{subnet}.0/24", "gateway": f"{subnet}.1"},
                defaultRoute=True,
            )
        )
    body = pod(e2e_namespace, "app", None)
    body["spec"]["containers"][0]["resources"] = {"claims": [{"name": "a"}, {"name": "b"}]}
    body["spec"]["resourceClaims"] = [
        {"name": "a", "resourceClaimName": "nic-a"},
        {"name": "b", "resourceClaimName": "nic-b"},
    ]
    apply(
        multinet,
        claim(e2e_namespace, "nic-a", nets[0]),
        claim(e2e_namespace, "nic-b", nets[1]),
        body,
    )
    event = pod_event(multinet, e2e_namespace, "app", "defaultRoute")
    assert "at most one claim request of a pod may set defaultRoute" in event
    assert get(multinet, "pod", "app", e2e_namespace)["status"]["phase"] == "Pending"
