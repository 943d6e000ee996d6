"""Adapter: does the apiserver serve consumable capacity? It decides how macvlan NICs are shared.

Detection, not assumption: the version number says little (DRAConsumableCapacity is alpha and off
in 1.34 and 1.35, beta and on from 1.36, and any of them may have the gate flipped), and an
apiserver with the gate off does not refuse the fields, it silently drops them on write. So the
node agent asks the apiserver itself, once at start: a server-side dry run (``dryRun=All``,
nothing is stored, no scheduler sees it) creating a ResourceSlice of this node and driver with
one shareable device carrying the consumable capacity, rendered exactly as the publisher would
render a shared macvlan parent. If the answer still has ``allowMultipleAllocations``, the
feature is on and shared parents are published once with consumable capacity; if the field is
gone (or the apiserver refuses such a device), they are published as slot devices
(``devices.slots``).

Who probes: the node agent, with its own node name, because that is all it may write
(deploy/base/slice-policy.yaml: its own node's slices, driver multinet.dev; the policy applies
to dry runs too). The controller does not probe: RBAC cannot grant a dry-run-only create, and
the controller is better served by what the agents actually published (``controller.sharing``
reads it from the slices, which also shows a node whose devices lost the field).

A failed probe (apiserver unreachable, busy, forbidden) never stops the agent: it publishes slot
devices, the form that works on every version, and ``settle`` asks again with backoff while the
failure looks transient (a refusal such as 403 will not change by itself, so it is final).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio import client

from multinet import slices
from multinet.api import documents, names
from multinet.devices import binding
from multinet.devices.model import Device
from multinet.devices.slots import Sharing
from multinet.kube.errors import ApiError, read_body, translated
from multinet.retry import Backoff, Retry

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 10
PROBE_NAME = "multinet-feature-probe-"  # generateName: nothing is stored anyway
#: Between probes while the apiserver cannot answer: 2 s doubling to 5 minutes.
RETRY = Backoff(initial=2.0, cap=300.0)

#: POST the body as a dry run and return the object the apiserver would have stored.
DryRunCreate = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Detection:
    sharing: Sharing
    #: False when the probe failed in a way a later attempt may cure (unreachable, busy).
    settled: bool
    #: Why, in words, for the log.
    why: str


def probe_body(node_name: str, driver: str = names.DRIVER) -> dict[str, Any]:
    """The ResourceSlice the probe creates as a dry run: one shared parent as we publish it."""
    device = Device(
        name="probe",
        ifname="probe",
        shareable=True,
        capacity=binding.shared_capacity(2),
    )
    return {
        "apiVersion": names.RESOURCE_API,
        "kind": "ResourceSlice",
        "metadata": {"generateName": PROBE_NAME},
        "spec": {
            "driver": driver,
            "nodeName": node_name,
            "pool": {"name": PROBE_NAME.rstrip("-"), "generation": 0, "resourceSliceCount": 1},
            "devices": [slices.render_device(device)],
        },
    }


def decide(answer: Any) -> Detection:
    """What the apiserver's answer to the dry run says (any JSON value; malformed -> slots)."""
    spec = answer.get("spec") if isinstance(answer, Mapping) else None
    found = spec.get("devices") if isinstance(spec, Mapping) else None
    device = found[0] if isinstance(found, list) and found else None
    if isinstance(device, Mapping) and device.get("allowMultipleAllocations") is True:
        return Detection(
            Sharing.CONSUMABLE_CAPACITY,
            settled=True,
            why="the apiserver kept allowMultipleAllocations of a dry-run ResourceSlice",
        )
    return Detection(
        Sharing.SLOT_DEVICES,
        settled=True,
        why="the apiserver dropped allowMultipleAllocations from a dry-run ResourceSlice"
        " (DRAConsumableCapacity off)",
    )


def failed(exc: ApiError) -> Detection:
    """A probe the apiserver refused, or could not answer: slot devices, settled or not."""
    if exc.status in (400, 422):
        return Detection(
            Sharing.SLOT_DEVICES,
            settled=True,
            why=f"the apiserver refused a shareable device (HTTP {exc.status}): {exc}",
        )
    return Detection(
        Sharing.SLOT_DEVICES,
        settled=not exc.transient,
        why=f"the probe failed, so the form that works everywhere is used: {exc}",
    )


class SharingDetector:
    """Probes once (``detect``), and again with backoff while unanswered (``settle``)."""

    def __init__(
        self,
        api: client.ApiClient | None,
        node_name: str,
        *,
        create: DryRunCreate | None = None,
        backoff: Backoff = RETRY,
    ) -> None:
        self.node_name = node_name
        self._create = create or _dry_run_create(api)
        self._backoff = backoff
        self.last: Detection | None = None

    async def probe(self) -> Detection:
        """One dry run and its verdict; never raises an API error."""
        try:
            with translated(f"dry-run create of a ResourceSlice of node {self.node_name}"):
                answer = await self._create(probe_body(self.node_name))
        except ApiError as exc:
            return failed(exc)
        except ValueError as exc:  # documents.loads: not JSON
            return Detection(Sharing.SLOT_DEVICES, True, f"the answer is not JSON: {exc}")
        return decide(answer)

    async def detect(self) -> Sharing:
        """Probe at start and log the form the agent will publish, once."""
        self.last = await self.probe()
        _log(self.last, self.node_name)
        return self.last.sharing

    async def settle(self, use: Callable[[Sharing], None]) -> None:
        """While the last probe was not answered, ask again with backoff; hand a settled answer
        to ``use``. Returns once settled (at once if it already is). Never raises."""
        retry = Retry(self._backoff)
        while self.last is None or not self.last.settled:
            await asyncio.sleep(retry.failed())
            try:
                self.last = await self.probe()
            except Exception:  # a bug must not stop the agent; slots keep working
                log.exception("probing for consumable capacity failed; keeping slot devices")
                return
            if self.last.settled:
                _log(self.last, self.node_name)
                use(self.last.sharing)


def _log(found: Detection, node: str) -> None:
    extra = {"node": node, "sharing": found.sharing.value}
    most = binding.DEFAULT_MAX_INTERFACES
    if found.sharing is Sharing.CONSUMABLE_CAPACITY:
        log.info(
            "consumable capacity is served (%s): each shared (macvlan) parent NIC is published"
            " once, shared by up to %d pods",
            found.why,
            most,
            extra=extra,
        )
    elif found.settled:
        log.info(
            "consumable capacity is not served (%s): each shared (macvlan) parent NIC is"
            " published as %d slot devices, one pod per slot",
            found.why,
            most,
            extra=extra,
        )
    else:
        log.warning(
            "cannot tell whether consumable capacity is served (%s): publishing each shared"
            " (macvlan) parent NIC as %d slot devices meanwhile and asking again",
            found.why,
            most,
            extra=extra,
        )


def _dry_run_create(api: client.ApiClient | None) -> DryRunCreate:
    # Typed as Any: we send and read raw JSON dicts, not the generated models the stubs want.
    resource: Any = client.ResourceV1Api(api)

    async def create(body: dict[str, Any]) -> Any:
        response = await resource.create_resource_slice(
            body,
            dry_run="All",
            _preload_content=False,
            _request_timeout=PROBE_TIMEOUT_SECONDS,
        )
        return documents.loads(await read_body(response))

    return create
