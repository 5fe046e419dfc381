"""`openuni-export`: a build in the layout UnityVideo's released trainer reads (one CSV per modality)."""

from __future__ import annotations

import argparse
import sys

import pandas as pd

from openuni_builder.trainer.export import export_unityvideo


def main(argv: list[str] | None = None) -> int:
    """The console script: exit 0 with the CSVs listed, or 2 with a one-line error."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--format", required=True, choices=["unityvideo"])
    ap.add_argument("build", help="build folder or URI OUT/ (or its shards/ folder)")
    ap.add_argument("dest", help="destination folder")
    ap.add_argument("--absolute", action="store_true", help="write absolute paths in the CSVs")
    args = ap.parse_args(argv)
    try:
        written = export_unityvideo(args.build, args.dest, args.absolute)
    except (FileNotFoundError, ValueError) as exc:
        print(f"openuni-export: error: {exc}", file=sys.stderr)
        return 2
    for name, path in written.items():
        print(f"{name}: {path} ({len(pd.read_csv(path))} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
