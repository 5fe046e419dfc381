"""One build, start to finish: list clips, skip what the ledger says is finished, run the stages
(whose last one writes the shards, on the workers, straight to OUT), then the index, stats and a
summary from the small per-clip records the driver receives.

OUT is a local folder, a shared-filesystem path or an object-store URI (`location.py`); for a URI
the driver keeps its own files in a staging folder that is pushed to OUT at the end (`staging.py`).

The build's identity (pipeline, clip spec, modality set, dry-run flag) is fixed by its first run in
`OUT/build.json`; a rerun with a different identity is refused, so every sample of one build has
the same members and dry-run output never mixes with real annotations.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, Collection, Iterable, Iterator

import ray
from tqdm import tqdm
from upath import UPath

from openuni_builder.publish.card import publish
from openuni_builder.publish.index_summary import IndexSummary
from openuni_builder.config import BuildConfig, load_config
from openuni_builder.filters import schedule
from openuni_builder.identity import IdentityError, check as check_identity
from openuni_builder.ledger import Ledger
from openuni_builder.runtime import (PlanError, check_fit, cluster_resources, fit_cpus, format_plan, init_ray,
                                    requests_dataset, resolve_stages, run_stages, stage_throughput)
from openuni_builder.screening import fingerprints, kept_hashes, prefilter, record_rejected
from openuni_builder.location import StorageOptions, location
from openuni_builder.shards import recover, write_index
from openuni_builder.signals import rearm, stopping
from openuni_builder.clip import ClipRequest
from openuni_builder.sources import SourceContext, get_source
from openuni_builder.sources.base import BadRow
from openuni_builder.staging import pull, push
from pipelines import resolve

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """The build cannot start (bad config, identity mismatch, missing model with --require-all)."""


@dataclass
class BuildOptions:
    source: str
    out: str | Path
    input: str | Path | None = None
    config: str = "openuni"
    limit: int | None = None
    address: str | None = None
    video_root: str | Path | None = None
    download: bool = False
    retry_failed: bool = False
    strict: bool = False
    require_all: bool = False
    num_cpus: int | None = None
    object_store_gb: float | None = None
    progress: bool = True
    dry_run: bool = False
    storage_options: StorageOptions = field(default_factory=dict)
    shot_detector: str | None = None


def build(opts: BuildOptions) -> dict[str, Any]:
    """Run a build; returns its stats (also written to OUT/stats.json)."""
    started = time.time()
    target = location(opts.out, opts.storage_options)
    out = pull(target)
    try:
        with stopping(out, target / "shards"):  # SIGTERM/SIGINT and a full disk stop it cleanly
            return _build(opts, target, out, started)
    finally:
        push(out, target)


def _build(opts: BuildOptions, target: UPath, out: Path, started: float) -> dict[str, Any]:
    """`build` with OUT resolved: `target` where shards go, `out` the driver's local folder."""
    cfg = load_config(resolve(opts.config))
    # A dry run makes every model tiny on the workers, so nothing is skipped for a missing model.
    cfg, skipped = (cfg, {}) if opts.dry_run else _available(cfg, opts.require_all)
    try:
        check_identity(out, cfg, opts.dry_run)
    except IdentityError as exc:
        raise BuildError(str(exc)) from exc
    push(out, target)  # the identity is fixed at OUT before any shard lands there

    ctx = SourceContext(input=_maybe(opts.input, opts), work_dir=out, spec=cfg.spec,
                        video_root=_maybe(opts.video_root, opts), download=opts.download, out=target,
                        options=opts.storage_options, shot_detector=opts.shot_detector)
    ledger = Ledger(out)
    recovered = recover(target / "shards", ledger)
    if recovered:
        log.info("recovered %d samples from shards a killed run committed", recovered)
    prints = fingerprints(cfg)
    listing = Listing(islice(get_source(opts.source).requests(ctx), opts.limit), ledger.done_keys(),
                      ledger.filtered(prints), ledger.failed(), opts.retry_failed, ledger)
    todo = listing.todo()
    first = next(todo, None)

    run_failures: Counter[str] = Counter()
    run_drops: Counter[str] = Counter()
    timings: dict[str, list[tuple[float, float]]] = {}
    nodes: dict[str, Counter[str]] = {}  # stage -> clips per Ray node (its id's first 12 hex digits)
    graph: dict[str, Any] = {}  # what run_stages reports at the end: actors started per node
    written = received = 0
    if first is not None:
        embedded = init_ray(opts.address, opts.num_cpus, _gb_to_bytes(opts.object_store_gb))
        rearm()  # Ray's init replaced the SIGTERM/SIGINT handlers of `stopping`
        try:
            kept, run_drops = prefilter(chain([first], todo), cfg, ledger)
            ds, count = requests_dataset(kept, cfg)  # consumes the listing, chunk by chunk
            log.info(listing.summary())
            records = run_stages(ds, cfg, str(target), options=opts.storage_options, mtime=started,
                                 dry_run=opts.dry_run, progress=opts.progress,
                                 kept_hashes=kept_hashes(cfg, ledger), report=graph) if count else iter(())
            with tqdm(total=count, desc="clips", unit="clip", disable=not opts.progress) as bar, \
                    DoneBuffer(ledger) as finished:
                for text in records:
                    received += len(text)
                    record = json.loads(text)
                    for stage, span in record.pop("timings", {}).items():
                        timings.setdefault(stage, []).append(tuple(span))
                    for stage, node in record.pop("nodes", {}).items():
                        nodes.setdefault(stage, Counter())[str(node)[:12]] += 1
                    if record["status"] == "done":
                        finished.add(record["shard"], record["row"])
                        written += 1
                    else:
                        kind, name = record_rejected(ledger, record, prints)
                        (run_drops if kind == "filtered" else run_failures)[name] += 1
                    bar.update()
        except ray.exceptions.RayError as exc:  # the graph itself broke (an actor that cannot start, ...)
            raise BuildError(f"the Ray graph stopped: {_root_cause(exc)}; finished clips are in the ledger, "
                             "a rerun resumes") from exc
        finally:
            if embedded:  # explicitly: Ray's own atexit shutdown takes ~1.3 s longer
                ray.shutdown()
    else:
        log.info(listing.summary())
    if listing.bad_rows:
        run_failures["listing"] += listing.bad_rows
    stats = _finish(out, target, cfg, opts, ledger, skipped, started, listing.listed, listing.duplicates,
                    listing.todo_count, written, received, run_failures, run_drops, stage_throughput(timings),
                    {stage: dict(c) for stage, c in nodes.items()}, graph.get("actors", {}))
    publish(out, cfg, shards=target / "shards")
    return stats


