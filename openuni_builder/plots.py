"""The dataset card's plots: distributions a person should see before training on a build.

Every plot is drawn from the index rows (with their filter values and per-modality facts), the
build stats and the balance report; a plot whose data the build does not have (no motion filter,
no segmentation) is left out rather than drawn empty. Figures are made with matplotlib's
object API (no pyplot state), so plotting is safe inside any process.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Callable

import numpy as np
from matplotlib.figure import Figure

PLOTS_DIR = "plots"


def _values(rows: list[dict[str, Any]], get: Callable[[dict[str, Any]], Any]) -> list[float]:
    out = []
    for row in rows:
        value = get(row)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            out.append(float(value))
    return out


def _filter_value(name: str, field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda row: ((row.get("filters") or {}).get(name) or {}).get(field)


def _person_count(row: dict[str, Any]) -> Any:
    facts = row.get("facts") or {}
    for name in ("skeleton", "densepose"):
        if "person_count" in (facts.get(name) or {}):
            return facts[name]["person_count"]
    return _filter_value("person", "person_count")(row)


def _hist(ax, values: list[float], xlabel: str, integer: bool = False) -> None:
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


def write_plots(out: Path, rows: list[dict[str, Any]], stats: dict[str, Any],
                balance: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    """Draw every plot this build has data for into OUT/plots; returns {name: (path relative to
    OUT, caption)} in the order the card shows them."""
    folder = Path(out) / PLOTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    drawn: dict[str, tuple[str, str]] = {}

    def single(name: str, values: list[float], xlabel: str, caption: str, integer: bool = False) -> None:
        if values:
            fig = Figure(figsize=(5, 3))
            _hist(fig.subplots(), values, xlabel, integer)
            drawn[name] = (_save(fig, folder, name), caption)

    single("durations", _values(rows, lambda r: r.get("duration")), "source segment duration (s)",
           "Duration of the source segment each clip was cut from.")
    motion = {f: _values(rows, _filter_value("motion", f)) for f in ("mean", "peak")}
    if motion["mean"]:
        fig = Figure(figsize=(8, 3))
        for ax, (field, values) in zip(fig.subplots(1, 2), motion.items()):
            _hist(ax, values, f"flow magnitude, {field} (px/frame)")
        drawn["motion"] = (_save(fig, folder, "motion"), "Optical-flow magnitude per clip (motion filter values).")
    columns = sorted({c for r in rows for c, v in (r.get("scores") or {}).items() if isinstance(v, (int, float))})
    if columns:
        fig = Figure(figsize=(4 * min(3, len(columns)), 3 * -(-len(columns) // 3)))
        axes = np.atleast_1d(fig.subplots(-(-len(columns) // 3), min(3, len(columns)))).ravel()
        for ax, column in zip(axes, columns):
            _hist(ax, _values(rows, lambda r, c=column: (r.get("scores") or {}).get(c)), column)
        for ax in axes[len(columns):]:
            ax.set_visible(False)
        drawn["scores"] = (_save(fig, folder, "scores"), "Source quality scores of the kept clips.")
    single("persons", _values(rows, _person_count), "people (tracks) per clip",
           "People per clip from the person detector.", integer=True)
    single("entities", _values(rows, lambda r: ((r.get("facts") or {}).get("seg") or {}).get("num_entities")),
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
