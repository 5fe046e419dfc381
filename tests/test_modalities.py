"""The modality records: one registration adds a modality end to end, and configs are typed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from openuni_builder import modalities, pixelplanes
from openuni_builder.commands.build import main
from openuni_builder.config import ConfigError, load_config
from openuni_builder.trainer.export import UNITYVIDEO_NAMES
from openuni_builder.trainer.model import MODALITIES
from openuni_builder.trainer.text import MODALITY_PROMPTS
from openuni_builder.video_io import decode_mp4
from tests.conftest import numbered_frames, tiny_config, write_video
from tests.test_build import read_samples


def test_toy_modality_registered_once_is_built_stored_and_described(tmp_path, ray_local):
    """tests/toy_modality.py only registers a record; annotating, the Pixelplanes video, the sidecar,
    KEY.json and the card all follow from it."""
    for i in range(2):
        write_video(tmp_path / f"v{i}.mp4", numbered_frames(30, 48, 64), 25.0)
    meta = tmp_path / "clips.jsonl"
    meta.write_text("\n".join(json.dumps({"path": f"v{i}.mp4", "caption": "bars"}) for i in range(2)))
    config = tiny_config(tmp_path, "  flow: {backend: dis}\n  luma: {gain: 0.5}\n")
    out = tmp_path / "out"
    assert main(["--source", "manifest", "--input", str(meta), "--shards", str(out), "--config", str(config),
                 "--no-progress"]) == 0
    samples = read_samples(out)
    assert len(samples) == 2
    for s in samples:
        assert {"luma.mp4", "luma.raw.mkv", "flow.mp4", "flow.raw.mkv"} <= set(s)  # the default profile
        raw = pixelplanes.sample_raw(s, "luma")["luma"]
        rgb = decode_mp4(s["mp4"])
        assert raw.dtype == np.uint8 and raw.shape == rgb.shape[:3]
        assert np.abs(raw.astype(int) - rgb.mean(-1) * 0.5).mean() < 2  # the RGB mp4 is lossy
        assert np.array_equal(pixelplanes.decode("luma", decode_mp4(s["luma.mp4"]), {})["luma"], raw)
        assert json.loads(s["json"])["modalities"]["luma"]["provenance"] == {"gain": 0.5}
    assert "per-pixel brightness" in (out / "README.md").read_text()


def test_unknown_annotator_option_names_it_and_the_allowed_ones(tmp_path, capsys):
    bad = tiny_config(tmp_path, "  flow: {backend: dis, maxside: 64}\n")
    with pytest.raises(ConfigError, match=r"annotators\.flow: unknown option maxside; allowed: backend"):
        load_config(bad)
    assert main(["--source", "samples", "--shards", str(tmp_path / "out"), "--config", str(bad), "--plan"]) != 0
    assert "maxside" in capsys.readouterr().err


@pytest.mark.parametrize("block, message", [
    ("  flow: {backend: dis, max_side: big}\n", "max_side must be int | None, got 'big'"),
    ("  flow: {backend: warp}\n", "unknown flow backend 'warp'"),
    ("  depth: {frame_batch: 0}\n", "frame_batch must be >= 1"),
    ("  flow: {backend: dis, resources: {gpus: 1}}\n", "flow.resources: unknown option gpus"),
    ("  sonar: {}\n", "unknown modality 'sonar'"),
])
def test_bad_annotator_blocks_are_config_errors(tmp_path, block, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("|", r"\|")):
        load_config(tiny_config(tmp_path, block))


def test_config_blocks_are_typed_once(tmp_path):
    cfg = load_config(tiny_config(tmp_path, "  flow: {backend: dis, max_side: 64}\n"))
    (flow,) = cfg.annotators
    assert flow.options.max_side == 64 and flow.build().options == flow.options
    assert cfg.shards.max_samples == 2 and cfg.caption.use == "source" and cfg.previews.samples == 4
    path = tmp_path / "extra.yaml"
    path.write_text(tiny_config(tmp_path).read_text() + "previews: {sample: 3}\n")
    with pytest.raises(ConfigError, match="previews: unknown option sample; allowed: samples"):
        load_config(path)


def test_trainer_card_and_export_tables_come_from_the_records():
    records = modalities.modalities()
    assert MODALITIES == tuple(m.name for m in sorted((m for m in records.values() if m.trainer_index is not None),
                                                      key=lambda m: m.trainer_index))
    assert set(MODALITY_PROMPTS) == set(MODALITIES)
    assert UNITYVIDEO_NAMES["flow"] == "raft" and "luma" not in UNITYVIDEO_NAMES
    assert modalities.get("depth").licences() == {"depth-anything-v2-small": "Apache-2.0"}
    assert not modalities.get("caption").video and modalities.get("luma").video
