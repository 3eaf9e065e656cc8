"""Every stored paper number occurs, as a whole number, on the line of the paper's text it cites."""

from __future__ import annotations

import re

import pytest

from conftest import shared_file
from robustloss.reproduce.papers import PaperNumber
from robustloss.reproduce.papers.isce_paper import ISCE_PAPER, LOST_ROW
from robustloss.reproduce.papers.mmc_paper import MMC_PAPER
from robustloss.reproduce.papers.pc_paper import PC_PAPER
from robustloss.reproduce.papers.reproducibility_report import REPRODUCIBILITY_REPORT

PAPERS = [MMC_PAPER, PC_PAPER, REPRODUCIBILITY_REPORT, ISCE_PAPER]


def _seed_lines(name: str) -> list[str]:
    """The paper's text from ``../shared/seeds`` (skipped where absent, a failure under CI)."""
    return shared_file(f"seeds/{name}").read_text(encoding="utf-8").splitlines()


def _occurs(num: PaperNumber, line: str) -> bool:
    """``num.text`` on ``line`` as a whole cell: not part of a longer number (``3.7`` is not in ``13.7``)."""
    text = re.escape(num.text).replace(r"\ ", r"\s*")
    return re.search(rf"(?<![\d.]){text}(?![\d])", line) is not None


@pytest.mark.parametrize("paper", PAPERS, ids=lambda p: p.key)
def test_every_number_is_on_its_cited_line(paper: object) -> None:
    from robustloss.reproduce.papers import Paper

    assert isinstance(paper, Paper)
    lines = _seed_lines(paper.source_file)
    missing = [n for n in paper.numbers if not (1 <= n.line <= len(lines) and _occurs(n, lines[n.line - 1]))]
    assert not missing, "\n".join(f"{n.experiment} {n.row} / {n.column}: {n.text!r} not on l.{n.line}" for n in missing)


@pytest.mark.parametrize("paper", PAPERS, ids=lambda p: p.key)
def test_each_table_row_reads_in_the_papers_order(paper: object) -> None:
    """The cells of a row appear on their line left to right, in the stored column order."""
    from robustloss.reproduce.papers import Paper

    assert isinstance(paper, Paper)
    lines = _seed_lines(paper.source_file)
    rows: dict[tuple[str, str, int], list[PaperNumber]] = {}
    for n in paper.numbers:
        rows.setdefault((n.experiment, n.row, n.line), []).append(n)
    for (experiment, row, line), nums in rows.items():
        if len(nums) < 2:
            continue
        text = lines[line - 1]
        # tab-separated table lines; a table flattened into running text (the I-SCE paper's Table 7) by spaces
        cells = [c.strip().replace("<b>", "").replace("</b>", "") for c in (text.split("\t") if "\t" in text
                                                                              else text.split())]
        texts = [n.text for n in nums]
        it = iter(cells)
        assert all(any(c == t for c in it) for t in texts), f"{experiment} {row} l.{line}: {texts} vs {cells}"


def test_numbers_are_unique_and_parse() -> None:
    for paper in PAPERS:
        keys = [(n.experiment, n.row, n.column) for n in paper.numbers]
        assert len(keys) == len(set(keys)), paper.key
        for n in paper.numbers:
            assert n.value is not None, n
    sce = MMC_PAPER.get("M1", "SCE", "PGD10 tar eps=8/255")
    assert sce.is_bound and sce.value == 1.0 and sce.line == 182
    assert MMC_PAPER.get("M1", "MMC-10", "PGD10 un eps=8/255").value == 36.0
    assert len(MMC_PAPER.table("M1")) == 9 and all(len(r) == 9 for r in MMC_PAPER.table("M1").values())
    assert PC_PAPER.get("P4", "PC", "PGD 0.1").text == "72.3"
    assert REPRODUCIBILITY_REPORT.get("R3", "RMSProp", "accuracy").value == 99.40
    assert REPRODUCIBILITY_REPORT.get("R4", "Standard MMC / MNIST", "class 1").value == -1618.7
    assert REPRODUCIBILITY_REPORT.get("R5", "SCE / CIFAR10", "comparable 2nd and 3rd scores").line == 302
    assert ISCE_PAPER.get("I9", "I-SCE", "MNIST clean").value == 98.42
    assert len(ISCE_PAPER.table("I9")["AT"]) == 10 and len(ISCE_PAPER.table("I9")[LOST_ROW]) == 4


def test_a_wrong_line_would_be_caught() -> None:
    """The checker itself fails on a number moved to another line or merged into a longer one."""
    lines = _seed_lines(MMC_PAPER.source_file)
    assert _occurs(PaperNumber("mmc", "M1", "MMC-10", "x", "36.0", 186), lines[185])
    assert not _occurs(PaperNumber("mmc", "M1", "MMC-10", "x", "36.0", 185), lines[184])
    assert not _occurs(PaperNumber("mmc", "M1", "SCE", "x", "3.7", 186), "13.7\t43.7")
