"""The `Cluster` handle other code uses (see the package doc), the component table, our errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import components as C
from . import configs, debris, sandbox
from . import layout as L
from .nodes import NodeSpec, node_specs
from .processes import ProcessExited, ProcessTable, proc_rss_kib

#: Start order; `down` stops in reverse. Anything else with a PID file is an extra process.
COMPONENTS = (
    "etcd",
    "containerd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
)
#: A many-node cluster's control plane on the host; each node adds <node>.sandbox,
#: <node>.containerd and <node>.kubelet.
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_COMPONENTS = ("sandbox", "containerd", "kubelet")
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Say = Callable[[str], None]


class ClusterError(RuntimeError):
    """The cluster could not be brought up or down; the message says what to look at."""


class ComponentFailed(ClusterError):
    def __init__(self, name: str, log: Path, tail: str, why: str) -> None:
        self.name, self.log, self.tail = name, log, tail
        super().__init__(f"{name} {why}; last lines of {log}:\n{tail}")

    @classmethod
    def from_log(cls, procs: ProcessTable, name: str, why: str) -> ComponentFailed:
        """With the lines `name` logged since its last start."""
        return cls(name, procs.log_path(name), procs.tail(name, this_run=True), why)


def _quiet(_: str) -> None:
    pass


def node_name_default() -> str:
    name = socket.gethostname().lower()
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name):
        raise ClusterError(f"hostname {name!r} is not a valid Kubernetes node name")
    return name


def node_ip_default() -> str:
    """The IPv4 address of the interface holding the default route (eth0 here); never loopback."""
    routes = json.loads(
        subprocess.run(
            ["ip", "-j", "-4", "route", "show", "default"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        or "[]"
    )
    if not routes:
        raise ClusterError("no IPv4 default route: cannot choose the node IP")
    dev = routes[0]["dev"]
    addrs = json.loads(
        subprocess.run(
            ["ip", "-j", "-4", "addr", "show", "dev", dev],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    for a in addrs[0].get("addr_info", []) if addrs else []:
        if a.get("family") == "inet":
            return str(a["local"])
    raise ClusterError(f"{dev} (default route) has no IPv4 address")


@dataclass
class Cluster:
    """A handle on the cluster in one state directory (running or not)."""

    layout: L.Layout
    #: The host's name and address (the apiserver's); also the node's with a single node.
    node_name: str
    node_ip: str
    #: The sandbox nodes of a many-node cluster (`up(nodes=N)`, N >= 2); empty: the host is
    #: the one node.
    nodes: tuple[NodeSpec, ...] = ()
    #: The Kubernetes version it runs ("v1.36.3"); empty: the version in use (K8S_VERSION).
    kubernetes_version: str = ""
    #: True on the handle returned by an `up` that actually started the cluster (not a no-op).
    started_here: bool = field(default=False, compare=False)

    @classmethod
    def load(cls, state_dir: Path | str | None = None) -> Cluster:
        lay = L.Layout(Path(state_dir)) if state_dir is not None else L.Layout.from_env()
        try:
            info = json.loads(lay.info_file.read_text())
            nodes = node_specs(int(info.get("nodes", 1)))
            version = str(info.get("kubernetes", ""))
            return cls(lay, info["node_name"], info["node_ip"], nodes, version)
        except (FileNotFoundError, ValueError, KeyError):
            return cls(lay, node_name_default(), node_ip_default())

    # --- where things are -------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.layout.root

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig in the checkout (.cluster/kubeconfig), refreshed from state."""
        src, dst = self.layout.admin_kubeconfig, self.layout.repo_kubeconfig
        if src.exists() and (not dst.exists() or dst.read_bytes() != src.read_bytes()):
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_suffix(".tmp")
            shutil.copyfile(src, tmp)
            tmp.chmod(0o600)
            tmp.replace(dst)
        return dst if dst.exists() else src

    @property
    def kubelet_root(self) -> Path:
        return self.layout.kubelet_root

    @property
    def nri_socket(self) -> Path:
        return self.layout.nri_socket

    @property
    def containerd_address(self) -> Path:
        return self.layout.containerd_socket

    @property
    def log_dir(self) -> Path:
        return self.layout.logs

    @property
    def apiserver_url(self) -> str:
        return f"https://{self.node_ip}:{L.APISERVER_PORT}"

    @property
    def processes(self) -> ProcessTable:
        return ProcessTable(self.layout.pids, self.layout.logs)

    # --- talking to it ----------------------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """kubectl as cluster admin. With check=True a failure raises ClusterError with stderr."""
        argv = [C.binary("kubectl"), f"--kubeconfig={self.layout.admin_kubeconfig}", *args]
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise ClusterError(f"kubectl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def api_get(self, path: str) -> dict[str, object] | None:
        """GET an API path as admin; None on 404 or when the apiserver does not answer."""
        url = f"https://127.0.0.1:{L.APISERVER_PORT}{path}"
        try:
            ctx = C.admin_ssl_context(self.layout)
            with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:
                return C.parse_json(resp.read().decode())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    @property
    def node_names(self) -> list[str]:
        """The names of the cluster's nodes (the host's, or the sandboxes')."""
        return [n.name for n in self.nodes] or [self.node_name]

    @property
    def node_count(self) -> int:
        return len(self.node_names)

    def component_names(self) -> tuple[str, ...]:
        """Every component of this topology, in start order (`down` stops in reverse)."""
        if not self.nodes:
            return COMPONENTS
        per_node = tuple(f"{n.name}.{c}" for n in self.nodes for c in NODE_COMPONENTS)
        return CONTROL_PLANE + per_node

    def node_is_ready(self) -> bool:
        """Every node of the cluster Ready."""
        for name in self.node_names:
            node = self.api_get(f"/api/v1/nodes/{name}")
            if node is None or not C.node_ready(node):
                return False
        return True

    def is_up(self) -> bool:
        """Every component alive, the apiserver ready and every node Ready."""
        procs = self.processes
        if not all(procs.alive(n) for n in self.component_names()):
            return False
        return self.node_is_ready()

    # --- extra host processes (controller, node agent) --------------------------------------
    def start_process(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        log_name: str | None = None,
    ) -> int:
        """Start a host process managed like a component (PID file, log in log_dir, stopped by
        `down`). `env` is added to a minimal environment (PATH with our binaries)."""
        if name in self.component_names():
            raise ValueError(f"{name!r} is a cluster component name; choose another")
        return self.processes.start(name, argv, env=component_env(env), log_name=log_name)

    def stop_process(self, name: str) -> None:
        self.processes.stop(name)

    # --- identities -------------------------------------------------------------------------
    def service_account_kubeconfig(
        self, namespace: str, name: str, *, duration: str = "24h", bound_node: str | None = None
    ) -> Path:
        """A kubeconfig for ServiceAccount namespace/name (created if missing) with a TokenRequest
        token, pointing at the apiserver's real address, so a host process runs with its own RBAC
        identity and never as admin. `bound_node` binds the token to that Node, as a DaemonSet
        pod's token is: the apiserver then tells admission and authorization the caller's node."""
        manifest = json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                    {
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": name, "namespace": namespace},
                    },
                ],
            }
        )
        self.kubectl("apply", "-f", "-", input=manifest)
        binding = []
        if bound_node:
            binding = ["--bound-object-kind=Node", f"--bound-object-name={bound_node}"]
        token = self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={duration}", *binding
        ).stdout.strip()
        out = self.layout.accounts / f"{namespace}.{name}.kubeconfig"
        out.parent.mkdir(parents=True, exist_ok=True)
        text = configs.kubeconfig(
            server=self.apiserver_url,
            ca=self.layout.pki / "ca.crt",
            cert=None,
            key=None,
            user=f"{namespace}:{name}",
            token=token,
        )
        tmp = out.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(out)
        return out

    # --- fault injection --------------------------------------------------------------------
    def restart_containerd(self, timeout: float = 30.0) -> None:
        """Stop and start containerd (pods keep running in their shims); returns once its gRPC
        and NRI sockets serve again. For NRI reconnect tests."""
        self.processes.stop("containerd")
        start_and_wait(self, [C.containerd(self.layout)], _quiet, timeout=timeout)

    def restart_apiserver(self, timeout: float = 60.0) -> None:
        """Stop and start kube-apiserver (etcd keeps the data); returns once it serves again.
        For tests of clients that must ride out an apiserver restart."""
        self.stop_apiserver()
        self.start_apiserver(timeout)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver and leave it down (etcd keeps the data): for outage tests, which
        bring it back with `start_apiserver`."""
        self.processes.stop("kube-apiserver")

    def start_apiserver(self, timeout: float = 60.0) -> None:
        start_and_wait(self, [C.kube_apiserver(self.layout, self.node_ip)], _quiet, timeout=timeout)

    def restart_kubelet(self, timeout: float = 60.0) -> None:
        """Stop and start the kubelet (pods keep running); returns once the node is Ready and
        the kubelet serves again. Plugins re-register through the plugin watcher."""
        self.processes.stop("kubelet")
        start_and_wait(
            self, [C.kubelet(self.layout, self.node_name, self.node_ip)], _quiet, timeout=timeout
        )

    # --- reporting --------------------------------------------------------------------------
    def status_rows(self) -> list[tuple[str, int | None, bool, Path]]:
        procs = self.processes
        known = self.component_names()
        names = list(known) + sorted(r.name for r in procs.records() if r.name not in known)
        return [(n, procs.pid(n), procs.alive(n), procs.log_path(n)) for n in names]

    def rss_kib(self) -> int:
        """Resident memory of every managed process (components and extras), in KiB."""
        return sum(proc_rss_kib(pid) for _, pid, _, _ in self.status_rows() if pid)

    def total_rss_kib(self) -> int:
        """Resident memory of the whole cluster, in KiB: the managed processes, the shims and
        every process of every pod (multinet's own pods included)."""
        managed = {pid for _, pid, _, _ in self.status_rows() if pid}
        pods = set(debris.orphan_pids(self.layout)) | set(sandbox.processes_in_nodes())
        return sum(proc_rss_kib(pid) for pid in managed | pods)


def component_env(
    extra: Mapping[str, str] | None = None, *, system_path: str = _SYSTEM_PATH
) -> dict[str, str]:
    env = {
        "PATH": f"{L.bin_dir()}:{system_path}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
    }
    env.update(extra or {})
    return env


def start_components(cluster: Cluster, comps: list[C.Component]) -> None:
    """Start those of `comps` not running yet (no waiting)."""
    procs = cluster.processes
    for comp in comps:
        if not procs.alive(comp.name):
            env = component_env(system_path=comp.system_path or _SYSTEM_PATH)
            try:
                procs.start(comp.name, comp.argv, env=env)
            except ProcessExited:
                raise ComponentFailed.from_log(procs, comp.name, "exited") from None


def start_and_wait(
    cluster: Cluster, comps: list[C.Component], say: Say, *, timeout: float | None = None
) -> None:
    """Start `comps` together and wait until all are ready; fail fast if one exits."""
    procs = cluster.processes
    start_components(cluster, comps)
    pending = {c.name: c for c in comps}
    started = time.monotonic()
    while pending:
        for name, comp in list(pending.items()):
            if not procs.alive(name):
                raise ComponentFailed.from_log(procs, name, "exited")
            if comp.ready():
                say(f"  {name} ready after {time.monotonic() - started:.1f} s")
                del pending[name]
            elif time.monotonic() - started > (timeout or comp.start_timeout):
                limit = timeout or comp.start_timeout
                raise ComponentFailed.from_log(procs, name, f"not ready after {limit:.0f} s")
        time.sleep(0.2)
