"""The identity of a build directory, `OUT/build.json`: what every sample of the build shares.

A build's first run fixes its pipeline, clip spec, modality set and dry-run flag; a rerun with
another one is refused, because every sample of one build must have the same members (Hugging
Face's webdataset loader requires it) and dry-run output must never mix with real annotations.

Each modality also has a version: the model id and revision its annotator's `provenance()` names
(read on the driver, before any model loads) and a code version (the annotator class's
`code_version` constant where it has one, else the package version). A rerun whose config names
another model or revision for a modality is refused as well (its samples would disagree with the
earlier ones); `openuni-build --refresh NAME` re-annotates the whole build instead, and keeps the
replaced versions under `modalities.NAME.previous`. `--add NAME` extends the modality set. Both
record themselves in `history`, and while one runs `pending` names it, so a plain build refuses to
start on shards that are being rewritten and a rerun of the same command resumes it.

A build.json written before versions existed (no `modalities`) stays readable: its versions are
filled in from the config of the next run that accepts it, marked `"recorded_later": true`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from annotators import get_annotator
from openuni_builder.config import BuildConfig

FILE = "build.json"
#: What a rerun must match exactly (the modality set compared as a set).
IDENTITY_KEYS = ("pipeline", "spec", "dry_run", "annotators")


class IdentityError(RuntimeError):
    """The build directory holds a build this run must not write into; the message says why and what to do."""


def code_version(annotator: type) -> str:
    """The annotator class's own `code_version` when it declares one, else the package's version."""
    own = getattr(annotator, "code_version", None)
    if own:
        return str(own)
    try:
        return f"openuni-builder {metadata.version('openuni-builder')}"
    except metadata.PackageNotFoundError:
        return "openuni-builder (not installed)"


def modality_version(name: str, options: Any) -> dict[str, Any]:
    """{"model", "revision", "code", "provenance"} of one annotator with these options, from its
    provenance before load (cheap: model files are not read). An annotator whose provenance cannot
    be had on this machine (an optional backend not installed here) gets model None and the reason."""
    cls = get_annotator(name)
    try:
        provenance = cls(**(options if isinstance(options, dict) else vars(options))).provenance()
    except Exception as exc:  # the driver may lack a backend only the workers have
        provenance = {"unknown": f"{type(exc).__name__}: {exc}"}
    return {"model": _first(provenance, ("model", "hub_id", "backend", "detector")),
            "revision": _first(provenance, ("revision", "detector_revision")),
            "code": code_version(cls), "provenance": provenance}


def _first(provenance: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first of `keys` found at the top level, else those of nested sections (`role=value`,
    e.g. entity seg's segmenter and tracker)."""
    for key in keys:
        if isinstance(provenance.get(key), str):
            return provenance[key]
    nested = [f"{role}={found}" for role, section in provenance.items() if isinstance(section, dict)
              for found in [_first(section, keys)] if found]
    return ", ".join(nested) or None


