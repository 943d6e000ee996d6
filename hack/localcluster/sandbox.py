"""Node sandboxes: each node of a many-node cluster is a network namespace, a mount namespace and
a hostname of its own on this one machine, with its own containerd and kubelet inside.

- **Network.** `ip netns add <node>` (so `ip netns exec <node> ...` works from the host); the
  node's `eth0` is a veth whose host end sits on the `mnlc-tor` bridge ("top-of-rack switch").
  The node routes the other nodes' pod ranges to them over that bridge; its default route is the
  host, which serves the API. With no kube-proxy here, one DNAT rule in each node stands in for
  the `kubernetes` Service (10.96.0.1:443 -> the apiserver), which in-cluster clients use.
- **Mounts.** A long-lived holder process (`<node>.sandbox`, a `sleep` in the node's namespaces)
  keeps the mount namespace alive; in it, each path of NODE_PRIVATE_PATHS is a bind mount of the
  node's own directory, so `/var/lib/kubelet`, `/run/nri`, `/run/netns`, `/var/lib/multinet` are
  that node's, exactly where deploy/base's hostPath volumes look. `/` is made rshared inside, as
  on a systemd host, so Bidirectional and HostToContainer mount propagation work.
- **Processes.** containerd and the kubelet are started through `nsenter` into the holder's
  namespaces (nsenter execs them: the PID file holds the real process).
- **cgroups.** Each kubelet gets `--cgroup-root=/mnlc-nodes/<node>` in every v1 hierarchy.

Everything is found again after a SIGKILL: the netns by name, processes by the netns they are in,
the cgroups by their fixed parent. `remove_all` undoes it all.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from . import layout as L
from .nodes import NODE_PREFIX, NodeSpec, lab_port
from .processes import kill_pids

NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")


class SandboxError(RuntimeError):
    """A node sandbox could not be set up; the message names the command that failed."""


def _run(*argv: str, netns: str | None = None) -> str:
    if netns is not None:
        argv = ("nsenter", f"--net={NETNS_DIR / netns}", "--", *argv)
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SandboxError(f"`{shlex.join(argv)}` failed: {proc.stderr.strip()}")
    return proc.stdout


# --- network ---------------------------------------------------------------------------------
def _ensure_bridge(name: str, address: str | None) -> None:
    if not Path(f"/sys/class/net/{name}").exists():
        _run("ip", "link", "add", name, "type", "bridge")
    if address is not None:
        _run("ip", "addr", "replace", address, "dev", name)
    _run("ip", "link", "set", name, "up")


def make_network(nodes: Sequence[NodeSpec], apiserver_ip: str, apiserver_port: int) -> None:
    """The bridges, each node's netns with eth0, its routes, forwarding and the Service DNAT."""
    _ensure_bridge(L.TOR_BRIDGE, f"{L.TOR_GATEWAY}/24")
    _ensure_bridge(L.LAB_BRIDGE, None)
    for node in nodes:
        _run("ip", "netns", "add", node.name)
        peer = ["peer", "name", "eth0", "netns", node.name]
        _run("ip", "link", "add", node.tor_port, "type", "veth", *peer)
        _run("ip", "link", "set", node.tor_port, "master", L.TOR_BRIDGE, "up")
        _run("ip", "addr", "add", f"{node.ip}/24", "dev", "eth0", netns=node.name)
        _run("ip", "link", "set", "lo", "up", netns=node.name)
        _run("ip", "link", "set", "eth0", "up", netns=node.name)
        _run("ip", "route", "add", "default", "via", L.TOR_GATEWAY, netns=node.name)
        _run("sysctl", "-qw", "net.ipv4.ip_forward=1", netns=node.name)
        for other in nodes:
            if other != node:
                _run("ip", "route", "add", other.pod_cidr, "via", other.ip, netns=node.name)
        _run("ip", "route", "replace", node.pod_cidr, "via", node.ip, "dev", L.TOR_BRIDGE)
        service = ["-d", f"{L.KUBERNETES_SERVICE_IP}/32", "-p", "tcp", "--dport", "443"]
        target = ["-j", "DNAT", "--to-destination", f"{apiserver_ip}:{apiserver_port}"]
        for chain in ("OUTPUT", "PREROUTING"):
            _run("iptables", "-w", "-t", "nat", "-A", chain, *service, *target, netns=node.name)


def node_netns_names() -> list[str]:
    """Every node sandbox netns on this host (ours by their prefix), also those of a killed run."""
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(NODE_PREFIX))


# --- mounts and the namespace holder ---------------------------------------------------------
def ensure_host_mountpoints(lay: L.Layout) -> None:
    """Bind mounts need a directory to land on: create the missing ones (empty) and remember
    which, so `remove_all` takes exactly those away again."""
    try:
        created: list[str] = json.loads(lay.host_mountpoints_file.read_text())
    except (FileNotFoundError, ValueError):
        created = []
    for path in L.NODE_PRIVATE_PATHS:
        if not Path(path).exists():
            Path(path).mkdir(parents=True)
            created.append(path)
    lay.host_mountpoints_file.write_text(json.dumps(sorted(set(created))) + "\n")


