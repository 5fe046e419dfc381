"""Fetching public metadata when no --input is given (machines with internet only)."""

from __future__ import annotations

from pathlib import Path

from openuni_builder.sources.base import SourceError


def fetch_metadata(repo_id: str, work_dir: Path, source: str) -> Path:
    """Download the metadata files of dataset `repo_id` from the Hugging Face hub into work_dir.

    Offline (no network, or HF_HUB_OFFLINE=1) this raises SourceError telling the user what to
    pass instead.
    """
    target = Path(work_dir) / "metadata" / source
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id, repo_type="dataset", local_dir=target,
                          allow_patterns=["*.csv", "*.parquet", "*.jsonl"])
    except Exception as exc:  # any network or hub error means: not fetchable from here
        raise SourceError(
            f"no --input given and the {source} metadata could not be fetched from the dataset "
            f"repository {repo_id} ({type(exc).__name__}: {str(exc)[:200]}); download its CSV/parquet "
            f"files on a machine with internet and pass --input PATH") from exc
    return target
