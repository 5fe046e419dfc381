"""How a build stops before its end without leaving a mess: on SIGTERM / SIGINT, and on a full disk.

`stopping(out, shards)` is the context manager the build runs inside. While it is active,
SIGTERM and SIGINT raise `Interrupted` in the driver's main thread (a BaseException, so no
`except Exception` on the way swallows it). The build's own `finally` blocks then run as for any
error: the done rows buffered for the open shard go to the ledger, Ray shuts down (its workers,
and with them any shard half-written, are gone). On the way out the context manager settles OUT:
shards the workers committed but whose records never reached the driver are added to the ledger
from their manifests, temporaries and tars without a manifest are deleted (`shards.recover`, the
same step a rerun starts with), and the index is rewritten from the ledger. What is in OUT then is
exactly what the ledger says; the rerun resumes from it.

A full disk (ENOSPC, on the driver or in a worker's shard write) becomes `DiskFull`, a clear error,
after the uncommitted files are deleted (`shards.discard_uncommitted`, which needs no space).
Shards are written to a temporary name and renamed, and their manifest is the commit record
(`shards.write_shard` deletes a tar whose manifest could not be written), so no half-written
file stays visible; the rerun after space is freed finishes the build.

A second signal while stopping is logged and ignored: the first one's cleanup is what keeps OUT
consistent (SIGKILL still ends the process at once; a rerun recovers from that too).
"""

from __future__ import annotations

import errno
import logging
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from openuni_builder.ledger import Ledger
from openuni_builder.shards import discard_uncommitted, recover, write_index

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(BaseException):
    """The build was stopped by a signal; `summary` says what OUT holds and how to go on."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.summary = f"openuni-build: stopped by {signal.Signals(signum).name}"

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT


class DiskFull(RuntimeError):
    """No space left where the build writes (OUT or its staging folder)."""


@contextmanager
def stopping(out: Path, shards: Any) -> Iterator[None]:
    """Run a build that a signal or a full disk stops cleanly (see the module docstring).
    `out` is the driver's folder (ledger, index), `shards` the shards folder (local or a UPath)."""
    stopping_now = threading.Event()

    def handler(signum: int, _frame: object) -> None:
        if stopping_now.is_set():
            log.warning("%s received while stopping: finishing the cleanup first", signal.Signals(signum).name)
            return
        stopping_now.set()
        log.warning("%s received: stopping the build; finished clips stay, a rerun resumes",
                    signal.Signals(signum).name)
        raise Interrupted(signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
        previous = {s: signal.signal(s, handler) for s in SIGNALS}
        _armed.append(handler)
    try:
        yield
    except Interrupted as exc:  # the handler set `stopping_now`: a signal during this cleanup is ignored
        exc.summary += _settle(out, shards)
        raise
    except Exception as exc:
        if not _disk_full(exc):
            raise
        discard_uncommitted(shards)
        raise DiskFull(f"no space left on the device under {out} ({_first_line(exc)}). The build stopped; "
                       "no half-written shard is kept and finished clips stay in the ledger: free space "
                       "(or pass another --shards) and rerun the same command to finish") from exc
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if previous:
            _armed.pop()


_armed: list = []  # the handler of the innermost active `stopping`


def rearm() -> None:
    """Install the active `stopping` handler again. Call it right after `ray.init`: Ray's driver
    setup replaces the SIGTERM handler (with `sys.exit`) and its core worker installs a C-level
    failure handler that turns SIGTERM/SIGINT into an abort (exit -6, nothing cleaned up)."""
    if _armed and threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, _armed[-1])


def _settle(out: Path, shards: Any) -> str:
    """Make OUT match its ledger after a stop; returns the summary's second half."""
    ledger = Ledger(out)
    recovered = recover(shards, ledger)
    totals = write_index(ledger.iter_done(), out / "index.parquet")
    return (f": {totals['samples']} finished clips in {totals['shards']} shards are in the ledger and "
            f"index.parquet ({recovered} recovered from shards the workers committed at the stop), no "
            "half-written shard is left; rerun the same command to resume")


def _disk_full(exc: BaseException) -> bool:
    """ENOSPC anywhere in the chain of causes, or in the text of an error a Ray worker sent back
    (its OSError arrives wrapped, sometimes only as text)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if f"[Errno {errno.ENOSPC}]" in str(exc):
            return True
        exc = getattr(exc, "cause", None) or exc.__cause__
        seen += 1
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
