"""Find and remove what a cluster leaves on the host, whether it stopped cleanly or was SIGKILLed.

Only things that are provably ours are touched: mounts under the state directory, network
namespaces named cni-* (only our containerd creates those here), processes running one of our
binaries with our state directory on their command line, shims serving our containerd socket,
the `kubepods` cgroup hierarchy, our CNI bridge and the veths enslaved to it.
Every step is best effort and safe to repeat.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from . import layout as L
from . import sandbox
from .processes import kill_pids, proc_cmdline, proc_start_time

NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CNI_CACHE = Path("/var/lib/cni/results")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
DEVICE_PLUGIN_SOCKET = Path("/var/lib/kubelet/device-plugins/kubelet.sock")
#: The kubelet rewrites these (kernel defaults it wants); `down` puts the old values back.
KUBELET_SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops")
_MNT_DETACH = 2
_OUR_BINARIES = {
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "containerd",
    "containerd-shim-runc-v2",
}


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mount_points() -> list[Path]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        out.append(Path(_unescape(line.split()[4])))
    return out


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def our_mounts(lay: L.Layout) -> list[Path]:
    """Mounts under the state dir and our pods' netns files, deepest first."""
    found = [
        m
        for m in mount_points()
        if _is_under(m, lay.root) or (m.parent == NETNS_DIR and m.name.startswith("cni-"))
    ]
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_all(lay: L.Layout) -> list[Path]:
    """Lazily detach every mount of ours; returns what is still mounted afterwards."""
    libc = ctypes.CDLL(None, use_errno=True)
    for _ in range(5):  # a mount may be stacked several times over the same point
        mounts = our_mounts(lay)
        if not mounts:
            return []
        for m in mounts:
            libc.umount2(str(m).encode(), _MNT_DETACH)
    return our_mounts(lay)


def remove_netns_files() -> None:
    if NETNS_DIR.is_dir():
        for f in NETNS_DIR.glob("cni-*"):
            with contextlib.suppress(OSError):
                f.unlink()


def _our_process(pid: int, lay: L.Layout) -> bool:
    argv = proc_cmdline(pid)
    if not argv or Path(argv[0]).name not in _OUR_BINARIES:
        return False
    # A shim names the socket of the containerd that started it, which is under our state dir.
    return any(str(lay.root) in a for a in argv)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    return children


def _descendants(pid: int, children: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _kubepods_dirs() -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    return [h / "kubepods" for h in CGROUP_ROOT.iterdir() if (h / "kubepods").is_dir()]


def _cgroup_pids() -> set[int]:
    """Processes in the host node's pod cgroups and in the sandbox nodes' cgroup roots."""
    pids: set[int] = set()
    for top in [*_kubepods_dirs(), *sandbox.node_cgroup_dirs()]:
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(x) for x in procs.read_text().split())
    return pids


def orphan_pids(lay: L.Layout, keep: frozenset[int] = frozenset()) -> list[int]:
    """Our components and shims (except the PIDs in `keep`: those are stopped gracefully by
    their PID files), their children, and every process in the kubepods cgroups."""
    me = os.getpid()
    children = _children_map()
    found: set[int] = set()
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != me and _our_process(int(d.name), lay):
            found.add(int(d.name))
            found.update(_descendants(int(d.name), children))
    found |= _cgroup_pids()
    found -= keep | {me}
    return sorted(p for p in found if proc_start_time(p) is not None)


