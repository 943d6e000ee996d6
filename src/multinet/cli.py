"""The `multinet` command: `controller`, `node-agent`, `version`.

Every flag has an environment variable (shown in --help) so manifests can configure the
processes without rewriting their command lines.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from multinet import __version__
from multinet.logs import setup_logging


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        default=_env("KUBECONFIG", ""),
        help="kubeconfig file; empty means in-cluster config [env KUBECONFIG]",
    )
    parser.add_argument(
        "--log-level",
        default=_env("MULTINET_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="minimum level logged [env MULTINET_LOG_LEVEL, default info]",
    )
    parser.add_argument(
        "--log-format",
        default=_env("MULTINET_LOG_FORMAT", "text"),
        choices=["text", "json"],
        help="text for people, json (one object a line) for collectors "
        "[env MULTINET_LOG_FORMAT, default text]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multinet",
        description="Multi-network for Kubernetes through Dynamic Resource Allocation.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    controller = sub.add_parser(
        "controller",
        help="reconcile PodNetworks: conditions, DeviceClasses, finalizers, IP reservations",
        description="Run the cluster-wide controller. Watches PodNetworks of provider "
        "multinet.dev, keeps their Ready condition, a DeviceClass per network and the in-use "
        "finalizer, and garbage-collects IP reservations of claims that no longer exist.",
    )
    _common(controller)
    from multinet.controller.settings import add_controller_flags

    add_controller_flags(controller)

    agent = sub.add_parser(
        "node-agent",
        help="advertise this node's interfaces and attach them to pods (DRA + NRI)",
        description="Run the per-node agent: publishes ResourceSlices, serves the kubelet DRA "
        "plugin and the containerd NRI plugin that moves interfaces into pods.",
    )
    _common(agent)
    from multinet.agent.settings import add_agent_flags

    add_agent_flags(agent)

    sub.add_parser("version", help="print the version and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"multinet {__version__}")
        return 0
    setup_logging(level=args.log_level, fmt=args.log_format)
    log = logging.getLogger("multinet")
    try:
        if args.command == "controller":
            from multinet.controller.main import run_controller

            return run_controller(args)
        from multinet.agent.main import run_agent

        return run_agent(args)
    except KeyboardInterrupt:
        log.info("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
