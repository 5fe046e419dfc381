"""`openuni-models`: list, fetch and verify the registered models in the local cache (openuni_builder/pull.py)."""

from __future__ import annotations

import argparse
import sys

from openuni_builder.models import CACHE_ENV, REGISTRY_PATH, ModelEntry, cache_dir, load_registry
from openuni_builder.pull import PROFILES, PullError, check_files, pull, status


def _cmd_list(args: argparse.Namespace) -> int:
    registry = load_registry()
    print(f"model cache: {cache_dir()}  (set ${CACHE_ENV} to move it)")
    rows = [("NAME", "PROFILES", "KIND", "LICENSE", "STATUS", "SOURCE")]
    for entry in registry.values():
        if args.profile and args.profile not in entry.profiles:
            continue
        rows.append((entry.name, ",".join(entry.profiles), entry.kind, entry.license, status(entry),
                     f"{entry.hub_id}@{entry.revision}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1])
    return 0


def _selected(args: argparse.Namespace, registry: dict[str, ModelEntry]) -> list[ModelEntry]:
    unknown = [n for n in args.names if n not in registry]
    if unknown:
        raise SystemExit(f"openuni-models: unknown model(s) {', '.join(unknown)}; known: {', '.join(registry)}")
    if args.profile:
        return [e for e in registry.values() if args.profile in e.profiles]
    if getattr(args, "pipeline", None):
        return [registry[n] for n in pipeline_models(args.pipeline)]
    return [registry[n] for n in args.names]


def pipeline_models(pipeline: str) -> list[str]:
    """The registered models a pipeline's annotators declare with its options (`Annotator.models()`)."""
    from openuni_builder.config import load_config
    from pipelines import resolve

    return load_config(resolve(pipeline)).models()


def _cmd_pull(args: argparse.Namespace) -> int:
    failed = 0
    for entry in _selected(args, load_registry()):
        try:
            print(f"{entry.name}: {pull(entry, force=args.force)}")
        except PullError as exc:
            print(f"openuni-models: error: {exc}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _cmd_verify(args: argparse.Namespace) -> int:
    registry = load_registry()
    named = bool(args.names or args.profile or args.pipeline)
    entries = _selected(args, registry) if named else list(registry.values())
    failed = False
    for entry in entries:
        folder = cache_dir() / entry.name
        if status(entry) == "missing":
            print(f"{entry.name}: not cached")
            failed = failed or named  # only a model asked for by name must be there
            continue
        for filename, verdict in check_files(entry, folder).items():
            print(f"{entry.name}/{filename}: {verdict}")
            failed = failed or verdict == "missing" or verdict.startswith("MISMATCH")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openuni-models",
        description=f"List, fetch and verify the models registered in {REGISTRY_PATH.name}. Builds load "
                    f"models only from the local cache (${CACHE_ENV}, default ~/.cache/openuni/models); "
                    "`pull` is the one command that needs internet.")
    sub = parser.add_subparsers(dest="command", required=True)

    p_list = sub.add_parser("list", help="registered models, their profile and whether they are cached")
    p_list.add_argument("--profile", choices=PROFILES, help="only models of this profile")
    p_list.set_defaults(run=_cmd_list)

    p_pull = sub.add_parser("pull", help="download models at their pinned revision into the cache",
                            description="Download models at the registry's pinned revision (Hugging Face "
                                        "Hub repos via snapshot_download, torchvision weights via their URL) "
                                        "into the cache, then check them against the registry.")
    _add_targets(p_pull, required=True)
    p_pull.add_argument("--force", action="store_true", help="download again even if already cached")
    p_pull.set_defaults(run=_cmd_pull)

    p_verify = sub.add_parser("verify", help="check cached files against the registry's sha256",
                              description="Hash the cached files and compare them with the registry. "
                                          "Without names, checks every cached model and skips missing ones. "
                                          "Exit status 1 when a file is missing or does not match.")
    _add_targets(p_verify, required=False)
    p_verify.set_defaults(run=_cmd_verify)
    return parser


def _add_targets(parser: argparse.ArgumentParser, required: bool) -> None:
    target = parser.add_mutually_exclusive_group(required=required)
    target.add_argument("names", nargs="*", default=[], metavar="NAME", help="registered model name(s)")
    target.add_argument("--profile", choices=PROFILES, help="every model of this profile")
    target.add_argument("--pipeline", metavar="CONFIG",
                        help="every model the annotators of this pipeline (a name in pipelines/ or a YAML path) "
                             "load with its options")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
