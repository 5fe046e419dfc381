"""`openuni-eval`: score a build's annotations against the exact ground truth of its synthetic clips.

Synthetic clips (`openuni-build --source synthetic`, also part of `--source samples`) are rendered
with exact depth, forward flow, flow visibility and entity ids (openuni_builder/synthetic.py); their
sample JSON says `extra.kind == "synthetic"` and `extra.ground_truth` is the `.gt.npz` path. Every
modality with ground truth that the build has is scored per clip twice: from the lossless raw
sidecar `KEY.<modality>.npz` (the annotator's own output, in its stored dtype) and from the
Pixelplanes video `KEY.<modality>.mp4` decoded back, so the storage error shows beside the
annotator's error. Metrics and their conventions: docs/EVAL.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import webdataset as wds
from upath import UPath

from openuni_builder import pixelplanes
from openuni_builder.location import local_file, location, shard_files, webdataset_reads_uris
from openuni_builder.metrics import depth_metrics, epe, miou
from openuni_builder.pixelplanes.storage import sample_raw
from openuni_builder.synthetic import load_gt
from openuni_builder.video_io import decode_mp4

Arrays = dict[str, np.ndarray]
SOURCES = ("raw", "video")  # where a modality's prediction is read from: sidecar or decoded video


class EvalError(RuntimeError):
    """The build cannot be evaluated; the message says why and what to do."""


def score_depth(pred: Arrays, gt: Arrays) -> dict[str, float]:
    """AbsRel and delta<1.25 of relative disparity after per-clip scale-and-shift alignment."""
    out = depth_metrics(pred["disparity"].astype(np.float32), gt["depth"])
    return {"abs_rel": out["abs_rel"], "delta1": out["delta1"]}


def score_flow(pred: Arrays, gt: Arrays) -> dict[str, float]:
    """EPE in pixels over all pixels and over pixels whose surface is still visible at t+1."""
    flow = pred["flow"].astype(np.float32)
    return {"epe_all": epe(flow, gt["flow"]), "epe_noc": epe(flow, gt["flow"], gt["flow_valid"])}


def score_seg(pred: Arrays, gt: Arrays) -> dict[str, float]:
    """Mean IoU of the ground-truth entities after Hungarian matching of predicted ids."""
    return {"miou": miou(pred["ids"], gt["ids"])}


#: Modalities with ground truth: scorer and (metric key, table label) of what it returns.
SCORERS: dict[str, tuple[Callable[[Arrays, Arrays], dict[str, float]], tuple[tuple[str, str], ...]]] = {
    "depth": (score_depth, (("abs_rel", "AbsRel"), ("delta1", "d<1.25"))),
    "flow": (score_flow, (("epe_all", "EPE all"), ("epe_noc", "EPE noc"))),
    "seg": (score_seg, (("miou", "mIoU"),)),
}


def read_samples(out: Path | UPath) -> Iterator[dict[str, Any]]:
    """Every sample of the build's shards (local or at a URI), as WebDataset gives it."""
    shards = shard_files(out / "shards")
    if not shards:
        raise EvalError(f"no shards in {out / 'shards'}: is {out} a build directory "
                        "(the --shards OUT of openuni-build)?")
    webdataset_reads_uris()
    yield from wds.WebDataset(shards, shardshuffle=False)


def ground_truth(out: Path, meta: dict[str, Any]) -> tuple[Path, Arrays]:
    """The clip's ground truth, checked against its size; found at `extra.ground_truth` or, for a
    build directory that has moved, under OUT/sources/synthetic/ by file name."""
    if not meta["extra"].get("ground_truth"):
        raise EvalError(f"{meta['key']}: a synthetic clip without extra.ground_truth in its JSON")
    recorded = location(meta["extra"]["ground_truth"])
    path = recorded if recorded.exists() else out / "sources" / "synthetic" / recorded.name
    if not path.exists():
        raise EvalError(f"{meta['key']}: ground truth not found at {recorded} nor {path}")
    with local_file(str(path)) as local:
        gt = load_gt(local)
    want = (meta["num_frames"], meta["height"], meta["width"])
    if gt["ids"].shape != want:
        raise EvalError(f"{meta['key']}: ground truth {path} is {gt['ids'].shape} (T, H, W) but the clip is "
                        f"{want}: it was rendered for another clip spec")
    return path, gt


def score_sample(name: str, sample: dict[str, Any], info: dict[str, Any], gt: Arrays) -> dict[str, dict[str, float]]:
    """One modality of one sample scored from its raw sidecar and from its decoded video."""
    scorer = SCORERS[name][0]
    raw = sample_raw(sample, name)
    if raw is None:
        raise EvalError(f"{sample['__key__']}: no {name} raw sidecar (a storage profile without sidecars)")
    preds = {"raw": raw,
             "video": pixelplanes.decode(name, decode_mp4(sample[f"{name}.mp4"]), info["pixelplanes"])}
    try:
        return {source: scorer(preds[source], gt) for source in SOURCES}
    except (KeyError, ValueError) as exc:
        raise EvalError(f"{sample['__key__']}: cannot score {name}: {type(exc).__name__}: {exc}") from exc


