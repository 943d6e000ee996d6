"""The checked-in generated code is exactly what protoc makes from our .proto files today."""

from __future__ import annotations

from pathlib import Path

from protogen import SRC_ROOT
from protogen import kubelet as protogen

CHECKED_IN = SRC_ROOT / protogen.PACKAGE_PATH


def test_regenerating_gives_identical_files(tmp_path: Path) -> None:
    fresh = {p.name: p.read_bytes() for p in protogen.generate(tmp_path)}
    assert fresh, "protoc produced nothing"
    stored = {
        p.name: p.read_bytes()
        for p in CHECKED_IN.iterdir()
        if p.is_file() and p.name != "__init__.py"
    }
    assert sorted(stored) == sorted(fresh), "stale or missing generated files: run `make proto`"
    for name, content in fresh.items():
        assert stored[name] == content, f"{name} differs from protoc's output: run `make proto`"


def test_wire_names_match_the_kubelet() -> None:
    from multinet.kubelet._pb import dra_v1_pb2, dra_v1beta1_pb2, pluginregistration_pb2

    assert (
        pluginregistration_pb2.DESCRIPTOR.services_by_name["Registration"].full_name
        == "pluginregistration.Registration"
    )
    assert (
        dra_v1_pb2.DESCRIPTOR.services_by_name["DRAPlugin"].full_name
        == "k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin"
    )
    assert (
        dra_v1beta1_pb2.DESCRIPTOR.services_by_name["DRAPlugin"].full_name
        == "k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin"
    )
    fields = {f.name: f.number for f in dra_v1_pb2.Device.DESCRIPTOR.fields}
    assert fields == {
        "request_names": 1,
        "pool_name": 2,
        "device_name": 3,
        "cdi_device_ids": 4,
        "share_id": 5,
    }
    assert "share_id" not in {f.name for f in dra_v1beta1_pb2.Device.DESCRIPTOR.fields}


def test_health_wire_names_match_the_kubelet() -> None:
    from multinet.kubelet._pb import dra_health_v1alpha1_pb2 as health

    service = health.DESCRIPTOR.services_by_name["DRAResourceHealth"]
    assert service.full_name == "v1alpha1.DRAResourceHealth"
    method = service.methods_by_name["NodeWatchResources"]
    assert method.server_streaming and not method.client_streaming
    assert method.output_type.full_name == "v1alpha1.NodeWatchResourcesResponse"

    def numbers(message: str) -> dict[str, int]:
        return {f.name: f.number for f in health.DESCRIPTOR.message_types_by_name[message].fields}

    assert numbers("NodeWatchResourcesResponse") == {"devices": 1}
    assert numbers("DeviceIdentifier") == {"pool_name": 1, "device_name": 2}
    assert numbers("DeviceHealth") == {
        "device": 1,
        "health": 2,
        "last_updated_time": 3,
        "health_check_timeout_seconds": 4,
        "message": 5,
    }
    status = health.DESCRIPTOR.enum_types_by_name["HealthStatus"]
    assert {v.name: v.number for v in status.values} == {"UNKNOWN": 0, "HEALTHY": 1, "UNHEALTHY": 2}