def holder_argv(lay: L.Layout, node: NodeSpec) -> list[str]:
    """The node's namespace holder: enters the node's netns, makes a private mount namespace
    and UTS namespace, mounts the node's own directories, then sleeps for as long as the node
    lives. It writes the ready marker once the mounts are in place."""
    nl = lay.node(node.name)
    lines = [
        "set -e",
        # The host's /run/netns holds every node's netns: this node sees only its pods' ones.
        "umount -l /run/netns 2>/dev/null || true",
        *(f"mount --bind {shlex.quote(str(nl.private(p)))} {p}" for p in L.NODE_PRIVATE_PATHS),
        "mount --make-rshared /",
        f"hostname {shlex.quote(node.name)}",
        f"touch {shlex.quote(str(nl.ready_marker))}",
        "exec sleep infinity",
    ]
    return [
        "nsenter", f"--net={NETNS_DIR / node.name}", "--",
        "unshare", "--mount", "--uts", "--propagation", "private", "--",
        "/bin/sh", "-c", "\n".join(lines),
    ]  # fmt: skip


def enter(holder_pid: int, argv: Sequence[str]) -> list[str]:
    """`argv` run in the namespaces (mount, UTS, network) of the node whose holder is
    `holder_pid`. nsenter execs it, so the PID is argv's own."""
    return ["nsenter", f"--target={holder_pid}", "--mount", "--uts", "--net", "--", *argv]


# --- cgroups ---------------------------------------------------------------------------------
def _hierarchies() -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    return [h for h in CGROUP_ROOT.iterdir() if h.is_dir() and not h.is_symlink()]


def make_cgroup_roots(nodes: Sequence[NodeSpec]) -> None:
    """/mnlc-nodes/<node> in every hierarchy (the kubelet refuses a cgroup root that does not
    exist). cpuset children start empty on cgroup v1: give them the parent's CPUs and memory."""
    for h in _hierarchies():
        for node in nodes:
            for d in (h / L.NODES_CGROUP, h / L.NODES_CGROUP / node.name):
                d.mkdir(exist_ok=True)
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    mine, parent = d / knob, d.parent / knob
                    if mine.exists() and not mine.read_text().strip():
                        mine.write_text(parent.read_text())


def node_cgroup_dirs() -> list[Path]:
    return [h / L.NODES_CGROUP for h in _hierarchies() if (h / L.NODES_CGROUP).is_dir()]


# --- NICs ------------------------------------------------------------------------------------
def add_nic(node: str, name: str, *, up: bool = True) -> str:
    """A veth "NIC" `name` in `node`, its other end on the lab bridge (so NICs of all nodes
    share one L2 segment, like a real secondary network). Returns the host end's name."""
    if not (NETNS_DIR / node).exists():
        raise SandboxError(f"no node sandbox {node!r} (nodes: {', '.join(node_netns_names())})")
    port = lab_port(node, name)
    _ensure_bridge(L.LAB_BRIDGE, None)
    _run("ip", "link", "add", port, "type", "veth", "peer", "name", name, "netns", node)
    _run("ip", "link", "set", port, "master", L.LAB_BRIDGE, "up")
    if up:
        _run("ip", "link", "set", name, "up", netns=node)
    return port


def remove_nic(node: str, name: str) -> None:
    """Delete the NIC by its host end (wherever the node end is now: in the node or a pod)."""
    subprocess.run(["ip", "link", "del", lab_port(node, name)], capture_output=True, check=False)


# --- cleanup ---------------------------------------------------------------------------------
def _netns_inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def processes_in_nodes() -> list[int]:
    """Every process whose network namespace is one of the node sandboxes' (the holders,
    containerds, kubelets, hostNetwork pods; pods in their own netns die with their shims)."""
    inodes = {i for n in node_netns_names() if (i := _netns_inode(NETNS_DIR / n)) is not None}
    if not inodes:
        return []
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and _netns_inode(d / "ns" / "net") in inodes:
            found.append(int(d.name))
    return found


def remove_all(lay: L.Layout) -> list[str]:
    """Kill what runs in the sandboxes, delete their netns, bridges, cgroups and the host
    mountpoints `up` created. Returns problems left (empty = clean)."""
    problems: list[str] = []
    pids = processes_in_nodes()
    if pids:
        kill_pids(pids, grace=0.0)
    for name in node_netns_names():
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    for bridge in (L.LAB_BRIDGE, L.TOR_BRIDGE):
        for port in _ports_of(bridge):
            subprocess.run(["ip", "link", "del", port], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)
    for top in node_cgroup_dirs():
        problems += rmdir_tree(top)
    problems += _remove_host_mountpoints(lay)
    lay.nodes_dir.mkdir(parents=True, exist_ok=True)
    for marker in lay.nodes_dir.glob("*/sandbox.ready"):
        marker.unlink(missing_ok=True)
    return problems


def _ports_of(bridge: str) -> list[str]:
    out = subprocess.run(
        ["ip", "-j", "link", "show", "master", bridge], capture_output=True, text=True, check=False
    ).stdout
    return [str(link["ifname"]) for link in (json.loads(out) if out.strip() else [])]


def rmdir_tree(top: Path) -> list[str]:
    """rmdir a cgroup directory tree bottom-up (after its processes are gone); returns what
    could not be removed, as problems."""
    dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts))
    left = []
    for d in [*reversed(dirs), top]:
        for attempt in range(40):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                # EBUSY while the kernel finishes tearing down just-killed tasks.
                if attempt == 39:
                    left.append(f"cgroup {d} not removed")
                time.sleep(0.05)
    return left


def _remove_host_mountpoints(lay: L.Layout) -> list[str]:
    try:
        created: list[str] = json.loads(lay.host_mountpoints_file.read_text())
    except (FileNotFoundError, ValueError):
        return []
    left = []
    for path in sorted(created, key=len, reverse=True):
        with contextlib.suppress(FileNotFoundError):
            try:
                Path(path).rmdir()
            except OSError as exc:
                left.append(f"{path} not removed ({exc.strerror}); it was empty when we made it")
    lay.host_mountpoints_file.unlink(missing_ok=True)
    return left
