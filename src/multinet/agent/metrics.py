"""The node agent's Prometheus metrics: metric objects only, one place, served on /metrics.

Names are ``multinet_agent_<what>[_unit]``. Modules import this module whole and use the objects
qualified (``metrics.PUBLISHED_DEVICES.set(n)``).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# -- inventory and ResourceSlice publishing (agent/publish.py) ---------------------------------
PUBLISHED_DEVICES = Gauge(
    "multinet_agent_published_devices", "Devices in this node's published ResourceSlices"
)
LAST_PUBLISH_TIMESTAMP = Gauge(
    "multinet_agent_last_publish_timestamp_seconds",
    "Unix time of the last successful publish (including 'nothing to change')",
)
PUBLISH_ERRORS = Counter(
    "multinet_agent_publish_errors", "Failed attempts to publish this node's ResourceSlices"
)
SLICE_WRITES = Counter(
    "multinet_agent_slice_writes", "ResourceSlice creates, updates and deletes issued"
)
DEVICE_CONFLICTS = Gauge(
    "multinet_agent_device_conflicts",
    "Devices selected by more than one Ready PodNetwork (bound to none of them)",
)

# -- kubelet DRA calls (agent/prepare.py), counted per claim ------------------------------------
PREPARES = Counter(
    "multinet_agent_prepare_claims", "Claims handled by NodePrepareResources", ["result"]
)
UNPREPARES = Counter(
    "multinet_agent_unprepare_claims", "Claims handled by NodeUnprepareResources", ["result"]
)
PREPARE_SECONDS = Histogram(
    "multinet_agent_prepare_seconds", "Time to prepare one claim (API reads, IPAM, checkpoint)"
)
UNPREPARE_SECONDS = Histogram(
    "multinet_agent_unprepare_seconds", "Time to unprepare one claim (IPAM release, checkpoint)"
)
PREPARE_ERRORS = Counter(
    "multinet_agent_prepare_errors",
    "Failed prepares and unprepares by kind (config, claim, allocation, checkpoint, internal)",
    ["kind"],
)

# -- NRI hooks (agent/attach.py, agent/release.py) ----------------------------------------------
ATTACH_SECONDS = Histogram(
    "multinet_agent_attach_seconds",
    "Time RunPodSandbox spent attaching all interfaces of one pod (inside the NRI deadline)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)
ATTACH_ERRORS = Counter(
    "multinet_agent_attach_errors", "Plans that failed to attach (the pod sandbox failed)"
)
RESTORE_ERRORS = Counter(
    "multinet_agent_restore_errors",
    "Interfaces that could not be returned to the host as they were (see the agent log)",
)
RECOVERY_FAILURES = Counter(
    "multinet_agent_recovery_failures",
    "Failed attempts to bring an interface home after its pod went away (record kept, retried)",
)
RECOVERIES_PENDING = Gauge(
    "multinet_agent_recoveries_pending",
    "Interfaces whose recovery failed and is being retried with backoff",
)
