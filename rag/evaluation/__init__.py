"""Evaluation suites, their metrics, the runner and its reports."""
