"""Serving one model for embeddings, generation and RAG: OpenAI-compatible app, dynamic batching, vector index."""
