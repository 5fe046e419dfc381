"""Driver-side filtering: the listing filters before anything is scheduled, and the near-duplicate
screen pass, whose decision needs the perceptual hash of every clip.

The screen pass (only when `filters.near_duplicate` is configured) decodes every clip once with
the probe and content filters and returns their hashes without frames; the driver then keeps, in
key order, each clip that is not within `max_distance` of a clip already kept (clips finished by
earlier runs count as kept). Only the survivors go through the annotators, so no annotator time
is spent on duplicates; the price is decoding the survivors twice.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Iterator

from openuni_builder.clip import Clip, ClipRequest
from openuni_builder.config import BuildConfig
from openuni_builder.filters import HashIndex, NearDuplicateFilter, in_phase, parse_filters, run_filters
from openuni_builder.ledger import Ledger
from openuni_builder.location import StorageOptions
from openuni_builder.runtime import run_screen
from openuni_builder.shards import rejection


def fingerprints(cfg: BuildConfig) -> dict[str, str]:
    """Filter name -> fingerprint of its settings, for every configured filter."""
    return {f.name: f.fingerprint for f in parse_filters(cfg.filters)}


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


def prefilter(requests: Iterable[ClipRequest], cfg: BuildConfig, ledger: Ledger, progress: bool = True,
              options: StorageOptions | None = None) -> tuple[Iterable[ClipRequest], Counter, Counter]:
    """Requests that survive the listing filters and near-duplicate screening, plus the drops by
    filter and failures by stage recorded on the way (all written to the ledger; the counters
    fill as the requests are consumed). Without near-duplicate screening this streams; with it,
    the surviving requests are held, since the screen decides in key order over all of them."""
    filters = parse_filters(cfg.filters)
    prints = {f.name: f.fingerprint for f in filters}
    counts: dict[str, Counter] = {"filtered": Counter(), "failed": Counter()}
    listing = in_phase(filters, "listing")

    def survivors() -> Iterator[ClipRequest]:
        for req in requests:
            clip = run_filters(Clip(request=req, spec=cfg.spec), listing)
            if clip.ok:
                yield req
            else:
                kind, name = record_rejected(ledger, clip, prints)
                counts[kind][name] += 1

    dedup = next((f for f in filters if isinstance(f, NearDuplicateFilter)), None)
    if dedup is None:
        return survivors(), counts["filtered"], counts["failed"]
    kept = list(survivors())
    if not kept:
        return kept, counts["filtered"], counts["failed"]

    index = HashIndex(int(dedup.options["max_distance"]))
    done = sorted((row["key"], ((row.get("filters") or {}).get(dedup.name) or {}).get("phash"))
                  for row in ledger.iter_done())
    for key, phash in done:
        if phash:
            index.add(key, bytes.fromhex(phash))
    hashes: dict[str, bytes] = {}
    for clip in run_screen(kept, cfg, options=options, progress=progress):
        if clip.ok:
            hashes[clip.key] = bytes.fromhex(clip.filters[dedup.name]["phash"])
        else:
            kind, name = record_rejected(ledger, clip, prints)
            counts[kind][name] += 1
    unique = []
    for req in sorted(kept, key=lambda r: r.key):
        if req.key not in hashes:
            continue
        phash = hashes[req.key]
        near = index.nearest(phash)
        if near is None:
            index.add(req.key, phash)
            unique.append(req)
            continue
        values = {"phash": phash.hex(), "duplicate_of": near[0], "distance": near[1]}
        clip = Clip(request=req, spec=cfg.spec).drop(
            dedup.name, f"near-duplicate of {near[0]} ({near[1]} of 64 bits differ)", values)
        record_rejected(ledger, clip, prints)
        counts["filtered"][dedup.name] += 1
    return unique, counts["filtered"], counts["failed"]
