"""The cluster's components: how each is started and how we know it is ready. No side effects here
beyond the readiness probes' network calls."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import stat
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import layout as L
from .nodes import NodeSpec
from .sandbox import enter, holder_argv


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    #: Returns True once the component serves; called repeatedly until the start timeout.
    ready: Callable[[], bool]
    start_timeout: float = 60.0
    #: Replaces PATH's system part (after our bin dir) when set.
    system_path: str | None = None


#: Debian is merged-/usr: /bin and /sbin are symlinks, and iptables lives in /usr/sbin only.
KUBELET_PATH = "/usr/local/bin:/usr/bin:/bin"


def _http_ok(url: str, *, context: ssl.SSLContext | None = None, expect: str | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as resp:
            body = resp.read().decode(errors="replace")
            return resp.status == 200 and (expect is None or expect in body)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def admin_ssl_context(lay: L.Layout) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(lay.pki / "ca.crt"))
    ctx.load_cert_chain(str(lay.pki / "admin.crt"), str(lay.pki / "admin.key"))
    return ctx


def _socket_serves(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(path))
        return True
    except OSError:
        return False


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False


def binary(name: str) -> str:
    path = L.bin_dir() / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run hack/build-binaries.sh (make binaries)")
    return str(path)


def system_binary(name: str) -> str:
    found = shutil.which(name, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise FileNotFoundError(f"{name} is not installed (see .ci/run for the Debian packages)")
    return found


def etcd(lay: L.Layout) -> Component:
    client = f"http://127.0.0.1:{L.ETCD_CLIENT_PORT}"
    peer = f"http://127.0.0.1:{L.ETCD_PEER_PORT}"
    return Component(
        "etcd",
        [
            binary("etcd"),
            "--name=multinet-local",
            f"--data-dir={lay.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=multinet-local={peer}",
            "--listen-metrics-urls=",
            # A test cluster: a crash may lose the last writes; the disk must not be the bottleneck.
            "--unsafe-no-fsync",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ],
        lambda: _http_ok(f"{client}/health", expect='"health":"true"'),
        start_timeout=30,
    )


def kube_apiserver(lay: L.Layout, node_ip: str) -> Component:
    pki = lay.pki
    return Component(
        "kube-apiserver",
        [
            binary("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{L.ETCD_CLIENT_PORT}",
            "--bind-address=0.0.0.0",
            f"--advertise-address={node_ip}",
            f"--secure-port={L.APISERVER_PORT}",
            f"--cert-dir={pki}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={L.SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ],
        lambda: _http_ok(
            f"https://127.0.0.1:{L.APISERVER_PORT}/readyz", context=admin_ssl_context(lay)
        ),
        start_timeout=90,
    )


def kube_controller_manager(lay: L.Layout) -> Component:
    pki = lay.pki
    kubeconfig = lay.config / "controller-manager.kubeconfig"
    return Component(
        "kube-controller-manager",
        [
            binary("kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={L.CONTROLLER_MANAGER_PORT}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--cluster-signing-cert-file={pki / 'ca.crt'}",
            f"--cluster-signing-key-file={pki / 'ca.key'}",
            f"--service-cluster-ip-range={L.SERVICE_CIDR}",
            "--use-service-account-credentials=true",
            "--controllers=*",
            "--leader-elect=false",
            "--v=1",
        ],
        lambda: _http_ok(
            f"https://127.0.0.1:{L.CONTROLLER_MANAGER_PORT}/healthz", context=_insecure()
        ),
    )


def kube_scheduler(lay: L.Layout) -> Component:
    kubeconfig = lay.config / "scheduler.kubeconfig"
    return Component(
        "kube-scheduler",
        [
            binary("kube-scheduler"),
            f"--config={lay.config / 'scheduler.yaml'}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={L.SCHEDULER_PORT}",
            "--v=1",
        ],
        lambda: _http_ok(f"https://127.0.0.1:{L.SCHEDULER_PORT}/healthz", context=_insecure()),
    )


def containerd(lay: L.Layout) -> Component:
    return Component(
        "containerd",
        [binary("containerd"), f"--config={lay.config / 'containerd.toml'}", "--log-level=info"],
        # The NRI socket only by presence: a probe connection makes containerd log a failed
        # plugin registration.
        lambda: _socket_serves(lay.containerd_socket) and _is_socket(lay.nri_socket),
        start_timeout=30,
    )


def kubelet(lay: L.Layout, node_name: str, node_ip: str) -> Component:
    return Component(
        "kubelet",
        [
            binary("kubelet"),
            f"--config={lay.config / 'kubelet.yaml'}",
            f"--kubeconfig={lay.config / 'kubelet.kubeconfig'}",
            f"--root-dir={lay.kubelet_root}",
            f"--cert-dir={lay.kubelet_root / 'pki'}",
            f"--hostname-override={node_name}",
            f"--node-ip={node_ip}",
            "--v=2",
        ],
        lambda: _http_ok(f"http://127.0.0.1:{L.KUBELET_HEALTHZ_PORT}/healthz", expect="ok"),
        # No sbin dirs: with iptables in reach the kubelet installs KUBE-FIREWALL (a DROP rule for
        # non-loopback sources to 127/8) and canary chains on the host; without it, it skips them.
        system_path=KUBELET_PATH,
    )


def node_holder(lay: L.Layout, node: NodeSpec) -> Component:
    """The process that keeps a sandbox node's namespaces (see sandbox.py)."""
    marker = lay.node(node.name).ready_marker
    return Component(f"{node.name}.sandbox", holder_argv(lay, node), marker.exists, 15)


def node_containerd(lay: L.Layout, node: NodeSpec, holder_pid: int) -> Component:
    nl = lay.node(node.name)
    return Component(
        f"{node.name}.containerd",
        enter(
            holder_pid,
            [binary("containerd"), f"--config={nl.config / 'containerd.toml'}", "--log-level=info"],
        ),
        lambda: _socket_serves(nl.containerd_socket) and _is_socket(nl.nri_socket),
        start_timeout=30,
    )


def node_kubelet(lay: L.Layout, node: NodeSpec, holder_pid: int) -> Component:
    """A sandbox node's kubelet: the standard root dir (the node's own, by a bind mount)."""
    nl = lay.node(node.name)
    return Component(
        f"{node.name}.kubelet",
        enter(
            holder_pid,
            [
                binary("kubelet"),
                f"--config={nl.config / 'kubelet.yaml'}",
                f"--kubeconfig={nl.config / 'kubelet.kubeconfig'}",
                "--root-dir=/var/lib/kubelet",
                "--cert-dir=/var/lib/kubelet/pki",
                f"--hostname-override={node.name}",
                f"--node-ip={node.ip}",
                "--v=2",
            ],
        ),
        lambda: _http_ok(f"http://{node.ip}:{L.KUBELET_HEALTHZ_PORT}/healthz", expect="ok"),
        system_path=KUBELET_PATH,
    )


def node_ready(node: dict[str, object]) -> bool:
    status = node.get("status")
    conditions = status.get("conditions", []) if isinstance(status, dict) else []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def parse_json(text: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(text)
    return data
