"""Developer tools that regenerate the checked-in protobuf code (`make proto`); not in the wheel.

`python -m protogen.kubelet` and `python -m protogen.nri` with `PYTHONPATH=hack`; grpcio-tools
(a development dependency) is imported only when they run.
"""

from __future__ import annotations

from pathlib import Path

#: The repository's `src/`, the root of the `multinet` package.
SRC_ROOT = Path(__file__).resolve().parents[2] / "src"