def versions(cfg: BuildConfig, names: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """The version of each configured annotator (or of `names` only)."""
    wanted = None if names is None else set(names)
    return {a.name: modality_version(a.name, a.options) for a in cfg.annotators if wanted is None or a.name in wanted}


def read(out: Path) -> dict[str, Any] | None:
    path = Path(out) / FILE
    return json.loads(path.read_text()) if path.exists() else None


def write(out: Path, identity: dict[str, Any]) -> None:
    """Replace OUT/build.json atomically (a kill leaves the old one or the new one)."""
    path = Path(out) / FILE
    tmp = path.with_name(f"{FILE}.tmp")
    tmp.write_text(json.dumps(identity, indent=2, default=str))
    os.replace(tmp, path)


def of(cfg: BuildConfig, dry_run: bool) -> dict[str, Any]:
    """The identity a build with this config would have."""
    return {"pipeline": cfg.name, "spec": asdict(cfg.spec), "dry_run": dry_run,
            "annotators": [a.name for a in cfg.annotators], "config": config_path(cfg), "modalities": versions(cfg)}


def config_path(cfg: BuildConfig) -> str | None:
    """The config's file as an absolute path, so a later --add from another folder finds it."""
    return str(Path(cfg.path).resolve()) if cfg.path else None


def check(out: Path, cfg: BuildConfig, dry_run: bool) -> dict[str, Any]:
    """Fix the identity on a build's first run, or check a rerun against it (IdentityError when it
    differs, or while an --add/--refresh is unfinished); returns the identity in force."""
    now = of(cfg, dry_run)
    previous = read(out)
    if previous is None:
        write(out, now)
        return now
    pending = previous.get("pending")
    if pending:
        raise IdentityError(f"{out}: `openuni-build --shards OUT {pending['command']}` is unfinished and its shards "
                            "are being rewritten; rerun that command to finish it first")
    diff = {k: (previous.get(k), now[k]) for k in IDENTITY_KEYS if _comparable(k, previous.get(k)) != _comparable(k, now[k])}
    if diff:
        added = sorted(set(now["annotators"]) - set(previous.get("annotators") or []))
        hint = (f"; to add modalities to this build: openuni-build --shards OUT --add {' '.join(added)}"
                if added and set(diff) == {"annotators"} else "")
        raise IdentityError(f"{out} holds a build with a different identity {diff} (before, now); "
                            f"samples of one build must share their members: use a new --shards directory{hint}")
    recorded = previous.get("modalities") or {}
    changed = {n: (_model(recorded[n]), _model(v)) for n, v in now["modalities"].items()
               if n in recorded and recorded[n].get("model") is not None and v.get("model") is not None
               and _model(recorded[n]) != _model(v)}
    if changed:
        raise IdentityError(f"{out}: this config annotates {sorted(changed)} with other models than the build did "
                            f"{changed} (before, now); every sample of a build has the same annotations: "
                            f"openuni-build --shards OUT --refresh {' '.join(sorted(changed))} re-annotates the whole "
                            "build with the new ones, or use a new --shards directory")
    missing = {n: {**v, "recorded_later": True} for n, v in now["modalities"].items() if n not in recorded}
    if missing or "config" not in previous:
        previous = {**previous, "modalities": {**recorded, **missing}, "config": previous.get("config", config_path(cfg))}
        write(out, previous)
    return previous


def _comparable(key: str, value: Any) -> Any:
    return sorted(value or []) if key == "annotators" else value


def _model(version: dict[str, Any]) -> tuple[Any, Any]:
    return version.get("model"), version.get("revision")


def begin_change(out: Path, cfg: BuildConfig, dry_run: bool, add: list[str], refresh: list[str]) -> dict[str, Any]:
    """Record an --add/--refresh as pending in OUT/build.json (or find the same one pending from a
    killed run, to resume it) and return the pending record: {"id", "command", "add", "refresh",
    "versions", "started"}. Refused when OUT holds no build, a different change is pending, the
    dry-run flag or clip spec differ, an added modality is there already or a refreshed one is not."""
    identity = read(out)
    if identity is None:
        raise IdentityError(f"{out} holds no build (no {FILE}); --add and --refresh extend an existing build")
    request = {"add": sorted(add), "refresh": sorted(refresh)}
    command = " ".join(f"--{k} {' '.join(v)}" for k, v in request.items() if v) + (" --dry-run" if dry_run else "")
    pending = identity.get("pending")
    if pending:
        if {k: pending[k] for k in request} != request or pending.get("dry_run") != dry_run:
            raise IdentityError(f"{out}: `openuni-build --shards OUT {pending['command']}` is unfinished; rerun it "
                                f"to finish it before `{command}`")
        return pending
    if identity["dry_run"] != dry_run:
        raise IdentityError(f"{out} holds a {'dry-run' if identity['dry_run'] else 'real'} build; "
                            f"{'--dry-run' if dry_run else 'real'} annotations never mix with it "
                            f"(dry_run before, now: {identity['dry_run']}, {dry_run})")
    if identity["spec"] != asdict(cfg.spec):
        raise IdentityError(f"the config's clip spec {asdict(cfg.spec)} is not the build's {identity['spec']}: "
                            "pass the build's pipeline with --config")
    have = set(identity["annotators"])
    there = sorted(set(add) & have)
    if there:
        raise IdentityError(f"{there} already in the build; --refresh {' '.join(there)} re-annotates it")
    absent = sorted(set(refresh) - have)
    if absent:
        raise IdentityError(f"{absent} not in the build (it has {sorted(have)}); --add {' '.join(absent)} adds it")
    both = sorted(set(add) & set(refresh))
    if both:
        raise IdentityError(f"{both} named by both --add and --refresh")
    wanted = versions(cfg, [*add, *refresh])
    digest = hashlib.sha1(json.dumps({**request, "versions": {n: _model(v) for n, v in sorted(wanted.items())}},
                                     sort_keys=True).encode()).hexdigest()[:12]
    pending = {"id": digest, "command": command, **request, "dry_run": dry_run, "versions": wanted,
               "config": config_path(cfg), "started": time.time()}
    write(out, {**identity, "pending": pending})
    return pending


def finish_change(out: Path) -> dict[str, Any]:
    """The pending change done: its modalities join the identity (added ones at the end of the
    set), refreshed versions replace theirs with the old ones kept under `previous`, the change
    goes into `history` and `pending` is cleared. Returns the new identity."""
    identity = read(out)
    pending = identity.pop("pending")
    recorded = dict(identity.get("modalities") or {})
    for name, version in pending["versions"].items():
        old = recorded.get(name)
        if old is not None:
            version = {**version, "previous": [{k: v for k, v in old.items() if k != "previous"},
                                               *old.get("previous", [])]}
        recorded[name] = version
    identity["modalities"] = recorded
    identity["annotators"] = [*identity["annotators"], *(n for n in pending["add"] if n not in identity["annotators"])]
    identity.setdefault("history", []).append(
        {"command": pending["command"], "add": pending["add"], "refresh": pending["refresh"],
         "started": pending["started"], "finished": time.time()})
    write(out, identity)
    return identity
