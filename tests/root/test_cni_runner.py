"""CNI chains run with the real plugins of /usr/lib/cni in real network namespaces.

Cases:
- bridge + host-local: two pods on one bridge get distinct addresses (IPv4 and IPv6, as the
  Outcome says and `ip` shows) and ping each other; DEL removes the bridge ports and releases
  both leases
- bridge + tuning + bandwidth: tuning's MTU and the MAC passed as runtimeConfig (capability
  "mac") show in the pod; bandwidth's shaping shows where the plugin puts it, on the host side
  (tbf and ingress qdiscs on the pod's host veth, tbf on its ifb device); DEL removes them
- host-device: the claim's device moves into the pod under the claim's ifname with a static
  address, and DEL brings it back under its own name
- DEL needs only the cache: in a new process after ADD; after the pod's netns is gone; after
  a crash (SIGKILL) mid-ADD while a later plugin was still running
- CHECK passes on a healthy attachment and fails naming the plugin once the pod's interface is
  deleted; a 0.3.1 chain has no CHECK
- a second ADD of the same key is refused and the first attachment stays; DEL of a key with no
  record and no config is a no-op; DEL of a key with no record runs the config it is given
- failures leave nothing behind: a plugin error (bridge with static IPAM of an invalid address),
  a later plugin failing after bridge and host-local succeeded, a missing plugin (found before
  anything runs), a plugin outliving the time budget (killed)

Addresses: 198.51.100.0/24, 2001:db8:100::/64, 203.0.113.0/24 inside test-only bridges and
namespaces. host-local keeps its leases in the test's tmp dir; each bridge's name is unique to
the test and the bridge is deleted at teardown (the bridge plugin leaves it on DEL).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from netfixtures import Lab, has_link, ip_json, sh, uid

from multinet.cni import cache, runner
from multinet.cni.config import Chain, parse_chain
from multinet.cni.errors import CniError
from multinet.cni.invocation import PodRef, RuntimeArgs
from multinet.cni.result import Outcome

pytestmark = pytest.mark.root

BIN_DIRS = ("/opt/cni/bin", "/usr/lib/cni")  # the first is absent here: the search goes on
POD = PodRef(namespace="team-a", name="web-0", uid="0d9c4b1e-uid")
TIMEOUT = 10.0


@dataclass(frozen=True)
class Added:
    key: str
    netns: str  # its name
    result: dict[str, Any]
    outcome: Outcome


@dataclass
class Cni:
    """Runs chains for a test and removes whatever they made: attachments, bridges, netns."""

    root: Path
    net: Lab
    bridges: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    bin_dirs: list[str] = field(default_factory=lambda: list(BIN_DIRS))  # teardown's DELs

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def ipam_dir(self) -> Path:
        return self.root / "ipam"

    def new_bridge_name(self) -> str:
        name = f"mncb{uid()}"
        self.bridges.append(name)
        return name

    def bridge(self, ipam: dict[str, Any] | None = None) -> dict[str, Any]:
        """A bridge plugin config on a bridge of this test, host-local IPAM by default."""
        return {
            "type": "bridge",
            "bridge": self.new_bridge_name(),
            "ipam": ipam
            or {
                "type": "host-local",
                "dataDir": str(self.ipam_dir),
                "ranges": [[{"subnet": "198.51.100.0/24"}], [{"subnet": "2001:db8:100::/64"}]],
            },
        }

    async def add(
        self,
        chain: Chain,
        *,
        ifname: str = "net1",
        device: str | None = None,
        runtime: RuntimeArgs | None = None,
    ) -> Added:
        ns = self.net.new_netns()
        key = f"team-a/claim-{uid()}/0"
        self.keys.append(key)
        result, outcome = await runner.add(
            chain,
            key=key,
            bin_dirs=BIN_DIRS,
            container_id=f"sandbox{uid()}",
            netns=self.net.netns_path(ns),
            ifname=ifname,
            device=device,
            pod=POD,
            cache_dir=self.cache_dir,
            timeout=TIMEOUT,
            runtime=runtime,
        )
        return Added(key, ns, result, outcome)

    async def delete(self, key: str) -> None:
        await runner.delete(
            key=key, cache_dir=self.cache_dir, bin_dirs=self.bin_dirs, timeout=TIMEOUT
        )

    def leases(self, network: str) -> list[str]:
        """The addresses host-local holds for `network` (one file per address)."""
        where = self.ipam_dir / network
        if not where.is_dir():
            return []
        return sorted(p.name for p in where.iterdir() if p.name[0].isdigit())

    def cached(self) -> list[str]:
        """Every file in the cache dir (records and any temporary file)."""
        return sorted(p.name for p in self.cache_dir.iterdir()) if self.cache_dir.is_dir() else []

    async def cleanup(self) -> None:
        for key in self.keys:
            with contextlib.suppress(CniError):
                await self.delete(key)
        self.net.cleanup()
        delete_links(self.bridges)


def delete_links(names: list[str]) -> None:
    for name in names:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.fixture
async def cni(tmp_path: Path) -> AsyncIterator[Cni]:
    it = Cni(root=tmp_path, net=Lab())
    try:
        yield it
    finally:
        await it.cleanup()


def ports(bridge: str) -> list[str]:
    if not has_link(bridge):
        return []
    return [link["ifname"] for link in ip_json(f"link show master {bridge}")]


def ping(netns: str, address: str) -> bool:
    tool = "ping" if shutil.which("ping") else "busybox ping"
    done = subprocess.run(
        f"ip netns exec {netns} {tool} -c1 -W2 {address}", shell=True, capture_output=True
    )
    return done.returncode == 0


def addresses(ifname: str, netns: str) -> list[str]:
    (link,) = ip_json(f"addr show dev {ifname}", netns)
    return [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"] if a["scope"] == "global"]


def qdiscs(dev: str) -> list[str]:
    return sorted(q["kind"] for q in json.loads(sh(f"tc -j qdisc show dev {dev}")))


def host_veth(added: Added, bridge: str) -> str:
    """The host end of the pod's veth, as the bridge plugin reported it."""
    (name,) = [
        i["name"]
        for i in added.result["interfaces"]
        if "sandbox" not in i and i["name"] != bridge and not i["name"].startswith("bwp")
    ]
    return str(name)


