"""`openuni-train`: train the minimal UnityVideo DiT straight from a build's shards (openuni_builder/trainer/)."""

from __future__ import annotations

import argparse
import sys

import torch

from openuni_builder.trainer.train import Config, train


def main(argv: list[str] | None = None) -> int:
    """The console script: exit 0 once trained, or 2 with a one-line error."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", required=True, nargs="+", help="shard folder (OUT/shards), or tar files")
    ap.add_argument("--config", default="tiny", help="YAML config path or bundled name (tiny, small)")
    ap.add_argument("--out", default="runs/trainer", help="run folder: checkpoint.pt, metrics.jsonl, config.yaml")
    ap.add_argument("--steps", type=int, help="override train.steps")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args(argv)
    shards = args.shards[0] if len(args.shards) == 1 else args.shards
    try:
        cfg = Config.load(args.config)
        if args.steps is not None:
            cfg.train.steps = args.steps
        train(cfg, shards, args.out, args.device)
    except (FileNotFoundError, ValueError) as exc:
        print(f"openuni-train: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
