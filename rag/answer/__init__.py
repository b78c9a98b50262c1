"""Answering: question analysis, retrieval, ranking, evidence, answer backends, the pipeline."""