def evaluate(out: Path) -> dict[str, Any]:
    """Score every synthetic clip of the build at `out`; the report that goes to OUT/eval.json."""
    out = location(out)
    clips: list[dict[str, Any]] = []
    modalities: dict[str, dict[str, list]] = {}
    present: set[str] = set()
    samples = 0
    for sample in read_samples(out):
        samples += 1
        meta = json.loads(sample["json"])
        present.update(meta.get("modalities", {}), meta.get("annotations", {}))
        extra = meta.get("extra") or {}
        if extra.get("kind") != "synthetic":
            continue
        gt_path, gt = ground_truth(out, meta)
        clip = {"key": meta["key"], "video_id": meta["video_id"], "seed": extra.get("seed"),
                "ground_truth": str(gt_path), "provenance": {}, "metrics": {}}
        for name, info in meta.get("modalities", {}).items():
            if name not in SCORERS:
                continue
            clip["metrics"][name] = score_sample(name, sample, info, gt)
            clip["provenance"][name] = info.get("provenance", {})
            seen = modalities.setdefault(name, {"provenance": [], "storage": []})
            for kind in ("provenance", "storage"):
                if info.get(kind, {}) not in seen[kind]:
                    seen[kind].append(info.get(kind, {}))
        clips.append(clip)
    if not clips:
        raise EvalError(f"{out} has {samples} samples but none of a synthetic clip (JSON extra.kind == "
                        "'synthetic'), so there is no ground truth to score against; build the same "
                        "pipeline with `openuni-build --source synthetic` (or --source samples) to evaluate it")
    if not modalities:
        raise EvalError(f"{out} has none of the modalities with ground truth ({', '.join(SCORERS)}); "
                        f"it has: {', '.join(sorted(present)) or 'RGB only'}")
    names = [n for n in SCORERS if n in modalities]
    mean = {name: {source: {key: float(np.mean([c["metrics"][name][source][key] for c in clips]))
                            for key, _ in SCORERS[name][1]} for source in SOURCES} for name in names}
    return {"build": str(out), "samples": samples, "synthetic_clips": len(clips),
            "modalities": {n: modalities[n] for n in names},
            "not_evaluated": sorted(present - set(SCORERS)), "mean": mean, "clips": clips}


def describe(settings: dict[str, Any]) -> str:
    """One line of `key=value` for a provenance or storage dict (nested models by name; the full
    record is in eval.json)."""
    first = [k for k in ("backend", "model") if k in settings]
    parts = []
    for key in first + [k for k in settings if k not in first]:
        value = settings[key]
        if value is None or key in ("license", "hub_id", "output"):
            continue
        if isinstance(value, dict):
            value = value.get("name", json.dumps(value, sort_keys=True))
        elif key == "revision":
            value = str(value)[:10]
        parts.append(f"{key}={value}")
    return " ".join(parts) or "(not recorded)"


def format_table(report: dict[str, Any]) -> str:
    """Per-modality tables: one row per clip plus the mean, raw and video columns per metric."""
    lines = [f"openuni-eval: {report['synthetic_clips']} synthetic clips (of {report['samples']} samples) "
             f"in {report['build']}"]
    for name, info in report["modalities"].items():
        lines.append("")
        for prov in info["provenance"]:
            lines.append(f"{name}: {describe(prov)}")
        if len(info["provenance"]) > 1:
            lines.append(f"  note: {len(info['provenance'])} different provenances in one build (per clip in eval.json)")
        lines.append(f"  video: {'; '.join(describe(s) for s in info['storage'])}")
        metrics = SCORERS[name][1]
        header = ["clip"] + [f"{source} {label}" for source in SOURCES for _, label in metrics]
        rows = [[c["video_id"]] + [f"{c['metrics'][name][s][k]:.4f}" for s in SOURCES for k, _ in metrics]
                for c in report["clips"]]
        rows.append(["mean"] + [f"{report['mean'][name][s][k]:.4f}" for s in SOURCES for k, _ in metrics])
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        for row in [header] + rows:
            lines.append("  " + row[0].ljust(widths[0]) + "".join(f"  {v:>{w}}" for v, w in zip(row[1:], widths[1:])))
    lines += ["", "raw = lossless sidecar, video = decoded Pixelplanes video. EPE in pixels, noc = still "
              "visible at t+1 (lower is better); AbsRel lower, d<1.25 and mIoU higher is better."]
    if report["not_evaluated"]:
        lines.append(f"not evaluated (no ground truth): {', '.join(report['not_evaluated'])}")
    return "\n".join(lines)
