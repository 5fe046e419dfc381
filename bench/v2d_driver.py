"""Runs video2dataset 1.3.0 on a list of clips, inside video2dataset's own virtual environment
(it pins torch 2.1 and transformers 4.37, so it never shares ours). Started by bench/peer.py;
imports nothing from this project.

video2dataset's own way to do "cut, normalise, optical flow, WebDataset", as its docs lay out:
  stage 1 `download`: local files in, ClippingSubsampler (precision "exact": frame-accurate, re-encoded)
           -> ResolutionSubsampler (scale the short side, centre crop) -> FrameSubsampler (fps),
           each an ffmpeg run; mp4 clips written to WebDataset tars.
  stage 2 `optical_flow`: those tars decoded with decord at the clip's fps and size, OpenCV
           Farneback flow ("cv2" detector, its defaults) between consecutive frames, stored as
           float16 .npy in new WebDataset tars.
Prints `v2d_stage name=... wall_s=...` lines for bench/peer.py.

    VENV/bin/python bench/v2d_driver.py --clips clips.json --out DIR --size 256 --fps 16 --num-cpus 2
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
from video2dataset import video2dataset
from video2dataset.subsamplers import FrameSubsampler, ResolutionSubsampler


def config(subsampling: dict, reading: dict, shard_size: int, processes: int) -> dict:
    return {
        "subsampling": subsampling,
        "reading": {"yt_args": {"download_size": 360, "download_audio_rate": 44100, "yt_metadata_args": None},
                    "timeout": 60, "sampler": None, **reading},
        "storage": {"number_sample_per_shard": shard_size, "oom_shard_count": 5, "captions_are_subtitles": False},
        "distribution": {"processes_count": processes, "thread_count": processes, "subjob_size": 1000,
                         "distributor": "multiprocessing"},
    }


def _with_encode_formats(init):
    def patched(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.encode_formats = {"video": self.encode_format}
    return patched


def _on_copy(call):
    def patched(self, streams, metadata=None):
        return call(self, dict(streams), metadata)
    return patched


def _patch_v2d_1_3_0() -> None:
    """Two bugs of the 1.3.0 release that stop any clip with a video subsampler; the fixes only
    restore bookkeeping, not the work. Applied at import, because video2dataset's worker
    processes are spawned and re-import this file (as __mp_main__), not inherit patches.
    1. Its download worker reads `encode_formats` from the first video subsampler, which these
       two classes never set (they keep `encode_format`).
    2. It loops over the clip streams' dict while FrameSubsampler pops and re-adds "video" in
       that same dict ("dictionary keys changed during iteration"): hand it a copy."""
    for cls in (ResolutionSubsampler, FrameSubsampler):
        cls.__init__ = _with_encode_formats(cls.__init__)
    FrameSubsampler.__call__ = _on_copy(FrameSubsampler.__call__)


_patch_v2d_1_3_0()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", required=True, help="JSON list of {id, path, start, end} (seconds)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--size", type=int, required=True, help="output height = width")
    parser.add_argument("--fps", type=float, required=True)
    parser.add_argument("--num-cpus", type=int, default=2, help="worker processes (one shard each)")
    args = parser.parse_args()

    clips = json.loads(open(args.clips).read())
    # video2dataset parallelises over shards: size them so every worker process gets one.
    shard_size = max(1, math.ceil(len(clips) / args.num_cpus))
    table = pa.table({"url": [c["path"] for c in clips], "id": [c["id"] for c in clips],
                      "clips": [[[float(c["start"]), float(c["end"])]] for c in clips]})
    out = os.path.abspath(args.out)
    tmp = os.path.join(out, "tmp")  # video2dataset copies each input here; it must exist
    os.makedirs(tmp, exist_ok=True)
    inputs = os.path.join(out, "input.parquet")
    pq.write_table(table, inputs)

    cut_dir, flow_dir = os.path.join(out, "cut"), os.path.join(out, "flow")
    started = time.perf_counter()
    video2dataset(
        url_list=inputs, input_format="parquet", output_folder=cut_dir, output_format="webdataset",
        url_col="url", clip_col="clips", save_additional_columns=["id"], stage="download",
        encode_formats={"video": "mp4"}, incremental_mode="incremental", tmp_dir=tmp,
        config=config({
            "ClippingSubsampler": {"args": {"min_length": 0.0, "precision": "exact"}},
            "ResolutionSubsampler": {"args": {"resize_mode": "scale,crop", "video_size": args.size}},
            "FrameSubsampler": {"args": {"frame_rate": args.fps}},
        }, {}, shard_size, args.num_cpus))
    cut_s = time.perf_counter() - started
    print(f"v2d_stage name=cut wall_s={cut_s:.3f}", flush=True)

    shards = sorted(glob.glob(os.path.join(cut_dir, "*.tar")))
    if not shards:
        raise SystemExit(f"video2dataset wrote no shards into {cut_dir}")
    # Its webdataset input is one braceexpand string; the shards are 00000.tar, 00001.tar, ...
    names = [os.path.basename(s)[:-4] for s in shards]
    url_list = shards[0] if len(shards) == 1 else os.path.join(cut_dir, f"{{{names[0]}..{names[-1]}}}.tar")
    started = time.perf_counter()
    video2dataset(
        url_list=url_list, input_format="webdataset", output_folder=flow_dir, output_format="webdataset",
        stage="optical_flow", encode_formats={"optical_flow": "npy"}, incremental_mode="incremental",
        tmp_dir=tmp,
        config=config({"OpticalFlowSubsampler": {"args": {"detector": "cv2", "detector_args": None, "dtype": "fp16"}}},
                      {"dataloader_args": {"resize_size": None,
                                           "decoder_kwargs": {"n_frames": None, "fps": int(args.fps),
                                                              "num_threads": 1, "return_bytes": False}}},
                      shard_size, args.num_cpus))
    flow_s = time.perf_counter() - started
    print(f"v2d_stage name=optical_flow wall_s={flow_s:.3f}", flush=True)


if __name__ == "__main__":
    main()