def conflist(*plugins: dict[str, Any], version: str = "1.0.0") -> Chain:
    return parse_chain({"cniVersion": version, "name": f"net{uid()}", "plugins": list(plugins)})


async def test_bridge_and_host_local_connect_two_pods(cni: Cni) -> None:
    bridge = cni.bridge()
    chain = conflist(bridge)
    one, two = await cni.add(chain), await cni.add(chain)

    for added in (one, two):
        v4, v6 = added.outcome.ips
        assert v4.startswith("198.51.100.") and v6.startswith("2001:db8:100::")
        assert (added.outcome.gateway4, added.outcome.gateway6) == (
            "198.51.100.1",
            "2001:db8:100::1",
        )
        assert sorted(addresses("net1", added.netns)) == sorted(added.outcome.ips)
        (link,) = ip_json("link show dev net1", added.netns)
        assert link["address"] == added.outcome.mac
    assert one.outcome.ips[0] != two.outcome.ips[0]
    assert ping(one.netns, two.outcome.ips[0].split("/")[0])
    assert ping(two.netns, one.outcome.ips[0].split("/")[0])
    assert len(ports(bridge["bridge"])) == 2
    assert len(cni.leases(chain.name)) == 4

    await cni.delete(one.key)
    await cni.delete(two.key)
    assert ports(bridge["bridge"]) == []
    assert cni.leases(chain.name) == []
    assert not has_link("net1", one.netns) and not has_link("net1", two.netns)
    assert cni.cached() == []


