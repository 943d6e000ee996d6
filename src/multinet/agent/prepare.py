"""NodePrepareResources / NodeUnprepareResources: turn an allocated claim into attach plans.

Time budget: the kubelet waits up to 45 s per call, so all slow work lives here: API reads, config
validation, IPAM reservations through the apiserver, reading the host interface. The NRI hook that
runs later only executes the plans. Plans are checkpointed before the kubelet gets its answer.

Safe to run twice: preparing a claim that is already in the checkpoint returns the same devices
(pod list refreshed); IPAM reuses reservations the same claim already holds; unpreparing an
unknown claim succeeds. Unprepare needs no API read (the claim may be gone): everything it
releases is in the checkpoint. Every failure names the claim, the request and the field.

The plan itself is assembled by the pure `multinet.planning` from what is read here.

Churn: a host-device NIC the scheduler gave to this claim may still sit in the pod of its previous
claim (a force-deleted pod is replaced before its sandbox stops). Prepare takes it back at once
through the netns the agent holds, after the API confirms the old claim let go (`_make_room`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from multinet import DRIVER_NAME, faults, ipam, planning
from multinet.agent import metrics
from multinet.api import allocation
from multinet.api.claimconfig import EffectiveConfig, effective_config
from multinet.api.fields import IPAddress
from multinet.api.parameters import NetworkParameters
from multinet.checkpoint import Checkpoint
from multinet.errors import (
    AllocationError,
    CheckpointError,
    ClaimError,
    ConfigError,
    MultinetError,
)
from multinet.ipam import Holder
from multinet.kubelet.dra import PreparedDevice
from multinet.plans import AttachPlan, ClaimRef, HostState, PreparedClaim

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DirectoryEntry:
    """What this node published for a device name."""

    ifname: str  # the host interface (host-device: the one that moves; macvlan: the parent)
    network: str | None  # the PodNetwork it is bound to, None when unbound


class DeviceDirectory(Protocol):
    """The agent's own published inventory: device name -> host interface and network."""

    def lookup(self, device: str) -> DirectoryEntry | None: ...


