"""Benchmark: where the node agent's and the controller's memory goes before they do any work.

Every figure comes from a fresh interpreter (a subprocess of this one), so nothing measured here
shares a heap with the harness:

  start-up      VmRSS (and its anonymous / file-backed parts) after importing what the program
                imports before it starts working: `multinet.cli`, whose parser it builds, and the
                program's main module.
                Repeated `--runs` times; min-max.
  by package    the same import once more, with a meta path hook that reads VmRSS before and after
                every module executes: each module's *own* cost (its children subtracted), summed
                per top-level package (ours per subpackage, the standard library's per module).
                Import order is the real one, so a package pulled in first by X is X's cost.
  alone         one fresh interpreter per third-party package: VmRSS over a bare interpreter,
                dependencies included (what dropping the package entirely would save at most).
  tracemalloc   the top allocation sites traced during the import (Python allocations only:
                `<frozen importlib...>` lines are code objects unmarshalled from .pyc files).
  arenas        the agent's thread pattern: `--workers` threads (the netlink executor's default)
                each doing rtnetlink dumps on its own socket (128 KiB receive buffers) and a
                JSON round trip of a checkpoint of 1-100 pods, with glibc's default malloc arenas
                and with MALLOC_ARENA_MAX=2: RSS growth once the threads are idle again. glibc
                caps the default at 8 arenas per CPU.
  idle          the agent's servers that need neither an apiserver nor containerd (inventory
                thread, both kubelet gRPC servers, health/metrics, the netlink pool) started;
                RSS, then CPU time and thread wakeups over `--idle` seconds of nothing (busy
                polling would show), with both arena settings.

    .venv/bin/python bench/agent_memory.py [--runs 3] [--top 15] [--devices 512] [--idle 5]
        [--workers 16] [--rounds 30] [--skip-threads]

No cluster needed. As root (for `unshare --net`) the thread probes run in a network namespace of
their own with `--devices` veth links; otherwise in this host's. Bytecode comes from a cache of
the bench's own (`PYTHONPYCACHEPREFIX` under the temp dir), compiled by a first, unmeasured run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from typing import Any

# What both programs import once running (the adapters in multinet.kube construct these API
# classes): part of the program's footprint whether imported at start or on first use.
RUNTIME_APIS = (
    "kubernetes_asyncio.client.api.resource_v1_api",
    "kubernetes_asyncio.client.api.custom_objects_api",
)

_PYCACHE = os.path.join(tempfile.gettempdir(), f"multinet-bench-pycache-{os.getuid()}")

PROGRAMS = {
    "node-agent": ("multinet.cli", "multinet.agent.main"),
    "controller": ("multinet.cli", "multinet.controller.main"),
}

# Shared by every probe: import a module; after the CLI's, build its parser, as `multinet` does
# before it imports the program it runs (cli.main).
_START_LIKE_MULTINET = """
def start_like_multinet(name):
    import importlib
    module = importlib.import_module(name)
    if name == "multinet.cli":
        module.build_parser()
"""

# Shared by every probe: read this process's memory figures (KiB) from /proc.
_STATUS = textwrap.dedent(
    """
    def _status():
        out = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM", "Threads"):
                    out[key] = int(rest.split()[0])
        return out
    """
)

_STARTUP = (
    _STATUS
    + """
import importlib, sys, time
t0 = time.perf_counter()
for name in MODULES:
    start_like_multinet(name)
s = _status()
s["seconds"] = time.perf_counter() - t0
s["modules"] = len(sys.modules)
print(json.dumps(s))
"""
)

# A meta path finder ahead of the others wraps every loader it finds: create_module (where an
# extension module is loaded) to exec_module is one module's import; a stack subtracts the
# children it imported. Loaders without exec_module (legacy) are left alone.
_BY_PACKAGE = (
    _STATUS
    + """
import importlib, sys, time

def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE

PAGE = os.sysconf("SC_PAGE_SIZE") // 1024
stack = []
own = {}

