"""The pipeline's stages: CPU steps that work on one `Clip` in place, and the actor-pool callables.

Ray Data rows are {"key", "clip"} with the `Clip` pickled, which keeps ragged per-modality arrays
out of Arrow schemas. A run of CPU steps (decode, task-pool annotators, filters, encode) runs as
one task per clip (`run_steps`): the Clip is unpickled once, passes from step to step as a Python
object, and is pickled once at the end, when it holds only its encoded members. (Ray Data's own
fusion of one map per step still pickled the whole Clip at each step and built an Arrow block
between them: 9.6 MB of frames and 35 MB of frames + float32 flow per 49x256² clip.)

A step never raises for one clip: it marks the clip failed (stage + reason) and later steps pass
it through, so the driver writes it to the ledger and the run goes on.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import replace
from typing import Any, Callable

import cv2
import numpy as np

from annotators import get_annotator
from openuni_builder import pixelplanes
from openuni_builder.clip import Clip, ClipSpec, ModalityOutput
from openuni_builder.crashes import guard
from openuni_builder.download import fetch_video
from openuni_builder.filters import Filter, HashIndex, clip_quality, run_filters
from openuni_builder.location import StorageOptions, local_file
from openuni_builder.models import CACHE_ENV
from openuni_builder.pixelplanes.storage import get_profile, raw_member
from openuni_builder.shards import node_id
from openuni_builder.video_io import TOO_SHORT, BadVideo, TooShort, cut_clip, encode_mp4

log = logging.getLogger(__name__)
Row = dict[str, Any]

# One OpenCV thread in every process that runs a stage (each Ray worker imports this module): a
# build already runs one clip per CPU, and OpenCV's own threads only add CPU there (DIS flow on a
# 49x256² clip: 0.61 instead of 0.77-0.80 CPU s with 2 threads; the quality scores 0.13 instead
# of 0.17) while they compete with the other stages for the same cores.
cv2.setNumThreads(1)


#: A CPU step: does its work on the clip in place (or fails it, with its reason).
Step = Callable[[Clip], None]


def run_steps(row: Row, steps: tuple[Step, ...]) -> Row:
    """One Ray Data row through a run of CPU steps, in this process."""
    clip = Clip.from_bytes(row["clip"])
    for step in steps:
        step(clip)
    return {"key": row["key"], "clip": clip.to_bytes()}


def decode(clip: Clip, filters: tuple[Filter, ...] = (), options: StorageOptions | None = None,
           counter: str | None = None, timeout_s: float | None = None) -> None:
    """Cut and normalise the clip's frames from its source video.

    `filters` are the listing and probe filters (run before decoding, so a clip they drop is
    never decoded; listing filters already ran on the driver and run again only to record their
    values in KEY.json) and the content filters (run on the decoded frames). A video at a URI is
    copied into a temporary file for this task (removed afterwards) and decoded from there.
    `counter`/`timeout_s`: the build's crash counter and the per-clip limit (crashes.py).
    """
    started = time.time()
    with guard(counter, "decode", timeout_s).running([clip.key]) as reason:
        if reason:
            clip.fail("decode", reason)
        else:
            _decode(clip, filters, options)
    clip.timings["decode"], clip.nodes["decode"] = (started, time.time()), node_id()


def _decode(clip: Clip, filters: tuple[Filter, ...], options: StorageOptions | None) -> None:
    req = clip.request
    try:
        if req.extra.get("download_url"):
            fetch_video(req.extra["download_url"], req.path)
        with local_file(req.path, options) as path:
            clip.request = replace(req, path=path)  # probe filters and the decoder read this copy
            try:
                run_filters(clip, tuple(f for f in filters if f.phase in ("listing", "probe")))
                if clip.ok:
                    clip.frames, clip.source_info = cut_clip(path, clip.spec, req.start, req.end)
                    run_filters(clip, tuple(f for f in filters if f.phase == "content"))
            finally:
                clip.request = req
    except FileNotFoundError as exc:  # a URI that names no object
        clip.fail("decode", f"file not found: {req.path} ({exc})")
    except TooShort as exc:
        clip.drop(TOO_SHORT, str(exc), {"duration": exc.duration, "needs": exc.needed})
    except BadVideo as exc:
        clip.fail("decode", str(exc))
    except Exception as exc:  # a decoder crash on one file must not stop the stage
        clip.fail("decode", exc)


class DedupStage:
    """Near-duplicate screening inside the graph: one actor per build, right after decode, that
    holds the hashes of every clip kept so far (finished clips of earlier runs included) and drops
    a clip within `max_distance` of one of them, with its reason.

    It decides as clips arrive, so no GPU work waits for a decode pass over the whole list (the
    driver-side screen before it decoded every clip twice and held the annotators back until all
    were hashed); of two near-duplicates, the one decoded first is kept.
    """

    def __init__(self, name: str, max_distance: int, kept: list[tuple[str, str]]) -> None:
        self.name, self.index = name, HashIndex(max_distance)
        for key, phash in kept:
            self.index.add(key, bytes.fromhex(phash))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        clips = [Clip.from_bytes(b) for b in batch["clip"]]
        for clip in clips:
            measured = (clip.filters.get(self.name) or {}).get("phash") if clip.ok else None
            if measured is None:
                continue
            phash = bytes.fromhex(measured)
            near = self.index.nearest(phash)
            if near is None:
                self.index.add(clip.key, phash)
            else:
                clip.drop(self.name, f"near-duplicate of {near[0]} ({near[1]} of 64 bits differ)",
                          {"phash": measured, "duplicate_of": near[0], "distance": near[1]})
        return {"key": [c.key for c in clips], "clip": [c.to_bytes() for c in clips]}


def filter_clip(clip: Clip, filters: tuple[Filter, ...]) -> None:
    """Run annotated-phase filters on a clip whose needed annotators have run."""
    for f in filters:
        if not clip.ok:
            break
        try:
            f.apply(clip)
        except Exception as exc:  # a filter crash on one clip fails that clip, not the stage
            clip.fail(f"filter:{f.name}", exc)


class ModelMissingOnNode(RuntimeError):
    """An annotator actor started on a node whose model cache lacks its model."""


def _node_name() -> str:
    import socket

    import ray

    return f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"


class AnnotatorStage:
    """Actor wrapper: loads the annotator once, annotates batches, isolates failing clips.

    `dry_run`: the actor first writes tiny random-weight stand-ins of the annotator's models into
    a temporary cache of its own and points this process at it, so a dry run needs no model
    cache and no shared filesystem on any node (seeded: every actor writes the same weights).
    """

    def __init__(self, name: str, options: dict[str, Any], dry_run: bool = False, counter: str | None = None,
                 timeout_s: float | None = None) -> None:
        self.name = name
        self.guard = guard(counter, name, timeout_s)
        self.load_error: str | None = None
        if dry_run:  # before the annotator exists: some decide their backend by what is cached
            self._tiny_cache = tempfile.TemporaryDirectory(prefix=f"openuni-dry-run-{name}-")
            os.environ[CACHE_ENV] = self._tiny_cache.name  # this actor's own process only
            try:
                from openuni_builder.random_models import write_models_for

                write_models_for(get_annotator(name)(**options), "tiny")
            except Exception as exc:  # every clip then fails with this reason instead of a dead pool
                self.load_error = f"writing tiny models for {name} failed: {type(exc).__name__}: {exc}"
        self.annotator = get_annotator(name)(**options)
        missing = None if dry_run else self.annotator.unavailable()
        if missing:  # checked where the actor runs: the driver's cache says nothing of this node's
            raise ModelMissingOnNode(f"{name} cannot start on node {_node_name()}: {missing}")
        try:
            if self.load_error is None:
                self.annotator.load()
        except Exception as exc:  # every clip then fails with this reason instead of a dead pool
            self.load_error = f"loading {name} failed: {type(exc).__name__}: {exc}"
        if self.load_error:
            log.error(self.load_error)
        self.provenance = self.annotator.provenance()
        self.node = node_id()
        if self.guard.counter is not None:
            self.guard.counter.hello.remote(name, str(self.node)[:12])

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        """An actor pool's batch of rows."""
        clips = [Clip.from_bytes(b) for b in batch["clip"]]
        self.annotate(clips)
        return {"key": [c.key for c in clips], "clip": [c.to_bytes() for c in clips]}

    def annotate(self, clips: list[Clip]) -> None:
        """Annotate the clips not failed yet, in place, and record the stage's time on each."""
        started = time.time()
        todo = [c for c in clips if c.ok]
        if self.load_error:
            for clip in todo:
                clip.fail(self.name, self.load_error)
        elif todo:
            self._annotate(todo)
        share = (time.time() - started) / len(clips)  # a batch's time, split over its clips
        for i, clip in enumerate(clips):
            clip.timings[self.name] = (started + i * share, started + (i + 1) * share)
            clip.nodes[self.name] = self.node

    def _annotate(self, clips: list[Clip]) -> None:
        """The batch at once; clip by clip when it raised (so one bad clip fails alone) or when
        some of its clips were in a worker that died (so the one that kills it is found). A batch
        of one clip goes the clip-by-clip way at once: it is the same work, and it saves asking the
        crash counter whether to (a blocking round trip per clip in a CPU task)."""
        keys = [c.key for c in clips]
        if len(clips) > 1 and not self.guard.suspects(keys):
            results = None
            with self.guard.running(keys):
                try:
                    results = self.annotator.annotate(clips)
                    if len(results) != len(clips):
                        raise RuntimeError(f"{self.name} returned {len(results)} outputs for {len(clips)} clips")
                except Exception:
                    results = None
            if results is not None:
                for clip, output in zip(clips, results):
                    self._keep(clip, output)
                return
        for clip in clips:
            with self.guard.running([clip.key]) as reason:
                if reason:
                    clip.fail(self.name, reason)
                    continue
                try:
                    output = self.annotator.annotate([clip])[0]
                except Exception as exc:
                    clip.fail(self.name, exc)
                    continue
            self._keep(clip, output)

    def _keep(self, clip: Clip, output: ModalityOutput) -> None:
        output.meta.setdefault("provenance", self.provenance)
        clip.outputs[self.name] = output


