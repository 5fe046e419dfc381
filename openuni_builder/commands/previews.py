"""`python -m openuni_builder.commands.previews SHARD.tar OUT_DIR`: contact sheets of a shard's samples."""

from __future__ import annotations

import argparse
from itertools import islice
from pathlib import Path

from openuni_builder.publish.previews import iter_samples, sample_contact_sheet, save_png


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shard", help="a WebDataset .tar written by the build")
    parser.add_argument("out_dir", help="folder for KEY.png contact sheets")
    parser.add_argument("--max", type=int, default=4, help="samples to render (default 4)")
    parser.add_argument("--frames", type=int, default=6, help="frames per row (default 6)")
    args = parser.parse_args(argv)
    for key, members in islice(iter_samples(args.shard), args.max):
        save_png(Path(args.out_dir) / f"{key}.png", sample_contact_sheet(members, args.frames))
        print(Path(args.out_dir) / f"{key}.png")


if __name__ == "__main__":
    main()
