"""`openuni-build --shards OUT --add NAME ...` and `--refresh NAME ...`: give an existing build more
modalities, or new annotations of one after a model change, from its own shards, never from the
sources.

Every sample's RGB clip in a shard is already normalised to the build's clip spec, so it is decoded
and annotated again as it is; the other members stay byte for byte. Three steps, each of which a
rerun of the same command resumes (the change is `pending` in OUT/build.json, identity.py, and its
work lies under `OUT/.add-<id>/`):

1. annotate (one Ray Data graph, the build's own stage code): one read task per committed shard
   lists its samples on the worker (the driver only names shards), a decode task per sample
   turns its mp4 back into frames, the requested annotators run as the same `AnnotatorStage`
   actor pools (`runtime.annotator_stages`), an encode task makes only the new members and the
   sample's updated KEY.json (`stages.modality_members`), and a stage task commits each batch's
   new members as a small tar with manifest under `.add-<id>/staged/<shard>/`. A rerun skips
   every sample a committed stage manifest names, and the whole step (no actor pool, no model
   load) once `.add-<id>/annotated.json` says it completed. A sample whose annotator fails is not
   staged, so a rerun tries it again; once the step completes, the failures are written into
   that marker, and those samples leave the dataset for the failure ledger with their reason,
   because a shard never holds samples with different member sets. When more than
   MAX_FAILED_FRACTION of the build fails (a model that does not load, say), the step does not
   complete and nothing is swapped: the cause is fixed and the same command rerun.
2. merge (one task per shard, when step 1 is complete): old tar + staged members -> the new
   version under `.add-<id>/shards/`, same name, same keys (less the failed ones), streamed a
   sample at a time; its manifest carries the job id and the dropped samples.
3. swap (driver): each new tar, then its manifest, replaces the old one (a rename on filesystems,
   a server-side copy on object stores), only once every shard has its new version. A shard is
   whole at every moment; while the swap runs (renames: milliseconds per shard) readers can see
   old and new shards side by side, and a swap cut short is finished by the rerun.

Then the ledger's done rows are replaced by the new manifests' rows, and the index, stats, card
and identity (the new modality versions; `--refresh` keeps the old ones as `previous`, in
build.json and in each sample's `modalities.NAME.previous`) are rewritten.

Annotated-phase filters do not run here: they would drop samples a build already published.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import ray
from ray.data import TaskPoolStrategy
from tqdm import tqdm
from upath import UPath

from annotators import get_annotator
from openuni_builder.build import BuildError, BuildOptions, _finish, _gb_to_bytes, _root_cause
from openuni_builder.publish.card import publish
from openuni_builder.clip import Clip, ClipRequest, ClipSpec
from openuni_builder import modalities
from openuni_builder.config import AnnotatorConfig, BuildConfig, load_config
from openuni_builder.crashes import start_counter
from openuni_builder.filters import clip_quality
from openuni_builder.identity import IdentityError, begin_change, finish_change, read as read_identity
from openuni_builder.ledger import Ledger
from openuni_builder.location import StorageOptions, location, move, remove_tree, write_bytes_atomic
from openuni_builder.runtime import (RETRIES, CpuStep, annotator_stages, cluster_resources, compose, init_ray,
                                     iter_records, plan, stage_throughput, task_memory, writer_args)
from openuni_builder.shards import (MANIFEST_SUFFIX, iter_tar_samples, node_id, open_shard, recover, rejection,
                                    write_shard, writer_node)
from openuni_builder.stages import caption_fields, encode_with, modality_members, sample_json
from openuni_builder.staging import pull, push
from openuni_builder.video_io import decode_mp4
from pipelines import resolve

log = logging.getLogger(__name__)
Row = dict[str, Any]
WORK_PREFIX = ".add-"
#: More failed samples than this (of the build's) stop the change before anything is replaced: that
#: is a broken model or cluster, not bad samples, and would empty the dataset.
MAX_FAILED_FRACTION = 0.5


@dataclass
class ChangeOptions:
    """What `--add` / `--refresh` run with; `config` defaults to the pipeline the build recorded."""

    out: str | Path
    add: list[str] = field(default_factory=list)
    refresh: list[str] = field(default_factory=list)
    config: str | None = None
    address: str | None = None
    num_cpus: int | None = None
    object_store_gb: float | None = None
    progress: bool = True
    dry_run: bool = False
    storage_options: StorageOptions = field(default_factory=dict)


def change(opts: ChangeOptions) -> dict[str, Any]:
    """Run (or resume) an --add/--refresh; returns the build's new stats (also OUT/stats.json)."""
    started = time.time()
    target = location(opts.out, opts.storage_options)
    out = pull(target)
    try:
        return _change(opts, target, out, started)
    except IdentityError as exc:
        raise BuildError(str(exc)) from exc
    finally:
        push(out, target)


