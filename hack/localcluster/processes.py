"""Host processes managed by PID file: start detached, check, stop, tail their logs.

Each process gets <state>/pids/<name>.pid (JSON: pid, start time, argv) and appends to
<state>/logs/<name>.log. Identity is (pid, kernel start time), so a reused PID is never mistaken
for ours. Processes are started through `sh -c '... &'` so they are re-parented to init at once:
they outlive the Python process that started them and never linger as its zombies.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Logs are appended across restarts (a crash's story stays readable) and rotated past this size.
_LOG_ROTATE_BYTES = 64 * 1024 * 1024
#: Written before each start, so a failure report shows only the current run's lines.
_START_MARK = "====="


@dataclass(frozen=True)
class PidRecord:
    name: str
    pid: int
    start_time: int
    argv: list[str]


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot); None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def proc_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def wait_gone(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait until none of `pids` is alive; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive:
        alive = [p for p in alive if proc_start_time(p) is not None]
        if not alive or time.monotonic() > deadline:
            break
        for p in alive:  # reap if it happens to be our child
            with contextlib.suppress(ChildProcessError):
                os.waitpid(p, os.WNOHANG)
        time.sleep(0.05)
    return alive


def kill_pids(pids: Sequence[int], *, grace: float) -> None:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL whatever is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        pids = wait_gone(pids, grace if sig == signal.SIGTERM else 5.0)
        if not pids:
            return


class ProcessExited(RuntimeError):
    """The process was gone before its PID file could be written."""


class ProcessTable:
    """The processes of one cluster, keyed by name."""

    def __init__(self, pids_dir: Path, logs_dir: Path) -> None:
        self.pids_dir = pids_dir
        self.logs_dir = logs_dir

    def log_path(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def _pid_path(self, name: str) -> Path:
        return self.pids_dir / f"{name}.pid"

    def record(self, name: str) -> PidRecord | None:
        try:
            data = json.loads(self._pid_path(name).read_text())
            return PidRecord(name, int(data["pid"]), int(data["start_time"]), list(data["argv"]))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def records(self) -> list[PidRecord]:
        if not self.pids_dir.is_dir():
            return []
        recs = [self.record(p.stem) for p in sorted(self.pids_dir.glob("*.pid"))]
        return [r for r in recs if r is not None]

    def pid(self, name: str) -> int | None:
        """The PID of `name` if that very process is still running."""
        rec = self.record(name)
        if rec is None or proc_start_time(rec.pid) != rec.start_time:
            return None
        return rec.pid

    def alive(self, name: str) -> bool:
        return self.pid(name) is not None

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_name: str | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start `argv` detached, logging to logs/<log_name or name>.log; returns its PID."""
        if self.alive(name):
            raise RuntimeError(f"{name} is already running (pid {self.pid(name)})")
        self.pids_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(log_name or name)
        with contextlib.suppress(FileNotFoundError):
            if log.stat().st_size > _LOG_ROTATE_BYTES:  # keep one previous generation
                log.replace(log.with_name(log.name + ".1"))
        with log.open("a") as f:
            now = time.strftime("%Y-%m-%dT%H:%M:%S")
            f.write(f"\n{_START_MARK} {now} starting {name}: {' '.join(argv)}\n")
        full_env = dict(os.environ if env is None else env)
        full_env["_MNLC_LOG"] = str(log)
        # The inner process is a child of this short-lived sh: init adopts it when sh exits.
        launcher = subprocess.run(
            ["/bin/sh", "-c", '"$@" </dev/null >>"$_MNLC_LOG" 2>&1 & echo $!', "sh", *argv],
            env=full_env,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
            start_new_session=True,
        )
        pid = int(launcher.stdout.strip())
        start_time = None
        for _ in range(100):
            start_time = proc_start_time(pid)
            if start_time is not None:
                break
            time.sleep(0.01)
        if start_time is None:
            tail = self.tail(log_name or name, 20)
            raise ProcessExited(f"{name} exited immediately; see {log}\n{tail}")
        tmp = self._pid_path(name).with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": pid, "start_time": start_time, "argv": list(argv)}))
        tmp.replace(self._pid_path(name))
        return pid

    def stop(self, name: str, *, grace: float = 10.0) -> None:
        """Stop `name` (SIGTERM, then SIGKILL after `grace` s) and forget its PID file."""
        pid = self.pid(name)
        if pid is not None:
            kill_pids([pid], grace=grace)
        self._pid_path(name).unlink(missing_ok=True)

    def tail(self, name: str, lines: int = 30, *, this_run: bool = False) -> str:
        """The last `lines` of the log; with this_run, none from before the last start."""
        path = self.log_path(name)
        try:
            with path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 256 * 1024))
                data = f.read().decode(errors="replace")
        except FileNotFoundError:
            return f"(no log at {path})"
        all_lines = data.splitlines()
        if this_run:
            starts = [i for i, line in enumerate(all_lines) if line.startswith(_START_MARK)]
            if starts:
                all_lines = all_lines[starts[-1] :]
        return "\n".join(all_lines[-lines:])