class Listing:
    """The source's requests in one pass: de-duplicated by key (the first wins), counted, and split
    into what earlier runs finished, filtered or failed and what is left to do. It holds the keys
    it has seen, never the requests, so listing 36M rows costs a key set, not 36M objects."""

    def __init__(self, requests: Iterable[ClipRequest | BadRow], done: Collection[str], filtered: Collection[str],
                 failed: Collection[str], retry_failed: bool, ledger: Ledger | None = None) -> None:
        self.requests, self.done, self.filtered, self.failed = requests, done, filtered, failed
        self.retry_failed, self.ledger = retry_failed, ledger
        self.listed = self.duplicates = self.todo_count = self.bad_rows = 0
        self.counts: Counter[str] = Counter()

    def todo(self) -> Iterator[ClipRequest]:
        seen: set[str] = set()
        for req in self.requests:
            if isinstance(req, BadRow):  # ledgered once (stage `listing`), and the listing goes on
                self.bad_rows += 1
                if self.ledger is not None and req.key not in self.failed:
                    self.ledger.mark_failed(req.key, "listing", req.reason, source=req.source, row=req.row,
                                            column=req.column)
                continue
            if req.key in seen:
                self.duplicates += 1
                continue
            seen.add(req.key)
            self.listed += 1
            state = next((name for name, keys in (("done", self.done), ("filtered", self.filtered),
                                                  ("failed", self.failed)) if req.key in keys), None)
            self.counts[state] += 1
            if state is None or (state == "failed" and self.retry_failed):
                self.todo_count += 1
                yield req

    def summary(self) -> str:
        return (f"{self.listed} clips listed ({self.bad_rows} metadata rows unusable: ledger/failed.jsonl, "
                f"stage listing), {self.counts['done']} already done, {self.counts['filtered']} "
                f"filtered before, {self.counts['failed']} failed before"
                f"{' (retrying)' if self.retry_failed else ' (skipped; --retry-failed retries them)'}, "
                f"{self.todo_count} to process")


