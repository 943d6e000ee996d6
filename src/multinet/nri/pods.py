"""The pod sandbox as the agent sees it: a plain dataclass, so only `nri/` touches protobuf.

Contract: `pod_from_proto` never fails on a well-typed message (missing fields become empty values).
The pod's network namespace is the Linux namespace of type "network"; host-network pods have none.
Time budget: microseconds (a field copy), done on the event's path before the handler runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from multinet.nri._pb import nri_pb2

NETWORK_NAMESPACE = "network"


@dataclass(frozen=True)
class PodSandbox:
    """One pod sandbox reported by the runtime.

    `id` is the runtime's sandbox id; `uid` is the Kubernetes pod UID (the key of attach plans).
    `netns` is the path of the pod's network namespace (e.g. /var/run/netns/cni-...), None for
    host-network pods and once the namespace is gone (RemovePodSandbox).
    """

    id: str
    name: str
    uid: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    netns: str | None = None
    pid: int = 0
    ips: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """`namespace/name`, for logs and error messages."""
        return f"{self.namespace}/{self.name}"


def pod_from_proto(msg: nri_pb2.PodSandbox) -> PodSandbox:
    netns = next(
        (ns.path for ns in msg.linux.namespaces if ns.type == NETWORK_NAMESPACE and ns.path),
        None,
    )
    return PodSandbox(
        id=msg.id,
        name=msg.name,
        uid=msg.uid,
        namespace=msg.namespace,
        labels=dict(msg.labels),
        annotations=dict(msg.annotations),
        netns=netns,
        pid=msg.pid,
        ips=list(msg.ips),
    )
