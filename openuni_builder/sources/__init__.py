"""Source parsers by name: each turns metadata into ClipRequests."""

from __future__ import annotations

from openuni_builder.sources.base import Source, SourceContext, SourceError
from openuni_builder.sources.folder import Folder
from openuni_builder.sources.koala import Koala36M
from openuni_builder.sources.manifest import Manifest
from openuni_builder.sources.panda import Panda70M
from openuni_builder.sources.samples import Samples, Synthetic

SOURCES: dict[str, type] = {cls.name: cls for cls in (Koala36M, Panda70M, Manifest, Folder, Samples, Synthetic)}


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise SourceError(f"unknown source {name!r}; choose one of: {', '.join(SOURCES)}")
    return SOURCES[name]()


__all__ = ["SOURCES", "Source", "SourceContext", "SourceError", "get_source"]
