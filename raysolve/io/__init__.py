"""Problem sets in (JSONL, JSON, Parquet, CSV, ``datasets``) and result files out."""
