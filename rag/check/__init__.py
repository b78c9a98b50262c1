"""Checking citations: support scores, claims in free text, the checker."""
