"""Does joint RGB + depth training help RGB generation? RGB-only vs joint training, same budget.

Toy scale, synthetic data: clips of textured shapes moving over a textured, tilted background,
with a matching depth-like modality (disparity: nearer = brighter, shapes occlude by depth).
Both runs train the same DiT from the same initialisation, with the same batch size and number
of steps, reading the same shards through the trainer's own loader:
  rgb:   tasks {rgb: 1}                                   (text -> RGB, no modality stream)
  joint: tasks {rgb: .25, cond: .15, est: .2, joint: .4}  (RGB + depth; RGB is denoised in 80%)
Every --eval-every steps both are scored on held-out clips with the same measure: the
text -> RGB flow-matching loss (no modality stream), averaged over fixed noise and fixed t.
The summary gives the step at which each run first reaches the RGB-only run's final loss and
their ratio (> 1: joint training gets there in fewer steps). A joint step costs more compute
(twice the tokens on 75% of its steps), so wall-clock seconds are printed as well.

Output lines (parseable, key=value):
  curve run=rgb|joint step=N heldout_rgb_loss=X wall_s=S
  summary target=X rgb_steps=N joint_steps=N|none step_ratio=R|none rgb_wall_s=S joint_wall_s=S ...
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from openuni_builder.trainer.data import collate, iter_samples, load_sample, training_loader
from openuni_builder.trainer.train import Config, Run
from openuni_builder.video_io import encode_mp4

COLOURS = {"red": (215, 50, 45), "green": (60, 180, 75), "blue": (50, 90, 220), "yellow": (235, 205, 50),
           "purple": (140, 60, 180), "white": (235, 235, 235)}
DIRECTIONS = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}
SHAPES = ("square", "circle", "triangle")


def render_clip(rng: np.random.Generator, frames: int, size: int) -> tuple[np.ndarray, np.ndarray, str]:
    """RGB frames (T, S, S, 3) uint8, disparity (T, S, S) float32 and a caption of one random scene."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c1, c2 = (np.array(COLOURS[c], np.float32) * 0.5 for c in rng.choice(list(COLOURS), 2, replace=False))
    stripes = (np.sin(xx * rng.uniform(0.3, 0.8) + yy * rng.uniform(-0.3, 0.3)) > 0)[..., None]
    background = np.where(stripes, c1, c2)
    bg_disparity = 0.05 + 0.25 * yy / size  # a floor tilting towards the camera
    shapes = []
    for _ in range(rng.integers(1, 3)):
        direction = rng.choice(list(DIRECTIONS))
        shapes.append({"kind": rng.choice(SHAPES), "colour": rng.choice(list(COLOURS)), "direction": direction,
                       "r": rng.uniform(0.12, 0.22) * size, "disparity": rng.uniform(0.4, 1.0),
                       "xy": rng.uniform(0.3, 0.7, 2) * size, "speed": rng.uniform(0.8, 1.8),
                       "checker": rng.uniform(1.5, 3.5)})
    shapes.sort(key=lambda s: s["disparity"])  # paint far to near
    rgb = np.empty((frames, size, size, 3), np.uint8)
    disparity = np.empty((frames, size, size), np.float32)
    for k in range(frames):
        image, depth = background.copy(), bg_disparity.copy()
        for s in shapes:
            cx, cy = s["xy"] + k * s["speed"] * np.array(DIRECTIONS[s["direction"]])
            dx, dy, r = xx - cx, yy - cy, s["r"]
            mask = {"square": (abs(dx) < r) & (abs(dy) < r), "circle": dx ** 2 + dy ** 2 < r ** 2,
                    "triangle": (dy < r) & (dy > -r) & (abs(dx) < (dy + r) / 2)}[s["kind"]]
            checker = ((np.floor(dx / s["checker"]) + np.floor(dy / s["checker"])) % 2)[..., None]
            image = np.where(mask[..., None], np.array(COLOURS[s["colour"]]) * (0.7 + 0.3 * checker), image)
            depth = np.where(mask, s["disparity"], depth)
        rgb[k], disparity[k] = np.clip(image, 0, 255).astype(np.uint8), depth
    caption = " and ".join(f"a {s['colour']} {s['kind']} moving {s['direction']}" for s in reversed(shapes))
    return rgb, disparity, caption


