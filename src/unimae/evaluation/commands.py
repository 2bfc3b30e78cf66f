"""CLI subcommands of the evaluation part (eval, lm-eval, data prepare, sweep, report)."""

from __future__ import annotations


def register(sub) -> None:
    """Add evaluation subcommands to the ``unimae`` argument parser's subparsers."""
