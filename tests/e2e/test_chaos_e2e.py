"""Fault injection on the local cluster: pod cycles with real faults, and what must hold after each.

Every cycle starts four pods at once (two host-device NICs and two macvlan children of one
parent, every interface with a pool address, claims from templates as a Deployment's pods have),
injects one fault, waits until every pod runs, checks the live pods, deletes them and checks the
node. Faults, each on the real process or the real kernel:

- agent killed (SIGKILL, `multinet.faults` crash points) during prepare (addresses reserved, plan
  not checkpointed), between the two checkpoint writes of an attach, during restore (interface
  home, attachment not forgotten) and during unprepare (reservations released, claim not dropped);
- containerd restarted while the pods start; the kubelet restarted while they start;
- the apiserver stopped for a while (MULTINET_CHAOS_OUTAGE seconds) while the pods run.

After each cycle: every pod ran with its interface; no two live pods shared an address; no
device was prepared for two claims at once; every host NIC is home and exactly as before; no
interface is left in any network namespace and no macvlan child on the host; no IP reservation
outlives its claim by more than one GC period; the agent's checkpoint is empty.

`make test` runs one cycle per fault (MULTINET_CHAOS_CYCLES=7); `make chaos` runs 100, faults in
a random order (MULTINET_CHAOS_SEED to repeat one). The figures are printed at the end.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import wait_for
from localcluster import Cluster
from localcluster import multinet as deployment
from localcluster.processes import wait_gone
from support import (
    agent_checkpoint,
    apply,
    claim_template,
    host_link,
    pod_with_template,
    podnetwork,
    wait_ready_network,
)

from multinet.faults import ENV as CRASH_ENV

pytestmark = [pytest.mark.cluster, pytest.mark.root]

CYCLES = int(os.environ.get("MULTINET_CHAOS_CYCLES", "7"))
SEED = int(os.environ.get("MULTINET_CHAOS_SEED", str(secrets.randbelow(1 << 30))))
OUTAGE = float(os.environ.get("MULTINET_CHAOS_OUTAGE", "10"))
GC_SECONDS = 60.0  # the controller's --ipam-gc-interval default

FAULTS = (
    "agent-kill-prepare",
    "agent-kill-attach",
    "agent-kill-restore",
    "agent-kill-unprepare",
    "containerd-restart",
    "kubelet-restart",
    "apiserver-outage",
)
CRASH_AT = {
    "agent-kill-prepare": "prepare-reserved",
    "agent-kill-attach": "attach-moved",
    "agent-kill-restore": "detach-moved",
    "agent-kill-unprepare": "unprepare-released",
}


@dataclass
class Figures:
    cycles: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    recoveries: int = 0
    recovery_seconds: list[float] = field(default_factory=list)  # create -> all pods Running
    cleanup_seconds: list[float] = field(default_factory=list)  # delete -> checkpoint empty
    controller_restarts: int = 0  # after it stepped down during an apiserver outage
    warnings: Counter[str] = field(default_factory=Counter)

    def report(self) -> str:
        worst = max(self.recovery_seconds, default=0.0)
        clean = max(self.cleanup_seconds, default=0.0)
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.faults.items()))
        events = ", ".join(f"{k} {n}" for k, n in sorted(self.warnings.items())) or "none"
        return (
            f"chaos (seed {SEED}): {self.cycles} cycles, {sum(self.faults.values())} faults "
            f"({kinds}); recovered {self.recoveries}; max create -> all pods Running "
            f"{worst:.1f} s; max delete -> node clean {clean:.1f} s; controller restarted "
            f"after stepping down {self.controller_restarts}x; Warning Events by reason: {events}"
        )


def kubectl_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    return dict(json.loads(cluster.kubectl(*args, "-o", "json").stdout))


def macs_in_netns() -> dict[str, set[str]]:
    """Every named network namespace (the runtime's pod netns included) -> MACs of its links."""
    found: dict[str, set[str]] = {}
    listing = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True)
    for ns in json.loads(listing.stdout or "[]"):
        out = subprocess.run(
            ["ip", "-n", ns["name"], "-j", "link", "show"], capture_output=True, text=True
        )
        found[ns["name"]] = {link.get("address", "") for link in json.loads(out.stdout or "[]")}
    return found


def macvlan_children(parent: str) -> list[str]:
    out = subprocess.run(["ip", "-j", "-d", "link", "show"], capture_output=True, text=True)
    return [
        link["ifname"]
        for link in json.loads(out.stdout or "[]")
        if link.get("link") == parent and (link.get("linkinfo") or {}).get("info_kind") == "macvlan"
    ]


