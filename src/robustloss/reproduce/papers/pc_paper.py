"""The PC paper (Li, Li, Pan, Zhu, "Improving Adversarial Robustness via Probabilistically Compact Loss
with Logit Constraints"): Table 1, MNIST columns (CE and "Ours" = PC), verbatim with their lines.

Cells the paper prints bold are stored without the ``<b>`` markup.  Columns
are attack + eps (``"PGD 0.1"``; ``"CW 0.0"`` is C&W with confidence 0).
"""

from __future__ import annotations

from robustloss.reproduce.papers import Paper, PaperNumber

# (column, line, CE, PC): the MNIST columns of Table 1 (l.193-206)
_P4_MNIST = [
    ("clean", 193, "99.2", "99.2"),
    ("FGSM 0.1", 194, "71.5", "80.5"), ("FGSM 0.2", 195, "51.6", "76.3"), ("FGSM 0.3", 196, "31.8", "65.0"),
    ("BIM 0.1", 197, "52.8", "72.0"), ("BIM 0.2", 198, "4.5", "48.6"), ("BIM 0.3", 199, "1.5", "39.5"),
    ("PGD 0.1", 200, "49.0", "72.3"), ("PGD 0.2", 201, "3.3", "50.2"), ("PGD 0.3", 202, "0.8", "39.7"),
    ("MIM 0.1", 203, "49.8", "73.8"), ("MIM 0.2", 204, "5.0", "54.0"), ("MIM 0.3", 205, "1.5", "43.3"),
    ("CW 0.0", 206, "42.2", "78.0"),
]

PC_PAPER = Paper("pc", "the PC paper (Li et al.)", "004_47b8a8a080d3078d.txt", tuple(
    PaperNumber("pc", "P4", row, column, text, line)
    for column, line, ce, pc in _P4_MNIST for row, text in (("CE", ce), ("PC", pc))))
