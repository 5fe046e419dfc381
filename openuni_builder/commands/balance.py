"""`openuni-balance`: a balanced subset of a finished build (openuni_builder/publish/balance.py), and its card."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from openuni_builder.config import KEYS, BalanceConfig, BalanceError
from openuni_builder.location import location
from openuni_builder.publish.balance import balance
from openuni_builder.staging import pull, push


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="openuni-balance", description=__doc__.splitlines()[0])
    p.add_argument("out", help="a finished build: a directory or URI (with index.parquet and shards/)")
    p.add_argument("--target", type=int, help="total samples, split evenly over buckets")
    p.add_argument("--quotas", type=Path, help="JSON file {bucket label: count} instead of --target")
    p.add_argument("--keys", default=",".join(KEYS), help=f"bucket keys, comma-separated (default {','.join(KEYS)})")
    p.add_argument("--motion-thresholds", help="mean flow magnitudes between motion buckets, e.g. 0.5,2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-samples", type=int, default=256, help="samples per balanced shard")
    args = p.parse_args(argv)
    block: dict[str, Any] = {"keys": args.keys.split(","), "seed": args.seed, "target": args.target}
    if args.quotas:
        block["quotas"] = json.loads(args.quotas.read_text())
    if args.motion_thresholds:
        block["motion"] = {"thresholds": [float(t) for t in args.motion_thresholds.split(",")]}
    target = location(args.out)
    out = pull(target)  # a build at a URI is balanced in its local staging folder, then pushed
    try:
        report = balance(out, BalanceConfig.from_dict(block), args.max_samples, target / "shards")
    except BalanceError as exc:
        print(f"openuni-balance: error: {exc}", file=sys.stderr)
        return 2
    from openuni_builder.publish.card import write_card

    write_card(out, target / "shards")
    push(out, target)
    print(f"openuni-balance: {report['total']['after']} of {report['total']['before']} samples in "
          f"{len(report['shards'])} shards under {args.out}/balanced/shards; report {args.out}/balance.json")
    for bucket, n in report["buckets"].items():
        print(f"  {bucket}: {n['before']} -> {n['after']} (quota {n['quota']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