def _change(opts: ChangeOptions, target: UPath, out: Path, started: float) -> dict[str, Any]:
    identity = read_identity(out)
    if identity is None:
        raise BuildError(f"{opts.out} holds no build (no build.json): --add and --refresh extend an existing build")
    pending = identity.get("pending") or {}
    cfg = load_config(resolve(opts.config or pending.get("config") or identity.get("config") or "openuni"))
    names = [*opts.add, *opts.refresh]
    if not names:
        raise BuildError("name at least one modality with --add or --refresh")
    configured = {a.name: a for a in cfg.annotators}
    for name in names:
        get_annotator(name)  # an unknown name fails here, with the known ones
    wanted = tuple(configured.get(n) or _default_annotator(n) for n in names)
    work_cfg = replace(cfg, annotators=wanted)
    if not opts.dry_run:  # a dry run's actors write tiny models; a real one needs them all
        missing = {a.name: r for a in wanted if (r := a.build().unavailable())}
        if missing:
            raise BuildError("; ".join(f"{n}: {r}" for n, r in missing.items()))
    pending = begin_change(out, work_cfg, opts.dry_run, opts.add, opts.refresh)
    push(out, target)  # the pending change is at OUT before any shard is touched
    job, mtime = pending["id"], float(pending["started"])
    work = target / f"{WORK_PREFIX}{job}"
    ledger = Ledger(out)
    recovered = recover(target / "shards", ledger)
    if recovered:
        log.info("recovered %d samples from shards a killed build committed", recovered)
    shards = sorted(p.name[:-len(MANIFEST_SUFFIX)] for p in (target / "shards").glob(f"*{MANIFEST_SUFFIX}"))
    if not shards:
        raise BuildError(f"{opts.out} has no committed shards to annotate")
    log.info("%s: %d shards (work in %s)", pending["command"], len(shards), work)

    task = dict(out=str(target), options=opts.storage_options, job=job)
    run = _Run()
    embedded = init_ray(opts.address, opts.num_cpus, _gb_to_bytes(opts.object_store_gb))
    try:
        marker = work / "annotated.json"  # step 1 complete: a rerun starts no actor pool (no model loads)
        if marker.exists():
            failed = json.loads(marker.read_bytes())["failed"]
            log.info("every sample was annotated by an earlier run (%d failed); merging %d shards", len(failed),
                     len(shards))
        else:
            _annotate(shards, work_cfg, ClipSpec(**identity["spec"]), task, mtime, opts, run)
            failed = run.failed
            log.info("annotated %d samples (%d failed) in %.1fs; merging %d shards", run.processed, len(failed),
                     time.time() - started, len(shards))
            total = len(ledger.done_keys())
            if len(failed) > MAX_FAILED_FRACTION * total:
                first = next(iter(failed.values()))
                raise BuildError(f"{len(failed)} of {total} samples failed (first: {first['stage']}: "
                                 f"{first['reason']}); nothing was replaced. Fix the cause and rerun the same "
                                 "command: it annotates only the samples not done yet")
            write_bytes_atomic(marker, json.dumps({"finished": time.time(), "failed": failed}, default=str).encode())
        # Streamed: the rows go straight into the new done file, the driver keeps a count per shard.
        done_tmp = ledger.dir / f"done.jsonl.{WORK_PREFIX.strip('.')}{job}"
        merged = []
        with open(done_tmp, "w") as fh:
            for record in _merge(shards, failed, work_cfg, task, mtime, opts.progress):
                for row in record.get("rows", []):
                    fh.write(json.dumps(row, default=str) + "\n")
                merged.append({"shard": record["shard"], "samples": len(record.get("rows", [])),
                               "dropped": record.get("dropped", {}), "error": record.get("error")})
    except ray.exceptions.RayError as exc:
        raise BuildError(f"the Ray graph stopped: {_root_cause(exc)}; staged work is kept, a rerun of the same "
                         "command resumes") from exc
    finally:
        if embedded:
            ray.shutdown()
    incomplete = {r["shard"]: r["error"] for r in merged if r.get("error")}
    if incomplete:
        raise BuildError(f"{len(incomplete)} shards could not get their new version "
                         f"({next(iter(incomplete.items()))}); a rerun of the same command resumes")

    for record in merged:  # ledgered before the swap: a failed sample is never just gone
        for key, failure in record["dropped"].items():
            ledger.mark_failed(key, failure["stage"], failure["reason"], **failure.get("context", {}), change=job)
    _swap(target / "shards", work / "shards", merged)
    done_tmp.replace(ledger.done_path)
    log.info("swapped in %d new shard versions at %.1fs", len(merged), time.time() - started)

    full = _full_config(cfg, identity, opts.add)
    previous_stats = _read_json(out / "stats.json")
    skipped = {n: r for n, r in (previous_stats.get("modalities") or {}).get("skipped", {}).items() if n not in names}
    samples = sum(r["samples"] for r in merged)
    dropped = sum(len(r["dropped"]) for r in merged)
    stats = _finish(out, target, full, BuildOptions(source=previous_stats.get("source", "unknown"), out=opts.out,
                                                    dry_run=opts.dry_run), Ledger(out), skipped, started,
                    samples + dropped, 0, run.processed, samples, run.received,
                    Counter(f["stage"] for f in run.failed.values()), Counter(),
                    stage_throughput(run.timings), {s: dict(c) for s, c in run.nodes.items()},
                    run.graph.get("actors", {}))
    stats["change"] = {"command": pending["command"], "add": pending["add"], "refresh": pending["refresh"],
                       "samples": samples, "annotated_this_run": run.processed, "dropped": dropped,
                       "shards": len(merged), "job": job}
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    publish(out, full, shards=target / "shards")
    remove_tree(work)
    log.info("index, stats and card written at %.1fs", time.time() - started)
    finish_change(out)
    return stats


