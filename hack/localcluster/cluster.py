"""The cluster: `up`, `down` and the `Cluster` handle other code uses (see the package doc)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import components as C
from . import configs, debris, images, pki
from . import layout as L
from .processes import ProcessTable, proc_rss_kib

#: Start order; `down` stops in reverse. Anything else with a PID file is an extra process.
COMPONENTS = (
    "etcd",
    "containerd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
)
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Say = Callable[[str], None]


class ClusterError(RuntimeError):
    """The cluster could not be brought up or down; the message says what to look at."""


class ComponentFailed(ClusterError):
    def __init__(self, name: str, log: Path, tail: str, why: str) -> None:
        self.name, self.log, self.tail = name, log, tail
        super().__init__(f"{name} {why}; last lines of {log}:\n{tail}")


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
    node_name: str
    node_ip: str
    #: True on the handle returned by an `up` that actually started the cluster (not a no-op).
    started_here: bool = field(default=False, compare=False)

    @classmethod
    def load(cls, state_dir: Path | str | None = None) -> Cluster:
        lay = L.Layout(Path(state_dir)) if state_dir is not None else L.Layout.from_env()
        try:
            info = json.loads(lay.info_file.read_text())
            return cls(lay, info["node_name"], info["node_ip"])
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

    def node_is_ready(self) -> bool:
        node = self.api_get(f"/api/v1/nodes/{self.node_name}")
        return node is not None and C.node_ready(node)

    def is_up(self) -> bool:
        """Every component alive, the apiserver ready and the node Ready."""
        procs = self.processes
        if not all(procs.alive(n) for n in COMPONENTS):
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
        if name in COMPONENTS:
            raise ValueError(f"{name!r} is a cluster component name; choose another")
        return self.processes.start(name, argv, env=_env(env), log_name=log_name)

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
        _start_and_wait(self, [C.containerd(self.layout)], _quiet, timeout=timeout)

    # --- reporting --------------------------------------------------------------------------
    def status_rows(self) -> list[tuple[str, int | None, bool, Path]]:
        procs = self.processes
        names = list(COMPONENTS) + sorted(
            r.name for r in procs.records() if r.name not in COMPONENTS
        )
        return [(n, procs.pid(n), procs.alive(n), procs.log_path(n)) for n in names]

    def rss_kib(self) -> int:
        """Resident memory of every managed process (components and extras), in KiB."""
        return sum(proc_rss_kib(pid) for _, pid, _, _ in self.status_rows() if pid)


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        "PATH": f"{L.bin_dir()}:{_SYSTEM_PATH}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
    }
    env.update(extra or {})
    return env


@contextlib.contextmanager
def _locked(lay: L.Layout) -> Iterator[None]:
    """Serialise `up`/`down` across processes (several test sessions may call `up` at once)."""
    lay.root.mkdir(parents=True, exist_ok=True)
    with lay.lock_file.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _start_and_wait(
    cluster: Cluster, comps: list[C.Component], say: Say, *, timeout: float | None = None
) -> None:
    """Start `comps` together and wait until all are ready; fail fast if one exits."""
    procs = cluster.processes
    for comp in comps:
        if not procs.alive(comp.name):
            procs.start(comp.name, comp.argv, env=_env())
    pending = {c.name: c for c in comps}
    started = time.monotonic()
    while pending:
        for name, comp in list(pending.items()):
            if not procs.alive(name):
                raise ComponentFailed(name, procs.log_path(name), procs.tail(name), "exited")
            if comp.ready():
                say(f"  {name} ready after {time.monotonic() - started:.1f} s")
                del pending[name]
            elif time.monotonic() - started > (timeout or comp.start_timeout):
                raise ComponentFailed(
                    name,
                    procs.log_path(name),
                    procs.tail(name),
                    f"not ready after {timeout or comp.start_timeout:.0f} s",
                )
        time.sleep(0.2)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _prepare(cluster: Cluster) -> None:
    """PKI, kubeconfigs, config files and directories for a fresh start."""
    lay = cluster.layout
    pki.ensure_pki(
        lay.pki,
        node_name=cluster.node_name,
        node_ip=cluster.node_ip,
        service_ip=L.KUBERNETES_SERVICE_IP,
    )
    local = f"https://127.0.0.1:{L.APISERVER_PORT}"
    for stem, server in (
        ("admin", local),
        ("controller-manager", local),
        ("scheduler", local),
        ("kubelet", cluster.apiserver_url),
    ):
        cert = "kubelet-client" if stem == "kubelet" else stem
        _write(
            lay.config / f"{stem}.kubeconfig",
            configs.kubeconfig(
                server=server,
                ca=lay.pki / "ca.crt",
                cert=lay.pki / f"{cert}.crt",
                key=lay.pki / f"{cert}.key",
                user=stem,
            ),
            0o600,
        )
    _write(
        lay.config / "scheduler.yaml", configs.scheduler_config(lay.config / "scheduler.kubeconfig")
    )
    _write(lay.config / "kubelet.yaml", configs.kubelet_config(lay))
    _write(
        lay.config / "containerd.toml",
        configs.containerd_config(lay, runc=C.system_binary("runc"), cni_bin_dir="/usr/lib/cni"),
    )
    _write(lay.cni_conf_dir / "10-mnlc-pods.conflist", configs.cni_conflist(lay))
    for d in (
        lay.etcd_data,
        lay.kubelet_root,
        lay.pod_logs,
        lay.static_pods,
        lay.volume_plugins,
        lay.containerd_root,
        lay.containerd_state,
        lay.root / "containerd" / "tmp",
        lay.containerd_opt,
        lay.containerd_socket.parent,
        lay.runc_root,
        lay.nri_socket.parent,
        lay.nri_plugins,
        lay.nri_plugin_config,
        lay.cni_ipam_dir,
        lay.logs,
        lay.pids,
    ):
        d.mkdir(parents=True, exist_ok=True)
    lay.etcd_data.chmod(0o700)
    lay.info_file.write_text(
        json.dumps(
            {
                "node_name": cluster.node_name,
                "node_ip": cluster.node_ip,
                "apiserver": cluster.apiserver_url,
            },
            indent=2,
        )
        + "\n"
    )


_APISERVER_KUBELET_RBAC = json.dumps(
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "multinet-local:kube-apiserver-kubelet-api-admin"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:kubelet-api-admin",
        },
        "subjects": [
            {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kube-apiserver"}
        ],
    }
)


def _wait(what: str, predicate: Callable[[], bool], timeout: float, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for name in COMPONENTS:
            if not cluster.processes.alive(name):
                procs = cluster.processes
                raise ComponentFailed(
                    name, procs.log_path(name), procs.tail(name), f"exited while waiting for {what}"
                )
        if time.monotonic() > deadline:
            raise ClusterError(
                f"timed out after {timeout:.0f} s waiting for {what}; logs in {cluster.log_dir}"
            )
        time.sleep(0.5)


def _stop_components(cluster: Cluster, say: Say) -> None:
    procs = cluster.processes
    extras = [r.name for r in procs.records() if r.name not in COMPONENTS]
    for name in extras:
        procs.stop(name)
    # The kubelet first, so it does not restart what we stop; then the pods; then the rest.
    procs.stop("kubelet")
    managed = frozenset(p for n in COMPONENTS if (p := procs.pid(n)) is not None)
    killed = debris.kill_orphans(cluster.layout, keep=managed)
    if killed:
        say(f"  killed {len(killed)} pod/shim processes")
    for name in reversed(COMPONENTS):
        procs.stop(name)


def _running_and_ready(cluster: Cluster, grace: float = 60.0) -> bool:
    """True if the cluster is up. When every process runs but the node is not Ready (a test may
    have just restarted containerd), give it `grace` seconds rather than tearing it down under
    other users' feet."""
    if not all(cluster.processes.alive(n) for n in COMPONENTS):
        return False
    deadline = time.monotonic() + grace
    while not cluster.node_is_ready():
        if time.monotonic() > deadline or not all(cluster.processes.alive(n) for n in COMPONENTS):
            return False
        time.sleep(0.5)
    return True


