"""The MMC paper (Pang et al., "Rethinking Softmax Cross-Entropy Loss for Adversarial Robustness",
ICLR 2020, review version): the numbers of Tables 1-5, verbatim, with their lines.

Rows and columns as in ``../shared/seed-experiments.md`` (sub/superscripts flattened:
``PGD10 tar``).  Column names carry the perturbation, e.g. ``PGD10 un eps=8/255``.
"""

from __future__ import annotations

from robustloss.reproduce.papers import Paper, table_rows

_EPS = ("8/255", "16/255")
#: Table 1 and Table 5 columns: clean, then PGD 10/50 steps, targeted/untargeted, at eps 8/255 and 16/255
T1_COLUMNS = ("clean", *(f"PGD{s} {m} eps={e}" for e in _EPS for s in (10, 50) for m in ("tar", "un")))
T2_COLUMNS = ("C&W tar", "C&W un", *(f"SPSA10 {m} eps={e}" for e in _EPS for m in ("tar", "un")),
              "Noise", "Rotation")
T3_COLUMNS = ("SPSA10 un", "SPSA10 tar")
T4_COLUMNS = ("clean", "PGD10 tar eps=8/255", "PGD10 un eps=8/255", "SPSA10 tar eps=8/255",
              "SPSA10 un eps=8/255", "C&W tar", "C&W un")

#: the nine models of Tables 1 and 2, in the paper's order
T1_ROWS = ("SCE", "Center loss", "MMLDA", "L-GM", "MMC-10", "AT10 tar (SCE)", "AT10 tar (MMC-10)",
           "AT10 un (SCE)", "AT10 un (MMC-10)")

_T1 = table_rows("mmc", "M1", T1_COLUMNS, [
    ("SCE", 182, "92.9 | ≤ 1 | 3.7 | ≤ 1 | 3.6 | ≤ 1 | 2.9 | ≤ 1 | 2.6"),
    ("Center loss", 183, "92.8 | ≤ 1 | 4.4 | ≤ 1 | 4.3 | ≤ 1 | 3.1 | ≤ 1 | 2.9"),
    ("MMLDA", 184, "92.4 | ≤ 1 | 16.5 | ≤ 1 | 9.7 | ≤ 1 | 6.7 | ≤ 1 | 5.5"),
    ("L-GM", 185, "92.5 | 37.6 | 19.8 | 8.9 | 4.9 | 26.0 | 11.0 | 2.5 | 2.8"),
    ("MMC-10", 186, "92.7 | 48.7 | 36.0 | 26.6 | 24.8 | 36.1 | 25.2 | 13.4 | 17.5"),
    ("AT10 tar (SCE)", 187, "83.7 | 70.6 | 49.7 | 69.8 | 47.8 | 48.4 | 26.7 | 31.2 | 16.0"),
    ("AT10 tar (MMC-10)", 188, "83.0 | 69.2 | 54.8 | 67.0 | 53.5 | 58.6 | 47.3 | 44.7 | 45.1"),
    ("AT10 un (SCE)", 189, "80.9 | 69.8 | 55.4 | 69.4 | 53.9 | 53.3 | 34.1 | 38.5 | 21.5"),
    ("AT10 un (MMC-10)", 190, "81.8 | 70.8 | 56.3 | 70.1 | 55.0 | 54.7 | 37.4 | 39.9 | 27.7"),
])

