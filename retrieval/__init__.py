"""Retrieval over chunks (hybrid dense + BM25); see issue 6. Not built yet."""
