"""The reproducibility report of the MMC paper: the numbers of its Tables 1-4 and Sections 4.5 and 4.7,
verbatim, with their lines.

Two text extractions of the report exist (``seed-experiments.md`` gives the line ranges of both); every
line cited here is of extraction A (``001_5de25db980c34571.txt``), whose tables are intact.  Experiment
IDs as in ``seed-experiments.md``: R2 (Table 1, training time), R3 (Table 2, optimizers), R4 (Table 3,
top-3 scores on an out-of-distribution image), R5 (Sec. 4.5, the log-sum-exp check), R6 (Table 4, C_MM),
R8 (Sec. 4.7, hierarchical centers: ranges only, no accuracies).
"""

from __future__ import annotations

from robustloss.reproduce.papers import Paper, PaperNumber, table_rows

_R = "rr"

#: Table 1 (A l.253-261): training time in minutes, 50 epochs, batch 50, ResNet-32, RTX 2080 Ti
_T1 = table_rows(_R, "R2", ("classes", "time (min)"), [
    ("Standard SCE / MNIST", 254, "10 | 39.8"),
    ("Standard MMC / MNIST", 255, "10 | 48.075"),
    ("Adversarial SCE / MNIST", 256, "10 | 271.14"),
    ("Adversarial MMC / MNIST", 257, "10 | 280"),
    ("Standard SCE / CIFAR10", 258, "10 | 54.04"),
    ("Standard MMC / CIFAR10", 259, "10 | 55.23"),
    ("Standard SCE / CIFAR100", 260, "100 | 42.8"),
    ("Standard MMC / CIFAR100", 261, "100 | 45.55"),
])

#: Table 2 (A l.277-280): MMC on MNIST, 50 epochs (its caption wrongly describes a C_MM experiment)
_T2 = table_rows(_R, "R3", ("accuracy", "time (min)"), [
    ("Momentum SGD", 278, "99.69% | 47.7"),
    ("Adam", 279, "99.53% | 62.7"),
    ("RMSProp", 280, "99.40% | 55.9"),
])

#: Table 3 (A l.290-296): the top-3 final-layer scores on one out-of-distribution image (a lion for the MNIST
#: models, an MNIST digit for the CIFAR ones); SCE: softmax probabilities, MMC: negative "distances"
_T3 = table_rows(_R, "R4", ("class 1", "class 2", "class 3"), [
    ("Standard SCE / MNIST", 291, "0.997 | 0.00292 | 0.00004"),
    ("Standard MMC / MNIST", 292, "-1618.7 | -1670 | -1680"),
    ("Standard SCE / CIFAR-10", 293, "1 | 0 | 0"),
    ("Standard MMC / CIFAR-10", 294, "-10143 | -10152 | -10564"),
    ("Standard SCE / CIFAR-100", 295, "1 | 0 | 0"),
    ("Standard MMC / CIFAR-100", 296, "-138439 | -139005 | -141384"),
])

#: Sec. 4.5 (A l.302): SCE ResNet-32 on CIFAR-10, share of samples with comparable (< 5x) 2nd and 3rd scores
_S45 = (PaperNumber(_R, "R5", "SCE / CIFAR10", "comparable 2nd and 3rd scores", "9.16%", 302),)

#: Table 4 (A l.308-312): MMC clean accuracy on CIFAR-10 for each C_MM (the text announces {1, 5, 10, 100})
_T4 = table_rows(_R, "R6", ("accuracy",), [
    ("1", 309, "92.16%"), ("10", 310, "92.57%"), ("50", 311, "68.92%"), ("100", 312, "10%"),
])

#: Sec. 4.7 (A l.330): the best ranges of the HMMC constants found on CIFAR-100 (no accuracy is given)
_S47 = (PaperNumber(_R, "R8", "HMMC / CIFAR100: C1", "best range", "5, 20", 330),
        PaperNumber(_R, "R8", "HMMC / CIFAR100: C2", "best range", "0.1, 2", 330))

#: where the report states its MNIST schedule (50 epochs; the MMC paper, l.174, says 40)
MNIST_EPOCHS_LINE = 209
#: where the report states the timing experiment's 50 epochs and batch 50
TIMING_SETUP_LINE = 251

REPRODUCIBILITY_REPORT = Paper("rr", "the reproducibility report (of the MMC paper)", "001_5de25db980c34571.txt",
                               _T1 + _T2 + _T3 + _S45 + _T4 + _S47)
