"""Running a CNI chain for one attachment: ADD, DEL and CHECK, as a container runtime does.

Each plugin is its executable from the bin dirs (first match wins), run with
`asyncio.create_subprocess_exec`, its stdin and environment from `invocation` (the environment
is the CNI variables and PATH, nothing else of the agent's). A plugin that exits non-zero is a
`CniError` naming its type, the command, the CNI code and message it printed; so is one that is
not found (listing the dirs searched) or that outlives the command's time budget (its process
group is killed, IPAM plugins it started included).

Guarantees:
- ADD leaves nothing behind when it fails: all plugins of the chain get a DEL, in reverse order
  (the spec asks for all of them, not only those that ran: a failing plugin may have half done
  its work), then the cache record goes. If that DEL fails too, the error says so and the record
  stays for a later `delete`.
- DEL needs nothing but the cache: `add` writes the record (state `adding`) before the first
  plugin runs and again with the result before it returns, so a `delete` in a new process, even
  after a crash mid-ADD, runs the same config with the same arguments (see `cache`).
- Stops at the first failing plugin (the spec's rule for lists); the record then stays, so the
  command can be retried. CNI plugins' DEL is idempotent.

Time: `timeout` bounds one command, all its plugins together; the DEL that undoes a failed ADD
gets a budget of its own. Not safe to run concurrently for the same key (the caller serialises
an attachment's commands, as runtimes do per container).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from multinet.cni import cache
from multinet.cni.config import Chain, parse_chain, version_at_least
from multinet.cni.errors import CniError
from multinet.cni.invocation import (
    Command,
    PodRef,
    RuntimeArgs,
    invocation_problems,
    plugin_env,
    plugin_stdin,
)
from multinet.cni.result import Outcome, parse_outcome
from multinet.errors import ConfigError

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_SHOWN = 500  # characters of a plugin's stderr an error message quotes


@dataclass
class _Budget:
    """The time one command has left, all its plugins together."""

    seconds: float
    ends: float = field(init=False)

    def __post_init__(self) -> None:
        self.ends = asyncio.get_running_loop().time() + self.seconds

    def left(self) -> float:
        return self.ends - asyncio.get_running_loop().time()


@dataclass(frozen=True)
class _Run:
    """One attachment's facts (as cached) and where its plugins are."""

    chain: Chain
    record: cache.Record
    bin_dirs: tuple[str, ...]
    binaries: Mapping[str, Path]

    def stdin(self, index: int, command: Command, prev: Mapping[str, Any] | None) -> bytes:
        conf = plugin_stdin(
            self.chain,
            index,
            command=command,
            device=self.record.device,
            runtime=self.record.runtime,
            prev_result=prev,
        )
        return json.dumps(conf).encode()

    def env(self, command: Command, netns: str) -> dict[str, str]:
        return plugin_env(
            command=command,
            container_id=self.record.container_id,
            netns=netns,
            ifname=self.record.ifname,
            pod=self.record.pod,
            bin_dirs=self.bin_dirs,
            path=os.environ.get("PATH", _DEFAULT_PATH),
        )


async def add(
    chain: Chain,
    *,
    key: str,
    bin_dirs: Sequence[str],
    container_id: str,
    netns: str,
    ifname: str,
    device: str | None,
    pod: PodRef,
    cache_dir: str | os.PathLike[str],
    timeout: float,  # noqa: ASYNC109 (a budget for the plugins, whose expiry kills them)
    runtime: RuntimeArgs | None = None,
) -> tuple[dict[str, Any], Outcome]:
    """Run ADD of every plugin of `chain`, in order; return the final result and its Outcome.

    `key` names the attachment in `cache_dir` (one record per key; an existing record is an
    error: delete it first). `device` is the host interface the claim allocated (see
    `invocation` for where it goes). On failure everything is undone and CniError raised.
    Cancelled (or killed) half-way, the record stays in state `adding` for `delete`.
    """
    record = cache.Record(
        key=key,
        state="adding",
        config=chain.document(),
        container_id=container_id,
        netns=netns,
        ifname=ifname,
        device=device,
        pod=pod,
        runtime=runtime or RuntimeArgs(),
    )
    run = _prepare(chain, record, bin_dirs, "ADD")
    path = cache.path_for(cache_dir, key)
    await asyncio.to_thread(cache.create, path, record)
    results: list[dict[str, Any]] = []
    try:
        await _add_all(run, results, _Budget(timeout))
        outcome = parse_outcome(results[-1], ifname=ifname, netns=netns)
        done = record.model_copy(update={"state": "added", "result": results[-1]})
        await asyncio.to_thread(cache.replace, path, done)
    except CniError as exc:
        await _roll_back(run, path, results, exc, timeout)
    return results[-1], outcome


