"""CLI: python -m localcluster up|down|status|logs (PYTHONPATH=hack)."""

from __future__ import annotations

import argparse
import sys

from . import sandbox
from .cluster import COMPONENTS, Cluster, ClusterError, down, up
from .nodes import MAX_NODES


def _say(msg: str) -> None:
    print(f"[localcluster] {msg}", file=sys.stderr, flush=True)


def _status(cluster: Cluster) -> int:
    rows = cluster.status_rows()
    width = max(len(r[0]) for r in rows)
    for name, pid, alive, log in rows:
        state = "running" if alive else "stopped"
        print(f"{name:<{width}}  {state:<8} pid {pid or '-':<8} log {log}")
    running = any(alive for _, _, alive, _ in rows)
    if running:
        ready = "Ready" if cluster.node_is_ready() else "NOT all Ready"
        nodes = ", ".join(cluster.node_names)
        print(f"nodes {nodes} (API at {cluster.node_ip}): {ready}")
        print(
            f"memory (RSS): {cluster.rss_kib() / 1024:.0f} MiB in managed processes, "
            f"{cluster.total_rss_kib() / 1024:.0f} MiB with shims and pods"
        )
        print(f"kubeconfig: {cluster.kubeconfig}")
    return 0 if cluster.is_up() else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    up_cmd = sub.add_parser(
        "up", help="start the cluster (no-op if already up); prints the kubeconfig path"
    )
    up_cmd.add_argument(
        "--nodes",
        type=int,
        default=1,
        help=f"number of nodes, 1-{MAX_NODES} (default 1: this machine is the node; "
        "2 or more: each node is a sandbox with its own netns, see docs/local-cluster.md)",
    )
    nic = sub.add_parser(
        "node-nic",
        help="give a sandbox node a veth NIC whose other end is on the host's lab bridge",
    )
    nic.add_argument("node", help="the node's name, e.g. mnlc-node-2")
    nic.add_argument("name", help="the NIC's name inside the node, e.g. eth1")
    sub.add_parser("down", help="stop everything and restore the machine (idempotent)")
    sub.add_parser("status", help="each process (pid, alive, log) and node readiness")
    logs = sub.add_parser("logs", help="tail of a component's log (all components without a name)")
    logs.add_argument("component", nargs="?", help=f"one of {', '.join(COMPONENTS)} or an extra")
    logs.add_argument("-n", type=int, default=40, help="number of lines (default 40)")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "up":
            cluster = up(say=_say, keep=True, nodes=args.nodes)
            print(cluster.kubeconfig)
            return 0
        if args.cmd == "node-nic":
            port = sandbox.add_nic(args.node, args.name)
            _say(f"{args.node} has NIC {args.name}; its other end {port} is on the lab bridge")
            return 0
        if args.cmd == "down":
            down(say=_say)
            return 0
        cluster = Cluster.load()
        if args.cmd == "status":
            return _status(cluster)
        known = [r[0] for r in cluster.status_rows()]
        if args.component and not cluster.processes.log_path(args.component).exists():
            _say(f"no log for {args.component!r}; known: {', '.join(known)}")
            return 1
        names = [args.component] if args.component else known
        for name in names:
            print(f"==> {cluster.processes.log_path(name)} <==")
            print(cluster.processes.tail(name, args.n))
        return 0
    except (ClusterError, sandbox.SandboxError, ValueError) as exc:
        _say(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
