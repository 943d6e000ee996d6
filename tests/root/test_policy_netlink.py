"""Routing-policy primitives (routes with options, default-route replacement, rules, neighbours,
sysctls) applied with our netlink code in a real network namespace and read back with iproute2.

Each case gets a fresh "pod" namespace holding eth0 (the primary interface: 203.0.113.2/24 and
2001:db8:2::2/64, default routes via .1 and ::1) and net1 (a claim's interface: 198.51.100.2/24,
2001:db8:1::2/64), each a veth whose peer is in the same namespace; everything goes away with it.
Only documentation addresses: 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.

Cases:
- routes in table 100 and 1000 (above 255: RTA_TABLE) with source, metric, scope host/link, onlink,
  IPv6 too, show up as `ip route show table N` prints them; a gateway off the link without onlink
  is refused naming the route; a gateway of the wrong family is refused before any I/O
- the primary default routes (IPv4, IPv6) are listed with their link, replaced by net1's, and put
  back exactly; a replacement with another metric is added next to the old one (the metric is
  part of a route's key)
- rules with from, to, iif, oif (one naming an interface that does not exist: "detached"), for
  both families, as `ip rule` prints them and as `rules()` lists them; a duplicate is EEXIST,
  deleting twice ENOENT, both naming the rule; unclear or mixed families are ValueError
- permanent neighbours (ARP and NDP) as `ip neigh` prints them; adding again replaces the MAC; a
  missing link index is RtnlError naming the entry
- sysctls written from a worker thread land in the pod (a key for an interface named "a.1"
  included), the worker ends in the host namespace, the host's values stay; the old values come
  back from `apply` and put the pod back; a host thread reading the same key all along sees only
  the host's value
- sysctl errors: unknown key (and the keys before it are put back), refused value, read-only
  key, a host-wide net.core key (absent in the pod), keys outside net or with path tricks;
  a write-only key (route flush) returns None as its old value
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import pytest
from netfixtures import lab, sh

from multinet.netlink import codec, netns, sysctls
from multinet.netlink.rtnl import Request, Rtnl, RtnlError, Rule
from multinet.netlink.sysctls import SysctlError

pytestmark = pytest.mark.root

T = TypeVar("T")


@dataclass
class Pod:
    ns: str
    fd: int
    rt: Rtnl

    def index(self, ifname: str) -> int:
        link = self.rt.get_link(name=ifname)
        assert link is not None
        return link.index

    def run(self, *reqs: Request) -> None:
        for err in self.rt.batch(reqs):
            if err is not None:
                raise err

    def ip(self, args: str) -> set[str]:
        """The lines `ip -n NS ARGS` prints, without trailing blanks."""
        return {line.rstrip() for line in sh(f"ip -n {self.ns} {args}").splitlines()}

    def sysctl(self, key: str) -> str:
        return sh(f"ip netns exec {self.ns} sysctl -n {key}").strip()


@pytest.fixture
def pod() -> Iterator[Pod]:
    with lab() as net:
        ns = net.new_netns()
        for ifname, v4, v6 in (
            ("eth0", "203.0.113.2/24", "2001:db8:2::2/64"),
            ("net1", "198.51.100.2/24", "2001:db8:1::2/64"),
        ):
            sh(f"ip -n {ns} link add {ifname} type veth peer name {ifname}p")
            sh(f"ip -n {ns} link set {ifname}p up && ip -n {ns} link set {ifname} up")
            sh(f"ip -n {ns} addr add {v4} dev {ifname}")
            sh(f"ip -n {ns} addr add {v6} dev {ifname} nodad")
        sh(f"ip -n {ns} route add default via 203.0.113.1 dev eth0")
        sh(f"ip -n {ns} -6 route add default via 2001:db8:2::1 dev eth0")
        with netns.opened(net.netns_path(ns)) as fd, netns.socket_in(fd) as rt:
            yield Pod(ns, fd, rt)


def host_sysctl(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def on_worker(fn: Callable[[], T]) -> T:
    """`fn()` on a worker thread, which must end in the namespace it started in."""
    here = "/proc/thread-self/ns/net"
    with ThreadPoolExecutor(1) as pool:
        home = pool.submit(os.readlink, here).result()
        try:
            return pool.submit(fn).result()
        finally:
            assert pool.submit(os.readlink, here).result() == home


# -- routes ------------------------------------------------------------------------------------


def test_routes_carry_table_scope_source_metric_and_onlink(pod: Pod) -> None:
    net1, rt = pod.index("net1"), pod.rt
    pod.run(
        rt.add_route(net1, "0.0.0.0/0", "198.51.100.1", table=100),
        rt.add_route(
            net1, "203.0.113.0/24", "198.51.100.1", table=100, metric=10, source="198.51.100.2"
        ),
        rt.add_route(net1, "198.51.100.77/32", table=100, scope=codec.RT_SCOPE_HOST),
        rt.add_route(net1, "203.0.113.128/25", table=1000, scope=codec.RT_SCOPE_LINK),
        rt.add_route(net1, "0.0.0.0/0", "203.0.113.1", table=1000, onlink=True),
        rt.add_route(net1, "2001:db8:99::/48", "2001:db8:1::1", table=100, metric=5),
    )
    assert pod.ip("route show table 100") == {
        "default via 198.51.100.1 dev net1",
        "203.0.113.0/24 via 198.51.100.1 dev net1 src 198.51.100.2 metric 10",
        "198.51.100.77 dev net1 scope host",
    }
    assert pod.ip("route show table 1000") == {
        "default via 203.0.113.1 dev net1 onlink",
        "203.0.113.128/25 dev net1 scope link",
    }
    assert pod.ip("-6 route show table 100") == {
        "2001:db8:99::/48 via 2001:db8:1::1 dev net1 metric 5 pref medium"
    }
    # The main table is untouched: only the kernel's routes and eth0's default.
    assert "default via 203.0.113.1 dev eth0" in pod.ip("route show")


def test_a_route_the_kernel_refuses_is_named(pod: Pod) -> None:
    net1, rt = pod.index("net1"), pod.rt
    # 203.0.113.1 is on eth0, not on net1: only `onlink` makes it a gateway through net1.
    with pytest.raises(RtnlError) as info:
        rt.do(rt.add_route(net1, "0.0.0.0/0", "203.0.113.1", table=1000, metric=7))
    assert info.value.errno == errno.ENETUNREACH
    assert info.value.op == "add route 0.0.0.0/0 via 203.0.113.1 table 1000 metric 7"
    with pytest.raises(ValueError, match="gateway 2001:db8:1::1 is of another family"):
        rt.add_route(net1, "0.0.0.0/0", "2001:db8:1::1")
    assert pod.ip("route show table 1000") == set()


def test_the_primary_default_route_is_replaced_and_put_back(pod: Pod) -> None:
    eth0, net1, rt = pod.index("eth0"), pod.index("net1"), pod.rt
    before = pod.ip("route show default") | pod.ip("-6 route show default")
    (v4,) = rt.default_routes(socket.AF_INET)
    (v6,) = rt.default_routes(socket.AF_INET6)
    assert (v4.oif, v4.route.gateway, v4.route.metric) == (eth0, "203.0.113.1", None)
    assert (v6.oif, v6.route.gateway, v6.route.metric) == (eth0, "2001:db8:2::1", 1024)

    pod.run(
        rt.replace_default_route(socket.AF_INET, net1, "198.51.100.1", metric=v4.route.metric),
        rt.replace_default_route(socket.AF_INET6, net1, "2001:db8:1::1", metric=v6.route.metric),
    )
    assert pod.ip("route show default") == {"default via 198.51.100.1 dev net1"}
    assert pod.ip("-6 route show default") == {
        "default via 2001:db8:1::1 dev net1 metric 1024 pref medium"
    }
    assert [d.oif for d in rt.default_routes(socket.AF_INET)] == [net1]

    pod.run(
        rt.put_route(v4.route, oif=v4.oif, replace=True),
        rt.put_route(v6.route, oif=v6.oif, replace=True),
    )
    assert pod.ip("route show default") | pod.ip("-6 route show default") == before
    assert rt.default_routes(socket.AF_INET) == [v4]

    # Another metric is another route: the replacement lands next to the old one.
    rt.do(rt.replace_default_route(socket.AF_INET, net1, "198.51.100.1", metric=50))
    assert pod.ip("route show default") == {
        "default via 203.0.113.1 dev eth0",
        "default via 198.51.100.1 dev net1 metric 50",
    }


# -- rules -------------------------------------------------------------------------------------

RULES_V4 = (
    Rule(100, 100, src="198.51.100.0/24"),
    Rule(101, 1000, dst="203.0.113.0/24", iif="net1"),
    Rule(102, 100, src="198.51.100.2/32", oif="net1"),
    Rule(103, 100, iif="nosuch0"),  # no such interface (yet): the kernel keeps it, "detached"
)
RULE_V6 = Rule(100, 100, src="2001:db8:1::/64", oif="net1")


def test_rules_show_up_in_ip_rule(pod: Pod) -> None:
    rt = pod.rt
    pod.run(*(rt.add_rule(r, family=socket.AF_INET) for r in RULES_V4), rt.add_rule(RULE_V6))
    assert pod.ip("rule") == {
        "0:\tfrom all lookup local",
        "100:\tfrom 198.51.100.0/24 lookup 100",
        "101:\tfrom all to 203.0.113.0/24 iif net1 lookup 1000",
        "102:\tfrom 198.51.100.2 oif net1 lookup 100",
        "103:\tfrom all iif nosuch0 [detached] lookup 100",
        "32766:\tfrom all lookup main",
        "32767:\tfrom all lookup default",
    }
    assert "100:\tfrom 2001:db8:1::/64 oif net1 lookup 100" in pod.ip("-6 rule")
    local, main = Rule(0, codec.RT_TABLE_LOCAL), Rule(32766, codec.RT_TABLE_MAIN)
    default = Rule(32767, codec.RT_TABLE_DEFAULT)
    assert rt.rules(socket.AF_INET) == [local, *RULES_V4, main, default]
    assert rt.rules(socket.AF_INET6) == [local, RULE_V6, main]


def test_rule_errors_name_the_rule(pod: Pod) -> None:
    rt, rule = pod.rt, RULES_V4[0]
    rt.do(rt.add_rule(rule))
    with pytest.raises(RtnlError) as info:
        rt.do(rt.add_rule(rule))
    assert info.value.errno == errno.EEXIST
    assert info.value.op == "add rule 100: from 198.51.100.0/24 lookup 100"

    rt.do(rt.del_rule(rule))
    assert "100:\tfrom 198.51.100.0/24 lookup 100" not in pod.ip("rule")
    with pytest.raises(RtnlError) as info:
        rt.do(rt.del_rule(rule))
    assert info.value.errno == errno.ENOENT
    assert info.value.op == "delete rule 100: from 198.51.100.0/24 lookup 100"

    with pytest.raises(ValueError, match="needs a family"):
        rt.add_rule(Rule(104, 100, iif="net1"))
    with pytest.raises(ValueError, match="mixes address families"):
        rt.add_rule(Rule(104, 100, src="198.51.100.0/24", dst="2001:db8::/32"))
    with pytest.raises(ValueError, match="mixes address families"):
        rt.add_rule(Rule(104, 100, src="198.51.100.0/24"), family=socket.AF_INET6)


# -- neighbours --------------------------------------------------------------------------------


def test_permanent_neighbors(pod: Pod) -> None:
    net1, rt = pod.index("net1"), pod.rt
    pod.run(
        rt.add_neighbor(net1, "198.51.100.9", "02:00:00:00:00:09"),
        rt.add_neighbor(net1, "2001:db8:1::9", "02:00:00:00:00:19"),
    )
    assert pod.ip("neigh show dev net1 nud permanent") == {
        "198.51.100.9 lladdr 02:00:00:00:00:09 PERMANENT",
        "2001:db8:1::9 lladdr 02:00:00:00:00:19 PERMANENT",
    }
    mine = [n for n in rt.neighbors(net1) if n.state == codec.NUD_PERMANENT]
    assert mine == [
        codec.Neighbor("198.51.100.9", "02:00:00:00:00:09", codec.NUD_PERMANENT),
        codec.Neighbor("2001:db8:1::9", "02:00:00:00:00:19", codec.NUD_PERMANENT),
    ]

    rt.do(rt.add_neighbor(net1, "198.51.100.9", "02:00:00:00:00:99"))  # replaces
    assert pod.ip("neigh show 198.51.100.9 dev net1") == {
        "198.51.100.9 lladdr 02:00:00:00:00:99 PERMANENT"
    }
    rt.do(rt.del_neighbor(net1, "198.51.100.9"))
    assert pod.ip("neigh show 198.51.100.9 dev net1") == set()


def test_a_neighbor_on_a_missing_link_is_refused(pod: Pod) -> None:
    missing = max(link.index for link in pod.rt.links()) + 100
    with pytest.raises(RtnlError) as info:
        pod.rt.do(pod.rt.add_neighbor(missing, "198.51.100.9", "02:00:00:00:00:09"))
    assert info.value.errno == errno.ENODEV
    assert info.value.op == f"add neighbor 198.51.100.9 lladdr 02:00:00:00:00:09 dev {missing}"


# -- sysctls -----------------------------------------------------------------------------------

HOST_LO_ARP_ANNOUNCE = "/proc/sys/net/ipv4/conf/lo/arp_announce"


def test_sysctls_land_in_the_pod_and_not_on_the_host(pod: Pod) -> None:
    sh(f"ip -n {pod.ns} link add a.1 type veth peer name b.1")
    items = [
        (("net", "ipv4", "conf", "a.1", "arp_ignore"), "1"),
        (("net", "ipv6", "conf", "a.1", "disable_ipv6"), "1"),
        (("net", "ipv4", "conf", "lo", "arp_announce"), "2"),
        (("net", "ipv4", "conf", "all", "rp_filter"), "2"),
    ]
    names = [sysctls.name(key) for key, _ in items]
    assert names[0] == "net.ipv4.conf.a/1.arp_ignore"  # sysctl(8)'s spelling of the dot
    pod_before = [pod.sysctl(n) for n in names]
    host_paths = [
        "/proc/sys/net/ipv4/conf/lo/arp_announce",
        "/proc/sys/net/ipv4/conf/all/rp_filter",
    ]
    host_before = [host_sysctl(p) for p in host_paths]

    old = on_worker(lambda: sysctls.apply(pod.fd, items))

    assert old == pod_before
    assert [pod.sysctl(n) for n in names] == ["1", "1", "2", "2"]
    assert on_worker(lambda: sysctls.read(pod.fd, items[0][0])) == "1"
    assert [host_sysctl(p) for p in host_paths] == host_before
    assert not os.path.exists("/proc/sys/net/ipv4/conf/a.1")  # not in this thread's namespace

    back = [(key, v) for (key, _), v in zip(items, old, strict=True) if v is not None]
    on_worker(lambda: sysctls.apply(pod.fd, back))
    assert [pod.sysctl(n) for n in names] == pod_before


def test_a_host_thread_sees_the_host_value_while_a_worker_writes_in_the_pod(pod: Pod) -> None:
    key = ("net", "ipv4", "conf", "lo", "arp_announce")
    host_before = host_sysctl(HOST_LO_ARP_ANNOUNCE)
    other = "2" if host_before != "2" else "1"
    seen: set[str] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.add(host_sysctl(HOST_LO_ARP_ANNOUNCE))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for value in (host_before, other) * 100:
            on_worker(functools.partial(sysctls.apply, pod.fd, [(key, value)]))
    finally:
        stop.set()
        watcher.join()
        if host_sysctl(HOST_LO_ARP_ANNOUNCE) != host_before:  # never leave the host changed
            subprocess.run(["sysctl", "-w", f"net.ipv4.conf.lo.arp_announce={host_before}"])
    assert seen == {host_before}
    assert pod.sysctl("net.ipv4.conf.lo.arp_announce") == other


def test_sysctl_errors_name_the_key_and_leave_nothing_half_done(pod: Pod) -> None:
    arp_ignore = ("net", "ipv4", "conf", "net1", "arp_ignore")
    before = pod.sysctl("net.ipv4.conf.net1.arp_ignore")
    wanted = "2" if before != "2" else "1"

    def apply(*items: tuple[tuple[str, ...], str]) -> list[str | None]:
        return on_worker(lambda: sysctls.apply(pod.fd, items))

    with pytest.raises(SysctlError) as info:
        apply((arp_ignore, wanted), (("net", "ipv4", "conf", "nosuch0", "arp_ignore"), "1"))
    assert (info.value.errno, info.value.key) == (errno.ENOENT, "net.ipv4.conf.nosuch0.arp_ignore")
    assert "no such sysctl in the pod" in str(info.value)
    assert pod.sysctl("net.ipv4.conf.net1.arp_ignore") == before  # put back

    with pytest.raises(SysctlError, match=r"arp_ignore=many: value refused") as info:
        apply((arp_ignore, "many"))
    assert info.value.errno == errno.EINVAL
    with pytest.raises(SysctlError, match="mc_forwarding=1: read-only sysctl") as info:
        apply((("net", "ipv4", "conf", "all", "mc_forwarding"), "1"))
    assert info.value.errno == errno.EACCES

    # Host-wide keys do not exist in another namespace: nothing can reach the host's value.
    backlog = "/proc/sys/net/core/netdev_max_backlog"
    host_backlog = host_sysctl(backlog)
    with pytest.raises(SysctlError, match=r"net\.core\.netdev_max_backlog=1: no such sysctl"):
        apply((("net", "core", "netdev_max_backlog"), "1"))
    assert host_sysctl(backlog) == host_backlog
    with pytest.raises(SysctlError, match=r"nosuch0\.arp_ignore: no such sysctl"):
        on_worker(lambda: sysctls.read(pod.fd, ("net", "ipv4", "conf", "nosuch0", "arp_ignore")))

    for bad in (("kernel", "hostname"), ("net", "ipv4", "conf", "..", "x"), ("net", "a/b"), ()):
        with pytest.raises(ValueError):
            apply((arp_ignore, wanted), (bad, "1"))
    assert pod.sysctl("net.ipv4.conf.net1.arp_ignore") == before  # checked before any write

    assert apply((("net", "ipv4", "route", "flush"), "1")) == [None]  # write-only: no old value