class _Timed:
    def __init__(self, name, loader):
        self._name, self._loader = name, loader
    def __getattr__(self, attr):
        return getattr(self._loader, attr)
    def create_module(self, spec):
        stack.append([self._name, _rss(), time.perf_counter(), 0, 0.0])
        return self._loader.create_module(spec)
    def exec_module(self, module):
        try:
            self._loader.exec_module(module)
        finally:
            name, rss0, t0, kids_rss, kids_t = stack.pop()
            rss, t = _rss() - rss0, time.perf_counter() - t0
            own[name] = (rss - kids_rss, t - kids_t)
            if stack:
                stack[-1][3] += rss
                stack[-1][4] += t

class _Finder:
    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = _Timed(name, spec.loader)
            return spec
        return None

timer = _Finder()
sys.meta_path.insert(0, timer)
before = _rss()
for name in MODULES:
    start_like_multinet(name)
    # A finder that multinet installs goes first; the timer goes back ahead of it, so that
    # the modules it loads are measured too.
    sys.meta_path.remove(timer)
    sys.meta_path.insert(0, timer)
total = _rss() - before
sys.meta_path.remove(timer)
print(json.dumps({"total": total, "own": own, "stdlib": sorted(sys.stdlib_module_names)}))
"""
)

_TRACEMALLOC = """
import importlib, linecache, os, sys, tracemalloc
tracemalloc.start(1)
for name in MODULES:
    start_like_multinet(name)
snap = tracemalloc.take_snapshot()
tracemalloc.stop()
total = sum(s.size for s in snap.statistics("filename"))

def source(filename, lineno):
    # Frozen modules (importlib's bootstrap, abc) still ship their source in the stdlib.
    if filename.startswith("<frozen "):
        module = filename[len("<frozen "):-1]
        filename = os.path.join(sys._stdlib_dir, *module.split(".")) + ".py"
    return linecache.getline(filename, lineno).strip()

lines = [
    (s.traceback[0].filename, s.traceback[0].lineno, s.size, s.count,
     source(s.traceback[0].filename, s.traceback[0].lineno))
    for s in snap.statistics("lineno")[:TOP]
]
print(json.dumps({"total": total, "lines": lines}))
"""

_ALONE = (
    _STATUS
    + """
import importlib, sys
bare = _status()["VmRSS"]
n = len(sys.modules)
if MODULES:
    importlib.import_module(MODULES[0])
print(json.dumps({"rss": _status()["VmRSS"] - bare, "modules": len(sys.modules) - n}))
"""
)

# In a private network namespace (see _probe), DEVICES veth links (DEVICES/2 pairs) stand for the
# node's NICs (veth: the dummy driver is not always loaded).
_DEVICES = """
import subprocess
if ISOLATED:
    batch = "link set lo up\\n" + "".join(
        f"link add mnb{i} type veth peer name mnp{i}\\n" for i in range(DEVICES // 2))
    subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True)
"""

_ARENAS = (
    _STATUS
    + _DEVICES
    + """
import importlib, gc, random, threading, time
from concurrent.futures import ThreadPoolExecutor
for name in MODULES:
    start_like_multinet(name)
from multinet.netlink import netns

claims = [{"uid": f"{i:08d}-0000-4000-8000-000000000000", "plans": [{"device": f"nic{i}x{j}",
    "addresses": [f"10.{j}.{i}.2/16"], "routes": [{"destination": "10.200.0.0/16",
    "gateway": f"10.{j}.0.1"}], "host": {"ifname": f"nic{i}x{j}", "mtu": 1500,
    "mac": "02:00:00:00:00:01"}} for j in range(2)]} for i in range(100)]
barrier = threading.Barrier(WORKERS)

def work(seed):
    # A checkpoint of 1-100 pods (up to ~45 KB of JSON) written and read back, as the
    # checkpoint writer does on a worker thread, between rtnetlink dumps (recv(128 KiB)).
    barrier.wait()
    rtnl, _fd = netns.host()
    rnd = random.Random(seed)
    for _round in range(ROUNDS):
        for link in rtnl.links()[:8]:
            rtnl.addresses(link.index)
            rtnl.routes(link.index)
        json.loads(json.dumps({"claims": claims[: rnd.randint(1, 100)]}, indent=1))

s0 = _status()
pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="netlink")
list(pool.map(work, range(WORKERS)))
gc.collect()
time.sleep(0.5)
s1 = _status()
print(json.dumps({"before": s0, "after": s1}))
"""
)

# The agent's long-lived servers without an apiserver or containerd: the inventory thread, both
# kubelet gRPC servers (grpclib, on the event loop: no threads of their own), /healthz +
# /metrics (aiohttp) and the netlink pool; then RSS, and CPU time and wakeups per thread over
# IDLE seconds of nothing.
_IDLE = (
    _STATUS
    + _DEVICES
    + """