@dataclass
class _Run:
    """What the driver gathers from the annotate graph's small per-sample records."""

    processed: int = 0
    received: int = 0
    failed: dict[str, Row] = field(default_factory=dict)  # key -> its shard, stage, reason and context
    timings: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    nodes: dict[str, Counter] = field(default_factory=dict)
    graph: dict[str, Any] = field(default_factory=dict)


def _annotate(shards: list[str], cfg: BuildConfig, spec: ClipSpec, task: dict[str, Any], mtime: float,
              opts: ChangeOptions, run: _Run) -> None:
    """Step 1: every sample not yet staged, through decode -> the annotators -> encode -> stage."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = ctx.enable_operator_progress_bars = opts.progress
    stages = plan(cfg, *cluster_resources())
    decode, encode = stages[0].resources, stages[-1].resources
    counter, counter_handle = start_counter()
    ds = ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=len(shards))
    ds = ds.flat_map(partial(read_stored, spec=spec, **task), num_cpus=decode.num_cpus,
                     compute=TaskPoolStrategy(size=decode.concurrency), **RETRIES)
    names = tuple(a.name for a in cfg.annotators)
    graph = [CpuStep("read", decode_stored, decode),
             *annotator_stages(stages[1:-1], cfg.annotators, dry_run=opts.dry_run, counter=counter),
             CpuStep("encode", partial(encode_added, names=names, video=tuple(n for n in names if modalities.get(n).video),
                                       caption_use=cfg.caption.use, storage_profile=cfg.shards.profile), encode)]
    ds = compose(ds, graph, task_memory(cfg))
    ds = ds.map_batches(stage_members, batch_size=cfg.shards.max_samples, batch_format="numpy",
                        fn_kwargs={**task, "mtime": mtime}, **writer_args(cfg, encode))
    with tqdm(desc="samples", unit="sample", disable=not opts.progress) as bar:
        for text in iter_records(ds, counter_handle, run.graph):
            run.received += len(text)
            record = json.loads(text)
            run.processed += 1
            for stage, span in record.get("timings", {}).items():
                run.timings.setdefault(stage, []).append(tuple(span))
            for stage, node in record.get("nodes", {}).items():
                run.nodes.setdefault(stage, Counter())[str(node)[:12]] += 1
            if record["status"] != "staged":
                run.failed[record["key"]] = {k: record[k] for k in ("shard", "stage", "reason", "context")}
            bar.update()


def _merge(shards: list[str], failed: dict[str, Row], cfg: BuildConfig, task: dict[str, Any], mtime: float,
           progress: bool) -> Iterator[Row]:
    """Step 2: the new version of every shard (or the one a killed run already wrote), less its
    failed samples."""
    encode = cfg.encode
    by_shard: dict[str, dict[str, Row]] = {}
    for key, failure in failed.items():
        by_shard.setdefault(failure["shard"], {})[key] = failure
    ds = ray.data.from_items([{"shard": s, "dropped": json.dumps(by_shard.get(s, {}), default=str)} for s in shards],
                             override_num_blocks=len(shards))
    ds = ds.map(partial(merge_shard, mtime=mtime, **task), num_cpus=encode.num_cpus,
                compute=TaskPoolStrategy(size=encode.concurrency), **RETRIES)  # streams: one sample in memory
    for row in tqdm(ds.iter_rows(), total=len(shards), desc="shards", unit="shard", disable=not progress):
        yield json.loads(row["record"])


def _swap(shards_dir: UPath | Path, new_dir: UPath | Path, merged: list[Row]) -> None:
    """Step 3: each new tar, then its manifest, in place of the old; a shard whose every sample
    failed is removed instead. Renames are instant; an object store's copies run 8 at a time."""

    def one(record: Row) -> None:
        name = record["shard"]
        if not record["samples"]:
            for folder in (shards_dir, new_dir):
                for file in (name, name + MANIFEST_SUFFIX):
                    if (folder / file).exists():
                        (folder / file).unlink()
            return
        for file in (name, name + MANIFEST_SUFFIX):
            if (new_dir / file).exists():
                move(new_dir / file, shards_dir / file)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, merged))


