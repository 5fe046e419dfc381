"""`openuni-eval`: score a build's annotations against the exact ground truth of its synthetic clips (openuni_builder/eval.py)."""

from __future__ import annotations

import argparse
import json
import sys

from openuni_builder.eval import EvalError, evaluate, format_table
from openuni_builder.location import location, write_bytes_atomic


EPILOG = """examples:
  openuni-build --source synthetic --shards out/ --config openuni   # 4 clips with exact ground truth
  openuni-eval out/                  # table: per clip and mean, per modality, raw and video
  openuni-eval out/ --format json    # the same report as JSON

Scores depth (AbsRel, d<1.25 after per-clip scale-and-shift alignment of disparity), flow (EPE,
all and non-occluded pixels) and seg (entity mIoU) for the synthetic clips of a build; other
samples and modalities are counted but not scored. The report is also written to OUT/eval.json.
Metric definitions and measured numbers: docs/EVAL.md.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="openuni-eval", description=__doc__.split("\n\n")[0], epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", metavar="OUT", help="build directory or URI (the --shards OUT of openuni-build)")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="print a table (default) or the JSON report; OUT/eval.json is written either way")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        report = evaluate(args.out)
    except EvalError as exc:
        print(f"openuni-eval: error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(report, indent=2)
    written = location(args.out) / "eval.json"
    write_bytes_atomic(written, (text + "\n").encode())
    print(text if args.format == "json" else format_table(report) + f"\nwritten: {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
