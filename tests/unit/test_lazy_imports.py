"""multinet.lazyimports: kubernetes_asyncio's package initialisers, deferred name by name.

Each check runs in a fresh interpreter: the point is what an import does to a new process, and
pytest's own process may already hold the eagerly imported package.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import textwrap

from multinet.lazyimports import defer_submodule_imports

# Every name each package exports (its __all__) resolved first, then everything dir() shows,
# each described by where it is defined.
_NAMES = """
import importlib, json
packages = [importlib.import_module(p) for p in ("kubernetes_asyncio",
    "kubernetes_asyncio.client", "kubernetes_asyncio.client.api",
    "kubernetes_asyncio.client.models")]
for module in packages:
    for name in module.__all__:
        getattr(module, name)
def where(value):
    name = getattr(value, "__qualname__", getattr(value, "__name__", type(value).__name__))
    return f"{getattr(value, '__module__', '')}:{name}"
print(json.dumps({m.__name__: {n: where(getattr(m, n)) for n in dir(m) if n[:2] != "__"}
                  for m in packages}))
"""


def _run(code: str, stdin: str = "") -> object:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def test_every_name_of_the_eager_packages_resolves_to_the_same_thing_lazily() -> None:
    eager = _run(_NAMES)
    lazy = _run("import multinet\n" + _NAMES)
    assert lazy == eager


def test_the_programs_import_no_model_or_api_they_do_not_use() -> None:
    loaded = _run(
        """
        import json, sys
        import multinet.cli, multinet.agent.main, multinet.controller.main
        print(json.dumps(sorted(m for m in sys.modules if m.startswith("kubernetes_asyncio."))))
        """
    )
    assert isinstance(loaded, list)
    generated = ("kubernetes_asyncio.client.models.", "kubernetes_asyncio.client.api.")
    assert [m for m in loaded if m.startswith(generated)] == []
    assert "kubernetes_asyncio.watch" not in loaded


def test_the_client_deserialises_into_models_it_imports_on_demand() -> None:
    got = _run(
        """
        import json
        import multinet
        from kubernetes_asyncio.client import ApiClient
        from kubernetes_asyncio.client.api_client import ApiClient as Direct
        data = {"metadata": {"name": "c", "namespace": "n"},
                "spec": {"devices": {"requests": []}}}
        api = object.__new__(Direct)  # no configuration, no session: only deserialising
        claim = ApiClient._ApiClient__deserialize(api, data, "ResourceV1ResourceClaim")
        print(json.dumps([type(claim).__name__, type(claim.metadata).__name__,
                          claim.metadata.name]))
        """
    )
    assert got == ["ResourceV1ResourceClaim", "V1ObjectMeta", "c"]


# Decodes the link dump it reads on stdin (hex chunks as received), as the inventory does.
_PYROUTE2 = """
import json, sys
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
initialised = "pyroute2.ndb.main" in sys.modules
links = []
for chunk in json.load(sys.stdin):
    for msg in MarshalRtnl().parse(bytes.fromhex(chunk)):
        if msg["header"]["type"] == 16:  # RTM_NEWLINK
            kind = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
            links.append([msg["index"], msg.get_attr("IFLA_IFNAME"), msg.get_attr("IFLA_MTU"),
                          msg.get_attr("IFLA_ADDRESS"), msg.get_attr("IFLA_OPERSTATE"), kind])
import pyroute2
from pyroute2 import IPRoute
names = {n: getattr(getattr(pyroute2, n), "__module__", "") for n in dir(pyroute2) if n[:2] != "__"}
exported = sorted(x.__name__ for x in pyroute2.__all__)  # pyroute2's __all__ holds the classes
print(json.dumps([initialised, links, IPRoute.__module__, exported, names]))
"""


def _link_dump() -> str:
    """This host's links as the kernel sends them (RTM_GETLINK dump), hex chunks in JSON."""
    chunks: list[bytes] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as sock:
        sock.send(struct.pack("=IHHIIBxHiII", 32, 18, 0x301, 1, 0, 0, 0, 0, 0, 0))
        while not chunks or not _ends_with_done(chunks[-1]):
            chunks.append(sock.recv(1 << 20))
    return json.dumps([chunk.hex() for chunk in chunks])


def _ends_with_done(chunk: bytes) -> bool:
    offset = 0
    while offset + 16 <= len(chunk):
        length, kind = struct.unpack_from("=IH", chunk, offset)
        if kind == 3 or length < 16:  # NLMSG_DONE (or a malformed header)
            return True
        offset += (length + 3) & ~3
    return False


def test_pyroute2_submodules_load_without_its_initialiser_which_runs_when_a_name_is_used() -> None:
    dump = _link_dump()
    eager = _run(_PYROUTE2, dump)
    lazy = _run("import multinet\n" + _PYROUTE2, dump)
    assert isinstance(eager, list) and isinstance(lazy, list)
    assert eager[0] is True and lazy[0] is False  # the marshal alone needs no NDB
    assert lazy[1] == eager[1] and eager[1][0][1] == "lo"  # the same links decoded the same way
    assert lazy[2:] == eager[2:]


def test_imports_written_otherwise_leave_the_package_eager() -> None:
    source = "from p.a import A\nfrom p.b import (\n    B,\n)\n"
    assert defer_submodule_imports(source, "p") is None
    assert defer_submodule_imports("from p.a import *\n", "p") is None


def test_deferred_lines_become_blank_and_the_rest_stays() -> None:
    source = 'x = 1\nfrom p.a import A\nimport p.b as b\nfrom q import C\n__all__ = ["A"]\n'
    rest, deferred = defer_submodule_imports(source, "p") or ("", {})
    assert rest == 'x = 1\n\n\nfrom q import C\n__all__ = ["A"]\n'
    assert deferred == {"A": ("p.a", "A"), "b": ("p.b", None)}