import asyncio, glob, importlib, socket, tempfile, threading, time
from pathlib import Path
for name in MODULES:
    start_like_multinet(name)
from multinet.kubelet.server import KubeletPlugin
from multinet.netlink.executor import NetlinkMover
from multinet.netlink.inventory import Inventory
from multinet.probes import HealthServer

def threads():
    out = {}
    for task in glob.glob("/proc/self/task/*"):
        try:
            with open(task + "/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(task + "/status") as f:
                switches = sum(int(l.split()[1]) for l in f if "ctxt_switches" in l)
        except FileNotFoundError:
            continue
        out[task.rsplit("/", 1)[1]] = (int(fields[11]) + int(fields[12]), switches)
    return out

class Preparer:
    async def prepare(self, claims): return {}
    async def unprepare(self, claims): return {}

async def main():
    inventory = Inventory()
    await inventory.start()
    plugin = KubeletPlugin(preparer=Preparer(), kubelet_root=Path(tempfile.mkdtemp()))
    await plugin.start()
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    health = HealthServer("127.0.0.1", port)
    await health.start()
    mover = NetlinkMover()
    await asyncio.sleep(2)
    started, before, t0 = _status(), threads(), time.monotonic()
    await asyncio.sleep(IDLE)
    after, seconds = threads(), time.monotonic() - t0
    names = {str(t.native_id): t.name for t in threading.enumerate()}
    busiest = sorted(
        ((after[t][0] - before[t][0], (after[t][1] - before[t][1]) / seconds, names.get(t, "(C)"))
         for t in after if t in before), key=lambda b: (b[1], b[0]), reverse=True)
    ticks = os.sysconf("SC_CLK_TCK")
    print(json.dumps({"started": started, "cpu": sum(b[0] for b in busiest) / ticks / seconds,
                      "wakeups": sum(b[1] for b in busiest), "threads": busiest[:3]}))
    await plugin.stop(0)
    await health.stop()
    await inventory.close()
    mover.close()

asyncio.run(main())
"""
)


def _isolated() -> bool:
    """Root can give the probes a network namespace of their own (`unshare --net`): quiet, and
    with as many dummy links as `--devices`. Otherwise they see this host's."""
    return os.geteuid() == 0 and shutil.which("unshare") is not None


def _probe(
    code: str,
    modules: tuple[str, ...],
    env: dict[str, str] | None = None,
    *,
    isolated: bool = False,
    **k: object,
) -> Any:
    """Run one probe in a fresh interpreter and return its JSON."""
    header = (
        f"import json, os\nMODULES = {modules!r}\nISOLATED = {isolated!r}\n"
        + "".join(f"{name} = {value!r}\n" for name, value in k.items())
        + _START_LIKE_MULTINET
    )
    run_env = dict(os.environ)
    run_env.pop("MALLOC_ARENA_MAX", None)
    # Bytecode as in the image (pip compiles every module at install): read from and written to
    # a cache of the bench's own, never next to the sources; `warm()` fills it first. Compiling
    # a module from source instead costs transient memory that would count here.
    run_env.pop("PYTHONDONTWRITEBYTECODE", None)
    run_env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    run_env.update(env or {})
    command = [sys.executable, "-c", header + code]
    proc = subprocess.run(
        ["unshare", "--net", *command] if isolated else command,
        capture_output=True,
        text=True,
        env=run_env,
    )
    if proc.returncode:
        raise SystemExit(f"probe failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _mb(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def _span(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return _mb(lo) if _mb(lo) == _mb(hi) else f"{_mb(lo)}-{_mb(hi)}"


def warm() -> None:
    """Every module the probes import, compiled once into the bench's bytecode cache."""
    for modules in PROGRAMS.values():
        _probe(_STARTUP, (*modules, *RUNTIME_APIS, "multinet.kubelet.server", "multinet.probes"))


def startup(runs: int) -> None:
    print(f"== start-up imports: VmRSS in MB over {runs} runs (min-max) ==")
    bare = [_probe(_STARTUP, ())["VmRSS"] for _ in range(runs)]
    print(f"{'program':<17} {'VmRSS':>11} {'anon':>11} {'file':>11} {'modules':>8} {'import s':>9}")
    print(f"{'(bare)':<17} {_span(bare):>11}")
    rows = list(PROGRAMS.items())
    rows += [(f"{p} +APIs", (*m, *RUNTIME_APIS)) for p, m in PROGRAMS.items()]
    for program, modules in rows:
        got = [_probe(_STARTUP, modules) for _ in range(runs)]
        secs = [g["seconds"] for g in got]
        print(
            f"{program:<17} {_span([g['VmRSS'] for g in got]):>11}"
            f" {_span([g['RssAnon'] for g in got]):>11} {_span([g['RssFile'] for g in got]):>11}"
            f" {got[0]['modules']:>8} {min(secs):>4.2f}-{max(secs):.2f}"
        )
    print("(+APIs: with the generated API classes both programs construct once running)")
    print()


def _group(name: str, stdlib: set[str]) -> str:
    parts = name.split(".")
    if parts[0] == "multinet":
        return ".".join(parts[:2])
    if parts[0] in stdlib or parts[0].startswith("_"):
        return f"stdlib {parts[0]}"
    if parts[0] == "google":
        return ".".join(parts[:2])
    return parts[0]


def by_package(top: int) -> None:
    for program, modules in PROGRAMS.items():
        got = _probe(_BY_PACKAGE, modules)
        stdlib = set(got["stdlib"])
        rows: dict[str, list[float]] = {}
        for name, (rss, secs) in got["own"].items():
            row = rows.setdefault(_group(name, stdlib), [0, 0.0, 0])
            row[0] += rss
            row[1] += secs
            row[2] += 1
        print(f"== {program}: own import cost by package (total {_mb(got['total'])} MB) ==")
        print(f"{'package':<28} {'MB':>6} {'modules':>8} {'ms':>7}")
        ranked = sorted(rows.items(), key=lambda kv: -kv[1][0])
        for group, (rss, secs, count) in ranked[:top]:
            print(f"{group:<28} {_mb(rss):>6} {count:>8} {secs * 1000:>7.0f}")
        rest = ranked[top:]
        if rest:
            rss = sum(r[1][0] for r in rest)
            print(f"{f'({len(rest)} more)':<28} {_mb(rss):>6}")
        print()


def alone() -> None:
    """Each third-party package either program imports, alone in a fresh interpreter."""
    users: dict[str, list[str]] = {}
    for program, modules in PROGRAMS.items():
        got = _probe(_BY_PACKAGE, modules)
        stdlib = set(got["stdlib"])
        for group in {_group(n, stdlib) for n in got["own"]}:
            if not group.startswith(("stdlib ", "multinet")):
                users.setdefault(group, []).append(program)
    print("== third-party packages alone (VmRSS over a bare interpreter, deps included; as the")
    print("   package's own initialisers import it, without multinet's lazy ones) ==")
    print(f"{'package':<28} {'MB':>6} {'modules':>8}  imported by")
    results = [(p, _probe(_ALONE, (p,))) for p in users]
    for package, res in sorted(results, key=lambda r: -r[1]["rss"]):
        print(
            f"{package:<28} {_mb(res['rss']):>6} {res['modules']:>8}  {', '.join(users[package])}"
        )
    print()


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def traced(top: int) -> None:
    for program, modules in PROGRAMS.items():
        got = _probe(_TRACEMALLOC, modules, TOP=top)
        print(f"== {program}: tracemalloc after import (traced {_mb(got['total'] / 1024)} MB) ==")
        print(f"{'KiB':>8} {'blocks':>7} {'where':<44} source")
        for filename, lineno, size, count, source in got["lines"]:
            where = f"{_short(filename)}:{lineno}"
            print(f"{size / 1024:>8.0f} {count:>7} {where[-44:]:<44} {source[:44]}")
        print()


def _arena_variants() -> tuple[tuple[str, dict[str, str]], ...]:
    return (("(glibc default)", {}), ("2", {"MALLOC_ARENA_MAX": "2"}))


def _where(devices: int) -> str:
    return f"a private netns with {devices} veth links" if _isolated() else "this host's netns"


def arenas(workers: int, rounds: int, runs: int, devices: int) -> None:
    print(f"== malloc arenas: {workers} threads x {rounds} rounds of netlink dumps and checkpoint")
    print(f"   JSON, in {_where(devices)}; RSS once they are idle again ==")
    print(
        f"{'MALLOC_ARENA_MAX':<18} {'before MB':>10} {'after MB':>10} {'growth MB':>10} (min-max)"
    )
    for label, env in _arena_variants():
        got = [
            _probe(
                _ARENAS,
                PROGRAMS["node-agent"],
                env=env,
                isolated=_isolated(),
                DEVICES=devices,
                WORKERS=workers,
                ROUNDS=rounds,
            )
            for _ in range(runs)
        ]
        before = [g["before"]["VmRSS"] for g in got]
        after = [g["after"]["VmRSS"] for g in got]
        growth = [a - b for a, b in zip(after, before, strict=True)]
        print(f"{label:<18} {_span(before):>10} {_span(after):>10} {_span(growth):>10}")
    print(f"(this host has {os.cpu_count()} CPUs: glibc allows {8 * (os.cpu_count() or 1)} arenas)")
    print()


def idle(seconds: float, runs: int, devices: int) -> None:
    print("== node-agent servers started (inventory, kubelet gRPC x2, health, netlink pool) in")
    print(f"   {_where(devices)}, no apiserver/containerd; then {seconds:g} s idle (min-max) ==")
    print(f"{'MALLOC_ARENA_MAX':<18} {'VmRSS':>11} {'anon':>11} {'thr':>4} {'CPU %':>11} wakeups/s")
    for label, env in _arena_variants():
        got = [
            _probe(
                _IDLE,
                (*PROGRAMS["node-agent"], *RUNTIME_APIS),
                env=env,
                isolated=_isolated(),
                DEVICES=devices,
                IDLE=seconds,
            )
            for _ in range(runs)
        ]
        cpu = [100 * g["cpu"] for g in got]
        wakeups = [g["wakeups"] for g in got]
        print(
            f"{label:<18} {_span([g['started']['VmRSS'] for g in got]):>11}"
            f" {_span([g['started']['RssAnon'] for g in got]):>11}"
            f" {got[0]['started']['Threads']:>4} {min(cpu):>5.2f}-{max(cpu):<5.2f}"
            f" {min(wakeups):>5.1f}-{max(wakeups):.1f}"
        )
    busiest = ", ".join(f"{name} {rate:.1f}/s" for _ticks, rate, name in got[-1]["threads"])
    print(f"(most wakeups, last run: {busiest}; (C) = a thread not started by Python's threading)")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each measurement")
    parser.add_argument("--top", type=int, default=15, help="rows per breakdown")
    parser.add_argument("--workers", type=int, default=16, help="threads in the arena probe")
    parser.add_argument("--rounds", type=int, default=30, help="dump rounds per thread")
    parser.add_argument("--devices", type=int, default=512, help="veth links (root only)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle measured")
    parser.add_argument("--skip-threads", action="store_true", help="no arena or idle probes")
    args = parser.parse_args()
    warm()
    startup(args.runs)
    by_package(args.top)
    alone()
    traced(args.top)
    if not args.skip_threads:
        arenas(args.workers, args.rounds, args.runs, args.devices)
        idle(args.idle, args.runs, args.devices)


if __name__ == "__main__":
    main()
