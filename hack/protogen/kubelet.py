"""Regenerates the Python code for our kubelet `.proto` files into `_pb/`.

`python -m protogen.kubelet` (or `make proto`) rewrites the checked-in files;
tests/unit/test_kubelet_proto.py regenerates into a temporary directory and compares, so the
generated code never drifts from the `.proto` sources. Per `.proto`: the messages (`*_pb2.py`,
`*_pb2.pyi`, protoc's own generators) and the services for grpclib, the server library the
agent runs (`*_grpc.py`, grpclib's protoc plugin: `<Service>Base` classes to implement and
`<Service>Stub` clients). The protoc is grpcio-tools' (a development dependency, imported only
when this runs); the plugin is the `protoc-gen-grpclib_python` script grpclib installs beside
this interpreter.
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

from protogen import SRC_ROOT

PROTO_DIR = SRC_ROOT / "multinet" / "kubelet" / "proto"
#: The import path the generated modules live under; protoc derives module names from it.
PACKAGE_PATH = "multinet/kubelet/_pb"
PROTOS = (
    "pluginregistration.proto",
    "dra_v1.proto",
    "dra_v1beta1.proto",
    "dra_health_v1alpha1.proto",
)
GRPCLIB_PLUGIN = "protoc-gen-grpclib_python"


def grpclib_plugin() -> Path:
    """grpclib's protoc plugin: the console script pip put beside this interpreter."""
    script = Path(sysconfig.get_path("scripts")) / GRPCLIB_PLUGIN
    if not script.is_file():
        raise FileNotFoundError(f"{script} is missing: install grpclib into this environment")
    return script


def generate(out_root: Path) -> list[Path]:
    """Runs protoc; returns the generated files (under `out_root/multinet/kubelet/_pb`)."""
    from grpc_tools import protoc  # development dependency

    out_dir = out_root / PACKAGE_PATH
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        # Map the proto directory onto the package path, so generated imports read
        # `from multinet.kubelet._pb import x_pb2` (grpclib's: `import multinet.kubelet._pb.x_pb2`)
        # and descriptor file names are unique.
        f"--proto_path={PACKAGE_PATH}={PROTO_DIR}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--plugin={GRPCLIB_PLUGIN}={grpclib_plugin()}",
        f"--grpclib_python_out={out_root}",
        *(f"{PACKAGE_PATH}/{name}" for name in PROTOS),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")
    return sorted(p for p in out_dir.iterdir() if p.name != "__init__.py" and p.is_file())


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC_ROOT):
        print(path)