#: A worker process's task-pool annotators (`Resources.pool == "tasks"`), made on first use.
_IN_TASK: dict[str, AnnotatorStage] = {}


def annotate_in_task(clip: Clip, name: str, options: dict[str, Any], dry_run: bool = False,
                     counter: str | None = None, timeout_s: float | None = None) -> None:
    """A task-pool annotator's step: the same `AnnotatorStage` as an actor pool's, made once in
    each worker process and kept for the later tasks it runs (Ray reuses task workers)."""
    key = json.dumps([name, options, dry_run, counter, timeout_s], sort_keys=True, default=str)
    if key not in _IN_TASK:
        _IN_TASK[key] = AnnotatorStage(name, options, dry_run=dry_run, counter=counter, timeout_s=timeout_s)
    _IN_TASK[key].annotate([clip])


def encode(clip: Clip, caption_use: str, video_modalities: tuple[str, ...], dry_run: bool = False,
           storage_profile: str | None = None) -> None:
    """Encode RGB, Pixelplanes videos, raw sidecars, caption and JSON into shard members."""
    encode_with(clip, lambda c: build_members(c, caption_use, video_modalities, dry_run, storage_profile))


def encode_with(clip: Clip, members: Callable[[Clip], dict[str, bytes]]) -> None:
    """The encode step around `members(clip)` (a build's or `--add`'s): a clip it fails on is
    failed, not the stage, and the frames and raw outputs are dropped once encoded."""
    started = time.time()
    if clip.ok:
        try:
            clip.members = members(clip)
            clip.frames, clip.outputs = None, {}
        except Exception as exc:
            clip.fail("encode", exc)
    clip.timings["encode"], clip.nodes["encode"] = (started, time.time()), node_id()