class Chaos:
    def __init__(self, cluster: Cluster, namespace: str, make_nic: Any) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.figures = Figures()
        tag = secrets.token_hex(2)
        self.hd_nics = [make_nic(prefix="chd").name for _ in range(2)]
        self.parent = make_nic(prefix="cmv").name
        self.hd, self.mv = f"chaos-hd-{tag}", f"chaos-mv-{tag}"
        self.before = {n: host_link(n) for n in [*self.hd_nics, self.parent]}
        apply(
            cluster,
            podnetwork(
                self.hd,
                interfaces={"names": self.hd_nics},
                interfaceName="net1",
                ipam={"type": "pool", "subnet": "198.18.200.0/26"},
            ),
            podnetwork(
                self.mv,
                interfaces={"names": [self.parent]},
                mode="macvlan",
                interfaceName="net1",
                ipam={"type": "pool", "subnet": "198.18.201.0/26"},
            ),
        )
        for network in (self.hd, self.mv):
            wait_ready_network(cluster, network)
        apply(
            cluster,
            claim_template(namespace, "hd", self.hd),
            claim_template(namespace, "mv", self.mv),
        )

    # -- faults --------------------------------------------------------------------------------

    def restart_agent_crashing_at(self, point: str) -> None:
        deployment.stop_agent(self.cluster)
        deployment.start_agent(self.cluster, env={CRASH_ENV: point})
        deployment.wait_agent_ready(self.cluster)

    def wait_agent_crashed_then_restart(self, point: str) -> None:
        pid = self.cluster.processes.pid(deployment.AGENT)
        assert pid is not None
        left = wait_gone([pid], timeout=90)
        assert not left, f"the agent never reached crash point {point}"
        deployment.start_agent(self.cluster)
        deployment.wait_agent_ready(self.cluster)

    # -- one cycle -----------------------------------------------------------------------------

    def cycle(self, n: int, fault: str) -> None:
        names = [f"c{n}-hd-0", f"c{n}-hd-1", f"c{n}-mv-0", f"c{n}-mv-1"]
        bodies = [pod_with_template(self.ns, name, name.split("-")[1]) for name in names]
        crash = CRASH_AT.get(fault)
        if fault in ("agent-kill-prepare", "agent-kill-attach"):
            assert crash
            self.restart_agent_crashing_at(crash)
        started = time.monotonic()
        apply(self.cluster, *bodies)
        if fault in ("agent-kill-prepare", "agent-kill-attach"):
            assert crash
            self.wait_agent_crashed_then_restart(crash)
        elif fault == "containerd-restart":
            self.cluster.restart_containerd()
        elif fault == "kubelet-restart":
            self.cluster.restart_kubelet()
        self.wait_running(names, since=started)
        self.check_live(names)

        if fault == "apiserver-outage":
            self.cluster.stop_apiserver()
            time.sleep(OUTAGE)  # the outage itself: nothing to wait for
            self.cluster.start_apiserver()
            self.restart_controller_if_it_stepped_down()
        if fault in ("agent-kill-restore", "agent-kill-unprepare"):
            assert crash
            self.restart_agent_crashing_at(crash)
        deleted = time.monotonic()
        self.cluster.kubectl("delete", "pod", *names, "-n", self.ns, "--wait=false")
        if fault in ("agent-kill-restore", "agent-kill-unprepare"):
            assert crash
            self.wait_agent_crashed_then_restart(crash)
        self.figures.faults[fault] += 1
        self.check_gone(names, since=deleted)
        self.figures.cycles += 1
        self.figures.recoveries += 1

    def wait_running(self, names: list[str], *, since: float) -> None:
        def all_running() -> bool:
            items = kubectl_json(self.cluster, "get", "pods", "-n", self.ns)["items"]
            phase = {p["metadata"]["name"]: p.get("status", {}).get("phase") for p in items}
            return all(phase.get(name) == "Running" for name in names)

        wait_for(all_running, timeout=180, interval=0.5, what=f"pods {names} Running")
        self.figures.recovery_seconds.append(time.monotonic() - since)

    def check_live(self, names: list[str]) -> None:
        addresses: dict[str, str] = {}
        for name in names:
            shown = self.cluster.kubectl(
                "exec", "-n", self.ns, name, "--", "ip", "-o", "-4", "addr", "show", "net1"
            ).stdout.split()
            address = shown[shown.index("inet") + 1]
            other = next((p for p, a in addresses.items() if a == address), None)
            assert other is None, f"{name} and {other} both have {address}"
            addresses[name] = address
        held: dict[str, str] = {}
        for uid, prepared in agent_checkpoint(self.cluster)["claims"].items():
            for plan in prepared["plans"]:
                if plan["mode"] != "host-device":
                    continue
                assert held.setdefault(plan["device"], uid) == uid, (
                    f"device {plan['device']} prepared for claims {held[plan['device']]} and {uid}"
                )

    def check_gone(self, names: list[str], *, since: float) -> None:
        def pods_gone() -> bool:
            items = kubectl_json(self.cluster, "get", "pods", "-n", self.ns)["items"]
            return not {p["metadata"]["name"] for p in items} & set(names)

        wait_for(pods_gone, timeout=180, interval=0.5, what=f"pods {names} deleted")

        def claims_gone() -> bool:
            return not kubectl_json(self.cluster, "get", "resourceclaims", "-n", self.ns)["items"]

        wait_for(claims_gone, timeout=120, interval=0.5, what="the pods' claims deleted")

        def node_clean() -> bool:
            state = agent_checkpoint(self.cluster)
            return not state["claims"] and not state["attachments"]

        wait_for(
            node_clean,
            timeout=120,
            what="the agent's checkpoint empty (every claim unprepared, every NIC home)",
        )
        self.figures.cleanup_seconds.append(time.monotonic() - since)
        for nic, before in self.before.items():
            assert host_link(nic) == before, f"{nic} is not back as it was"
        ours = {b["mac"] for b in self.before.values() if b}
        stranded = {ns: macs & ours for ns, macs in macs_in_netns().items() if macs & ours}
        assert not stranded, f"interfaces left in network namespaces: {stranded}"
        assert macvlan_children(self.parent) == []

        def no_reservations() -> bool:
            items = kubectl_json(self.cluster, "get", "ipreservations")["items"]
            return not [i for i in items if i["spec"]["network"] in (self.hd, self.mv)]

        wait_for(
            no_reservations, timeout=GC_SECONDS + 30, what="no IP reservation without its claim"
        )

    def count_warnings(self) -> None:
        items = kubectl_json(
            self.cluster, "get", "events", "-n", self.ns, "--field-selector", "type=Warning"
        )["items"]
        self.figures.warnings.update(e["reason"] for e in items)

    def restart_controller_if_it_stepped_down(self) -> None:
        """The controller steps down (exits) when it cannot renew its Lease for 10 s, as
        Kubernetes' own controllers do; its Deployment restarts it. Here nothing would, so the
        suite does, and counts it."""
        if not self.cluster.processes.alive(deployment.CONTROLLER):
            deployment.start_controller(self.cluster)
            self.figures.controller_restarts += 1

    def close(self) -> None:
        self.cluster.kubectl(
            "delete", "podnetwork", self.hd, self.mv, "--ignore-not-found", "--wait=false"
        )