def write_split(folder: Path, n: int, frames: int, size: int, seed: int, per_shard: int = 16) -> Path:
    """n synthetic clips as shards in the builder's format (RGB + depth mp4/npz)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, n, per_shard):
        with wds.TarWriter(str(folder / f"openuni-{start // per_shard:06d}.tar")) as sink:
            for i in range(start, min(start + per_shard, n)):
                rgb, disparity, caption = render_clip(rng, frames, size)
                key = f"synthetic-clip_{seed}_{i}"
                grey = np.repeat((disparity * 255).astype(np.uint8)[..., None], 3, axis=-1)
                raw = io.BytesIO()
                np.savez_compressed(raw, disparity=disparity)
                meta = {"key": key, "num_frames": frames, "fps": 8.0, "height": size, "width": size,
                        "caption": caption, "modalities": {"depth": {}}}
                sink.write({"__key__": key, "mp4": encode_mp4(rgb, 8.0), "txt": caption, "json": json.dumps(meta),
                            "depth.mp4": encode_mp4(grey, 8.0), "depth.npz": raw.getvalue()})
    return folder


def config(args: argparse.Namespace, joint: bool) -> Config:
    tasks = {"rgb": 0.25, "cond": 0.15, "est": 0.2, "joint": 0.4} if joint else {"rgb": 1.0}
    return Config.from_dict({
        "model": {"hidden": args.hidden, "depth": args.depth, "heads": args.heads, "patch": args.patch},
        "data": {"num_frames": args.frames, "height": args.size, "width": args.size, "batch_size": args.batch,
                 "modalities": ["depth"] if joint else [], "num_workers": args.workers, "shuffle": 256},
        "tasks": tasks, "text_encoder": args.text_encoder,
        "train": {"steps": args.steps, "lr": args.lr, "warmup": 20, "seed": args.seed}})


def heldout_loss(run: Run, batch: dict, repeats: int = 4) -> float:
    """Text -> RGB flow loss on held-out clips; the same noise and times for every run and step."""
    run.model.eval()
    with torch.no_grad():
        losses = [run.loss(batch, "rgb", generator=torch.Generator().manual_seed(1000 + r)).mean().item()
                  for r in range(repeats)]
    return float(np.mean(losses))


def train_and_eval(name: str, cfg: Config, shards: Path, heldout: dict, args: argparse.Namespace) -> tuple[list, float]:
    run = Run(cfg, args.device)
    loader = iter(training_loader(shards, cfg.data, seed=args.seed))
    curve, started = [], time.time()
    while run.step < cfg.train.steps:
        run.train_step(next(loader), run.pick_task())
        if run.step % args.eval_every == 0:
            loss = heldout_loss(run, heldout)
            curve.append((run.step, loss))
            print(f"curve run={name} step={run.step} heldout_rgb_loss={loss:.5f} wall_s={time.time() - started:.1f}",
                  flush=True)
    return curve, time.time() - started


def steps_to_reach(curve: list[tuple[int, float]], target: float, window: int) -> int | None:
    """First step whose trailing mean over `window` evals is at or below target."""
    for i in range(len(curve)):
        if np.mean([loss for _, loss in curve[max(0, i - window + 1):i + 1]]) <= target:
            return curve[i][0]
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--train-clips", type=int, default=256)
    ap.add_argument("--heldout-clips", type=int, default=16)
    ap.add_argument("--frames", type=int, default=9)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--window", type=int, default=3, help="evals averaged when finding the step that reaches the target")
    ap.add_argument("--hidden", type=int, default=96)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--patch", type=int, nargs=3, default=[1, 8, 8])
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text-encoder", default="all-minilm-l6-v2")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        shards = write_split(Path(tmp) / "train", args.train_clips, args.frames, args.size, seed=args.seed)
        held = write_split(Path(tmp) / "heldout", args.heldout_clips, args.frames, args.size, seed=args.seed + 10_000)
        rgb_cfg = config(args, joint=False)
        heldout = collate([load_sample(s, rgb_cfg.data, None) for s in iter_samples(held)])
        rgb_curve, rgb_wall = train_and_eval("rgb", rgb_cfg, shards, heldout, args)
        joint_curve, joint_wall = train_and_eval("joint", config(args, joint=True), shards, heldout, args)

    target = float(np.mean([loss for _, loss in rgb_curve[-args.window:]]))
    rgb_steps = steps_to_reach(rgb_curve, target, args.window)
    joint_steps = steps_to_reach(joint_curve, target, args.window)
    ratio = f"{rgb_steps / joint_steps:.3f}" if joint_steps else "none"
    print(f"summary target={target:.5f} rgb_final={rgb_curve[-1][1]:.5f} joint_final={joint_curve[-1][1]:.5f} "
          f"rgb_steps={rgb_steps} joint_steps={joint_steps if joint_steps else 'none'} step_ratio={ratio} "
          f"rgb_wall_s={rgb_wall:.1f} joint_wall_s={joint_wall:.1f} steps={args.steps} batch={args.batch} "
          f"frames={args.frames} size={args.size} device={args.device}", flush=True)


if __name__ == "__main__":
    main()
