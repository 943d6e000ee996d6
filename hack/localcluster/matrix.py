"""`make test-matrix`: the cluster and e2e test groups on every Kubernetes release we support, and a
table of what works where.

For each version: build (or reuse) its binaries (`K8S_VERSION=<v> hack/build-binaries.sh`), run
`pytest tests/cluster tests/e2e` against a fresh local cluster of that version, and sort the
test results into the features users ask about. Prints a Markdown table (feature x version:
passed/total, or FAIL with the failing tests named below it) and the build and test times.

    python -m localcluster.matrix [--versions 1.34.4,1.35.4,...] [--pytest-args "-x"]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from . import layout as L

VERSIONS = ("v1.34.4", "v1.35.4", "v1.36.3", "v1.37.2")
GROUPS = ("tests/cluster", "tests/e2e")

#: Which tests prove which feature: (file, test-name prefix). A test may prove several.
FEATURES: dict[str, tuple[tuple[str, str], ...]] = {
    "host-device attach": (
        ("test_attach_e2e", "test_pod_gets_the_interface_and_the_host_gets_it_back"),
        ("test_attach_e2e", "test_attach_failure_fails_the_sandbox"),
        ("test_smoke", "test_scheduler_allocates_a_claim"),
    ),
    "pool IPAM": (
        ("test_prepare", "test_two_nodes_racing_for_the_last_addresses"),
        ("test_prepare", "test_overlapping_pools"),
        ("test_prepare", "test_a_claim_moved_to_another_node"),
        ("test_prepare", "test_gc_removes_reservations"),
    ),
    "macvlan sharing": (("test_attach_e2e", "test_two_pods_share_one_nic_in_macvlan_mode"),),
    "claim status": (("test_attach_e2e", "test_pod_gets_the_interface_and_the_host_gets_it_back"),),
    "health stream": (("test_health_e2e", "test_kubelet_health_stream"),),
    "node-scoped RBAC and policies": (
        ("test_deploy", "test_"),
        ("test_publish", "test_the_agent_identity_cannot"),
    ),
    "restart recovery": (
        ("test_restart_e2e", "test_"),
        ("test_resilience_e2e", "test_"),
        ("test_attach_e2e", "test_restore_after_agent_sigkill"),
        ("test_attach_e2e", "test_pod_deleted_while_the_agent_is_down"),
        ("test_chaos_e2e", "test_"),
        ("test_churn_e2e", "test_"),
    ),
}


@dataclass
class Run:
    version: str
    build_seconds: float = 0.0
    test_seconds: float = 0.0
    #: (file stem, test name) -> passed? (skipped tests are in `skipped` only, with the reason)
    outcomes: dict[tuple[str, str], bool] = field(default_factory=dict)
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)
    error: str = ""


def _build(version: str, env: dict[str, str]) -> float:
    started = time.monotonic()
    subprocess.run([str(L.REPO_ROOT / "hack" / "build-binaries.sh")], env=env, check=True)
    return time.monotonic() - started


def _read_junit(run: Run, junit: Path) -> None:
    for case in ET.parse(junit).getroot().iter("testcase"):
        key = (case.get("classname", "").rsplit(".", 1)[-1], case.get("name", ""))
        skipped = case.find("skipped")
        if skipped is not None:
            run.skipped[key] = skipped.get("message", "").removeprefix("Skipped: ")
            continue
        run.outcomes[key] = not any(case.find(tag) is not None for tag in ("failure", "error"))


def run_version(version: str, pytest_args: list[str], workdir: Path) -> Run:
    env = {**os.environ, "K8S_VERSION": version, "PYTHONPATH": str(L.REPO_ROOT / "hack")}
    run = Run(version)
    try:
        run.build_seconds = _build(version, env)
    except subprocess.CalledProcessError as exc:
        run.error = f"build failed ({exc.returncode}); see the output above"
        return run
    junit = workdir / f"junit-{version}.xml"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", *GROUPS, f"--junitxml={junit}", *pytest_args],
        env=env,
        cwd=L.REPO_ROOT,
        check=False,
    )
    run.test_seconds = time.monotonic() - started
    if junit.exists():
        _read_junit(run, junit)
    else:
        run.error = "pytest wrote no report"
    return run


def _proves(key: tuple[str, str], feature: str) -> bool:
    return any(key[0] == stem and key[1].startswith(prefix) for stem, prefix in FEATURES[feature])


def _cell(run: Run, feature: str) -> tuple[str, list[str]]:
    if run.error:
        return "n/a", []
    picked = [(key, ok) for key, ok in run.outcomes.items() if _proves(key, feature)]
    if not picked:
        reasons = {why for key, why in run.skipped.items() if _proves(key, feature)}
        return (f"n/a: {'; '.join(sorted(reasons))}" if reasons else "no test ran"), []
    failed = [name for (_, name), ok in picked if not ok]
    passed = len(picked) - len(failed)
    verdict = "FAIL" if failed else "pass"
    return f"{verdict} {passed}/{len(picked)}", failed


def table(runs: list[Run]) -> str:
    header = "| feature | " + " | ".join(r.version for r in runs) + " |"
    lines = [header, "|---" * (len(runs) + 1) + "|"]
    failures: list[str] = []
    for feature in FEATURES:
        cells = []
        for run in runs:
            text, failed = _cell(run, feature)
            cells.append(text)
            failures += [f"{run.version} {feature}: {name}" for name in failed]
        lines.append(f"| {feature} | " + " | ".join(cells) + " |")
    totals = [
        f"{sum(r.outcomes.values())}/{len(r.outcomes)}" if not r.error else r.error for r in runs
    ]
    lines.append("| all tests of the groups | " + " | ".join(totals) + " |")
    lines.append("| build (s) | " + " | ".join(f"{r.build_seconds:.0f}" for r in runs) + " |")
    lines.append("| tests (s) | " + " | ".join(f"{r.test_seconds:.0f}" for r in runs) + " |")
    if failures:
        lines += ["", "Failed:", *(f"- {f}" for f in sorted(set(failures)))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.matrix", description=__doc__)
    parser.add_argument(
        "--versions",
        default=",".join(VERSIONS),
        help=f"comma-separated Kubernetes releases (default {','.join(VERSIONS)})",
    )
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments, one string")
    parser.add_argument(
        "--workdir", type=Path, default=L.cache_dir() / "matrix", help="where reports go"
    )
    args = parser.parse_args(argv)
    versions = [L.normalize_version(v) for v in args.versions.split(",") if v.strip()]
    args.workdir.mkdir(parents=True, exist_ok=True)
    runs = [run_version(v, args.pytest_args.split(), args.workdir) for v in versions]
    print("\n" + table(runs))
    ok = all(not r.error and all(r.outcomes.values()) for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
