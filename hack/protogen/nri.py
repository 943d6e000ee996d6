"""Regenerate `multinet.nri._pb` from our own `.proto` subset (developer tool, not run time).

Contract: `generate(out_dir)` writes exactly the checked-in files (`make proto` and the test
`tests/nri/test_nri_proto.py` both call it), so a drift between the `.proto` sources and the
generated code is caught by the test suite. Needs `grpcio-tools` (a dev dependency). Takes about
a second.

Two rewrites of protoc's output, and why:
- protoc emits `import status_pb2` (a top-level module); inside a package it must be relative.
- the messages are registered in a PRIVATE descriptor pool (`_pb/_pool.py`), not the process-wide
  default one: our subset reuses upstream full names (`google.rpc.Status`, `ttrpc.Request`), which
  would collide with any other library that registers the complete upstream definitions.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from protogen import SRC_ROOT

PROTO_DIR = SRC_ROOT / "multinet" / "nri" / "proto"
PB_DIR = SRC_ROOT / "multinet" / "nri" / "_pb"

_POOL_MODULE = '''"""Private descriptor pool for multinet's NRI messages (hack/protogen/nri.py)."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
'''

_INIT_MODULE = '"""Generated protobuf code for multinet.nri. Do not edit: run `make proto`."""\n'


def _rewrite(text: str) -> str:
    text = re.sub(r"^import (\w+_pb2) as ", r"from . import \1 as ", text, flags=re.M)
    if "_descriptor_pool.Default().AddSerializedFile(" in text:
        text = text.replace(
            "_descriptor_pool.Default().AddSerializedFile(", "_pool.POOL.AddSerializedFile("
        )
        text = text.replace(
            "# @@protoc_insertion_point(imports)\n",
            "# @@protoc_insertion_point(imports)\nfrom . import _pool\n",
        )
    return text


def generate(out_dir: Path = PB_DIR) -> list[Path]:
    """Run protoc on every `.proto` under `proto/` and write the rewritten modules to `out_dir`."""
    from grpc_tools import protoc  # dev dependency: imported only when generating

    protos = sorted(str(p) for p in PROTO_DIR.glob("*.proto"))
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["protoc", f"-I{PROTO_DIR}", f"--python_out={tmp}", f"--pyi_out={tmp}", *protos]
        if protoc.main(argv) != 0:
            raise RuntimeError(f"protoc failed on {protos}")
        for src in sorted(Path(tmp).iterdir()):
            dst = out_dir / src.name
            dst.write_text(_rewrite(src.read_text()))
            written.append(dst)
    for name, body in (("_pool.py", _POOL_MODULE), ("__init__.py", _INIT_MODULE)):
        (out_dir / name).write_text(body)
        written.append(out_dir / name)
    return written


if __name__ == "__main__":
    for path in generate(Path(sys.argv[1]) if len(sys.argv) > 1 else PB_DIR):
        print(path)