async def test_a_three_plugin_chain_tunes_and_shapes_the_interface(cni: Cni) -> None:
    bridge = cni.bridge()
    tuning = {"type": "tuning", "mtu": 1400, "capabilities": {"mac": True}}
    bandwidth = {
        "type": "bandwidth",
        "ingressRate": 8_000_000,
        "ingressBurst": 80_000,
        "egressRate": 4_000_000,
        "egressBurst": 40_000,
    }
    chain = conflist(bridge, tuning, bandwidth)
    added = await cni.add(chain, runtime=RuntimeArgs(mac="02:00:5e:00:53:07"))

    (link,) = ip_json("link show dev net1", added.netns)
    assert (link["mtu"], link["address"]) == (1400, "02:00:5e:00:53:07")
    assert added.outcome.mac == "02:00:5e:00:53:07"
    # bandwidth shapes the pod's traffic on the host side: what enters the pod leaves the host
    # veth (tbf there), what leaves the pod is redirected from the veth's ingress to an ifb
    veth = host_veth(added, bridge["bridge"])
    assert qdiscs(veth) == ["ingress", "tbf"]
    (ifb,) = [i["name"] for i in added.result["interfaces"] if i["name"].startswith("bwp")]
    assert "tbf" in qdiscs(ifb)
    (tbf,) = [q for q in json.loads(sh(f"tc -j qdisc show dev {veth}")) if q["kind"] == "tbf"]
    assert tbf["options"]["rate"] == 1_000_000  # bytes per second: 8 Mbit/s

    await cni.delete(added.key)
    assert not has_link(veth) and not has_link(ifb)
    assert ports(bridge["bridge"]) == [] and cni.leases(chain.name) == []


async def test_host_device_moves_the_claims_device_in_and_back(cni: Cni) -> None:
    nic = cni.net.new_nic()
    (before,) = ip_json(f"link show dev {nic}")
    chain = parse_chain(
        {
            "cniVersion": "1.0.0",
            "type": "host-device",  # no device: the claim's goes in
            "ipam": {"type": "static", "addresses": [{"address": "203.0.113.10/24"}]},
        },
        name="hostdev",
    )
    added = await cni.add(chain, ifname="storage0", device=nic)

    assert not has_link(nic)
    (inside,) = ip_json("link show dev storage0", added.netns)
    assert inside["address"] == before["address"] == added.outcome.mac
    assert addresses("storage0", added.netns) == ["203.0.113.10/24"] == list(added.outcome.ips)

    await cni.delete(added.key)
    assert has_link(nic) and not has_link("storage0", added.netns)
    (after,) = ip_json(f"link show dev {nic}")
    assert after["address"] == before["address"]
    assert cni.cached() == []


def delete_in_a_new_process(key: str, cache_dir: Path) -> None:
    """runner.delete in a fresh interpreter: nothing of this process's memory reaches it."""
    code = (
        "import asyncio, sys\n"
        "from multinet.cni import runner\n"
        "asyncio.run(runner.delete(key=sys.argv[1], cache_dir=sys.argv[2],"
        " bin_dirs=sys.argv[3].split(':'), timeout=10))\n"
    )
    args = [key, str(cache_dir), ":".join(BIN_DIRS)]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


async def test_del_in_a_new_process_needs_only_the_cache(cni: Cni) -> None:
    bridge = cni.bridge()
    chain = conflist(bridge, {"type": "tuning", "mtu": 1300})
    added = await cni.add(chain)
    assert len(ports(bridge["bridge"])) == 1 and len(cni.leases(chain.name)) == 2

    delete_in_a_new_process(added.key, cni.cache_dir)

    assert ports(bridge["bridge"]) == []
    assert cni.leases(chain.name) == []
    assert not has_link("net1", added.netns)
    assert cni.cached() == []


async def test_del_after_the_pods_netns_is_gone_releases_the_addresses(cni: Cni) -> None:
    bridge = cni.bridge()
    chain = conflist(bridge)
    added = await cni.add(chain)
    sh(f"ip netns del {added.netns}")  # the pod went first; its veth went with it

    await cni.delete(added.key)
    assert cni.leases(chain.name) == [] and cni.cached() == []


