"""The cluster benches' pod watch: when each pod of a namespace was first seen scheduled,
Running and Ready, on this machine's monotonic clock (ms resolution, unlike the API's 1 s
timestamps)."""

from __future__ import annotations

import threading
import time
from typing import Any

from kubernetes import client, watch


class PodWatch:
    """A list + watch of the namespace's pods in a thread. `with PodWatch(core, ns) as pods:`
    (the list is done when the block starts); `changed` is notified on every event."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.core, self.namespace = core, namespace
        self.scheduled: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.ready: dict[str, float] = {}
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._listed = threading.Event()

    def __enter__(self) -> PodWatch:
        self._thread.start()
        self._listed.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._watch.stop()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                listed = self.core.list_namespaced_pod(self.namespace)
                for pod in listed.items:
                    self._see(pod)
                self._listed.set()
                for event in self._watch.stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=60,
                ):
                    self._see(event["object"])
                    if self._stop.is_set():
                        return
            except Exception:  # watch expired or dropped: list again and resume
                if self._stop.is_set():
                    return
                time.sleep(0.2)

    def _see(self, pod: Any) -> None:
        now = time.monotonic()
        name = pod.metadata.name
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        with self.changed:
            if pod.spec.node_name:
                self.scheduled.setdefault(name, now)
            if pod.status.phase == "Running":
                self.running.setdefault(name, now)
            if ready:
                self.ready.setdefault(name, now)
            self.changed.notify_all()

    def wait_ready(self, name: str, timeout: float) -> float:
        """When `name` was first seen Ready; TimeoutError after `timeout` seconds."""
        with self.changed:
            if not self.changed.wait_for(lambda: name in self.ready, timeout):
                raise TimeoutError(f"pod {name} not Ready after {timeout:g} s")
            return self.ready[name]

    def wait_running(self, names: list[str], timeout: float) -> list[str]:
        """Waits until every pod of `names` was seen Running; returns those that were not when
        `timeout` seconds ran out (empty: all ran)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while (missing := [n for n in names if n not in self.running]) and (
                left := deadline - time.monotonic()
            ) > 0:
                self.changed.wait(min(left, 1.0))
            return missing
