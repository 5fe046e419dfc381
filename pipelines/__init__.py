"""Pipeline definitions: YAML files composing the clip spec, the annotator stages and the output
limits. `openuni` rebuilds the UnityVideo/OpenUni modality set; `panda_dense` the UDPDiff
Panda-Dense set (depth, flow, segmentation)."""

from __future__ import annotations

from pathlib import Path

PIPELINES_DIR = Path(__file__).parent


def resolve(name_or_path: str | Path) -> Path:
    """A pipeline name (`openuni`) or a path to a YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in {".yaml", ".yml"} or candidate.exists():
        return candidate
    named = PIPELINES_DIR / f"{name_or_path}.yaml"
    if not named.exists():
        known = ", ".join(sorted(p.stem for p in PIPELINES_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no pipeline named {name_or_path!r}; known: {known}, or pass a YAML path")
    return named