def stall_plugin(cni: Cni) -> tuple[Path, Path]:
    """A plugin dir with `stall`: ADD records its pid and sleeps, DEL succeeds at once."""
    bin_dir, pidfile = cni.root / "bin", cni.root / "stall.pid"
    cni.bin_dirs.insert(0, str(bin_dir))
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "stall"
    script.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        f'[ "$CNI_COMMAND" = ADD ] || exit 0\necho $$ > {pidfile}\nexec sleep 60\n'
    )
    script.chmod(0o755)
    return bin_dir, pidfile


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def wait_for(predicate: Any, seconds: float = 10.0) -> None:
    ends = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < ends, "timed out"
        time.sleep(0.02)


def crash_during_add(
    chain: Chain, key: str, dirs: list[str], netns: str, cache_dir: Path, pidfile: Path
) -> None:
    """runner.add in another process, SIGKILLed while the `stall` plugin runs (the plugins
    before it are done); the orphaned stall plugin is killed too."""
    code = (
        "import asyncio, json, sys\n"
        "from multinet.cni import runner\n"
        "from multinet.cni.config import parse_chain\n"
        "from multinet.cni.invocation import PodRef\n"
        "a = json.loads(sys.argv[1])\n"
        "asyncio.run(runner.add(parse_chain(a['chain']), key=a['key'], bin_dirs=a['dirs'],"
        " container_id='crashed1', netns=a['netns'], ifname='net1', device=None,"
        " pod=PodRef(namespace='n', name='p', uid='u'), cache_dir=a['cache'], timeout=60))\n"
    )
    arg = {
        "chain": chain.document(),
        "key": key,
        "dirs": dirs,
        "netns": netns,
        "cache": str(cache_dir),
    }
    agent = subprocess.Popen([sys.executable, "-c", code, json.dumps(arg)])
    try:
        wait_for(pidfile.exists)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


async def test_del_after_a_crash_mid_add_cleans_up(cni: Cni) -> None:
    bin_dir, pidfile = stall_plugin(cni)
    bridge = cni.bridge()
    chain = conflist(bridge, {"type": "stall"})
    ns = cni.net.new_netns()
    key = "team-a/crashed/0"
    cni.keys.append(key)
    dirs = [str(bin_dir), *BIN_DIRS]
    crash_during_add(chain, key, dirs, cni.net.netns_path(ns), cni.cache_dir, pidfile)
    assert len(ports(bridge["bridge"])) == 1 and len(cni.leases(chain.name)) == 2
    assert len(cni.cached()) == 1

    await runner.delete(key=key, cache_dir=cni.cache_dir, bin_dirs=dirs, timeout=TIMEOUT)
    assert ports(bridge["bridge"]) == [] and cni.leases(chain.name) == []
    assert not has_link("net1", ns) and cni.cached() == []


async def test_a_key_is_added_once_and_an_unknown_key_deletes_nothing(cni: Cni) -> None:
    bridge = cni.bridge()
    chain = conflist(bridge)
    added = await cni.add(chain)
    with pytest.raises(CniError, match="already holds an attachment"):
        await runner.add(
            chain,
            key=added.key,
            bin_dirs=BIN_DIRS,
            container_id="other1",
            netns=cni.net.netns_path(added.netns),
            ifname="net2",
            device=None,
            pod=POD,
            cache_dir=cni.cache_dir,
            timeout=TIMEOUT,
        )
    assert len(ports(bridge["bridge"])) == 1 and len(cni.cached()) == 1
    assert not has_link("net2", added.netns)

    await cni.delete("team-a/never-added/0")
    assert len(ports(bridge["bridge"])) == 1 and len(cni.cached()) == 1


async def test_del_without_a_record_runs_the_given_config(cni: Cni) -> None:
    bridge = cni.bridge()
    chain = conflist(bridge)
    added = await cni.add(chain)
    record = cni.cache_dir / cache.file_name(added.key)
    facts = json.loads(record.read_text())
    record.unlink()  # as if the record never made it to disk

    await runner.delete(
        key=added.key,
        cache_dir=cni.cache_dir,
        bin_dirs=BIN_DIRS,
        timeout=TIMEOUT,
        chain=chain,
        container_id=facts["container_id"],
        netns=facts["netns"],
        ifname="net1",
        pod=POD,
    )
    assert ports(bridge["bridge"]) == [] and cni.leases(chain.name) == []


