"""Attach plans: what NodePrepareResources decides and the NRI hooks execute.

Pure data, no I/O. A plan is computed while preparing a claim (where slow work is allowed),
checkpointed before kubelet gets its answer, and executed later in RunPodSandbox, where only
netlink work fits in the ~2 s NRI deadline. The `host` part records the host-side state to put
back when the pod goes, so StopPodSandbox needs nothing but the plan.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["host-device", "macvlan"]


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


class HostState(_Frozen):
    """How the host NIC looked before it moved into a pod; restored exactly on the way back."""

    ifname: str
    ifindex: int
    mtu: int
    mac: str
    up: bool
    addresses: tuple[str, ...] = ()  # CIDR form, in kernel order
    # Routes through this interface in the main table, not the kernel-made ones.
    routes: tuple[Route, ...] = ()
    # IPv4 broadcast per address (CIDR, broadcast) where the host had one: `ip addr` looks the same.
    broadcasts: tuple[tuple[str, str], ...] = ()


class AttachPlan(_Frozen):
    """One device for one claim request, to configure inside the pod's network namespace."""

    claim: ClaimRef
    request: str
    driver: str = "multinet.dev"
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


AttachPhase = Literal["attaching", "attached", "detaching"]


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