async def delete(
    *,
    key: str,
    cache_dir: str | os.PathLike[str],
    bin_dirs: Sequence[str],
    timeout: float,  # noqa: ASYNC109 (as in add)
    chain: Chain | None = None,
    container_id: str = "",
    netns: str = "",
    ifname: str = "",
    device: str | None = None,
    pod: PodRef | None = None,
    runtime: RuntimeArgs | None = None,
    netns_now: str | None = None,
) -> None:
    """Run DEL of every plugin, in reverse order, with the config and result ADD cached.

    `netns_now`: where the pod's namespace is now, when the caller knows better than the record
    (the runtime may already have removed its own path while a pin keeps the namespace).

    Only `key`, `cache_dir`, `bin_dirs` and `timeout` are needed when the record exists (it
    wins over any arguments). Without a record, the arguments describe the attachment (a DEL
    without prevResult); without a record and without `chain` there is nothing to do.
    A netns that no longer exists is passed as empty CNI_NETNS: plugins then clean up what
    they keep outside it (IPAM leases, host-side links).
    """
    path = cache.path_for(cache_dir, key)
    record = await asyncio.to_thread(cache.read, path)
    if record is None:
        if chain is None:
            return
        record = cache.Record(
            key=key,
            state="adding",
            config=chain.document(),
            container_id=container_id,
            netns=netns,
            ifname=ifname,
            device=device,
            pod=pod or PodRef(namespace="", name="", uid=""),
            runtime=runtime or RuntimeArgs(),
        )
    run = _prepare(_cached_chain(record, path), record, bin_dirs, "DEL")
    where = netns_now or record.netns
    gone = not where or not os.path.exists(where)  # noqa: ASYNC240 (one stat)
    present = "" if gone else where
    await _del_all(run, record.result, present, _Budget(timeout))
    await asyncio.to_thread(cache.remove, path)


async def check(
    *,
    key: str,
    cache_dir: str | os.PathLike[str],
    bin_dirs: Sequence[str],
    timeout: float,  # noqa: ASYNC109 (as in add)
) -> Outcome:
    """Run CHECK of every plugin, in order, against the cached ADD result; return its Outcome.

    CniError when a plugin finds the attachment broken, when there is no finished ADD for
    `key`, or when the chain's cniVersion predates CHECK (0.4.0). A chain with
    `disableCheck` is not checked (the spec forbids it) and passes.
    """
    path = cache.path_for(cache_dir, key)
    record = await asyncio.to_thread(cache.read, path)
    if record is None or record.state != "added" or record.result is None:
        state = "no attachment" if record is None else "an unfinished ADD"
        raise CniError(f"CNI CHECK of key {key!r}: {path} holds {state}", command="CHECK")
    chain = _cached_chain(record, path)
    if not version_at_least(chain.cni_version, "0.4.0"):
        raise CniError(
            f"CNI CHECK of network {chain.name}: cniVersion {chain.cni_version} has no CHECK "
            "(it came with 0.4.0)",
            command="CHECK",
        )
    outcome = parse_outcome(record.result, ifname=record.ifname, netns=record.netns)
    if chain.disable_check:
        return outcome
    run = _prepare(chain, record, bin_dirs, "CHECK")
    budget = _Budget(timeout)
    for i in range(len(chain.plugins)):
        await _exec(run, i, "CHECK", run.stdin(i, "CHECK", record.result), record.netns, budget)
    return outcome


def _prepare(chain: Chain, record: cache.Record, bin_dirs: Sequence[str], command: Command) -> _Run:
    """Check the arguments and find every executable before anything runs."""
    dirs = tuple(bin_dirs)
    problems = invocation_problems(
        container_id=record.container_id, ifname=record.ifname, pod=record.pod, bin_dirs=dirs
    )
    if problems:
        raise CniError(
            f"CNI {command} of network {chain.name}: " + "; ".join(problems), command=command
        )
    binaries: dict[str, Path] = {}
    for plugin in chain.plugins:
        kinds = [plugin["type"]]
        ipam = plugin.get("ipam")
        if isinstance(ipam, Mapping):
            kinds.append(ipam["type"])  # the plugin runs it from CNI_PATH; missing = fail now
        for kind in kinds:
            binaries[kind] = _find(kind, dirs, command)
    return _Run(chain, record, dirs, binaries)


