"""Driver-side publishing, run after the shards are written: balancing (`balance`), previews a
person can look at (`previews`), plots (`plots`, from the streamed index summary `index_summary`)
and the Hugging Face dataset card (`card`, whose `publish` runs them all). Everything here reads a
finished build (OUT/index.parquet, the shards) and never the sources."""
