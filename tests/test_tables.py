"""The one markdown-table helper: cells as given, GitHub format, rows that fit the header."""

from __future__ import annotations

import pytest
from table_text import squeeze

from unimae.tables import markdown_table


def test_cells_are_printed_as_given_under_a_separator():
    text = markdown_table(["model", "PPL ↓", "note"], [["Base", "56.00", "a \\| b"], ["UniMAE", 7, ""]])
    lines = text.splitlines()
    assert len(lines) == 4 and not text.endswith("\n")
    assert len({len(line) for line in lines}) == 1  # padded to one width: a column lines up
    assert squeeze(text).splitlines() == [
        "| model | PPL ↓ | note |",
        "|---|---|---|",
        "| Base | 56.00 | a \\| b |",  # not re-read as the number 56; the escaped pipe stays in its cell
        "| UniMAE | 7 |  |",
    ]


def test_a_row_that_does_not_fit_the_header_is_refused():
    with pytest.raises(ValueError, match=r"rows \[1\] do not have 2 cells"):
        markdown_table(["a", "b"], [["1", "2"], ["3"]])
    assert squeeze(markdown_table(["a", "b"], [])) == "| a | b |\n|---|---|"
