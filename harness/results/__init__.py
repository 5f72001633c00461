"""Stored results: the DuckDB store, the leaderboard's assembly, comparisons across runs and
seeds, re-scoring, plots and one-image explanations."""