def up(state_dir: Path | str | None = None, *, say: Say = _quiet) -> Cluster:
    """Bring the cluster up (or find it up: then a no-op). Returns the handle; raises
    ComponentFailed / ClusterError with the failing component's log tail."""
    cluster = Cluster.load(state_dir)
    lay = cluster.layout
    with _locked(lay):
        cluster = Cluster.load(state_dir)
        if _running_and_ready(cluster):
            say(f"cluster already up; kubeconfig: {cluster.kubeconfig}")
            return cluster
        started = time.monotonic()
        say(f"cleaning previous state in {lay.root}")
        _stop_components(cluster, say)
        problems = debris.clean(lay)
        if problems:
            raise ClusterError("cannot clean the previous cluster: " + "; ".join(problems))
        cluster = Cluster(lay, node_name_default(), node_ip_default())
        try:
            _bring_up(cluster, say)
        except BaseException:
            say(f"up failed; stopping what was started (logs stay in {lay.logs})")
            _stop_components(cluster, say)
            debris.clean(lay)
            debris.restore_sysctls(lay)
            raise
        say(f"cluster up in {time.monotonic() - started:.1f} s; kubeconfig: {cluster.kubeconfig}")
        cluster.started_here = True
        return cluster


def _bring_up(cluster: Cluster, say: Say) -> None:
    lay = cluster.layout
    say(f"node {cluster.node_name} ({cluster.node_ip}); state in {lay.root}")
    _prepare(cluster)
    debris.record_sysctls(lay)
    _start_and_wait(cluster, [C.etcd(lay), C.containerd(lay)], say)
    cluster.processes.start(
        "kube-apiserver", C.kube_apiserver(lay, cluster.node_ip).argv, env=_env()
    )
    refs = images.import_images(Path(C.binary("ctr")), lay.containerd_socket)
    say(f"  imported {', '.join(refs)}")
    _start_and_wait(cluster, [C.kube_apiserver(lay, cluster.node_ip)], say)
    cluster.kubectl("apply", "-f", "-", input=_APISERVER_KUBELET_RBAC)
    _start_and_wait(
        cluster,
        [
            C.kube_controller_manager(lay),
            C.kube_scheduler(lay),
            C.kubelet(lay, cluster.node_name, cluster.node_ip),
        ],
        say,
    )
    _wait(f"node {cluster.node_name} Ready", cluster.node_is_ready, 120, cluster)
    _wait(
        "the default service account",
        lambda: cluster.api_get("/api/v1/namespaces/default/serviceaccounts/default") is not None,
        60,
        cluster,
    )


def down(state_dir: Path | str | None = None, *, say: Say = _quiet) -> None:
    """Stop everything, remove what the cluster left on the host, restore the sysctls.
    Idempotent; keeps the PKI, the image store and the logs."""
    cluster = Cluster.load(state_dir)
    lay = cluster.layout
    if not lay.root.exists():
        say("no cluster state; nothing to do")
        return
    with _locked(lay):
        _stop_components(cluster, say)
        problems = debris.clean(lay)
        restored = debris.restore_sysctls(lay)
        if restored:
            say(f"  restored sysctls {restored}")
        lay.info_file.unlink(missing_ok=True)
        lay.repo_kubeconfig.unlink(missing_ok=True)
        if problems:
            raise ClusterError("down left debris: " + "; ".join(problems))
        say("cluster down")
