"""Ray runtime: starts (or attaches to) Ray and streams clips through the stage graph.

    requests -> decode (tasks, CPU) -> annotator 1 (actor pool) -> ... -> encode (tasks, CPU) -> driver

Filters (openuni_builder/filters.py) ride along: probe and content filters inside decode, each
annotated-phase filter as a small task stage right after the last annotator it needs.

CPU stages run as Ray tasks sized by the config's `stages`; each annotator is a Ray Data actor
pool (`map_batches` with a callable class) sized by its declared `Resources` plus config
overrides, so GPU fractions pack several annotators on one GPU. The driver iterates the streaming
result and is the only shard writer. No scheduler of our own: Ray Data does the backpressure.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from functools import partial
from typing import Iterator

import ray
from ray.data import ActorPoolStrategy, TaskPoolStrategy

from annotators import get_annotator
from annotators.base import Resources
from openuni_builder.clip import Clip, ClipRequest
from openuni_builder.config import BuildConfig
from openuni_builder.filters import parse_filters, schedule
from openuni_builder.stages import AnnotatorStage, decode_row, encode_row, filter_row, screen_row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagePlan:
    name: str
    kind: str  # "tasks" or "actors"
    resources: Resources


class PlanError(RuntimeError):
    """The stage graph cannot be scheduled on this cluster; the message says what to lower."""


def plan(cfg: BuildConfig, cluster_cpus: float, cluster_gpus: float) -> list[StagePlan]:
    """The resolved stage graph, fitted to the cluster.

    Annotator resources are their declared defaults plus config overrides. With no GPU visible,
    GPU asks are dropped (the annotator runs on CPU) instead of waiting forever for a GPU. Actor
    pools hold their CPUs for the whole run; if they would leave no CPU for the decode/encode
    tasks the graph would deadlock, so their (logical) CPU shares are scaled down to fit. GPU asks
    beyond the cluster's GPUs are refused: oversubscribing GPU memory fails later and worse.
    """
    stages = [StagePlan("decode", "tasks", cfg.decode)]
    for a in cfg.annotators:
        r = get_annotator(a.name).default_resources.merged(a.resources)
        if r.num_gpus and not cluster_gpus:
            log.warning("no GPU visible: %s runs on CPU (num_gpus %.2f -> 0)", a.name, r.num_gpus)
            r = replace(r, num_gpus=0.0)
        stages.append(StagePlan(a.name, "actors", r))
    stages.append(StagePlan("encode", "tasks", cfg.encode))
    task_cpus = max(cfg.decode.num_cpus, cfg.encode.num_cpus)
    pinned = sum(s.resources.num_cpus * s.resources.concurrency for s in stages if s.kind == "actors")
    if task_cpus >= cluster_cpus:
        raise PlanError(f"the CPU stages need {task_cpus:g} CPUs per task but the cluster has {cluster_cpus:g}; "
                        "lower `stages: {decode, encode}: num_cpus` in the pipeline config")
    if pinned + task_cpus > cluster_cpus:
        scale = (cluster_cpus - task_cpus) / pinned
        log.warning("actor pools ask for %g CPUs, %g are free after the CPU stages: scaling their CPU shares by %.2f",
                    pinned, cluster_cpus - task_cpus, scale)
        stages = [replace(s, resources=replace(s.resources, num_cpus=s.resources.num_cpus * scale))
                  if s.kind == "actors" else s for s in stages]
    gpus = sum(s.resources.num_gpus * s.resources.concurrency for s in stages)
    if gpus > cluster_gpus + 1e-9:
        raise PlanError(f"the actor pools ask for {gpus:g} GPUs but the cluster has {cluster_gpus:g}; "
                        "lower `resources: {num_gpus, concurrency}` in the pipeline config (see --plan)")
    return stages


def cluster_resources() -> tuple[float, float]:
    """(CPUs, GPUs) of the Ray cluster this driver is attached to."""
    res = ray.cluster_resources()
    return float(res.get("CPU", 0)), float(res.get("GPU", 0))


def init_ray(address: str | None, num_cpus: int | None) -> None:
    """Attach to `address` (auto, ray://...) or start an embedded local Ray bound to 127.0.0.1."""
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # address="local": always a fresh embedded cluster, never one another driver started.
        ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 logging_level=logging.WARNING, _node_ip_address="127.0.0.1")


def run_stages(requests: list[ClipRequest], cfg: BuildConfig, *, dry_run: bool = False,
               progress: bool = True) -> Iterator[Clip]:
    """Yield every request back as a finished or failed Clip, in completion order."""
    ds = _requests_dataset(requests, cfg, progress)
    stages = plan(cfg, *cluster_resources())
    decode, encode = stages[0].resources, stages[-1].resources
    filters = parse_filters(cfg.filters)
    early = tuple(f for f in filters if f.phase != "annotated")
    after, _ = schedule(filters, [a.name for a in cfg.annotators])
    ds = ds.map(partial(decode_row, filters=early), num_cpus=decode.num_cpus,
                compute=TaskPoolStrategy(size=decode.concurrency))
    for i, (stage, a) in enumerate(zip(stages[1:-1], cfg.annotators)):
        r = stage.resources
        ds = ds.map_batches(AnnotatorStage, fn_constructor_kwargs={"name": a.name, "options": a.options},
                            batch_size=r.batch_size, compute=ActorPoolStrategy(size=r.concurrency), num_cpus=r.num_cpus,
                            num_gpus=r.num_gpus, batch_format="numpy")
        if i in after:
            ds = ds.map(partial(filter_row, filters=after[i]), num_cpus=encode.num_cpus,
                        compute=TaskPoolStrategy(size=encode.concurrency))
    video = tuple(a.name for a in cfg.annotators if get_annotator(a.name).video)
    ds = ds.map(partial(encode_row, caption_use=cfg.caption_use, video_modalities=video, dry_run=dry_run),
                num_cpus=encode.num_cpus, compute=TaskPoolStrategy(size=encode.concurrency))
    for row in ds.iter_rows():
        yield Clip.from_bytes(row["clip"])


def run_screen(requests: list[ClipRequest], cfg: BuildConfig, *, progress: bool = True) -> Iterator[Clip]:
    """The near-duplicate screen pass: decode with the probe and content filters, and yield every
    clip back without its frames (dropped, failed, or kept with its perceptual hash)."""
    filters = parse_filters(cfg.filters)
    ds = _requests_dataset(requests, cfg, progress)
    ds = ds.map(partial(screen_row, filters=tuple(f for f in filters if f.phase != "annotated")),
                num_cpus=cfg.decode.num_cpus, compute=TaskPoolStrategy(size=cfg.decode.concurrency))
    for row in ds.iter_rows():
        yield Clip.from_bytes(row["clip"])


def _requests_dataset(requests: list[ClipRequest], cfg: BuildConfig, progress: bool) -> ray.data.Dataset:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.enable_operator_progress_bars = progress
    items = [{"key": r.key, "clip": Clip(request=r, spec=cfg.spec).to_bytes()} for r in requests]
    return ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 1000)))
