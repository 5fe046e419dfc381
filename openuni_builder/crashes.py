"""Bounded retries for clips that kill their worker process, and per-clip time limits.

A clip that segfaults a decoder, `os._exit`s a model or gets its worker OOM-killed raises nothing
a stage could catch: the process is gone. Ray then restarts the actor or reruns the task, which
by default it does forever (Ray Data's `max_restarts=-1`, `max_task_retries=-1`), so one poison
clip would stall a build. Here every stage tells one small actor per build (`CrashCounter`) which
clips it starts and finishes; a clip started but never finished was in a worker that died. When a
batch holds such clips it is redone clip by clip, which finds the culprit, and a clip that has
died with its worker `MAX_CRASHES` times is failed with that reason instead of being started
again. Ray's own retries are bounded too (`RAY_RETRIES`), as the last line of defence.

A clip that hangs (a decoder stuck in C code, a model that never returns) is stopped the same
way: a watchdog thread marks it timed out in the counter and ends the worker process, the only
way to stop code that never returns to Python; its next attempt fails it with "timed out after Ns".
"""

from __future__ import annotations

import functools
import os
import threading
import uuid
from contextlib import contextmanager
from typing import Iterator

import ray

#: Deaths of its worker after which a clip is failed instead of retried.
MAX_CRASHES = 2
#: Ray's own bound on actor restarts and task retries (a batch of b clips with one culprit needs
#: about MAX_CRASHES + 1 attempts; several culprits in one batch need more).
RAY_RETRIES = 12
#: Seconds one clip may spend in a stage when its config does not say (`timeout_s`).
DEFAULT_TIMEOUT_S = 900.0


@ray.remote(num_cpus=0)
class CrashCounter:
    """Per clip key: starts not followed by a finish, and why the last one ended (timeout)."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}
        self.reasons: dict[str, str] = {}
        self.started: dict[str, dict[str, int]] = {}  # stage -> node id -> actors started there

    def hello(self, stage: str, node: str) -> None:
        """An actor of `stage` started on `node` (so a build can say where its pools ran)."""
        self.started.setdefault(stage, {})
        self.started[stage][node] = self.started[stage].get(node, 0) + 1

    def actors(self) -> dict[str, dict[str, int]]:
        return self.started

    def peek(self, keys: list[str]) -> dict[str, int]:
        return {k: self.open.get(k, 0) for k in keys}

    def begin(self, keys: list[str]) -> dict[str, tuple[int, str | None]]:
        """Record a start; returns each key's earlier unfinished starts and the last reason."""
        prior = {k: (self.open.get(k, 0), self.reasons.get(k)) for k in keys}
        for k in keys:
            self.open[k] = prior[k][0] + 1
        return prior

    def end(self, keys: list[str]) -> None:
        for k in keys:
            self.open.pop(k, None)
            self.reasons.pop(k, None)

    def timed_out(self, keys: list[str], reason: str) -> None:
        for k in keys:
            self.open[k] = max(self.open.get(k, 0), MAX_CRASHES)
            self.reasons[k] = reason


def start_counter() -> tuple[str, ray.actor.ActorHandle]:
    """Start this build's counter: the name stages look it up by, and the handle, which the
    caller keeps until the graph is done (the actor lives as long as a handle does)."""
    name = f"openuni-crashes-{uuid.uuid4().hex[:12]}"
    handle = CrashCounter.options(name=name).remote()
    ray.get(handle.peek.remote([]))  # started before any stage looks for it
    return name, handle


class Guard:
    """A stage's view of the counter: which clips to skip, and the start/finish bookkeeping."""

    def __init__(self, counter: str | None, stage: str, timeout_s: float | None) -> None:
        self.counter = ray.get_actor(counter) if counter else None
        self.stage, self.timeout_s = stage, timeout_s or DEFAULT_TIMEOUT_S

    def suspects(self, keys: list[str]) -> bool:
        """Whether any of these clips was in a worker that died (then go clip by clip)."""
        return bool(self.counter) and any(ray.get(self.counter.peek.remote(keys)).values())

    @contextmanager
    def running(self, keys: list[str]) -> Iterator[str | None]:
        """Run the body for `keys` under the time limit; yields a failure reason instead when a
        single clip has already died with its worker MAX_CRASHES times (the body must then skip)."""
        if self.counter is None:
            yield None
            return
        prior = ray.get(self.counter.begin.remote(keys))
        count, reason = prior[keys[0]]
        if len(keys) == 1 and count >= MAX_CRASHES:
            self.counter.end.remote(keys)
            yield reason or (f"{self.stage}: the clip ended its worker process {count} times "
                             "(a crash, os._exit or the OOM killer); not retried again")
            return
        limit = self.timeout_s * len(keys)
        watchdog = threading.Timer(limit, self._expire, (keys, limit))
        watchdog.daemon = True
        watchdog.start()
        try:
            yield None
        finally:
            watchdog.cancel()
        ray.get(self.counter.end.remote(keys))

    def _expire(self, keys: list[str], limit: float) -> None:
        if len(keys) == 1:  # a batch that overran is only suspect: its clips are redone one by one
            reason = f"{self.stage}: timed out after {limit:g}s (timeout_s in the pipeline config)"
            ray.get(self.counter.timed_out.remote(keys, reason))
        os._exit(1)  # code stuck in C never returns to Python: only the process can be stopped


@functools.lru_cache(maxsize=16)
def guard(counter: str | None, stage: str, timeout_s: float | None) -> Guard:
    """One Guard per worker process and stage (looking the counter up costs a round trip)."""
    return Guard(counter, stage, timeout_s)