def build_members(clip: Clip, caption_use: str, video_modalities: tuple[str, ...], dry_run: bool,
                  storage_profile: str | None = None) -> dict[str, bytes]:
    """The sample's shard members; Pixelplanes videos and raw sidecars as `storage_profile` says
    (pixelplanes.storage.PROFILES; None = DEFAULT_PROFILE)."""
    spec, req = clip.spec, clip.request
    members = {"mp4": encode_mp4(clip.frames, spec.fps)}
    modalities: dict[str, Any] = {}
    for name in video_modalities:
        encoded, modalities[name] = modality_members(name, clip.outputs[name], spec, storage_profile)
        members.update(encoded)
    annotations = {n: o.meta for n, o in clip.outputs.items() if n not in video_modalities}
    captions = caption_fields(req.caption, annotations, caption_use)
    meta = {
        "key": clip.key, "source": req.source, "video_id": req.video_id, "clip_index": req.clip_index,
        "path": req.path, "start": req.start, "end": req.end,
        "num_frames": spec.num_frames, "fps": spec.fps, "height": spec.height, "width": spec.width,
        "source_video": {k: v for k, v in clip.source_info.items() if k != "frame_times"},
        "frame_times": clip.source_info.get("frame_times", []),
        **captions,
        "scores": req.scores, "extra": req.extra, "filters": clip.filters, "quality": clip_quality(clip),
        "modalities": modalities, "annotations": annotations, "dry_run": dry_run,
    }
    members["json"] = sample_json(meta)
    members["txt"] = (captions["caption"] or "").encode()
    return members


