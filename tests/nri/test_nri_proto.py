"""The checked-in generated code matches our .proto files, and the field numbers match the contract.

Cases: regeneration is byte-identical; messages live in a private descriptor pool under the
upstream full names; hand-encoded wire bytes (field numbers from docs/architecture.md, protocols
4.2-4.4) decode.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import descriptor_pool
from protogen import nri as protogen

from multinet.nri._pb import nri_pb2, ttrpc_pb2
from multinet.nri.pods import pod_from_proto


def test_regenerating_gives_identical_output(tmp_path: Path) -> None:
    written = protogen.generate(tmp_path)
    names = sorted(p.name for p in written)
    checked_in = sorted(p.name for p in protogen.PB_DIR.iterdir() if p.is_file())
    assert names == checked_in, "run `make proto-nri` and commit src/multinet/nri/_pb"
    for name in names:
        assert (tmp_path / name).read_text() == (protogen.PB_DIR / name).read_text(), (
            f"_pb/{name} is stale: run `make proto-nri`"
        )


def test_messages_use_upstream_names_in_a_private_pool() -> None:
    assert ttrpc_pb2.Request.DESCRIPTOR.full_name == "ttrpc.Request"
    status = ttrpc_pb2.Response.DESCRIPTOR.fields_by_name["status"].message_type
    assert status is not None
    assert status.full_name == "google.rpc.Status"
    assert nri_pb2.PodSandbox.DESCRIPTOR.full_name == "nri.pkg.api.v1alpha1.PodSandbox"
    default = descriptor_pool.Default()
    try:
        default.FindMessageTypeByName("nri.pkg.api.v1alpha1.PodSandbox")
    except KeyError:
        pass
    else:
        raise AssertionError("our NRI subset leaked into the default descriptor pool")


def test_wire_field_numbers() -> None:
    # RegisterPluginRequest{plugin_name=1, plugin_idx=2}
    assert nri_pb2.RegisterPluginRequest(plugin_name="a", plugin_idx="10").SerializeToString() == (
        b"\x0a\x01a\x12\x0210"
    )
    # ConfigureResponse{events=2}: 0x10 = field 2, varint
    assert nri_pb2.ConfigureResponse(events=7).SerializeToString() == b"\x10\x07"
    # SynchronizeResponse{more=2}
    assert nri_pb2.SynchronizeResponse(more=True).SerializeToString() == b"\x10\x01"
    # ttrpc Request{service=1, method=2, payload=3, timeout_nano=4}
    req = ttrpc_pb2.Request.FromString(b"\x0a\x01s\x12\x01m\x1a\x01p\x20\x05")
    assert (req.service, req.method, req.payload, req.timeout_nano) == ("s", "m", b"p", 5)
    # Response{status=1{code=1, message=2}, payload=2}
    resp = ttrpc_pb2.Response.FromString(b"\x0a\x05\x08\x0c\x12\x01x\x12\x01y")
    assert (resp.status.code, resp.status.message, resp.payload) == (12, "x", b"y")


def test_pod_sandbox_from_hand_encoded_bytes() -> None:
    """PodSandbox{id=1,name=2,uid=3,namespace=4,labels=5,pid=9,ips=10,
    linux=8{namespaces=5{type=1,path=2}}}, plus an unknown field 7 that must be skipped."""
    ns = b"\x0a\x07network\x12\x05/n/x1"
    linux = b"\x2a" + bytes([len(ns)]) + ns
    label = b"\x0a\x01k\x12\x01v"
    raw = (
        b"\x0a\x02id\x12\x04name\x1a\x03uid\x22\x02ns"
        + b"\x2a"
        + bytes([len(label)])
        + label
        + b"\x3a\x04runc"
        + b"\x42"
        + bytes([len(linux)])
        + linux
        + b"\x48\x07\x52\x0810.0.0.1"
    )
    pod = pod_from_proto(nri_pb2.PodSandbox.FromString(raw))
    assert (pod.id, pod.name, pod.uid, pod.namespace) == ("id", "name", "uid", "ns")
    assert pod.labels == {"k": "v"}
    assert pod.netns == "/n/x1"
    assert pod.pid == 7
    assert pod.ips == ["10.0.0.1"]
    assert pod.ref == "ns/name"


def test_host_network_pod_has_no_netns() -> None:
    msg = nri_pb2.PodSandbox(id="a", uid="u")
    msg.linux.namespaces.add(type="ipc", path="/proc/1/ns/ipc")
    assert pod_from_proto(msg).netns is None