def _full_config(cfg: BuildConfig, identity: dict[str, Any], added: list[str]) -> BuildConfig:
    """The pipeline as the build now stands: its modalities (options from `cfg` where it has them)
    and the added ones, for the stats and the card."""
    configured = {a.name: a for a in cfg.annotators}
    names = [*identity["annotators"], *(n for n in added if n not in identity["annotators"])]
    return replace(cfg, annotators=tuple(configured.get(n) or _default_annotator(n) for n in names))


def _default_annotator(name: str) -> AnnotatorConfig:
    """Modality `name` with its annotator's default options (one the pipeline config does not name)."""
    return AnnotatorConfig(name, get_annotator(name).Options())


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


# --- the worker side ---------------------------------------------------------------------------

def _dirs(out: str, options: StorageOptions | None, job: str) -> tuple[UPath, UPath]:
    """OUT/shards and this change's work folder."""
    root = location(out, options)
    return root / "shards", root / f"{WORK_PREFIX}{job}"


def _new_manifest(shards_dir: UPath, work: UPath, shard: str, job: str) -> dict[str, Any] | None:
    """The new version's manifest when the shard has one already (swapped in, or written under
    the work folder), else None."""
    current = shards_dir / (shard + MANIFEST_SUFFIX)
    if current.exists():
        manifest = json.loads(current.read_bytes())
        if manifest.get("job") == job:
            return manifest
    written = work / "shards" / (shard + MANIFEST_SUFFIX)
    return json.loads(written.read_bytes()) if written.exists() else None