_T2 = table_rows("mmc", "M2-M4", T2_COLUMNS, [
    ("SCE", 211, "0.12 | 0.07 | 12.3 | 1.2 | 5.1 | ≤ 1 | 52.0 | 83.5"),
    ("Center loss", 212, "0.13 | 0.07 | 21.2 | 6.0 | 10.6 | 2.0 | 55.4 | 84.9"),
    ("MMLDA", 213, "0.17 | 0.10 | 25.6 | 13.2 | 11.3 | 5.7 | 57.9 | 84.8"),
    ("L-GM", 214, "0.23 | 0.12 | 61.9 | 45.9 | 46.1 | 28.2 | 59.2 | 82.4"),
    ("MMC-10", 215, "0.34 | 0.17 | 69.5 | 56.9 | 57.2 | 41.5 | 69.3 | 87.2"),
    ("AT10 tar (SCE)", 216, "1.19 | 0.63 | 81.1 | 67.8 | 77.9 | 59.4 | 82.2 | 76.0"),
    ("AT10 tar (MMC-10)", 217, "1.91 | 0.85 | 79.1 | 69.2 | 74.5 | 62.7 | 83.5 | 75.2"),
    ("AT10 un (SCE)", 218, "1.26 | 0.68 | 78.8 | 67.0 | 73.7 | 60.3 | 78.9 | 73.7"),
    ("AT10 un (MMC-10)", 219, "1.55 | 0.73 | 80.4 | 69.6 | 74.6 | 62.4 | 80.3 | 75.8"),
])

_T3 = table_rows("mmc", "M5", T3_COLUMNS, [
    ("batch 128", 231, "57.0 | 69.0"),
    ("batch 4096", 232, "41.0 | 52.0"),
    ("batch 8192", 233, "37.0 | 49.0"),
])

_T4 = table_rows("mmc", "M6", T4_COLUMNS, [
    ("SCE", 247, "72.9 | ≤ 1 | 8.0 | 14.0 | 1.9 | 0.16 | 0.047"),
    ("Center", 248, "72.8 | ≤ 1 | 10.2 | 14.7 | 2.3 | 0.18 | 0.048"),
    ("MMLDA", 249, "72.2 | ≤ 1 | 13.9 | 18.5 | 5.6 | 0.21 | 0.050"),
    ("L-GM", 250, "71.3 | 15.8 | 15.3 | 22.8 | 7.6 | 0.31 | 0.063"),
    ("MMC-10", 251, "71.9 | 23.9 | 23.4 | 33.4 | 15.8 | 0.37 | 0.085"),
])

_T5 = table_rows("mmc", "M7", T1_COLUMNS, [
    ("CIFAR-10 SCE (Res.32)", 258, "93.6 | ≤ 1 | 3.7 | ≤ 1 | 3.6 | ≤ 1 | 2.7 | ≤ 1 | 2.9"),
    ("CIFAR-10 MMC (Res.32)", 259, "92.7 | 48.7 | 36.0 | 26.6 | 24.8 | 36.1 | 25.2 | 13.4 | 17.5"),
    ("CIFAR-10 SCE (Res.110)", 260, "94.7 | ≤ 1 | 3.0 | ≤ 1 | 2.9 | ≤ 1 | 2.1 | ≤ 1 | 2.0"),
    ("CIFAR-10 MMC (Res.110)", 261, "93.6 | 54.7 | 46.0 | 34.4 | 31.4 | 41.0 | 30.7 | 16.2 | 21.6"),
    ("CIFAR-100 SCE (Res.32)", 263, "72.3 | ≤ 1 | 7.8 | ≤ 1 | 7.4 | ≤ 1 | 4.8 | ≤ 1 | 4.7"),
    ("CIFAR-100 MMC (Res.32)", 264, "71.9 | 23.9 | 23.4 | 15.1 | 21.9 | 16.4 | 16.7 | 8.0 | 15.7"),
    ("CIFAR-100 SCE (Res.110)", 265, "74.8 | ≤ 1 | 7.5 | ≤ 1 | 7.3 | ≤ 1 | 4.7 | ≤ 1 | 4.5"),
    ("CIFAR-100 MMC (Res.110)", 266, "73.2 | 34.6 | 22.4 | 23.7 | 16.5 | 24.1 | 14.9 | 13.9 | 10.5"),
])

MMC_PAPER = Paper("mmc", "the MMC paper (Pang et al., ICLR 2020)", "000_9724dcde5febd00b.txt",
                  _T1 + _T2 + _T3 + _T4 + _T5)
