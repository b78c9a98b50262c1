"""The index: parse results stored, encoded and searchable (Chroma store, BM25 sidecar, sentence vectors)."""
