"""Markdown tables, every one made the same way: tabulate's GitHub format, cells printed as given."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tabulate import tabulate


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table (no trailing newline): ``header``, then one line per row.

    Each row has exactly one cell per header column (ValueError otherwise: tabulate would silently drop
    the columns a short row lacks). Cells are ``str(cell)``, not re-read as numbers, so the caller's
    formatting stands ('56.00' stays '56.00'); a cell holding ``|`` must come escaped (``\\|``).
    """
    header = [str(h) for h in header]
    body = [[str(cell) for cell in row] for row in rows]
    short = [i for i, row in enumerate(body) if len(row) != len(header)]
    if short:
        raise ValueError(f"rows {short} do not have {len(header)} cells (the header's columns)")
    return tabulate(body, headers=header, tablefmt="github", disable_numparse=True)
