"""Sanity figure: DIS flow (the flow annotator's CPU backend) against exact synthetic flow.

Prints, per clip, EPE of DIS and of predicting zero motion, over all pixels and over pixels still
visible at t+1, plus the time to render one 49-frame 256x256 clip.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python bench/synthetic_flow.py [--size 128] [--frames 17]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from annotators.flow import FlowAnnotator
from openuni_builder.clip import Clip, ClipRequest, ClipSpec
from openuni_builder.metrics import epe
from openuni_builder.synthetic import render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    spec = ClipSpec(num_frames=args.frames, fps=16.0, height=args.size, width=args.size)
    annotator = FlowAnnotator(dis_preset="medium")
    annotator.load()
    print(f"{'seed':>4} {'objects':>7} {'|gt| mean':>9} {'EPE dis':>8} {'EPE zero':>8} "
          f"{'dis/zero':>8} {'EPE dis vis':>11} {'EPE zero vis':>12}")
    ratios = []
    for seed in args.seeds:
        gt = render(spec, seed)
        (out,) = annotator.annotate([Clip(ClipRequest("synthetic", str(seed), "-"), spec, frames=gt.frames)])
        zero = np.zeros_like(gt.flow)
        d, z = epe(out.raw["flow"], gt.flow), epe(zero, gt.flow)
        dv, zv = epe(out.raw["flow"], gt.flow, gt.flow_valid), epe(zero, gt.flow, gt.flow_valid)
        ratios.append(d / z)
        print(f"{seed:>4} {gt.meta['num_objects']:>7} {np.linalg.norm(gt.flow, axis=-1).mean():>9.3f} "
              f"{d:>8.3f} {z:>8.3f} {d / z:>8.2f} {dv:>11.3f} {zv:>12.3f}")
    print(f"mean dis/zero EPE ratio: {np.mean(ratios):.2f}")
    big = ClipSpec(num_frames=49, fps=16.0, height=256, width=256)
    start = time.perf_counter()
    render(big, 0)
    print(f"render 49x256x256: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
