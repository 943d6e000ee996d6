"""Controller settings: flags and their environment variables."""

from __future__ import annotations

import argparse
import os


def _float(name: str, default: str) -> float:
    return float(os.environ.get(name, default))


def add_controller_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--health-port",
        type=int,
        default=int(os.environ.get("MULTINET_HEALTH_PORT", "8080")),
        help="port of the liveness endpoint /healthz; 0 disables "
        "[env MULTINET_HEALTH_PORT, default 8080]",
    )
    parser.add_argument(
        "--leader-elect",
        default=os.environ.get("MULTINET_LEADER_ELECT", "true"),
        choices=["true", "false"],
        help="hold a Lease so only one replica reconciles; false only for a single replica "
        "[env MULTINET_LEADER_ELECT, default true]",
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("MULTINET_NAMESPACE", "multinet-system"),
        help="namespace of the leader-election Lease (the controller's own) "
        "[env MULTINET_NAMESPACE, default multinet-system]",
    )
    parser.add_argument(
        "--lease-name",
        default=os.environ.get("MULTINET_LEASE_NAME", "multinet-controller"),
        help="name of the leader-election Lease "
        "[env MULTINET_LEASE_NAME, default multinet-controller]",
    )
    parser.add_argument(
        "--recheck-interval",
        type=float,
        default=_float("MULTINET_RECHECK_INTERVAL", "10"),
        help="seconds between checks of a PodNetwork whose deletion waits for claims; claim "
        "events trigger a check sooner [env MULTINET_RECHECK_INTERVAL, default 10]",
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=_float("MULTINET_RESYNC_INTERVAL", "300"),
        help="seconds between full passes over all PodNetworks, a safety net for missed events "
        "[env MULTINET_RESYNC_INTERVAL, default 300]",
    )
    parser.add_argument(
        "--ipam-gc-interval",
        type=float,
        default=_float("MULTINET_IPAM_GC_INTERVAL", "60"),
        help="seconds between sweeps deleting IP reservations whose claim is gone; 0 disables "
        "[env MULTINET_IPAM_GC_INTERVAL, default 60]",
    )
