"""Result tables: Markdown for people, JSON for programs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def pct(value: float) -> str:
    return "-" if value != value else f"{100 * value:.1f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _cell(attack: dict[str, Any]) -> str:
    text = pct(attack["robust_accuracy"])
    distortion = attack.get("mean_distortion")
    return text if distortion is None or distortion != distortion else f"{text} (d={distortion:.2f})"


def results_table(results: dict[str, dict[str, Any]], paper: dict[str, dict[str, str]] | None = None) -> str:
    """One row per model (key), columns: clean, every attack label, worst case (accuracies in %).

    A minimum-norm attack (C&W, DeepFool) also shows the mean distortion of its
    successful examples, e.g. ``0.0 (d=1.27)`` (the MMC paper's Tables 2 and 4 report these means).

    ``paper`` maps a model key to the published figures (column label -> text); such
    a model gets a second row ``KEY (paper)`` right below ours, never instead of it.
    """
    labels: list[str] = []
    for res in results.values():
        for att in res["attacks"]:
            if att["label"] not in labels:
                labels.append(att["label"])
    header = ["model", "clean", *labels, "worst case"]
    rows = []
    for name, res in results.items():
        by_label = {a["label"]: _cell(a) for a in res["attacks"]}
        rows.append([name, pct(res["clean_accuracy"]), *(by_label.get(lb, "-") for lb in labels),
                     pct(res["worst_case_accuracy"])])
        if paper and name in paper:
            ref = paper[name]
            rows.append([f"{name} (paper)", ref.get("clean", "-"), *(ref.get(lb, "-") for lb in labels), "-"])
    return markdown_table(header, rows)
