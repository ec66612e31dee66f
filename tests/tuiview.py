"""What a `gt tui` panel shows, read back in the tests (textual's DataTable)."""

from __future__ import annotations

from typing import Any


def rows(app: Any, name: str) -> list[list[str]]:
    """The rows of the panel ``name``, each cell as its text."""
    from textual.widgets import DataTable

    table = app.query_one(f"#{name}", DataTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


def title(app: Any, name: str) -> str:
    from textual.widgets import DataTable

    return str(app.query_one(f"#{name}", DataTable).border_title)