def foreign_kubelets(lay: L.Layout) -> list[tuple[int, str]]:
    """Kubelets of ANOTHER state dir. The bridge, the kubepods cgroups and cni-* netns are
    host-wide names, so a second cluster's cleanup would wreck the first: refuse instead."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        argv = proc_cmdline(int(d.name))
        if not argv or Path(argv[0]).name != "kubelet":
            continue
        roots = [a.split("=", 1)[1] for a in argv if a.startswith("--root-dir=")]
        # Sandbox nodes' kubelets use /var/lib/kubelet, with their config in our state dir.
        if roots and not any(str(lay.root) in a for a in argv):
            found.append((int(d.name), roots[0]))
    return found


def kill_orphans(lay: L.Layout, keep: frozenset[int] = frozenset()) -> list[int]:
    pids = orphan_pids(lay, keep)
    if pids:
        kill_pids(pids, grace=0.0)
    return pids


def remove_cgroups() -> list[str]:
    """rmdir the kubepods hierarchy bottom-up (after its processes are gone); returns leftovers."""
    return [problem for top in _kubepods_dirs() for problem in sandbox.rmdir_tree(top)]


def _ip_json(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=False).stdout
    return json.loads(out) if out.strip() else []


def remove_links() -> None:
    """Pod veths still enslaved to our bridge, then the bridge itself."""
    for link in _ip_json("link", "show", "master", L.BRIDGE_NAME):
        subprocess.run(["ip", "link", "del", str(link["ifname"])], capture_output=True)
    subprocess.run(["ip", "link", "del", L.BRIDGE_NAME], capture_output=True)


#: The chains a kubelet creates when iptables is in its PATH (ours no longer has it).
KUBELET_CHAINS = ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")


def remove_kubelet_iptables() -> None:
    """Rules jumping to the kubelet's chains, then the chains, in every table of both families."""
    for tool in ("iptables", "ip6tables"):
        exe = shutil.which(tool, path="/usr/sbin:/sbin")
        if exe is None:
            continue
        for table in ("filter", "nat", "mangle"):
            out = subprocess.run([exe, "-w", "-t", table, "-S"], capture_output=True, text=True)
            rules = out.stdout.splitlines()
            for rule in rules:
                words = shlex.split(rule)
                jumps = any(f"-j {c}" in rule for c in KUBELET_CHAINS)
                if words[:1] == ["-A"] and jumps and words[1] not in KUBELET_CHAINS:
                    delete = [exe, "-w", "-t", table, "-D", *words[1:]]
                    subprocess.run(delete, capture_output=True)
            for chain in KUBELET_CHAINS:
                if f"-N {chain}" in rules:
                    subprocess.run([exe, "-w", "-t", table, "-F", chain], capture_output=True)
                    subprocess.run([exe, "-w", "-t", table, "-X", chain], capture_output=True)


def remove_host_files(lay: L.Layout) -> None:
    """CNI result cache entries of our network and the kubelet's /var/log/containers links.
    (containerd's shim sockets under /run/containerd/s are left alone: other containerds on this
    host share that directory, and a stale socket is replaced by the next shim.)"""
    if CNI_CACHE.is_dir():
        for f in CNI_CACHE.glob(f"{L.CNI_NETWORK_NAME}-*"):
            f.unlink(missing_ok=True)
    if CONTAINER_LOG_LINKS.is_dir():
        for f in CONTAINER_LOG_LINKS.iterdir():
            if f.is_symlink() and _is_under(Path(os.readlink(f)), lay.pod_logs):
                f.unlink(missing_ok=True)
    # The kubelet's device-plugin socket path is fixed, whatever its --root-dir.
    DEVICE_PLUGIN_SOCKET.unlink(missing_ok=True)
    # Directories the kubelet and CNI create on first use; removed only when empty, so what
    # anything else put there stays.
    for d in (
        CNI_CACHE,
        CNI_CACHE.parent,
        CONTAINER_LOG_LINKS,
        DEVICE_PLUGIN_SOCKET.parent,
        DEVICE_PLUGIN_SOCKET.parent.parent,
    ):
        with contextlib.suppress(OSError):
            d.rmdir()


def wipe_runtime_dirs(lay: L.Layout) -> None:
    """Empty the dirs whose contents die with the processes. Refuses while anything is mounted."""
    still = our_mounts(lay)
    if still:
        raise RuntimeError(f"refusing to delete {lay.root}: still mounted: {still[:5]}")
    for d in lay.runtime_dirs():
        shutil.rmtree(d, ignore_errors=True)
    for f in lay.pids.glob("*.pid") if lay.pids.is_dir() else []:
        f.unlink(missing_ok=True)


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def record_sysctls(lay: L.Layout) -> None:
    """Remember the values from before the kubelet first ran; later `up`s keep that record."""
    if lay.sysctls_file.exists():
        return
    values = {n: _sysctl_path(n).read_text().strip() for n in KUBELET_SYSCTLS}
    lay.sysctls_file.write_text(json.dumps(values, indent=2) + "\n")


def restore_sysctls(lay: L.Layout) -> dict[str, str]:
    try:
        values: dict[str, str] = json.loads(lay.sysctls_file.read_text())
    except FileNotFoundError:
        return {}
    for name, value in values.items():
        _sysctl_path(name).write_text(value + "\n")
    lay.sysctls_file.unlink()
    return values


def clean(lay: L.Layout) -> list[str]:
    """Everything after the components are stopped. Returns problems left (empty = clean)."""
    problems = []
    kill_orphans(lay)
    problems += sandbox.remove_all(lay)
    left = unmount_all(lay)
    if left:
        problems.append(f"still mounted: {', '.join(map(str, left))}")
    remove_netns_files()
    remove_links()
    problems += remove_cgroups()[:5]
    remove_host_files(lay)
    remove_kubelet_iptables()
    if not left:
        wipe_runtime_dirs(lay)
    return problems
