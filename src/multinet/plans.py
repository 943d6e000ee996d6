"""Attach plans: what NodePrepareResources decides and the NRI hooks execute.

Pure data, no I/O. A plan is computed while preparing a claim (where slow work is allowed),
checkpointed before kubelet gets its answer, and executed later in RunPodSandbox, where only
netlink work fits in the ~2 s NRI deadline. The `host` part records the host-side state to put
back when the pod goes, so StopPodSandbox needs nothing but the plan.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from multinet.api import names

Mode = Literal["host-device", "macvlan", "cni"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ClaimRef(_Frozen):
    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class Route(_Frozen):
    destination: str  # CIDR, e.g. "10.0.0.0/8" or "0.0.0.0/0"
    gateway: str | None = None
    # Optional details a host route may carry; None means "the kernel default" when adding.
    # They let a restore put back e.g. a DHCP route exactly (`ip route` shows proto and metric).
    metric: int | None = None
    protocol: int | None = None  # rtnetlink RTPROT_* number (3 boot, 4 static, 16 dhcp)
    source: str | None = None  # preferred source address (RTA_PREFSRC)
    # Pod routes from claim config: None means main table / the kernel's scope for the route.
    table: int | None = None
    scope: int | None = None  # RT_SCOPE_* number
    onlink: bool = False


class Rule(_Frozen):
    """A policy rule in the pod (`ip rule add priority P from A to B iif X oif Y lookup T`)."""

    priority: int
    source: str | None = None  # CIDR
    destination: str | None = None  # CIDR
    table: int
    iif: str | None = None
    oif: str | None = None


class Neighbor(_Frozen):
    """A permanent neighbour entry on the pod interface."""

    address: str
    mac: str


class Sysctl(_Frozen):
    """One sysctl in the pod: its path below /proc/sys and the value to write."""

    path: tuple[str, ...]
    value: str

    @property
    def key(self) -> str:
        return ".".join(self.path)


class CniPlan(_Frozen):
    """`mode: cni`: the chain to run for the claim, and what the plugins are given."""

    config: dict[str, Any]  # the network config or conflist, as the PodNetwork holds it
    ips: tuple[str, ...] = ()  # static addresses for plugins with the `ips` capability
    pod_name: str = ""  # CNI_ARGS K8S_POD_NAME/NAMESPACE, as Multus passes them
    pod_namespace: str = ""
    # The chain's first plugin moves the NIC itself (host-device): its host state is recorded
    # before ADD and restored after DEL, as in host-device mode.
    takes_device: bool = False


class HostAddress(_Frozen):
    """One host address with what `ip addr` shows beside it. Defaults are the kernel's."""

    cidr: str
    broadcast: str | None = None
    flags: int = 0  # the IFA_F_* flags a user sets: nodad, noprefixroute, mngtmpaddr, ...
    label: str | None = None  # IPv4 label when not the interface's own name (`label eth0:1`)
    scope: int = 0  # RT_SCOPE_*: an IPv4 address may be `scope link` or `scope host`
    proto: int = 0  # IFA_PROTO: who added it, when someone said so (0: unspecified)


class HostNextHop(_Frozen):
    """One path of a multipath route through the NIC."""

    gateway: str | None = None
    # None: the NIC itself (its index may change on the way back); else another host link's index.
    ifindex: int | None = None
    weight: int = 1
    onlink: bool = False


class HostRoute(Route):
    """A host route through the NIC, in any table. The defaults describe what older checkpoints
    recorded: main-table unicast routes added the way `ip route add` adds them."""

    table: int = 254  # RT_TABLE_MAIN
    type: int = 1  # RTN_UNICAST; also local, broadcast, ... when a user added such a route
    scope: int | None = None  # None: universe with a gateway, link without (as `ip route`)
    tos: int = 0
    onlink: bool = False
    pref: int | None = None  # IPv6 router preference (0 medium, 1 high, 3 low)
    metrics: tuple[tuple[int, int], ...] = ()  # RTAX_* number and value: mtu, advmss, window...
    nexthops: tuple[HostNextHop, ...] = ()  # multipath: then `gateway` is None


