"""Crash points for the fault-injection suite (`make chaos`): a real SIGKILL of the real agent at
a named step, where an outside kill would only land by luck (e.g. between the two checkpoint
writes of an attach). Inert unless the environment names the point:

    MULTINET_CRASH_AT=attach-moved multinet node-agent ...

The process kills itself the first time it reaches that point, exactly as a crash or an OOM kill
would end it: no cleanup runs, the checkpoint holds what was written so far. Points, in data-flow
order: `prepare-reserved` (addresses reserved, plan not yet checkpointed), `attach-moved`
(interface in the pod, "attached" not yet recorded), `detach-moved` (interface home, attachment
not yet forgotten), `unprepare-released` (reservations deleted, claim not yet dropped).
"""

from __future__ import annotations

import os
import signal

ENV = "MULTINET_CRASH_AT"
POINTS = ("prepare-reserved", "attach-moved", "detach-moved", "unprepare-released")


def crash_point(name: str) -> None:
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
