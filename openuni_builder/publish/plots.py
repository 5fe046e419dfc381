"""The dataset card's plots: distributions a person should see before training on a build.

Every plot is drawn from the index summary (per-clip numbers gathered in one streaming pass over
the index: durations, filter values, per-modality facts, scores), the build stats and the
balance report; a plot whose data the build does not have (no motion filter,
no segmentation) is left out rather than drawn empty. Figures are made with matplotlib's
object API (no pyplot state), so plotting is safe inside any process.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from openuni_builder.publish.index_summary import IndexSummary

PLOTS_DIR = "plots"


def _hist(ax, values: Sequence[float], xlabel: str, integer: bool = False) -> None:
    if integer:
        counts = Counter(int(v) for v in values)
        ax.bar(list(counts), list(counts.values()), color="#4c72b0")
    else:
        ax.hist(values, bins=min(30, max(5, len(set(values)))), color="#4c72b0")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("clips")


def _save(fig: Figure, folder: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(folder / f"{name}.png", dpi=90)
    return f"{PLOTS_DIR}/{name}.png"


def write_plots(out: Path, summary: IndexSummary, stats: dict[str, Any],
                balance: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    """Draw every plot this build has data for into OUT/plots; returns {name: (path relative to
    OUT, caption)} in the order the card shows them."""
    folder = Path(out) / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    drawn: dict[str, tuple[str, str]] = {}

    def single(name: str, values: Sequence[float], xlabel: str, caption: str, integer: bool = False) -> None:
        if values:
            fig = Figure(figsize=(5, 3))
            _hist(fig.subplots(), values, xlabel, integer)
            drawn[name] = (_save(fig, folder, name), caption)

    single("durations", summary.series.get("duration", ()), "source segment duration (s)",
           "Duration of the source segment each clip was cut from.")
    motion = {f: summary.series.get(f"motion.{f}", ()) for f in ("mean", "peak")}
    if motion["mean"]:
        fig = Figure(figsize=(8, 3))
        for ax, (field, values) in zip(fig.subplots(1, 2), motion.items()):
            _hist(ax, values, f"flow magnitude, {field} (px/frame)")
        drawn["motion"] = (_save(fig, folder, "motion"), "Optical-flow magnitude per clip (motion filter values).")

    def grid(name: str, series: dict[str, Sequence[float]], caption: str) -> None:
        """One histogram per series, three to a row."""
        if series:
            fig = Figure(figsize=(4 * min(3, len(series)), 3 * -(-len(series) // 3)))
            axes = np.atleast_1d(fig.subplots(-(-len(series) // 3), min(3, len(series)))).ravel()
            for ax, (label, values) in zip(axes, series.items()):
                _hist(ax, values, label)
            for ax in axes[len(series):]:
                ax.set_visible(False)
            drawn[name] = (_save(fig, folder, name), caption)

    grid("scores", {c: summary.scores[c] for c in sorted(summary.scores)}, "Source quality scores of the kept clips.")
    quality = {n.removeprefix("quality."): v for n, v in summary.series.items() if n.startswith("quality.") and v}
    grid("quality", quality, "Annotation quality scores of the kept clips (docs/QUALITY.md).")
    single("persons", summary.series.get("persons", ()), "people (tracks) per clip",
           "People per clip from the person detector.", integer=True)
    single("entities", summary.series.get("entities", ()),
           "entities per clip", "Segmented entities per clip.", integer=True)
    drops = (stats.get("filters") or {}).get("total") or {}
    if drops:
        fig = Figure(figsize=(5, 0.6 + 0.4 * len(drops)))
        ax = fig.subplots()
        ax.barh(list(drops), list(drops.values()), color="#c44e52")
        ax.set_xlabel("clips dropped")
        drawn["filters"] = (_save(fig, folder, "filters"), "Clips dropped per filter (whole build).")
    if balance and balance.get("buckets"):
        buckets = balance["buckets"]
        fig = Figure(figsize=(7, 0.8 + 0.35 * len(buckets)))
        ax = fig.subplots()
        y = np.arange(len(buckets))
        ax.barh(y - 0.2, [b["before"] for b in buckets.values()], 0.4, label="before", color="#8c8c8c")
        ax.barh(y + 0.2, [b["after"] for b in buckets.values()], 0.4, label="after", color="#55a868")
        ax.set_yticks(y, list(buckets))
        ax.set_xlabel("clips")
        ax.legend()
        drawn["balance"] = (_save(fig, folder, "balance"), "Clips per bucket before and after balancing.")
    return drawn