def _staged(work: UPath, shard: str) -> list[str]:
    """The committed stage tars of a shard (those with a manifest), oldest name first."""
    folder = work / "staged" / shard
    if not folder.exists():
        return []
    return sorted(p.name[:-len(MANIFEST_SUFFIX)] for p in folder.glob(f"*{MANIFEST_SUFFIX}"))


def read_stored(row: Row, out: str, options: StorageOptions | None, job: str, spec: ClipSpec) -> list[Row]:
    """Ray flat_map over shard names: one {"key", "clip"} row per sample of the shard that no
    committed stage manifest names yet, carrying its RGB mp4 and KEY.json (nothing for a shard
    that already has its new version)."""
    shard = row["shard"]
    shards_dir, work = _dirs(out, options, job)
    if _new_manifest(shards_dir, work, shard, job) is not None:
        return []
    decided: set[str] = set()
    for name in _staged(work, shard):
        decided.update(json.loads((work / "staged" / shard / (name + MANIFEST_SUFFIX)).read_bytes())["members"])
    rows = []
    with open_shard(shards_dir / shard) as tar:
        for key, members in iter_tar_samples(tar):
            if key not in decided:
                rows.append({"key": key, "clip": stored_clip(key, members, spec, shard).to_bytes()})
    return rows


def stored_clip(key: str, members: dict[str, bytes], spec: ClipSpec, shard: str) -> Clip:
    """The Clip of a committed sample, its request rebuilt from KEY.json (which must give back
    the sample's key: a sample whose JSON lost its identity cannot be told apart, so it stops the
    run with its name rather than being annotated as another clip)."""
    meta = json.loads(members["json"])
    request = ClipRequest(source=meta["source"], video_id=meta["video_id"], path=meta["path"], start=meta["start"],
                          end=meta["end"], caption=meta.get("caption_source"), scores=meta.get("scores") or {},
                          extra=meta.get("extra") or {}, clip_index=meta.get("clip_index", 0))
    if request.key != key:
        raise ValueError(f"{shard}: sample {key}: its KEY.json gives key {request.key}; run "
                         "openuni-build --verify on the build")
    source_info = {**(meta.get("source_video") or {}), "frame_times": meta.get("frame_times", [])}
    return Clip(request=request, spec=spec, source_info=source_info, filters=meta.get("filters") or {},
                members={"mp4": members["mp4"], "json": members["json"]}, shard=shard)


def decode_stored(clip: Clip) -> None:
    """The sample's stored RGB mp4 back into the frames every annotator takes (already at the
    clip spec: no resize, no resampling)."""
    started = time.time()
    try:
        frames = decode_mp4(clip.members.pop("mp4"))
        spec = clip.spec
        if frames.shape != (spec.num_frames, spec.height, spec.width, 3):
            raise ValueError(f"stored RGB is {frames.shape}, the build's clip spec says "
                             f"{(spec.num_frames, spec.height, spec.width, 3)}")
        clip.frames = frames
    except Exception as exc:  # one unreadable sample fails alone
        clip.fail("read", exc)
    clip.timings["read"], clip.nodes["read"] = (started, time.time()), node_id()


def encode_added(clip: Clip, names: tuple[str, ...], video: tuple[str, ...], caption_use: str,
                 storage_profile: str | None = None) -> None:
    """Only the new members: each video modality's Pixelplanes mp4 + npz, the updated KEY.json
    (the modality's section, the old one's provenance kept under `previous` on a refresh) and
    KEY.txt when a caption annotator changed the caption."""
    encode_with(clip, lambda c: added_members(c, names, video, caption_use, storage_profile))


def added_members(clip: Clip, names: tuple[str, ...], video: tuple[str, ...], caption_use: str,
                  storage_profile: str | None = None) -> dict[str, bytes]:
    """The new members, in the build's storage profile; the quality scores gain those the new
    modalities allow (scores that need several modalities see only the new ones)."""
    meta = json.loads(clip.members["json"])
    members: dict[str, bytes] = {}
    for name in names:
        output = clip.outputs[name]
        if name in video:
            encoded, section = modality_members(name, output, clip.spec, storage_profile)
            members.update(encoded)
            sections = meta.setdefault("modalities", {})
        else:
            section, sections = dict(output.meta), meta.setdefault("annotations", {})
        old = sections.get(name)
        if old is not None:
            section["previous"] = [old.get("provenance") or old.get("generation") or {}, *old.get("previous", [])]
        sections[name] = section
    if any(n not in video for n in names):
        meta.update(caption_fields(meta.get("caption_source"), meta["annotations"], caption_use))
        members["txt"] = (meta["caption"] or "").encode()
    meta["quality"] = {**(meta.get("quality") or {}), **clip_quality(clip)}
    members["json"] = sample_json(meta)
    return members


