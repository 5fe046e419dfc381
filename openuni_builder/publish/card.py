"""The dataset card: `OUT/README.md`, a Hugging Face dataset card written at the end of every build.

Its YAML front matter (license, task categories, size category, tags, one `configs` entry per
shard set, `dataset_info` with features and split sizes) is serialised by `huggingface_hub` and
`datasets` themselves, and the features are inferred from the first samples exactly as the
`datasets` webdataset builder infers them, so `load_dataset(OUT)` and
`load_dataset("webdataset", data_files=...)` agree with the card. The markdown body says what is
in a sample (every member and KEY.json field), how the build was made (source, filters with drop
counts, balancing, annotator models with ids, revisions and licenses), plots, previews,
limitations and citations. Everything is read back from OUT (stats.json, index.parquet,
balance.json, the first sample), so `openuni-balance` can rewrite the card of an existing build.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from upath import UPath

from openuni_builder.publish.balance import balance
from openuni_builder.config import BuildConfig
from openuni_builder.filters import FILTERS
from openuni_builder.pixelplanes.storage import DEFAULT_PROFILE, raw_layout
from openuni_builder.publish.index_summary import IndexSummary
from openuni_builder.modalities import get as _record
from openuni_builder.models import load_registry
from openuni_builder.publish.plots import write_plots
from openuni_builder.publish.previews import iter_samples, write_previews
from openuni_builder.shards import open_shard

log = logging.getLogger(__name__)

SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
         (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
JSON_FIELDS = {
    "key": "sample key (same as the member prefix)",
    "source": "source parser (koala36m, panda70m, manifest, folder, samples)",
    "video_id": "source video id", "clip_index": "index of the clip within its source video",
    "path": "source video path at build time", "start": "segment start in the source video (s, null = 0)",
    "end": "segment end in the source video (s, null = video end)",
    "num_frames": "frames per clip (4k+1)", "fps": "clip frame rate", "height": "clip height (px)",
    "width": "clip width (px)", "source_video": "source fps, duration, size and the clip window start",
    "frame_times": "source timestamp (s) of every clip frame",
    "caption": "the caption in KEY.txt", "caption_from": "which caption was chosen (source / generated)",
    "caption_source": "the source's caption", "caption_generated": "the captioning model's caption",
    "scores": "numeric quality columns of the source (e.g. Koala clarity, Panda matching score)",
    "extra": "other source columns (e.g. Panda desirable_filtering, url)",
    "filters": "values measured by every filter the clip passed (see Filters)",
    "modalities": "per video modality: Pixelplanes parameters, storage, model provenance and facts",
    "annotations": "per non-video annotation (captions): text, model and settings",
    "dry_run": "true when annotations came from tiny random-weight models (--dry-run)",
}
CITATIONS = """```bibtex
@article{huang2025unityvideo,
  title   = {UnityVideo: Unified Multi-Modal Multi-Task Learning for Enhancing World-Aware Video Generation},
  author  = {Huang, Jiehui and Zhang, Yuechen and He, Xu and Gao, Yuan and Cen, Zhi and Xia, Bin and
             Zhou, Yan and Tao, Xin and Wan, Pengfei and Jia, Jiaya},
  journal = {arXiv preprint arXiv:2512.07831},
  year    = {2025}
}

@inproceedings{yang2025udpdiff,
  title     = {Unified Dense Prediction of Video Diffusion},
  author    = {Yang, Lehan and Qi, Lu and Li, Xiangtai and Li, Sheng and Jampani, Varun and Yang, Ming-Hsuan},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2025},
  note      = {arXiv:2503.09344}
}
```"""


def publish(out: Path, cfg: BuildConfig, shards: Path | UPath | None = None) -> None:
    """Everything a person reads after a build: the balanced subset (when configured), previews
    and the dataset card with its plots. `out` is the driver's folder, `shards` where the workers
    wrote the shards (default OUT/shards; an object-store folder for a build at a URI)."""
    out = Path(out)
    shards = out / "shards" if shards is None else shards
    if cfg.balance and (out / "index.parquet").exists():
        report = balance(out, cfg.balance, cfg.shards.max_samples, shards)
        log.info("balanced: %d of %d samples", report["total"]["after"], report["total"]["before"])
    write_previews(out, **vars(cfg.previews), shards=shards)
    write_card(out, shards)


def write_card(out: Path, shards: Path | UPath | None = None) -> Path:
    """Write OUT/README.md (and OUT/plots/*.png) from what the build left in OUT."""
    from huggingface_hub import DatasetCardData

    out = Path(out)
    stats = json.loads((out / "stats.json").read_text())
    summary = IndexSummary.read(out / "index.parquet")
    report = _balance_report(out)
    shard_sets = {"shards": out / "shards" if shards is None else shards, "balanced/shards": out / "balanced" / "shards"}
    first = _first_sample(shard_sets["shards"])
    meta = json.loads(first[1]["json"]) if first else {}
    modalities = stats["modalities"]["produced"]
    configs, infos = [], {}
    for folder_name, folder in shard_sets.items():
        name = "all" if folder_name == "shards" else "balanced"
        shards = sorted(folder.glob("*.tar"))
        if not shards:
            continue
        configs.append({"config_name": name, **({"default": True} if name == "all" else {}),
                        "data_files": [{"split": "train", "path": f"{folder_name}/*.tar"}]})
        count = summary.samples if name == "all" else report["total"]["after"]
        infos[name] = _dataset_info(shards, count)
    data = DatasetCardData(
        license="other", license_name="source-video-terms", pretty_name=f"OpenUni Builder: {stats['pipeline']}",
        task_categories=sorted({"text-to-video", *(t for m in modalities if (t := _record(m).hf_task))}),
        size_categories=[next(label for limit, label in SIZES if summary.samples < limit)],
        tags=["webdataset", "video", "multimodal", "openuni", *modalities], configs=configs)
    if infos:
        from datasets.info import DatasetInfosDict

        DatasetInfosDict(infos).to_dataset_card_data(data)
    plots = write_plots(out, summary, stats, report)
    body = _body(out, stats, summary, report, first, meta, plots)
    path = out / "README.md"
    path.write_text(f"---\n{data.to_yaml()}\n---\n\n{body}\n")
    return path


def _balance_report(out: Path) -> dict[str, Any] | None:
    path = out / "balance.json"
    if path.exists() and list((out / "balanced" / "shards").glob("*.tar")):
        return json.loads(path.read_text())
    return None


def _first_sample(folder: Path) -> tuple[str, dict[str, bytes]] | None:
    shards = sorted(folder.glob("*.tar"))
    return next(iter_samples(shards[0]), None) if shards else None


def infer_features(shard: Path):
    """The features the `datasets` webdataset builder infers for a shard: the first examples
    decoded by its own decoders, merged into an Arrow schema, media extensions typed."""
    from datasets import Audio, Features, Image, Video
    from datasets.features.features import cast_to_python_objects
    from datasets.packaged_modules.webdataset.webdataset import WebDataset

    with open_shard(shard) as tar:
        files = ((m.name, tar.extractfile(m)) for m in tar if m.isfile())
        examples = list(islice(WebDataset._get_pipeline_from_tar(str(shard), files),
                               WebDataset.NUM_EXAMPLES_FOR_FEATURES_INFERENCE))
    examples = [_shrink(e) for e in examples]
    tables = [pa.Table.from_pylist(cast_to_python_objects([e], only_1d_for_numpy=True)) for e in examples]
    features = Features.from_arrow_schema(pa.concat_tables(tables, promote_options="default").schema)
    media = [(WebDataset.IMAGE_EXTENSIONS, Image), (WebDataset.AUDIO_EXTENSIONS, Audio),
             (WebDataset.VIDEO_EXTENSIONS, Video)]
    for name in examples[0]:
        extension = name.rsplit(".", 1)[-1].lower()
        for extensions, feature in media:
            if extension in extensions:
                features[name] = feature()
    return features


def _shrink(value: Any) -> Any:
    """Arrays cut to one element per axis: the same dtype and nesting, so the same Arrow type,
    without turning millions of values into Python lists (a 49-frame flow sidecar took ~13 s)."""
    if isinstance(value, np.ndarray):
        return value[tuple(slice(0, 1) for _ in range(value.ndim))]
    if isinstance(value, Mapping):  # dicts, and the NpzFile the builder decodes .npz members to
        return {k: _shrink(v) for k, v in value.items()}
    return value


def _dataset_info(shards: list[Path], count: int):
    from datasets import DatasetInfo, SplitDict, SplitInfo

    size = sum(p.stat().st_size for p in shards)
    splits = SplitDict()
    splits.add(SplitInfo(name="train", num_bytes=size, num_examples=count))
    return DatasetInfo(features=infer_features(shards[0]), splits=splits, download_size=size, dataset_size=size)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]


def _body(out: Path, stats: dict[str, Any], summary: IndexSummary, report: dict[str, Any] | None,
          first: tuple[str, dict[str, bytes]] | None, meta: dict[str, Any], plots: dict[str, tuple[str, str]]) -> str:
    spec, total, produced = stats["spec"], stats["total"], stats["modalities"]["produced"]
    lines = [f"# OpenUni Builder dataset: {stats['pipeline']}", "",
             "## Dataset description", "",
             f"Video clips of {spec['num_frames']} frames at {spec['fps']:g} fps, {spec['width']}x{spec['height']} px, "
             f"each with frame-aligned annotations ({', '.join(produced) or 'none'}) stored as RGB *Pixelplanes* "
             "videos plus lossless raw arrays, and a caption: the modality set of UnityVideo's OpenUni / "
             "UDPDiff's Panda-Dense, rebuilt by OpenUni Builder.", "",
             f"- samples: **{total['samples']}** in {total['shards']} shards ({total['bytes'] / 1e6:.1f} MB)",
             f"- source: `{stats['source']}`; pipeline `{stats['pipeline']}`"
             + (" (**dry run**: annotations from tiny random-weight models)" if stats.get("dry_run") else ""),
             f"- clips dropped by filters: {total.get('filtered', 0)}; failed clips: {total['failed']}"]
    for name, reason in stats["modalities"]["skipped"].items():
        lines.append(f"- modality `{name}` was skipped: {reason}")
    lines += ["", "Load it with `datasets` (members become columns; `*.mp4` are `Video` columns):", "",
              "```python", "from datasets import load_dataset",
              "ds = load_dataset(\"path/to/this/folder\", \"all\", split=\"train\")"
              + ("  # or \"balanced\"" if report else ""), "```", "",
              "or stream the shards with `webdataset` (decode the mp4 bytes with PyAV).", ""]
    lines += _structure(summary, first, meta)
    lines += _bytes_per_sample(summary, stats.get("storage_profile"))
    lines += _creation(stats, summary, report, meta)
    if plots:
        lines += ["## Plots", ""]
        for path, caption in plots.values():
            lines += [f"![{caption}]({path})", "", f"*{caption}*", ""]
    previews = sorted((out / "previews").glob("*.png"))
    if previews:
        lines += ["## Previews", "", "Contact sheets of the first samples: frames (columns) by RGB and each "
                  "modality's Pixelplanes video (rows)" + (", and animated previews." if
                  list((out / "previews").glob("*.gif")) else "."), ""]
        for png in previews:
            lines += [f"**{png.stem}**", "", f"![{png.stem}](previews/{png.name})", ""]
            if png.with_suffix(".gif").exists():
                lines += [f"![{png.stem} animated](previews/{png.stem}.gif)", ""]
    lines += _limitations(produced)
    lines += ["## Citation", "", "If you use this data, cite the work whose dataset design it rebuilds:", "", CITATIONS, ""]
    return "\n".join(lines)


def _structure(summary: IndexSummary, first: tuple[str, dict[str, bytes]] | None,
               meta: dict[str, Any]) -> list[str]:
    lines = ["## Dataset structure", "",
             "WebDataset tar shards (`shards/openuni-*.tar`, `balanced/shards/` for the balanced subset); "
             "every sample has the same members, named `KEY.<member>`:", ""]
    members = sorted(first[1]) if first else sorted(summary.member_bytes)
    table = []
    for member in members:
        name = member.split(".")[0]
        if member == "mp4":
            what = "RGB clip, H.264"
        elif member == "json":
            what = "metadata (fields below)"
        elif member == "txt":
            what = "caption"
        elif member.endswith(".mp4"):
            what = f"{name} Pixelplanes RGB video, frame-aligned with the clip: {_record(name).description}"
        elif member.endswith((".npz", ".raw.mkv")):
            kind = "npz" if member.endswith(".npz") else "lossless FFV1 video (docs/FORMAT.md)"
            what = f"{name} raw arrays, {kind}: " + _raw_arrays(first[1][member] if first else None)
        else:
            what = member
        mean_bytes = summary.mean_bytes(member)
        mean = "-" if mean_bytes is None else f"{mean_bytes / 1e3:.1f}"
        table.append([f"`KEY.{member}`", what, mean])
    lines += _table(["member", "content", "mean kB"], table) + ["", "Fields of `KEY.json`:", ""]
    lines += _table(["field", "meaning"], [[f"`{k}`", JSON_FIELDS.get(k, "")] for k in meta]) + [""]
    if meta.get("filters"):
        lines += ["Filter values in `KEY.json` `filters` (first sample):", ""]
        lines += _table(["filter", "values"], [[f"`{n}`", ", ".join(f"`{k}`" for k in v)]
                                               for n, v in meta["filters"].items()]) + [""]
    return lines


def _raw_arrays(data: bytes | None) -> str:
    if data is None:
        return "see docs/FORMAT.md"
    return ", ".join(f"`{k}` {dtype} {tuple(shape)}" for k, (dtype, shape) in raw_layout(data).items())


def _bytes_per_sample(summary: IndexSummary, profile: str | None) -> list[str]:
    """Mean bytes per sample by modality, and what the build's profile costs at OpenUni's and
    Panda-Dense's sizes (1.3M and 300K clips)."""
    report = summary.bytes_per_sample()
    if not report["samples"]:
        return []
    rows = [[f"`{m}`", f"{b / 1e6:.3f}"] for m, b in report["per_modality"].items()]
    rows.append(["**total**", f"**{report['total'] / 1e6:.3f}**"])
    return ([f"### Bytes per sample (storage profile `{profile or DEFAULT_PROFILE}`)", ""]
            + _table(["part", "MB per sample"], rows)
            + ["", f"Projected: {report['total'] * 300_000 / 1e12:.2f} TB for 300K clips, "
                   f"{report['total'] * 1_300_000 / 1e12:.2f} TB for 1.3M clips "
                   "(profiles and their round-trip errors: docs/PIXELPLANES.md).", ""])


def _creation(stats: dict[str, Any], summary: IndexSummary, report: dict[str, Any] | None,
              meta: dict[str, Any]) -> list[str]:
    run, total = stats["run"], stats["total"]
    per_source = dict(summary.per_source)
    lines = ["## Dataset creation", "", "### Source data", "",
             f"Source `{stats['source']}`: {run['listed']} clips listed in the last run "
             f"({run['duplicate_keys_in_source']} duplicate keys), {total['samples']} kept in the build.", ""]
    lines += _table(["source", "samples"], sorted(per_source.items())) + [""]
    lines += ["Failures by stage (whole build): " + (", ".join(f"{k}: {v}" for k, v in total["failed_by_stage"].items())
                                                     or "none"), "", "### Filters", ""]
    filters = stats.get("filters") or {}
    config, drops = filters.get("config") or {}, filters.get("total") or {}
    if config:
        table = [[f"`{name}`", FILTERS[name].phase, f"`{json.dumps(config[name])}`", drops.get(name, 0),
                  " ".join((FILTERS[name].__doc__ or "").split())[:160]] for name in FILTERS if name in config]
        lines += ["Each filter drops a clip with its reason (in `ledger/filtered.jsonl`); cheap phases run first "
                  "(listing, probe, content, annotated), so no annotator time is spent on dropped clips.", ""]
        lines += _table(["filter", "phase", "settings", "dropped", "what it checks"], table) + [""]
        for name in filters.get("inactive", []):
            lines += [f"- `{name}` did not run: none of the annotators it reads is in this build.", ""]
    else:
        lines += ["No filters were configured.", ""]
    lines += ["### Balancing", ""]
    if report:
        cfg = report["config"]
        lines += [f"A balanced subset (config `balanced`): {report['total']['after']} of {report['total']['before']} "
                  f"samples, buckets {' x '.join(cfg['keys'])}, "
                  + (f"target {cfg['target']} split evenly (water-filling)" if cfg.get("target") is not None
                     else "explicit quotas") + f", seed {cfg['seed']} (sha1 rank of seed:key per bucket).", ""]
        lines += _table(["bucket", "before", "quota", "after"],
                        [[f"`{b}`", v["before"], v["quota"], v["after"]] for b, v in report["buckets"].items()]) + [""]
    else:
        lines += ["No balanced subset (add a `balance:` block to the pipeline or run `openuni-balance OUT --target N`).", ""]
    lines += ["### Annotations", ""] + _models(meta) + [""]
    return lines


def _strings(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_strings(v) for v in value)) if value else set()
    return {value} if isinstance(value, str) else set()


def _models(meta: dict[str, Any]) -> list[str]:
    """One row per (modality, registered model) found in the first sample's provenance."""
    registry = load_registry()
    sections = {**(meta.get("modalities") or {}), **(meta.get("annotations") or {})}
    table, details, restricted = [], [], []
    for modality, section in sections.items():
        provenance = section.get("provenance") or section.get("generation") or {}
        mentioned = _strings(provenance)
        entries = [e for e in registry.values() if e.name in mentioned or e.hub_id in mentioned]
        for e in entries:
            flag = "**non-commercial**" if e.non_commercial else "yes"
            table.append([modality, f"`{e.name}`", f"`{e.hub_id}`", f"`{e.revision}`", e.license, flag])
            if e.non_commercial:
                restricted.append(f"`{modality}` ({e.name}, {e.license})")
        if not entries:
            backend = provenance.get("backend", "see provenance")
            table.append([modality, f"`{backend}`", "-", "-", "no learned weights / not in the model registry", "yes"])
        details.append(f"- `{modality}`: `{json.dumps(provenance, sort_keys=True)}`")
    if not table:
        return ["No annotators ran: RGB clips and captions only."]
    warning = ([f"**Non-commercial:** {', '.join(restricted)} were made with weights whose license forbids "
                "commercial use; those annotations inherit it. Their Apache/MIT alternatives are listed by "
                "`openuni-models list --profile lite`.", ""] if restricted else [])
    return (["Annotations are machine-made (pseudo-labels). Models (from `manifests/models.toml`):", ""] + warning
            + _table(["modality", "model", "hub id", "revision", "license", "commercial use"], table)
            + ["", "Provenance recorded in `KEY.json` (first sample):", ""] + details)


def _limitations(produced: list[str]) -> list[str]:
    lines = ["## Limitations", "",
             "- Every annotation is predicted by a model, not measured: expect errors, especially on small, "
             "fast or occluded objects and people.",
             "- Licensing: clips inherit the terms of their source videos and metadata (Koala-36M and Panda-70M "
             "are for research use; check each source), and annotations the licenses of the models listed above "
             "(some are non-commercial).",
             "- Filter and balance thresholds are heuristics chosen for this build; near-duplicate detection "
             "compares sampled-frame perceptual hashes within this build only."]
    if "depth" in produced:
        lines.append("- Depth is relative (affine-invariant disparity), not metric.")
    if "skeleton" in produced or "densepose" in produced:
        lines.append("- Clips without (enough) people keep black skeleton/DensePose videos and `no_person` "
                     "in KEY.json.")
    return lines + [""]