class DoneBuffer:
    """Done rows, written to the ledger a shard at a time (a record per clip would mean an fsync
    per clip); what a kill loses here the next run recovers from the shard's manifest."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger, self.shard, self.rows = ledger, None, []

    def add(self, shard: str, row: dict[str, Any]) -> None:
        if shard != self.shard:
            self.flush()
            self.shard = shard
        self.rows.append(row)

    def flush(self) -> None:
        if self.rows:
            self.ledger.mark_done(self.rows)
        self.rows = []

    def __enter__(self) -> "DoneBuffer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


def _root_cause(exc: BaseException) -> str:
    """The innermost `SomeError: message` line in Ray's wrapped tracebacks (the actor's or task's
    own error), else the outermost message's first line."""
    texts = []
    while exc is not None and len(texts) < 10:
        texts.append(str(exc))
        exc = getattr(exc, "cause", None) or exc.__cause__
    lines = re.findall(r"^\s*((?:\w+\.)*\w+(?:Error|Exception|OnNode): .+)$", "\n".join(texts), re.M)
    own = [line for line in lines if not line.startswith(("ray.", "Ray", "SystemException"))]
    return own[-1].strip() if own else texts[0].strip().splitlines()[0]


def _maybe(path: str | Path | None, opts: BuildOptions) -> UPath | None:
    return None if path is None else location(path, opts.storage_options)


def _gb_to_bytes(gb: float | None) -> int | None:
    return int(gb * 2**30) if gb else None