def _find(kind: str, bin_dirs: tuple[str, ...], command: Command) -> Path:
    for directory in bin_dirs:
        candidate = Path(directory) / kind
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(
        f"CNI plugin {kind!r} not found in {':'.join(bin_dirs)}", plugin=kind, command=command
    )


def _cached_chain(record: cache.Record, path: Path) -> Chain:
    try:
        return parse_chain(record.config)
    except ConfigError as exc:  # written by us from a valid chain, so the file was edited
        raise CniError(f"CNI cache {path} holds an invalid config: {exc}") from exc


async def _add_all(run: _Run, results: list[dict[str, Any]], budget: _Budget) -> None:
    for i, plugin in enumerate(run.chain.plugins):
        prev = results[-1] if results else None
        out = await _exec(run, i, "ADD", run.stdin(i, "ADD", prev), run.record.netns, budget)
        if not isinstance(out, dict):
            raise CniError(
                f"CNI plugin {plugin['type']!r} ADD printed no result object",
                plugin=plugin["type"],
                command="ADD",
            )
        results.append(out)


async def _del_all(run: _Run, prev: Mapping[str, Any] | None, netns: str, budget: _Budget) -> None:
    for i in reversed(range(len(run.chain.plugins))):
        await _exec(run, i, "DEL", run.stdin(i, "DEL", prev), netns, budget)


async def _roll_back(
    run: _Run, path: Path, results: list[dict[str, Any]], error: CniError, seconds: float
) -> NoReturn:
    """DEL the whole chain after a failed ADD, forget the record, and raise `error`."""
    try:
        await _del_all(run, results[-1] if results else None, run.record.netns, _Budget(seconds))
        await asyncio.to_thread(cache.remove, path)
    except CniError as undo:
        raise CniError(
            f"{error}; undoing the ADD failed too: {undo}; "
            f"the attachment stays recorded in {path} for a later DEL",
            plugin=error.plugin,
            command="ADD",
            code=error.code,
        ) from error
    raise error


async def _exec(
    run: _Run, index: int, command: Command, stdin: bytes, netns: str, budget: _Budget
) -> Any:
    """Run one plugin; its parsed stdout (None when it printed nothing), or CniError."""
    kind = run.chain.plugins[index]["type"]
    what = f"CNI plugin {kind!r} {command}"
    left = budget.left()
    if left <= 0:
        raise CniError(f"{what}: no time left of {budget.seconds} s", plugin=kind, command=command)
    try:
        proc = await asyncio.create_subprocess_exec(
            run.binaries[kind],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=run.env(command, netns),
            start_new_session=True,  # its own process group: a timeout kills its helpers too
        )
    except OSError as exc:
        raise CniError(
            f"{what}: cannot start {run.binaries[kind]}: {exc}", plugin=kind, command=command
        ) from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), left)
    except TimeoutError:
        await _kill(proc)
        raise CniError(
            f"{what} took longer than {budget.seconds} s; killed", plugin=kind, command=command
        ) from None
    except asyncio.CancelledError:
        await _kill(proc)
        raise
    if proc.returncode != 0:
        raise _failed(kind, command, proc.returncode, out, err)
    return _output(kind, command, out)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.communicate()  # reap it and close its pipes


def _failed(kind: str, command: Command, status: int | None, out: bytes, err: bytes) -> CniError:
    """The plugin's own error (`{"code", "msg", "details"}` on stdout), else what it said."""
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    code, msg, details = None, "", ""
    if isinstance(doc, dict):
        code = doc.get("code") if isinstance(doc.get("code"), int) else None
        msg, details = str(doc.get("msg") or ""), str(doc.get("details") or "")
    text = msg or _tail(err) or _tail(out) or "it printed nothing"
    if details and details != msg:
        text += f" ({details})"
    how = f"with code {code}" if code is not None else f"(exit status {status})"
    return CniError(
        f"CNI plugin {kind!r} {command} failed {how}: {text}",
        plugin=kind,
        command=command,
        code=code,
    )


def _tail(data: bytes) -> str:
    text = data.decode(errors="replace").strip()
    return text if len(text) <= _SHOWN else "..." + text[-_SHOWN:]


def _output(kind: str, command: Command, out: bytes) -> Any:
    if not out.strip():
        return None
    try:
        return json.loads(out)
    except ValueError:
        if command != "ADD":  # DEL and CHECK print nothing we use
            return None
        raise CniError(
            f"CNI plugin {kind!r} ADD printed something other than JSON: {_tail(out)}",
            plugin=kind,
            command=command,
        ) from None
