"""The papers' numbers as data: one module per paper, every number keyed and traced to its source line.

Each number is a :class:`PaperNumber`: the experiment ID of
``../shared/seed-experiments.md`` (``M1``, ``P4``, ...), the row and column of
the paper's table, the text exactly as printed (``"36.0"``, ``"≤ 1"``) and the
1-based line of the paper's text file it comes from.  ``tests/test_paper_numbers.py``
checks every stored number against its cited line when the paper texts are present.

A recipe shows these numbers *beside* ours (never instead of them); a claim of
a paper is checked on our numbers, not on these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from robustloss.errors import UserError, unknown_choice


@dataclass(frozen=True)
class PaperNumber:
    """One published number: where it is (experiment, row, column, line) and what it says (``text``)."""

    paper: str
    experiment: str
    row: str
    column: str
    text: str
    line: int

    @property
    def value(self) -> float | None:
        """The number as a float (a bound like ``"≤ 1"`` gives its bound, 1.0); ``None`` if there is none."""
        match = re.search(r"-?\d+(?:\.\d+)?", self.text)
        return float(match.group()) if match else None

    @property
    def is_bound(self) -> bool:
        """``True`` for an inequality such as ``"≤ 1"`` (a bound, not a value)."""
        return "≤" in self.text or "<" in self.text


@dataclass(frozen=True)
class Paper:
    """The numbers of one paper and the text file (in ``../shared/seeds/``) they were copied from."""

    key: str
    title: str
    source_file: str
    numbers: tuple[PaperNumber, ...]

    def table(self, experiment: str) -> dict[str, dict[str, str]]:
        """``{row: {column: text}}`` of ``experiment``, in the paper's order."""
        out: dict[str, dict[str, str]] = {}
        for num in self.numbers:
            if num.experiment == experiment:
                out.setdefault(num.row, {})[num.column] = num.text
        if not out:
            raise unknown_choice(f"experiment of {self.key}", experiment, sorted({n.experiment for n in self.numbers}))
        return out

    def get(self, experiment: str, row: str, column: str) -> PaperNumber:
        for num in self.numbers:
            if (num.experiment, num.row, num.column) == (experiment, row, column):
                return num
        raise UserError(f"{self.title} has no number for {experiment} / {row} / {column}")

    def lines(self, experiment: str) -> tuple[int, int]:
        """The first and last cited line of ``experiment``."""
        cited = [n.line for n in self.numbers if n.experiment == experiment]
        return min(cited), max(cited)


def table_rows(paper: str, experiment: str, columns: Sequence[str],
               rows: Iterable[tuple[str, int, str]]) -> tuple[PaperNumber, ...]:
    """Numbers of a table given row by row: ``(row name, line, cells separated by '|')``.

    Each row must have one cell per column; an empty cell (``""``) is skipped
    (the paper prints nothing there).
    """
    out: list[PaperNumber] = []
    for row, line, cells in rows:
        texts = [c.strip() for c in cells.split("|")]
        if len(texts) != len(columns):
            raise ValueError(f"{paper} {experiment} row {row!r}: {len(texts)} cells for {len(columns)} columns")
        out += [PaperNumber(paper, experiment, row, col, text, line) for col, text in zip(columns, texts) if text]
    return tuple(out)
