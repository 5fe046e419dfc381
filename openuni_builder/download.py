"""Opt-in video download (`openuni-build --download`) with yt-dlp, for machines with internet.

Runs inside the decode task, so downloads are parallel and a video that cannot be fetched fails
only its own clips, with yt-dlp's reason in the ledger.
"""

from __future__ import annotations

from pathlib import Path

from openuni_builder.video_io import BadVideo


def fetch_video(url: str, path: str | Path) -> Path:
    """Download `url` to `path` (an mp4) unless it is already there."""
    path = Path(path)
    if path.exists():
        return path
    try:
        import yt_dlp
    except ImportError as exc:
        raise BadVideo("--download needs yt-dlp: pip install 'openuni-builder[download]'") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"outtmpl": str(path), "format": "bv*[ext=mp4]/b[ext=mp4]/bv*+ba/b",
               "merge_output_format": "mp4", "quiet": True, "noprogress": True}
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            ydl.download([url])
    except Exception as exc:  # yt-dlp raises its own DownloadError hierarchy
        raise BadVideo(f"download of {url} failed: {exc}") from exc
    if not path.exists():
        raise BadVideo(f"download of {url} produced no file at {path}")
    return path
