"""Ray runtime: starts (or attaches to) Ray and streams clips through the stage graph.

    requests -> decode (tasks, CPU) -> annotator 1 (actor pool) -> ... -> encode (tasks, CPU)
             -> write (tasks, CPU: shards straight to OUT) -> driver (one small JSON record per clip)

Filters (openuni_builder/filters/) ride along: probe and content filters inside decode, each
annotated-phase filter as a CPU step right after the last annotator it needs.

CPU steps run as Ray tasks sized by the config's `stages`; each annotator is a Ray Data actor
pool (`map_batches` with a callable class) sized by its declared `Resources` plus config
overrides, so GPU fractions pack several annotators on one GPU; an annotator with no model and no
GPU (`Resources.pool = "tasks"`, DIS flow) is a CPU step instead. Consecutive CPU steps with equal
asks run as one task per clip (`compose`: decode -> flow -> encode for the CPU pipeline), so a
clip's frames and raw outputs never leave the process that made them. The write tasks commit shards to
the build's location (local, shared filesystem or object store) from wherever they run; the
driver iterates only their per-clip records. No scheduler of our own: Ray Data does the backpressure:
clips stream through (one request per block), decoding pauses once the graph holds half the object
store (Ray Data's default budget), so memory stays bounded however long the source list is.

Fault tolerance is Ray's: an annotator actor that dies (OOM killer, node lost, SIGKILL) is
restarted and its in-flight batches are resubmitted (`max_restarts` / `max_task_retries` below,
bounded); a clip whose annotator *raises* is caught in `AnnotatorStage` and recorded in the
ledger, and a clip that keeps killing its worker, or overruns its time limit, is found and failed
by `crashes.py`.
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, Iterable, Iterator

import ray
from ray.data import ActorPoolStrategy, TaskPoolStrategy

from annotators.base import Resources
from openuni_builder.clip import Clip, ClipRequest
from openuni_builder.config import AnnotatorConfig, BuildConfig
from openuni_builder.crashes import RAY_RETRIES, start_counter
from openuni_builder.filters import NearDuplicateFilter, schedule
from openuni_builder.location import StorageOptions
from openuni_builder.models import load_registry, missing
from openuni_builder import modalities
from openuni_builder.shards import chunks, write_shards
from openuni_builder.stages import (AnnotatorStage, DedupStage, Step, annotate_in_task, decode, encode,
                                    filter_clip, run_steps)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StagePlan:
    name: str
    kind: str  # "tasks" or "actors"
    resources: Resources
    asked_gpus: float = 0.0  # the GPU ask before a cluster without GPUs dropped it
    models: tuple[str, ...] = ()  # the registered models its annotator declares (`Annotator.models()`)


class PlanError(RuntimeError):
    """The stage graph cannot be scheduled on this cluster; the message says what to lower."""


def plan(cfg: BuildConfig, cluster_cpus: float, cluster_gpus: float) -> list[StagePlan]:
    """The resolved stage graph, fitted to the cluster (PlanError when it cannot run there)."""
    stages = fit_cpus(resolve_stages(cfg, cluster_gpus), cluster_cpus)
    check_fit(stages, cluster_cpus, cluster_gpus)
    return stages


def resolve_stages(cfg: BuildConfig, cluster_gpus: float) -> list[StagePlan]:
    """decode, one actor pool per annotator, encode: each with its resolved resources.

    Annotator resources are their declared defaults plus config overrides. With no GPU visible,
    GPU asks are dropped (the annotator runs on CPU) instead of waiting forever for a GPU. A
    task-pool annotator (`Resources.pool`) takes decode's CPU ask and concurrency unless the config
    sets them, so Ray Data fuses it with its neighbours; one given a GPU runs as an actor pool.
    """
    stages = [StagePlan("decode", "tasks", cfg.decode)]
    for a in cfg.annotators:
        annotator = a.build()
        r = annotator.resources()
        if r.pool == "tasks":
            r = replace(r, num_cpus=cfg.decode.num_cpus, concurrency=cfg.decode.concurrency)
        r = r.merged(a.resources)
        asked = r.num_gpus
        if asked and r.pool == "tasks":
            log.info("%s asks for a GPU: it runs as an actor pool that holds it", a.name)
            r = replace(r, pool="actors")
        if asked and not cluster_gpus:
            log.warning("no GPU visible: %s runs on CPU (num_gpus %.2f -> 0)", a.name, asked)
            r = replace(r, num_gpus=0.0)
        stages.append(StagePlan(a.name, r.pool, r, asked, annotator.models()))
    stages = _autoscale(stages, cluster_gpus)
    stages.append(StagePlan("encode", "tasks", cfg.encode))
    return stages


def _autoscale(stages: list[StagePlan], cluster_gpus: float) -> list[StagePlan]:
    """Give each pool without an explicit `max_concurrency` its ceiling: a GPU pool may grow to as
    many copies of the configured GPU set (every GPU pool at its `concurrency`) as the cluster
    holds, so 64 GPUs run 64 of each annotator of a set that fits one GPU; a CPU pool stays put."""
    per_set = sum(s.resources.num_gpus * s.resources.concurrency for s in stages if s.kind == "actors")
    sets = max(1, int(cluster_gpus // max(1.0, per_set))) if per_set else 1
    out = []
    for s in stages:
        r = s.resources
        if s.kind == "actors" and r.max_concurrency is None:
            r = replace(r, max_concurrency=r.concurrency * sets if r.num_gpus else r.concurrency)
        if s.kind == "actors" and r.max_concurrency < r.concurrency:
            raise PlanError(f"{s.name}: max_concurrency {r.max_concurrency} is below concurrency {r.concurrency}")
        out.append(replace(s, resources=r))
    return out


def fit_cpus(stages: list[StagePlan], cluster_cpus: float) -> list[StagePlan]:
    """Scale the actor pools' (logical) CPU shares down when they would starve the CPU stages.

    Actor pools hold their CPUs for the whole run; if they left no CPU for the decode/encode
    tasks the graph would deadlock. Ray's CPU counts are logical, so shrinking the actors' shares
    costs nothing but contention, which is what a small machine has anyway.
    """
    task_cpus = max(s.resources.num_cpus for s in stages if s.kind == "tasks")
    pinned = sum(s.resources.num_cpus * s.resources.concurrency for s in stages if s.kind == "actors")
    if task_cpus >= cluster_cpus:
        raise PlanError(f"the CPU stages need {task_cpus:g} CPUs per task but the cluster has {cluster_cpus:g}; "
                        "lower `stages: {decode, encode}: num_cpus` in the pipeline config")
    if pinned + task_cpus <= cluster_cpus:
        return stages
    scale = (cluster_cpus - task_cpus) / pinned
    log.warning("actor pools ask for %g CPUs, %g are free after the CPU stages: scaling their CPU shares by %.2f",
                pinned, cluster_cpus - task_cpus, scale)
    return [replace(s, resources=replace(s.resources, num_cpus=s.resources.num_cpus * scale))
            if s.kind == "actors" else s for s in stages]


def check_fit(stages: list[StagePlan], cluster_cpus: float, cluster_gpus: float) -> None:
    """Refuse graphs that would deadlock or never start.

    Actor pools hold their CPUs for the whole run, so if they leave no CPU for the decode/encode
    tasks the graph would stall; GPU actors that cannot all be placed would wait forever.
    """
    pinned = sum(s.resources.num_cpus * s.resources.concurrency for s in stages if s.kind == "actors")
    needed = pinned + max(s.resources.num_cpus for s in stages if s.kind == "tasks")
    if needed > cluster_cpus + 1e-9:
        raise PlanError(f"the actor pools hold {pinned:g} CPUs and the CPU stages need {needed - pinned:g} more, "
                        f"but the cluster has {cluster_cpus:g}; lower `resources: {{num_cpus, concurrency}}` "
                        "of the annotators or `stages` in the pipeline config (see --plan)")
    gpus = sum(s.resources.num_gpus * _most(s) for s in stages)
    if gpus > cluster_gpus + 1e-9:
        raise PlanError(f"the actor pools ask for {gpus:g} GPUs but the cluster has {cluster_gpus:g}; "
                        "lower `resources: {num_gpus, concurrency}` in the pipeline config (see --plan)")
    pack_gpus(stages, cluster_gpus)


def pack_gpus(stages: list[StagePlan], cluster_gpus: float) -> list[list[tuple[str, float]]]:
    """Place every GPU actor a fully scaled graph can have on a GPU (largest asks first), as Ray's
    fractional GPU scheduling would; returns per GPU the (annotator, fraction) actors it holds.

    Each actor goes to the least-loaded GPU it fits on, so the pools spread over the cluster (one
    of each annotator per GPU for the bundled pipelines); when spreading leaves an actor nowhere to
    go, the tighter first-fit packing is tried. A fraction never spans GPUs, so asks that fit in
    total can still fail to pack (three 0.6 actors on two GPUs): that is a PlanError too.
    """
    actors = sorted(((s.name, s.resources.num_gpus) for s in stages for _ in range(_most(s))
                     if s.resources.num_gpus), key=lambda a: -a[1])
    try:
        return _place(actors, int(cluster_gpus), spread=True)
    except PlanError:
        return _place(actors, int(cluster_gpus), spread=False)


def _place(actors: list[tuple[str, float]], count: int, spread: bool) -> list[list[tuple[str, float]]]:
    gpus: list[list[tuple[str, float]]] = [[] for _ in range(count)]
    for name, need in actors:
        if need > 1:  # whole multi-GPU actors take whole free GPUs
            free = [g for g in gpus if not g][:math.ceil(need)]
            if len(free) < math.ceil(need):
                raise PlanError(f"{name} asks for {need:g} GPUs per actor; not enough whole GPUs free (see --plan)")
            for g in free:
                g.append((name, need / math.ceil(need)))
            continue
        fits = [g for g in gpus if sum(f for _, f in g) + need <= 1 + 1e-9]
        if not fits:
            raise PlanError(f"cannot place a {name} actor ({need:g} GPU) on {len(gpus)} GPUs: the fractions do "
                            "not pack; make them divide 1 (0.25, 0.5) or lower concurrency (see --plan)")
        (min(fits, key=lambda g: sum(f for _, f in g)) if spread else fits[0]).append((name, need))
    return gpus


def _most(stage: StagePlan) -> int:
    """The most actors (or concurrent tasks) a stage can have once autoscaled."""
    return stage.resources.max_concurrency or stage.resources.concurrency


def format_plan(stages: list[StagePlan], cluster_cpus: float, cluster_gpus: float,
                skipped: dict[str, str] | None = None) -> str:
    """The `--plan` table: every stage's resources and how the GPU actors pack onto the GPUs."""
    rows = [("stage", "kind", "cpus", "gpus", "batch", "concurrency", "actors/GPU", "GPU total")]
    for s in stages:
        r = s.resources
        per_gpu = str(int(1 // r.num_gpus)) if 0 < r.num_gpus <= 1 else ("-" if not r.num_gpus else f"1/{r.num_gpus:g}")
        size = str(r.concurrency) if _most(s) == r.concurrency else f"{r.concurrency}-{_most(s)}"
        rows.append((s.name, s.kind, f"{r.num_cpus:g}", f"{r.num_gpus:g}",
                     str(r.batch_size), size, per_gpu,
                     f"{r.num_gpus * _most(s):g}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [f"cluster: {cluster_cpus:g} CPUs, {cluster_gpus:g} GPUs"]
    lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    registry = load_registry()
    if any(s.models for s in stages):
        lines.append("models (what each annotator declares it loads):")
    for s in (s for s in stages if s.models):
        lines.append(f"    {s.name}: " + ", ".join(
            f"{m} ({registry[m].license}, {'cached' if not missing(m) else 'not cached here'})" for m in s.models))
    for name, reason in (skipped or {}).items():
        lines.append(f"  {name}: model missing on this machine, a build here would skip it: {reason}")
    try:
        check_fit(stages, cluster_cpus, cluster_gpus)
        packing = pack_gpus(stages, cluster_gpus)
    except PlanError as exc:
        lines.append(f"does not fit: {exc}")
        return "\n".join(lines)
    pinned = sum(s.resources.num_cpus * s.resources.concurrency for s in stages if s.kind == "actors")
    tasks = {s.name: s.resources for s in stages if s.kind == "tasks"}
    lines.append(f"CPU: actor pools hold {pinned:g}; the task stages share the other "
                 f"{cluster_cpus - pinned:g} (up to {' + '.join(f'{r.concurrency} {n}' for n, r in tasks.items())} at once)")
    for i, actors in enumerate(packing):
        held = defaultdict(int)
        for name, _ in actors:
            held[name] += 1
        used = sum(f for _, f in actors)
        lines.append(f"GPU {i}: " + (", ".join(f"{n} x{k}" for n, k in held.items()) or "idle") + f"  ({used:g} of 1)")
    if not cluster_gpus and any(s.asked_gpus for s in stages):
        lines.append("no GPU visible: GPU annotators run on CPU (pass --gpus N to plan for a GPU cluster)")
    return "\n".join(lines)


def cluster_resources() -> tuple[float, float]:
    """(CPUs, GPUs) of the Ray cluster this driver is attached to."""
    res = ray.cluster_resources()
    return float(res.get("CPU", 0)), float(res.get("GPU", 0))


def init_ray(address: str | None, num_cpus: int | None, object_store_bytes: int | None = None) -> bool:
    """Attach to `address` (auto, ray://...; default $RAY_ADDRESS) or start an embedded local Ray
    bound to 127.0.0.1; True when this call started an embedded Ray (which the caller then shuts down).

    `object_store_bytes` sizes the embedded Ray's object store (default: Ray's, 30% of RAM). Ray
    Data keeps in-flight clips within half of it, so it is the knob that bounds a build's memory.
    """
    if ray.is_initialized():
        return False
    # `ray job submit` runs the driver with RAY_ADDRESS set to the cluster: attach to it rather than
    # start an embedded Ray on the head. An http(s) value is the job API's address, not a cluster's.
    env = os.environ.get("RAY_ADDRESS", "")
    address = address or (env if env and not env.startswith(("http://", "https://")) else None)
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
        return False
    # address="local": always a fresh embedded cluster, never one another driver started.
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
             object_store_memory=object_store_bytes,
             logging_level=logging.WARNING, _node_ip_address="127.0.0.1")
    return True


def run_stages(ds: ray.data.Dataset, cfg: BuildConfig, out: str, *, options: StorageOptions | None = None,
               mtime: float = 0.0, dry_run: bool = False, progress: bool = True,
               kept_hashes: list[tuple[str, str]] | None = None, report: dict | None = None) -> Iterator[str]:
    """Run every request of `ds` (`requests_dataset`) through the graph into shards under
    `out/shards`; yield one JSON record per request, in completion order: {"key", "status": done|failed|filtered, ...}
    (shards.write_shards). These records are all the driver receives.

    `dry_run`: every annotator actor writes tiny random-weight models into its own temporary
    cache and loads those (see AnnotatorStage), so the graph runs end to end on any cluster.
    `kept_hashes`: finished clips' (key, phash) when near-duplicate screening is configured.
    `report`, when given, receives "actors": annotator -> Ray node -> actors started there.
    """
    _progress_bars(progress)
    ds, counter_handle = stage_graph(ds, cfg, out, options=options, mtime=mtime, dry_run=dry_run,
                                     kept_hashes=kept_hashes)
    yield from iter_records(ds, counter_handle, report)


def stage_graph(ds: ray.data.Dataset, cfg: BuildConfig, out: str, *, options: StorageOptions | None = None,
                mtime: float = 0.0, dry_run: bool = False,
                kept_hashes: list[tuple[str, str]] | None = None) -> tuple[ray.data.Dataset, ray.actor.ActorHandle]:
    """`run_stages`'s graph, not yet run, and the build's crash counter (`start_counter`)."""
    stages = plan(cfg, *cluster_resources())
    decode_r, encode_r = stages[0].resources, stages[-1].resources
    counter, counter_handle = start_counter()
    filters = cfg.filters
    early = tuple(f for f in filters if f.phase != "annotated")
    after, _ = schedule(filters, [a.name for a in cfg.annotators])
    graph: list[GraphStage] = [
        CpuStep("decode", partial(decode, filters=early, options=options, counter=counter,
                                  timeout_s=decode_r.timeout_s), decode_r)]
    dedup = next((f for f in filters if isinstance(f, NearDuplicateFilter)), None)
    if dedup is not None:  # one actor: the decision needs every hash kept so far
        graph.append(partial(_dedup_actor, name=dedup.name, kept=kept_hashes or [],
                             max_distance=int(dedup.options["max_distance"])))

    def filters_after(i: int) -> list[GraphStage]:
        return [CpuStep("filters", partial(filter_clip, filters=after[i]), encode_r)] if i in after else []

    graph += annotator_stages(stages[1:-1], cfg.annotators, dry_run=dry_run, counter=counter, between=filters_after)
    video = tuple(a.name for a in cfg.annotators if modalities.get(a.name).video)
    graph.append(CpuStep("encode", partial(encode, caption_use=cfg.caption.use, video_modalities=video,
                                           dry_run=dry_run, storage_profile=cfg.shards.profile), encode_r))
    ds = compose(ds, graph, task_memory(cfg))
    ds = ds.map_batches(write_shards, batch_size=cfg.shards.max_samples, batch_format="numpy",
                        fn_kwargs={"out": out, "options": options, "max_samples": cfg.shards.max_samples,
                                   "max_bytes": cfg.shards.max_bytes, "mtime": mtime}, **writer_args(cfg, encode_r))
    return ds, counter_handle


@dataclass(frozen=True)
class CpuStep:
    """A step of the graph that runs in a CPU task (decode, a task-pool annotator, filters,
    encode), and what its task asks Ray for."""

    name: str
    fn: Step
    resources: Resources

    @property
    def ask(self) -> tuple[float, int]:
        """What its task asks Ray for (`cpu_task_args`): CPUs per task and concurrent tasks."""
        return self.resources.num_cpus, self.resources.concurrency


#: A graph stage: a CPU step, or a stage that adds itself to the dataset (an actor pool).
GraphStage = CpuStep | Callable[[ray.data.Dataset], ray.data.Dataset]


def compose(ds: ray.data.Dataset, graph: Iterable[GraphStage], memory: int) -> ray.data.Dataset:
    """`graph` added to `ds`, each run of consecutive CPU steps with equal asks as one task stage
    (`stages.run_steps`) that reserves `memory` per task. Only the clip the run ends with (after
    encode: its shard members) is pickled; a run of one map per step, even one Ray Data fuses,
    pickled each step's Clip and built an Arrow block between the steps."""
    run: list[CpuStep] = []

    def flush(ds: ray.data.Dataset) -> ray.data.Dataset:
        if run:
            ds = ds.map(_steps_fn(tuple(run)), **cpu_task_args(run[0].resources, memory))
            run.clear()
        return ds

    for stage in graph:
        if not isinstance(stage, CpuStep):
            ds = stage(flush(ds))
            continue
        if run and run[-1].ask != stage.ask:
            ds = flush(ds)
        run.append(stage)
    return flush(ds)


def _steps_fn(run: tuple[CpuStep, ...]) -> Callable[[dict], dict]:
    """`run_steps` over `run`, named after its steps: Ray Data names the stage, its progress bar
    and its workers `Map(decode->flow->encode)`."""
    steps = tuple(s.fn for s in run)

    def fn(row: dict) -> dict:
        return run_steps(row, steps)

    fn.__name__ = fn.__qualname__ = "->".join(s.name for s in run)
    return fn


def _dedup_actor(ds: ray.data.Dataset, name: str, kept: list[tuple[str, str]], max_distance: int) -> ray.data.Dataset:
    return ds.map_batches(DedupStage, fn_constructor_kwargs={"name": name, "kept": kept, "max_distance": max_distance},
                          batch_size=1, compute=ActorPoolStrategy(size=1), num_cpus=0, batch_format="numpy",
                          max_restarts=RAY_RETRIES, max_task_retries=RAY_RETRIES)


def cpu_task_args(r: Resources, memory: int) -> dict:
    """Ray Data's arguments for a CPU task stage (a run of CPU steps, `compose`)."""
    return {"num_cpus": r.num_cpus, "memory": memory, "compute": TaskPoolStrategy(size=r.concurrency), **RETRIES}


def writer_args(cfg: BuildConfig, encode: Resources) -> dict:
    """Ray Data's arguments for the stage that writes (or stages) a batch of up to max_samples
    finished samples. Its memory reservation (what one batch may hold) keeps Ray Data from fusing
    it into encode, which would encode a whole shard's clips one after another in one task. It
    asks for no CPU: it mostly waits on storage (6 ms of CPU per clip), and Ray Data reserves a
    stage's CPU ask for it while it waits for its batch, which held back one of 2 CPUs from the
    fused decode -> flow -> encode tasks (28 sample clips: 0.72 -> 1.1 clips/s)."""
    return {"num_cpus": 0, "memory": min(cfg.shards.max_bytes, 4 * 2**30),
            "compute": TaskPoolStrategy(size=encode.concurrency), **RETRIES}


#: Bounded: a poison clip is failed by crashes.py first. Passed as ray_remote_args, which Ray 2.60
#: deprecates for 2.64 without a named retry parameter yet (the lock pins 2.60).
RETRIES = {"max_retries": RAY_RETRIES}


def annotator_stages(stages: list[StagePlan], annotators: Iterable[AnnotatorConfig], *, dry_run: bool,
                     counter: str | None,
                     between: Callable[[int], list[GraphStage]] | None = None) -> list[GraphStage]:
    """Per annotator, in order (`stages`: their resolved plans), an `AnnotatorStage` actor pool, or
    for a task-pool annotator a CPU step; `between(i)` gives stages to run after the i-th (a
    build's annotated-phase filters). Shared by a build and by `--add`/`--refresh` (incremental.py)."""
    graph: list[GraphStage] = []
    for i, (stage, a) in enumerate(zip(stages, annotators)):
        r = stage.resources
        args = {"name": a.name, "options": a.option_values(), "dry_run": dry_run, "counter": counter,
                "timeout_s": r.timeout_s}
        if stage.kind == "tasks":
            graph.append(CpuStep(a.name, partial(annotate_in_task, **args), r))
        else:
            graph.append(partial(_actor_pool, stage=stage, args=args))
        graph += between(i) if between is not None else []
    return graph


def _actor_pool(ds: ray.data.Dataset, stage: StagePlan, args: dict) -> ray.data.Dataset:
    r = stage.resources
    return ds.map_batches(AnnotatorStage, fn_constructor_kwargs=args, batch_size=r.batch_size, num_cpus=r.num_cpus,
                          compute=ActorPoolStrategy(min_size=r.concurrency, max_size=_most(stage)),
                          num_gpus=r.num_gpus, batch_format="numpy",
                          # A dead actor restarts and its batches rerun (exactly-once rests on it,
                          # tests/test_fault_tolerance.py), a bounded number of times (crashes.py).
                          max_restarts=RAY_RETRIES, max_task_retries=RAY_RETRIES)


def iter_records(ds: ray.data.Dataset, counter_handle, report: dict | None = None) -> Iterator[str]:
    """The graph's per-clip records (its `record` column) as they complete; at the end (or when
    the caller stops early) `report["actors"]` gets where the annotator pools started their actors
    and the build's crash counter (`start_counter`) is stopped."""
    try:
        for row in ds.iter_rows():
            yield row["record"]
    finally:
        if report is not None:
            report["actors"] = ray.get(counter_handle.actors.remote())
        ray.kill(counter_handle)


def _progress_bars(progress: bool) -> None:
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.enable_operator_progress_bars = progress  # one live bar per stage


def requests_dataset(requests: Iterable[ClipRequest], cfg: BuildConfig,
                     chunk: int = 10_000) -> tuple[ray.data.Dataset | None, int]:
    """The requests as a Ray dataset of {"key", "clip"} rows, and how many there are (None, 0 when
    there are none). Built a chunk at a time, each chunk put into the object store (which spills to
    disk) before the next is read, so the driver holds one chunk, not the listing."""
    parts, count = [], 0
    for batch in chunks(requests, chunk):
        items = [{"key": r.key, "clip": Clip(request=r, spec=cfg.spec).to_bytes()} for r in batch]
        # Small blocks, so the decode tasks start as soon as the first clips are there.
        parts.append(ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 1000))))
        count += len(items)
    if not parts:
        return None, 0
    return (parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]), count