def stage_members(batch: dict[str, np.ndarray], out: str, options: StorageOptions | None, job: str,
                  mtime: float) -> dict[str, list]:
    """Ray Data stage: commit the batch's new members, one small tar + manifest per shard they
    belong to, under the work folder (failed samples are not staged: a rerun retries them); one
    small record per sample back to the driver, a failed one's with its reason."""
    started = time.time()
    clips = [Clip.from_bytes(b) for b in batch["clip"]]
    _, work = _dirs(out, options, job)
    by_shard: dict[str, list[Clip]] = {}
    for clip in clips:
        if clip.ok:
            by_shard.setdefault(clip.shard, []).append(clip)
    node = writer_node()
    for shard, group in by_shard.items():
        write_shard(work / "staged" / shard, [(c.key, c.members, {}) for c in group], mtime, node)
    share = (time.time() - started) / max(1, len(clips))
    here = node_id()
    records = []
    for i, clip in enumerate(clips):
        outcome = {"status": "staged"} if clip.ok else rejection(clip)
        records.append(json.dumps({**outcome, "key": clip.key, "shard": clip.shard,
                                   "timings": {**clip.timings, "stage": (started + i * share, started + (i + 1) * share)},
                                   "nodes": {**clip.nodes, "stage": here}}, default=str))
    return {"key": [c.key for c in clips], "record": records}


def merge_shard(row: Row, out: str, options: StorageOptions | None, job: str, mtime: float) -> Row:
    """Ray Data task: the shard's new version (old members + staged ones; the failed samples,
    `row["dropped"]`, left out) under the work folder, same name; {"record": {"shard", "rows",
    "dropped"}} or, when a sample has neither staged members nor a failure, {"record": {"shard",
    "error"}} (nothing written)."""
    shard = row["shard"]
    shards_dir, work = _dirs(out, options, job)
    done = _new_manifest(shards_dir, work, shard, job)
    if done is not None:
        return {"record": json.dumps({"shard": shard, "rows": done["rows"], "dropped": done.get("dropped", {})})}
    old_keys = list(json.loads((shards_dir / (shard + MANIFEST_SUFFIX)).read_bytes())["members"])
    with ExitStack() as stack:
        dropped = json.loads(row["dropped"])
        staged: dict[str, tuple[Any, dict[str, Any]]] = {}  # key -> (open stage tar, {ext: member})
        for name in _staged(work, shard):
            tar = stack.enter_context(open_shard(work / "staged" / shard / name))
            for info in tar.getmembers():
                key, ext = info.name.split(".", 1)
                entry = staged.setdefault(key, (tar, {}))
                if entry[0] is tar:  # a key staged twice (a rerun task): the first tar wins
                    entry[1][ext] = info
        missing = [k for k in old_keys if k not in staged and k not in dropped]
        if missing:
            return {"record": json.dumps({"shard": shard, "error": f"{len(missing)} samples not annotated yet "
                                                                   f"(first: {missing[0]})"})}

        def samples():
            with open_shard(shards_dir / shard) as old:
                for key, members in iter_tar_samples(old):
                    if key in staged:  # a failed sample staged by an earlier try is kept after all
                        tar, infos = staged[key]
                        members.update({ext: tar.extractfile(info).read() for ext, info in infos.items()})
                        yield key, members, json.loads(members["json"])

        dropped = {k: v for k, v in dropped.items() if k not in staged}
        _, rows = write_shard(work / "shards", samples(), mtime, writer_node(), name=shard,
                              extra={"job": job, "dropped": dropped})
    return {"record": json.dumps({"shard": shard, "rows": rows, "dropped": dropped}, default=str)}