def modality_members(name: str, output: ModalityOutput, spec: ClipSpec,
                     storage_profile: str | None = None) -> tuple[dict[str, bytes], dict[str, Any]]:
    """One video modality's shard members (`NAME.mp4` Pixelplanes video, the raw sidecar the
    profile stores) and its `KEY.json` section; shared by a build and by `--add`/`--refresh`
    (incremental.py)."""
    profile = get_profile(storage_profile)
    frames, params = pixelplanes.encode(name, output.raw, spec.num_frames, size=(spec.height, spec.width))
    storage = pixelplanes.storage(name, profile=profile.name)
    members = {f"{name}.mp4": encode_mp4(frames, spec.fps, storage)}
    sidecar = raw_member(name, profile.name)
    if sidecar is not None:
        members[sidecar] = pixelplanes.save_raw(output.raw, name, profile.name)
    return members, {"pixelplanes": params, "storage": storage.__dict__, "storage_profile": profile.name,
                     "raw_member": sidecar, **output.meta}


def caption_fields(source: str | None, annotations: dict[str, Any], use: str) -> dict[str, Any]:
    """The caption fields of `KEY.json` (KEY.txt holds `caption`) from the source's caption and
    the non-video annotations (a caption annotator's `caption_generated`)."""
    generated = (annotations.get("caption") or {}).get("caption_generated")
    caption, caption_from = choose_caption(source, generated, use)
    return {"caption": caption, "caption_from": caption_from, "caption_source": source, "caption_generated": generated}


def sample_json(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, default=_jsonable).encode()


def choose_caption(source: str | None, generated: str | None, use: str) -> tuple[str, str | None]:
    """The caption for KEY.txt: the configured kind when present, else the other, else empty."""
    order = [("source", source), ("generated", generated)]
    if use == "generated":
        order.reverse()
    for kind, text in order:
        if text:
            return text, kind
    return "", None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
