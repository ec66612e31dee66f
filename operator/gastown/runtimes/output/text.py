"""CLIs that print plain text: only the fallback patterns, on ANSI-stripped lines."""

from __future__ import annotations

from . import Report, from_text, json_lines


def read(log: str) -> Report:
    return from_text([text for data, text in json_lines(log) if data is None])