def _available(cfg: BuildConfig, require_all: bool) -> tuple[BuildConfig, dict[str, str]]:
    """Drop annotators whose models are not cached (or refuse, with --require-all)."""
    skipped = {}
    for a in cfg.annotators:
        reason = a.build().unavailable()
        if reason:
            skipped[a.name] = reason
            log.warning("skipping modality %s: %s", a.name, reason)
    if skipped and require_all:
        raise BuildError("--require-all: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return cfg.without(set(skipped)), skipped


def _finish(out: Path, target: UPath, cfg: BuildConfig, opts: BuildOptions, ledger: Ledger, skipped: dict[str, str],
            started: float, listed: int, duplicates: int, processed: int, written: int, received: int,
            run_failures: Counter, run_drops: Counter, stages: dict[str, dict[str, float]],
            nodes: dict[str, dict[str, int]], actors: dict[str, dict[str, int]]) -> dict[str, Any]:
    filters = list(cfg.filters)
    failed = ledger.failed()
    filtered = ledger.filtered(fingerprints(cfg))
    totals = write_index(ledger.iter_done(), out / "index.parquet")
    wall = time.time() - started
    stats = {
        "pipeline": cfg.name, "source": opts.source, "location": str(target), "spec": asdict(cfg.spec),
        "dry_run": opts.dry_run, "storage_profile": cfg.shards.profile,
        "modalities": {"produced": [a.name for a in cfg.annotators], "skipped": skipped},
        "run": {"listed": listed, "duplicate_keys_in_source": duplicates, "processed": processed,
                "written": written, "failed": sum(run_failures.values()), "filtered": sum(run_drops.values()),
                "failed_by_stage": dict(run_failures), "wall_s": round(wall, 2),
                "clips_per_s": round(written / wall, 3) if wall else None, "stages": stages, "nodes": nodes, "actors": actors,
                # what came back to the driver per clip: records, never sample bytes
                "driver_bytes_per_clip": round(received / processed) if processed else 0},
        "total": {**totals, "failed": len(failed),
                  "failed_by_stage": dict(Counter(f["stage"] for f in failed.values())),
                  "failed_by_reason": dict(Counter(_reason_kind(f["reason"]) for f in failed.values())),
                  "filtered": len(filtered)},
        # mean bytes of each modality's members per sample, and 1.3M (OpenUni-sized) such samples
        "bytes_per_sample": IndexSummary.read(out / "index.parquet").bytes_per_sample(projected_clips=1_300_000),
        "filters": {"config": cfg.filter_config(), "inactive": schedule(filters, [a.name for a in cfg.annotators])[1],
                    "run": dict(run_drops), "total": dict(Counter(r["filter"] for r in filtered.values()))},
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def _reason_kind(reason: str) -> str:
    """Group failure reasons by their leading words (paths and numbers left out)."""
    return " ".join(reason.split(":")[0].split()[:6])


def summary(stats: dict[str, Any], out: Path) -> str:
    """The short run summary printed at the end of a build."""
    run, total = stats["run"], stats["total"]
    lines = [f"openuni-build: {run['written']} clips written, {run['failed']} failed this run "
             f"({run['processed']} processed of {run['listed']} listed) in {run['wall_s']}s",
             f"  build total: {total['samples']} samples in {total['shards']} shards, "
             f"{total['bytes'] / 1e6:.1f} MB, {total['failed']} failed clips",
             f"  modalities: {', '.join(stats['modalities']['produced']) or 'RGB only'}"]
    if stats["dry_run"]:
        lines.append("  DRY RUN: tiny random-weight models, not real annotations (every sample says dry_run: true)")
    for stage, t in stats["run"]["stages"].items():
        lines.append(f"  stage {stage:<10} {t['clips']:>6} clips  {t['clips_per_s'] or 0:>8.2f} clips/s  "
                     f"{t['busy_s_per_clip']:>8.3f} s/clip per worker")
    for name, reason in stats["modalities"]["skipped"].items():
        lines.append(f"  skipped {name}: {reason}")
    for kind, n in total["failed_by_reason"].items():
        lines.append(f"  failed x{n}: {kind}")
    for name, n in stats["filters"]["total"].items():
        lines.append(f"  filtered x{n}: {name}")
    lines.append(f"  output: {out}/shards, index.parquet, stats.json, ledger/, README.md (dataset card)")
    return "\n".join(lines)


def plan_report(opts: BuildOptions, gpus: float | None = None) -> tuple[str, bool]:
    """What `--plan` prints, and whether the graph fits: the resolved stages on the attached (or
    embedded) cluster, or on a hypothetical one with `gpus` GPUs and `opts.num_cpus` (default:
    this machine's) CPUs. Every configured annotator is shown, also those whose model is missing
    here (a GPU cluster is often planned from a laptop)."""
    cfg = load_config(resolve(opts.config))
    skipped = {} if opts.dry_run else _available(cfg, require_all=False)[1]
    if gpus is None:
        init_ray(opts.address, opts.num_cpus, _gb_to_bytes(opts.object_store_gb))
        cpus, gpus = cluster_resources()
    else:
        cpus = float(opts.num_cpus or os.cpu_count() or 1)
    stages = resolve_stages(cfg, gpus)
    try:
        stages = fit_cpus(stages, cpus)
        check_fit(stages, cpus, gpus)
        fits = True
    except PlanError:
        fits = False
    return f"pipeline {cfg.name} ({cfg.path})\n" + format_plan(stages, cpus, gpus, skipped), fits
