"""Benchmark: where the node agent's and the controller's memory goes before they do any work.

Every figure comes from a fresh interpreter (a subprocess of this one), so nothing measured here
shares a heap with the harness:

  start-up      VmRSS (and its anonymous / file-backed parts) after importing what the program
                imports before it starts working: `multinet.cli` and the program's main module.
                Repeated `--runs` times; min-max.
  by package    the same import once more, with a meta path hook that reads VmRSS before and after
                every module executes: each module's *own* cost (its children subtracted), summed
                per top-level package (ours per subpackage; the standard library as one row).
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

    .venv/bin/python bench/agent_memory.py [--runs 3] [--top 15] [--skip-arenas]

No cluster, no root: it only imports modules and reads this host's links.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

PROGRAMS = {
    "node-agent": ("multinet.cli", "multinet.agent.main"),
    "controller": ("multinet.cli", "multinet.controller.main"),
}

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
    importlib.import_module(name)
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

sys.meta_path.insert(0, _Finder())
before = _rss()
for name in MODULES:
    importlib.import_module(name)
total = _rss() - before
sys.meta_path.pop(0)
print(json.dumps({"total": total, "own": own, "stdlib": sorted(sys.stdlib_module_names)}))
"""
)

_TRACEMALLOC = """
import importlib, linecache, os, sys, tracemalloc
tracemalloc.start(1)
for name in MODULES:
    importlib.import_module(name)
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

_ARENAS = (
    _STATUS
    + """
import importlib, gc, random, threading, time
from concurrent.futures import ThreadPoolExecutor
for name in MODULES:
    importlib.import_module(name)
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
        for link in rtnl.links():
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


def _probe(code: str, modules: tuple[str, ...], env: dict[str, str] | None = None, **k: int) -> Any:
    """Run one probe in a fresh interpreter (`-S`-free, the venv's) and return its JSON."""
    header = f"import json, os\nMODULES = {modules!r}\n" + "".join(
        f"{name} = {value!r}\n" for name, value in k.items()
    )
    run_env = dict(os.environ)
    run_env.pop("MALLOC_ARENA_MAX", None)
    run_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", header + code],
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


def startup(runs: int) -> None:
    print(f"== start-up imports: VmRSS in MB over {runs} runs (min-max) ==")
    bare = [_probe(_STARTUP, ())["VmRSS"] for _ in range(runs)]
    print(f"{'program':<12} {'VmRSS':>11} {'anon':>11} {'file':>11} {'modules':>8} {'import s':>9}")
    print(f"{'(bare)':<12} {_span(bare):>11}")
    for program, modules in PROGRAMS.items():
        got = [_probe(_STARTUP, modules) for _ in range(runs)]
        secs = [g["seconds"] for g in got]
        print(
            f"{program:<12} {_span([g['VmRSS'] for g in got]):>11}"
            f" {_span([g['RssAnon'] for g in got]):>11} {_span([g['RssFile'] for g in got]):>11}"
            f" {got[0]['modules']:>8} {min(secs):>4.2f}-{max(secs):.2f}"
        )
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
    print("== third-party packages alone (VmRSS over a bare interpreter, deps included) ==")
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


def arenas(workers: int, rounds: int, runs: int) -> None:
    print(
        f"== malloc arenas: {workers} threads, netlink dumps + checkpoint JSON, {rounds} rounds =="
    )
    print(
        f"{'MALLOC_ARENA_MAX':<18} {'before MB':>10} {'after MB':>10} {'growth MB':>10} (min-max)"
    )
    for label, env in (("(glibc default)", {}), ("2", {"MALLOC_ARENA_MAX": "2"})):
        got = [
            _probe(_ARENAS, PROGRAMS["node-agent"], env=env, WORKERS=workers, ROUNDS=rounds)
            for _ in range(runs)
        ]
        before = [g["before"]["VmRSS"] for g in got]
        after = [g["after"]["VmRSS"] for g in got]
        growth = [a - b for a, b in zip(after, before, strict=True)]
        print(f"{label:<18} {_span(before):>10} {_span(after):>10} {_span(growth):>10}")
    print(f"(this host has {os.cpu_count()} CPUs: glibc allows {8 * (os.cpu_count() or 1)} arenas)")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3, help="start-up repetitions")
    parser.add_argument("--top", type=int, default=15, help="rows per breakdown")
    parser.add_argument("--workers", type=int, default=16, help="threads in the arena probe")
    parser.add_argument("--rounds", type=int, default=200, help="dump rounds per thread")
    parser.add_argument("--skip-arenas", action="store_true", help="no thread/arena probe")
    args = parser.parse_args()
    startup(args.runs)
    by_package(args.top)
    alone()
    traced(args.top)
    if not args.skip_arenas:
        arenas(args.workers, args.rounds, args.runs)


if __name__ == "__main__":
    main()
