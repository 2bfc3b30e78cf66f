"""CLI subcommands of the serving part (serve, rag)."""

from __future__ import annotations


def register(sub) -> None:
    """Add serving subcommands to the ``unimae`` argument parser's subparsers."""