@pytest.fixture
def chaos(multinet: Cluster, e2e_namespace: str, make_nic: Any) -> Iterator[Chaos]:
    it = Chaos(multinet, e2e_namespace, make_nic)
    try:
        yield it
    finally:
        if not multinet.processes.alive(deployment.AGENT):
            deployment.start_agent(multinet)
            deployment.wait_agent_ready(multinet)
        if not multinet.is_up():
            multinet.start_apiserver()
        it.restart_controller_if_it_stepped_down()  # later tests need it
        it.close()


def order(cycles: int, seed: int) -> list[str]:
    """Every fault once per round of len(FAULTS) cycles, each round shuffled."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < cycles:
        round_ = list(FAULTS)
        rng.shuffle(round_)
        out += round_
    return out[:cycles]


@pytest.mark.timeout(CYCLES * 150 + 300)  # a cycle takes 20-60 s; the suite's 600 s is per test
def test_pod_cycles_under_faults_lose_nothing(chaos: Chaos, capsys: Any) -> None:
    report: Callable[[], str] = chaos.figures.report
    try:
        for n, fault in enumerate(order(CYCLES, SEED)):
            print(f"[chaos] cycle {n}: {fault}", flush=True)
            chaos.cycle(n, fault)
    finally:
        chaos.count_warnings()
        with capsys.disabled():
            print(f"\n{report()}", flush=True)
    assert chaos.figures.recoveries == CYCLES
