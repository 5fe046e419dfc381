"""Driver-side filtering: the listing filters, streamed before anything is scheduled, the ledger
records of what the graph dropped or failed, and the hashes of finished clips that near-duplicate
screening (`stages.DedupStage`, in the graph right after decode) compares new clips with.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Iterator

from openuni_builder.clip import Clip, ClipRequest
from openuni_builder.config import BuildConfig
from openuni_builder.filters import NearDuplicateFilter, in_phase, run_filters
from openuni_builder.ledger import Ledger
from openuni_builder.shards import rejection
from openuni_builder.video_io import TOO_SHORT


def fingerprints(cfg: BuildConfig) -> dict[str, str]:
    """Filter name -> fingerprint of its settings, for every configured filter, plus the built-in
    `too_short` drop, whose setting is the clip spec (a longer spec gives short clips another look)."""
    prints = {f.name: f.fingerprint for f in cfg.filters}
    prints[TOO_SHORT] = f"{cfg.spec.num_frames}@{cfg.spec.fps:g}"
    return prints


def record_rejected(ledger: Ledger, record: Clip | dict[str, Any], prints: dict[str, str]) -> tuple[str, str]:
    """Write a dropped or failed clip (or its `shards.rejection` record) to the ledger; returns
    ("filtered", filter) or ("failed", stage)."""
    record = rejection(record) if isinstance(record, Clip) else record
    key, context = record["key"], record["context"]
    if record["status"] == "filtered":
        name = record["filter"]
        ledger.mark_filtered(key, name, record["reason"], record["values"], prints[name], **context)
        return "filtered", name
    ledger.mark_failed(key, record["stage"], record["reason"], **context)
    return "failed", record["stage"]


def prefilter(requests: Iterable[ClipRequest], cfg: BuildConfig, ledger: Ledger) -> tuple[Iterator[ClipRequest], Counter]:
    """Requests that pass the listing filters, streamed, plus the drops by filter recorded on the
    way (written to the ledger; the counter fills as the requests are consumed)."""
    filters = cfg.filters
    prints = fingerprints(cfg)
    drops: Counter = Counter()
    listing = in_phase(filters, "listing")

    def survivors() -> Iterator[ClipRequest]:
        for req in requests:
            clip = run_filters(Clip(request=req, spec=cfg.spec), listing)
            if clip.ok:
                yield req
            else:
                drops[record_rejected(ledger, clip, prints)[1]] += 1

    return survivors(), drops


def kept_hashes(cfg: BuildConfig, ledger: Ledger) -> list[tuple[str, str]] | None:
    """(key, phash) of every finished clip when near-duplicate screening is configured (the clips
    new ones are compared with), else None."""
    dedup = next((f for f in cfg.filters if isinstance(f, NearDuplicateFilter)), None)
    if dedup is None:
        return None
    return sorted((row["key"], row["filters"][dedup.name]["phash"]) for row in ledger.iter_done()
                  if ((row.get("filters") or {}).get(dedup.name) or {}).get("phash"))
