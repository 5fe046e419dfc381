"""The dataset card of a samples build: YAML front matter + markdown that parse, every section,
plots and previews on disk, and the data loads through the card's own `configs` with `datasets`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from openuni_builder.commands.build import main
from tests.conftest import tiny_config

SECTIONS = ["Dataset description", "Dataset structure", "Dataset creation", "Source data", "Filters",
            "Balancing", "Annotations", "Plots", "Previews", "Limitations", "Citation"]


@pytest.fixture(scope="module")
def samples_build(tmp_path_factory, ray_local) -> Path:
    tmp = tmp_path_factory.mktemp("card")
    cfg = tiny_config(tmp, max_samples=3)
    cfg.write_text(cfg.read_text() + "filters:\n  metadata: {duration: {min: 1.0}}\n  black: {}\n"
                   "  motion: {}\nbalance: {target: 4, seed: 1}\npreviews: {samples: 2, animated: true}\n")
    assert main(["--source", "samples", "--shards", str(tmp / "out"), "--config", str(cfg),
                 "--limit", "5", "--no-progress"]) == 0
    return tmp / "out"


def front_matter(out: Path) -> tuple[dict, str]:
    text = (out / "README.md").read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def test_card_front_matter_is_a_hub_dataset_card(samples_build):
    from huggingface_hub import DatasetCard

    meta, _ = front_matter(samples_build)
    assert meta["license"] == "other" and meta["license_name"]
    assert "text-to-video" in meta["task_categories"] and meta["size_categories"] == ["n<1K"]
    assert {"webdataset", "video", "flow"} <= set(meta["tags"])
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert configs["all"]["default"] and configs["all"]["data_files"] == [{"split": "train", "path": "shards/*.tar"}]
    assert configs["balanced"]["data_files"][0]["path"] == "balanced/shards/*.tar"
    infos = {i["config_name"]: i for i in meta["dataset_info"]}
    assert infos["all"]["splits"][0]["num_examples"] == 5 and infos["balanced"]["splits"][0]["num_examples"] == 4
    names = {f["name"] for f in infos["all"]["features"]}
    assert {"mp4", "flow.mp4", "flow.raw.mkv", "json", "txt"} <= names
    card = DatasetCard.load(samples_build / "README.md")
    assert card.data.license == "other" and "## Dataset structure" in card.text


def test_card_markdown_has_every_section_member_plot_and_preview(samples_build):
    from markdown_it import MarkdownIt

    _, body = front_matter(samples_build)
    tokens = MarkdownIt("commonmark").enable("table").parse(body)
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    for section in SECTIONS:
        assert section in headings, section
    images = [c.attrGet("src") for t in tokens if t.type == "inline" for c in t.children or [] if c.type == "image"]
    assert {"plots/durations.png", "plots/motion.png", "plots/balance.png"} <= set(images)
    assert sum(i.startswith("previews/") and i.endswith(".png") for i in images) == 2
    assert sum(i.endswith(".gif") for i in images) == 2
    assert all((samples_build / i).is_file() for i in images)
    for member in ["KEY.mp4", "KEY.json", "KEY.txt", "KEY.flow.mp4", "KEY.flow.raw.mkv"]:
        assert f"`{member}`" in body
    assert "flow raw arrays, lossless FFV1 video (docs/FORMAT.md): `flow` int16 (8, 32, 48, 2)" in body
    assert "### Bytes per sample (storage profile `standard`)" in body and "TB for 1.3M clips" in body
    stats = json.loads((samples_build / "stats.json").read_text())
    per = stats["bytes_per_sample"]
    assert set(per["per_modality"]) >= {"rgb", "flow", "meta"} and per["projected"]["clips"] == 1_300_000
    stats = json.loads((samples_build / "stats.json").read_text())
    for field in ["frame_times", "filters", "modalities", "caption_from"]:
        assert f"| `{field}` |" in body
    assert "| `metadata` | probe |" in body and "| `motion` | annotated |" in body
    assert "`opencv-dis`" in body  # the flow backend of this build, from the sample's provenance
    assert "arXiv:2512.07831" in body and "arXiv:2503.09344" in body
    assert f"samples: **{stats['total']['samples']}**" in body


def test_card_configs_load_with_datasets_webdataset_builder(samples_build, tmp_path):
    import datasets
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCard

    meta, _ = front_matter(samples_build)
    default = next(c for c in meta["configs"] if c.get("default"))
    files = sorted(str(p) for p in samples_build.glob(default["data_files"][0]["path"]))
    ds = datasets.load_dataset("webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path))
    declared = DatasetInfosDict.from_dataset_card_data(DatasetCard.load(samples_build / "README.md").data)
    assert ds.num_rows == 5 and ds.features == declared["all"].features
    # Loading the folder itself goes through the card: its configs, features and split sizes.
    balanced = datasets.load_dataset(str(samples_build), "balanced", split="train", cache_dir=str(tmp_path))
    for column, feature in balanced.features.items():
        if isinstance(feature, datasets.Video):  # decoding would need torchcodec; bytes are enough here
            balanced = balanced.cast_column(column, datasets.Video(decode=False))
    assert balanced.num_rows == 4
    row = balanced[0]
    assert row["json"]["key"] == row["__key__"] and row["mp4"]["bytes"][4:8] == b"ftyp"
    assert set(balanced["__key__"]) <= set(ds["__key__"])


def test_card_lists_model_revision_licence_and_flags_non_commercial_weights():
    from openuni_builder.publish.card import _models

    meta = {"modalities": {"depth": {"provenance": {"model": "depth-anything-v2-large"}},
                           "flow": {"provenance": {"backend": "opencv-dis"}}}}
    text = "\n".join(_models(meta))
    assert "**Non-commercial:** `depth` (depth-anything-v2-large, CC-BY-NC-4.0)" in text
    assert "| depth | `depth-anything-v2-large` | `depth-anything/Depth-Anything-V2-Large-hf` | `7581137e" in text
    assert "CC-BY-NC-4.0 | **non-commercial** |" in text
    small = "\n".join(_models({"modalities": {"depth": {"provenance": {"model": "depth-anything-v2-small"}}}}))
    assert "Non-commercial" not in small and "Apache-2.0 | yes |" in small