class HostState(_Frozen):
    """How the host NIC looked before it moved into a pod; restored exactly on the way back.

    Every field added after the first release has a default, so older checkpoints still load
    (and restore what they recorded)."""

    ifname: str
    ifindex: int
    mtu: int
    mac: str
    up: bool
    # CIDR form, in kernel order; link-local ones only when added by hand (the kernel makes its
    # own again when the link comes up).
    addresses: tuple[str, ...] = ()
    # Routes through this interface (also one path of a multipath route), all tables, not the
    # ones the kernel makes itself (for addresses, router advertisements, redirects).
    routes: tuple[HostRoute, ...] = ()
    # IPv4 broadcast per address (CIDR, broadcast) where the host had one: `ip addr` looks the same.
    broadcasts: tuple[tuple[str, str], ...] = ()
    # `addresses` with flags, label, scope; empty in older checkpoints (then CIDR and broadcast).
    address_details: tuple[HostAddress, ...] = ()
    # The bridge (or bond) the NIC was a port of: its index, and its name to check the index still
    # names it. The kernel releases the port when the NIC leaves the namespace.
    master: int | None = None
    master_name: str | None = None
    # IPv6 address generation mode (IFLA_INET6_ADDR_GEN_MODE: 0 eui64, 1 none, 2 stable-privacy,
    # 3 random). The kernel resets it when the NIC changes namespace; None: not recorded.
    addr_gen_mode: int | None = None
    # The NIC's changeable ethtool features before a plan set some (they travel with the device):
    # empty when the plan sets none.
    features: tuple[tuple[str, bool], ...] = ()


class AttachPlan(_Frozen):
    """One device for one claim request, to configure inside the pod's network namespace."""

    claim: ClaimRef
    request: str
    driver: str = names.DRIVER
    pool: str
    device: str
    share_id: str | None = None
    network: str  # the PodNetwork name
    mode: Mode
    host_ifname: str  # host-device: the interface that moves; macvlan: the parent
    pod_ifname: str  # name inside the pod
    addresses: tuple[str, ...] = ()  # CIDR form
    mtu: int | None = None
    mac: str | None = None
    routes: tuple[Route, ...] = ()
    host: HostState | None = None  # host-device only
    reserved_addresses: tuple[str, ...] = ()  # IPAM reservations to release on unprepare
    rules: tuple[Rule, ...] = ()
    neighbors: tuple[Neighbor, ...] = ()
    sysctls: tuple[Sysctl, ...] = ()  # written before the interface comes up
    features: tuple[tuple[str, bool], ...] = ()  # ethtool features, by name
    # defaultRoute: the gateways (one per family) that become the pod's default routes,
    # replacing the ones the cluster network set on eth0.
    default_route: bool = False
    default_gateways: tuple[str, ...] = ()  # empty in mode cni: the chain's result names them
    macvlan_mode: str = "bridge"
    cni: CniPlan | None = None

    @property
    def moves_nic(self) -> bool:
        """The host NIC itself goes into the pod (host-device mode, or a CNI chain whose first
        plugin takes it): it is away from the host, and comes back, with the pod."""
        return self.mode == "host-device" or (self.cni is not None and self.cni.takes_device)

    @property
    def key(self) -> str:
        """Unique within a node: claim UID, request and device (and share for macvlan)."""
        share = f"/{self.share_id}" if self.share_id else ""
        return f"{self.claim.uid}/{self.request}/{self.device}{share}"


class PreparedClaim(_Frozen):
    """A claim the kubelet asked us to prepare: all unprepare needs, even once the claim is gone."""

    claim: ClaimRef
    pod_uids: tuple[str, ...] = ()  # from status.reservedFor
    plans: tuple[AttachPlan, ...] = ()


AttachPhase = Literal["attaching", "attached"]


class Attachment(_Frozen):
    """A plan being or having been executed in a pod: what is where, for restarts and teardown."""

    plan_key: str
    pod_uid: str
    pod: str  # namespace/name, for logs and events
    netns: str  # path of the pod's network namespace
    phase: AttachPhase
    pod_ifindex: int | None = None  # the interface's index inside the pod netns once attached
    # The host-side state read just before the move (host-device): what detach restores when set,
    # fresher than the prepare-time `plan.host`.
    host: HostState | None = None
    # host-device: the link's facts as last published before it moved (multinet.devices.facts),
    # so the device stays advertised while away, also after an agent restart.
    link: dict[str, Any] | None = None


class AgentState(BaseModel):
    """Everything in the checkpoint file. `version` bumps on incompatible changes (of the file
    format too: 2 added the checksum); multinet.checkpoint.MIGRATIONS reads the older ones."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[2] = 2
    claims: dict[str, PreparedClaim] = Field(default_factory=dict)  # by claim UID
    attachments: dict[str, Attachment] = Field(default_factory=dict)  # by plan key

    def plans_for_pod(self, pod_uid: str) -> list[AttachPlan]:
        return [p for c in self.claims.values() if pod_uid in c.pod_uids for p in c.plans]