def task_memory(cfg: BuildConfig) -> int:
    """Bytes one CPU task (a run of CPU steps) reserves, so the tasks do not overcommit a node's
    memory: the worker process itself (384 MiB), the clip's frames twice over (frames + a pickled
    copy) and a raw output as large as float32 flow (two channels: 8 bytes per pixel). For 49x256²
    clips 427 MiB; Ray Data measured up to 345 MiB per decode -> DIS flow -> encode worker and
    warned on every build that the old estimate (274 MiB, no raw output) was too small.
    """
    spec = cfg.spec
    pixels = spec.num_frames * spec.height * spec.width
    return 2 * 3 * pixels + 8 * pixels + 384 * 2**20


def stage_throughput(timings: dict[str, list[tuple[float, float]]]) -> dict[str, dict[str, float]]:
    """Per stage: clips, the wall window it was active, clips/s over that window, and busy seconds
    per clip (one worker's cost). `timings` maps stage -> (start, end) per clip, as stages record."""
    summary = {}
    for stage, spans in timings.items():
        window = max(e for _, e in spans) - min(s for s, _ in spans)
        busy = sum(e - s for s, e in spans)
        summary[stage] = {"clips": len(spans), "window_s": round(window, 3),
                          "clips_per_s": round(len(spans) / window, 3) if window > 0 else None,
                          "busy_s_per_clip": round(busy / len(spans), 4)}
    return summary