async def test_check_passes_when_healthy_and_fails_once_the_interface_is_gone(cni: Cni) -> None:
    bridge = cni.bridge()
    chain = conflist(bridge, {"type": "tuning", "mtu": 1400})
    added = await cni.add(chain)

    def check() -> Awaitable[Outcome]:
        return runner.check(
            key=added.key, cache_dir=cni.cache_dir, bin_dirs=BIN_DIRS, timeout=TIMEOUT
        )

    assert await check() == added.outcome

    sh(f"ip -n {added.netns} link del net1")
    with pytest.raises(CniError) as caught:
        await check()
    assert (caught.value.plugin, caught.value.command) == ("bridge", "CHECK")
    assert str(caught.value).startswith("CNI plugin 'bridge' CHECK failed")

    await cni.delete(added.key)  # DEL still cleans up what is left
    assert cni.leases(chain.name) == [] and cni.cached() == []


async def test_a_0_3_1_chain_has_no_check(cni: Cni) -> None:
    added = await cni.add(conflist(cni.bridge(), version="0.3.1"))
    with pytest.raises(CniError, match=r"cniVersion 0\.3\.1 has no CHECK"):
        await runner.check(
            key=added.key, cache_dir=cni.cache_dir, bin_dirs=BIN_DIRS, timeout=TIMEOUT
        )


async def test_a_plugin_error_is_reported_and_undone(cni: Cni) -> None:
    bridge = cni.bridge({"type": "static", "addresses": [{"address": "203.0.113.300/24"}]})
    chain = conflist(bridge)
    with pytest.raises(CniError) as caught:
        await cni.add(chain)
    error = caught.value
    assert (error.plugin, error.command) == ("bridge", "ADD")
    assert "CNI plugin 'bridge' ADD failed" in str(error) and "203.0.113.300/24" in str(error)
    # bridge made the veth before its IPAM failed; the rollback DEL removed it
    assert ports(bridge["bridge"]) == []
    assert not has_link("net1", cni.net.netns[-1])
    assert cni.cached() == []


async def test_a_later_plugin_failing_undoes_the_earlier_ones(cni: Cni) -> None:
    bridge = cni.bridge()
    chain = conflist(bridge, {"type": "tuning", "mac": "not-a-mac"})
    with pytest.raises(CniError) as caught:
        await cni.add(chain)
    assert caught.value.plugin == "tuning"
    assert "not-a-mac" in str(caught.value)
    assert ports(bridge["bridge"]) == []
    assert cni.leases(chain.name) == []
    assert not has_link("net1", cni.net.netns[-1])
    assert cni.cached() == []


async def test_a_missing_plugin_fails_before_anything_runs(cni: Cni) -> None:
    bridge = cni.bridge()
    chain = conflist(bridge, {"type": "no-such-plugin"})
    with pytest.raises(CniError) as caught:
        await cni.add(chain)
    assert str(caught.value) == (
        "CNI plugin 'no-such-plugin' not found in /opt/cni/bin:/usr/lib/cni"
    )
    assert not has_link(bridge["bridge"])  # bridge never ran
    assert cni.cached() == []


async def test_a_plugin_outliving_the_budget_is_killed_and_undone(cni: Cni) -> None:
    bin_dir, pidfile = stall_plugin(cni)
    bridge = cni.bridge()
    chain = conflist(bridge, {"type": "stall"})
    ns = cni.net.new_netns()
    cni.keys.append("team-a/slow/0")
    started = time.monotonic()
    with pytest.raises(CniError, match=r"CNI plugin 'stall' ADD took longer than 1\.5 s; killed"):
        await runner.add(
            chain,
            key="team-a/slow/0",
            bin_dirs=[str(bin_dir), *BIN_DIRS],
            container_id="slow1",
            netns=cni.net.netns_path(ns),
            ifname="net1",
            device=None,
            pod=POD,
            cache_dir=cni.cache_dir,
            timeout=1.5,
        )
    assert time.monotonic() - started < 5
    assert not alive(int(pidfile.read_text()))
    assert ports(bridge["bridge"]) == [] and cni.leases(chain.name) == []
    assert cni.cached() == []
