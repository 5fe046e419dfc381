"""`openuni-sample`: generate videos or modalities with a trained checkpoint (openuni_builder/trainer/sample.py)."""

from __future__ import annotations

import argparse
import sys
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from openuni_builder.trainer.data import collate, iter_samples, load_sample
from openuni_builder.trainer.flow import TASKS
from openuni_builder.trainer.model import MODALITIES
from openuni_builder.trainer.sample import load_run, sample, to_frames
from openuni_builder.video_io import encode_mp4


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--task", required=True, choices=TASKS)
    ap.add_argument("--shards", help="take inputs (given stream, caption) from these shards")
    ap.add_argument("--index", type=int, default=0, help="first shard sample to use")
    ap.add_argument("--count", type=int, default=1, help="how many samples")
    ap.add_argument("--modality", choices=MODALITIES, help="default: the sample's first modality")
    ap.add_argument("--caption", help="override the caption (joint/rgb may use it without --shards)")
    ap.add_argument("--steps", type=int, default=25, help="Euler steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=float, default=8.0, help="frame rate of caption-only samples")
    ap.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    ap.add_argument("--out", default="samples")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return ap


def main(argv: list[str] | None = None) -> int:
    """The console script: exit 0 with the written paths printed, or 2 with a one-line error."""
    try:
        write_samples(parser().parse_args(argv))
    except (FileNotFoundError, ValueError, IndexError, KeyError) as exc:
        print(f"openuni-sample: error: {exc}", file=sys.stderr)
        return 2
    return 0


def write_samples(args: argparse.Namespace) -> list[Path]:
    """Generate and write one mp4 per sample; returns their paths."""
    run = load_run(args.checkpoint, args.device)
    cfg = run.cfg.data
    if args.shards:
        raw = list(islice(iter_samples(args.shards), args.index, args.index + args.count))
        if not raw:
            raise IndexError(f"no shard sample at index {args.index} in {args.shards}")
        batch = collate([load_sample(s, cfg, None, args.modality) for s in raw])
        if args.caption:
            batch["caption"] = [args.caption] * len(raw)
    elif args.task in ("joint", "rgb") and args.caption:
        batch = {"key": [f"caption{i}" for i in range(args.count)], "caption": [args.caption] * args.count,
                 "fps": torch.full((args.count,), args.fps),
                 "rgb": torch.zeros(args.count, 3, cfg.num_frames, cfg.height, cfg.width),
                 "modality": torch.full((args.count,), MODALITIES.index(args.modality or "depth"))}
    else:
        raise ValueError(f"--task {args.task} needs --shards (the given stream comes from a sample)")

    rgb, mod = sample(run, args.task, batch, args.steps, args.seed, not args.no_ema)
    if args.task == "cond":
        mod = batch["mod"]
    elif args.task == "est":
        rgb = batch["rgb"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, key in enumerate(batch["key"]):
        frames = to_frames(rgb[i])
        name = args.task
        if mod is not None:
            frames = np.concatenate([frames, to_frames(mod[i])], axis=2)
            name += f"-{MODALITIES[int(batch['modality'][i])]}"
        path = out / f"{key}-{name}.mp4"
        path.write_bytes(encode_mp4(frames, float(batch["fps"][i])))
        written.append(path)
        print(path, flush=True)
    return written


if __name__ == "__main__":
    sys.exit(main())
