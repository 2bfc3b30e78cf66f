"""Markdown tables as tests read them: the padding tabulate adds folded away (imported by the tests)."""

from __future__ import annotations

import re


def squeeze(text: str) -> str:
    """``text`` with every table line's cells stripped and joined by ' | ' and every separator line as
    '|---|---|...' (one '---|' a column), so that a test can look for ``| a | b |`` however wide the
    columns are. Other lines are kept as they are; an escaped ``\\|`` stays inside its cell."""
    return "\n".join(_squeeze_line(line) for line in text.split("\n"))


def _squeeze_line(line: str) -> str:
    if not line.startswith("|"):
        return line
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
    if all(re.fullmatch(r":?-+:?", c) for c in cells):
        return "|" + "---|" * len(cells)
    return "| " + " | ".join(cells) + " |"