class ClaimLookups(Protocol):
    """Satisfied by multinet.kube.lookups.ApiLookups."""

    async def get_claim(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def get_network_parameters(self, network: str) -> NetworkParameters: ...


class Reserver(Protocol):
    """Satisfied by multinet.kube.ipam.Reservations."""

    async def reserve_from_pool(
        self, network: str, pool: ipam.Pool, holder: Holder
    ) -> IPAddress: ...

    async def reserve_static(self, network: str, address: IPAddress, holder: Holder) -> None: ...

    async def release(self, addresses: Iterable[str], claim_uid: str, node: str) -> None: ...


HostReader = Callable[[str], Awaitable[HostState]]
#: Checks a plan against this node's kernel before it is accepted (sysctls that exist, ethtool
#: features the NIC has and may change); raises ConfigError. See multinet.netlink.plancheck.
PlanChecker = Callable[[AttachPlan], Awaitable[None]]
#: Gives back interfaces of these plan keys whose pod netns is already gone (see release.py).
Reclaimer = Callable[[Iterable[str]], Awaitable[None]]


class DeviceReturner(Protocol):
    """Satisfied by multinet.agent.release.Releaser: host-device NICs still in other pods."""

    async def holding(self, device: str, *, other_than: str) -> dict[str, AttachPlan]: ...

    async def take_back(self, keys: Iterable[str]) -> None: ...


def _kind(exc: BaseException) -> str:
    for cls, name in (
        (ConfigError, "config"),
        (ClaimError, "claim"),
        (AllocationError, "allocation"),
        (CheckpointError, "checkpoint"),
    ):
        if isinstance(exc, cls):
            return name
    return "internal"


class ClaimPreparer:
    """The agent's `multinet.kubelet.dra.Preparer`."""

    def __init__(
        self,
        *,
        node_name: str,
        checkpoint: Checkpoint,
        lookups: ClaimLookups,
        devices: DeviceDirectory,
        reservations: Reserver,
        read_host: HostReader,
        reclaim: Reclaimer | None = None,
        returner: DeviceReturner | None = None,
        check_plan: PlanChecker | None = None,
    ) -> None:
        self._node = node_name
        self._check_plan = check_plan
        self._reclaim = reclaim
        self._returner = returner
        self._checkpoint = checkpoint
        self._lookups = lookups
        self._devices = devices
        self._reservations = reservations
        self._read_host = read_host

    # -- prepare ---------------------------------------------------------------------------

    async def prepare(self, claim: ClaimRef) -> list[PreparedDevice]:
        started = time.monotonic()
        try:
            devices = await self._prepare(claim)
        except Exception as exc:
            metrics.PREPARES.labels(result="error").inc()
            metrics.PREPARE_ERRORS.labels(kind=_kind(exc)).inc()
            raise
        finally:
            metrics.PREPARE_SECONDS.observe(time.monotonic() - started)
        metrics.PREPARES.labels(result="ok").inc()
        return devices

    async def _prepare(self, claim: ClaimRef) -> list[PreparedDevice]:
        known: PreparedClaim | None = self._checkpoint.state.claims.get(claim.uid)
        if known is not None:
            return await self._again(claim, known)
        alloc = allocation.parse(await self._lookups.get_claim(claim.namespace, claim.name), claim)
        extra = {"claim": str(claim), "claim_uid": claim.uid, "pods": [p.uid for p in alloc.pods]}
        plans: list[AttachPlan] = []
        try:
            networks: dict[str, NetworkParameters] = {}
            for result in alloc.results:
                plans.append(await self._plan(claim, alloc, result, networks))
            planning.check_pod_ifnames(claim, plans)
            planning.check_rule_interfaces(claim, plans)
            planning.check_one_default_route(claim, plans, self._same_pods(claim, alloc))
            prepared = PreparedClaim(
                claim=claim, pod_uids=tuple(p.uid for p in alloc.pods), plans=tuple(plans)
            )
            faults.crash_point("prepare-reserved")
            async with self._checkpoint.update() as draft:
                draft.claims[claim.uid] = prepared
        except BaseException:
            await self._release(claim, plans, best_effort=True)
            raise
        log.info(
            "prepared claim",
            extra={**extra, "devices": [f"{p.device}->{p.pod_ifname}" for p in plans]},
        )
        return _devices(prepared)

    def _same_pods(self, claim: ClaimRef, alloc: allocation.Allocation) -> list[PreparedClaim]:
        """The other claims prepared here for a pod of this claim."""
        pods = {p.uid for p in alloc.pods}
        return [
            c
            for uid, c in self._checkpoint.state.claims.items()
            if uid != claim.uid and pods & set(c.pod_uids)
        ]

    async def _again(self, claim: ClaimRef, known: PreparedClaim) -> list[PreparedDevice]:
        """Already prepared (kubelet retry or agent restart): refresh the pod list if we can."""
        try:
            alloc = allocation.parse(
                await self._lookups.get_claim(claim.namespace, claim.name), claim
            )
        except MultinetError:
            return _devices(known)
        pods = tuple(p.uid for p in alloc.pods)
        if pods and pods != known.pod_uids:
            async with self._checkpoint.update() as draft:
                draft.claims[claim.uid] = known.model_copy(update={"pod_uids": pods})
        return _devices(known)

    async def _plan(
        self,
        claim: ClaimRef,
        alloc: allocation.Allocation,
        result: allocation.Result,
        networks: dict[str, NetworkParameters],
    ) -> AttachPlan:
        where = f"claim {claim} request {result.request}"
        if result.pool != self._node:
            raise ClaimError(
                f"{where}: device {result.device} is in pool {result.pool}, "
                f"not this node's pool {self._node}"
            )
        entry = self._devices.lookup(result.device)
        if entry is None:
            raise ClaimError(
                f"{where}: device {result.device} is not in node {self._node}'s inventory"
            )
        if entry.network is None:
            raise ClaimError(
                f"{where}: device {result.device} ({entry.ifname}) is not bound to a PodNetwork"
            )
        params = await self._network(entry.network, networks, where)
        eff = effective_config(
            params,
            alloc.class_configs,
            alloc.claim_configs,
            claim=str(claim),
            request=result.request,
        )
        host: HostState | None = None
        if eff.mode == "host-device":
            await self._make_room(claim, where, result.device)
            host = await self._read_host(entry.ifname)
        holder = planning.holder(claim, alloc, result, self._node)
        addresses, reserved = await self._addresses(entry.network, eff, host, holder)
        try:
            plan = planning.attach_plan(
                claim,
                result,
                network=entry.network,
                host_ifname=entry.ifname,
                eff=eff,
                host=host,
                addresses=addresses,
                reserved=reserved,
                pod=alloc.pods[0] if alloc.pods else None,
            )
            if self._check_plan is not None:
                await self._check_plan(plan)
        except BaseException:
            if reserved:
                await _quietly(self._reservations.release(reserved, claim.uid, self._node))
            raise
        return plan

    async def _network(
        self, name: str, networks: dict[str, NetworkParameters], where: str
    ) -> NetworkParameters:
        """The PodNetwork's parameters, read once per prepare call."""
        if name not in networks:
            try:
                networks[name] = await self._lookups.get_network_parameters(name)
            except ConfigError as exc:
                raise ConfigError(exc.errors, subject=where) from exc
            except ClaimError as exc:
                raise ClaimError(f"{where}: {exc}") from exc
        return networks[name]

    async def _make_room(self, claim: ClaimRef, where: str, device: str) -> None:
        """A host-device NIC may still be in the pod of the claim that held it before (that pod
        is being torn down: force-deleted pods are replaced at once). The scheduler gave the
        device to this claim, so once the API confirms the old claim no longer holds it, the
        NIC is taken back right now instead of failing this prepare (the kubelet would back
        off for seconds) or waiting for a StopPodSandbox that may come late or never."""
        if self._returner is None:
            return
        held = await self._returner.holding(device, other_than=claim.uid)
        if not held:
            return
        for old in {plan.claim for plan in held.values()}:
            doc = await self._lookups.get_claim(old.namespace, old.name)
            if claim_holds_device(doc, old, device=device, node=self._node):
                raise ClaimError(
                    f"{where}: device {device} is still allocated to claim {old} and in its "
                    "pod; it can be prepared once that claim is deallocated"
                )
        await self._returner.take_back(held)

    async def _addresses(
        self, network: str, eff: EffectiveConfig, host: HostState | None, holder: Holder
    ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(addresses for the pod interface, addresses reserved through IPAM).

        A pool network gives one address per pool (one per family with ``ipam.subnets``); a
        static address of a family takes the place of that family's pool address."""
        if eff.ipam.type != "pool":
            return planning.addresses_without_pool(eff, host), ()
        addresses: list[str] = []
        reserved: list[str] = []
        try:
            for address in eff.addresses:
                await self._reservations.reserve_static(network, address.ip, holder)
                reserved.append(str(address.ip))
                addresses.append(str(address))
            static = {a.version for a in eff.addresses}
            for subnet in eff.ipam.pools():
                if subnet.subnet.version in static:
                    continue
                pool = ipam.pool_of(subnet)
                ip = await self._reservations.reserve_from_pool(network, pool, holder)
                reserved.append(str(ip))
                addresses.append(pool.prefixed(ip))
            return tuple(addresses), tuple(reserved)
        except BaseException:
            if reserved:
                await _quietly(self._reservations.release(reserved, holder.claim.uid, holder.node))
            raise

    # -- unprepare -------------------------------------------------------------------------

    async def unprepare(self, claim: ClaimRef) -> None:
        started = time.monotonic()
        try:
            await self._unprepare(claim)
        except Exception as exc:
            metrics.UNPREPARES.labels(result="error").inc()
            metrics.PREPARE_ERRORS.labels(kind=_kind(exc)).inc()
            raise
        finally:
            metrics.UNPREPARE_SECONDS.observe(time.monotonic() - started)
        metrics.UNPREPARES.labels(result="ok").inc()

    async def _unprepare(self, claim: ClaimRef) -> None:
        state = self._checkpoint.state
        known: PreparedClaim | None = state.claims.get(claim.uid)
        if known is None:
            return  # never prepared here, or already unprepared
        keys = {p.key for p in known.plans}
        if self._reclaim is not None:
            await self._reclaim(keys)
            state = self._checkpoint.state
        stuck = [a for k, a in state.attachments.items() if k in keys]
        if stuck:
            # Dropping the plans now would lose what the host interface must be restored to.
            pods = ", ".join(sorted({a.pod for a in stuck}))
            raise ClaimError(
                f"claim {claim}: its interface is still attached in pod {pods}; "
                "it is released once the interface is back on the host"
            )
        await self._release(claim, list(known.plans), best_effort=False)
        faults.crash_point("unprepare-released")
        async with self._checkpoint.update() as draft:
            draft.claims.pop(claim.uid, None)
        log.info("unprepared claim", extra={"claim": str(claim), "claim_uid": claim.uid})

    async def _release(
        self, claim: ClaimRef, plans: list[AttachPlan], *, best_effort: bool
    ) -> None:
        for plan in plans:
            if not plan.reserved_addresses:
                continue
            work = self._reservations.release(plan.reserved_addresses, claim.uid, self._node)
            if best_effort:
                await _quietly(work)
            else:
                await work


async def _quietly(work: Awaitable[None]) -> None:
    try:
        await work
    except Exception:
        log.exception("releasing IP reservations failed; the controller's GC will collect them")


def claim_holds_device(
    doc: Mapping[str, Any] | None, claim: ClaimRef, *, device: str, node: str
) -> bool:
    """Does this incarnation of `claim` (its API object `doc`, None when gone) still have our
    `device` of this node's pool in its allocation?"""
    if doc is None or (doc.get("metadata") or {}).get("uid") != claim.uid:
        return False
    allocation = (doc.get("status") or {}).get("allocation") or {}
    return any(
        r.get("driver") == DRIVER_NAME and r.get("pool") == node and r.get("device") == device
        for r in (allocation.get("devices") or {}).get("results") or ()
    )


def _devices(prepared: PreparedClaim) -> list[PreparedDevice]:
    return [
        PreparedDevice(
            request_names=(p.request,),
            pool_name=p.pool,
            device_name=p.device,
            share_id=p.share_id,
        )
        for p in prepared.plans
    ]
