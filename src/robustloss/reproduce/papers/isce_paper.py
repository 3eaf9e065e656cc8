"""The I-SCE paper ("Improving robustness of softmax cross-entropy loss via inference information"): the few
numbers that survive the extraction of its text, verbatim with their lines.

All seven result tables lost their bodies (``seed-experiments.md``, I1-I10): only Table 7 keeps three full rows
(I-SCE, Random, AT) and the tail of a fourth whose method is lost.  Table 7 has two blocks of five columns,
``Clean, DF 10, DF 50, DF 10, DF 50``; the dataset labels are lost, and the first block is MNIST (LeNet-5)
and the second CIFAR-10 (the 8-layer network) by the text's order and the clean accuracies (an inference).
The columns are named ``MNIST clean``, ``MNIST DF 10``, ``MNIST DF 50``, ``MNIST DF 10 (2)``, ``MNIST DF 50 (2)``
and the same with ``CIFAR10``: what distinguishes the two DF 10 / DF 50 pairs is not stated.

Besides Table 7 the text gives constants: the chosen hyperparameters (l.49), SimBA's query budgets (l.53)
and the two empirical averages behind the surface of Fig. 5 (App. A.2, l.61).
"""

from __future__ import annotations

from robustloss.reproduce.papers import Paper, PaperNumber, table_rows

#: Table 7 columns (two blocks; see the module docstring)
T7_COLUMNS = tuple(f"{d} {c}" for d in ("MNIST", "CIFAR10")
                   for c in ("clean", "DF 10", "DF 50", "DF 10 (2)", "DF 50 (2)"))
#: the row whose label and first six values are lost (its block-2 clean accuracy survives only as ".20")
LOST_ROW = "(row label lost)"

_T7 = table_rows("isce", "I9", T7_COLUMNS, [
    (LOST_ROW, 91, " |  |  |  |  |  | 20.07 | 19.86 | 19.75 | 19.64"),
    ("I-SCE", 91, "98.42 | 97.48 | 28.26 | 92.62 | 25.13 | 81.22 | 29.38 | 21.39 | 28.21 | 20.48"),
    ("Random", 91, "98.09 | 71.46 | 42.60 | 59.34 | 49.49 | 78.71 | 28.75 | 21.54 | 31.75 | 25.44"),
    ("AT", 91, "96.76 | 4.08 | 1.70 | 3.35 | 1.43 | 78.81 | 66.51 | 30.39 | 66.09 | 29.77"),
])

_CONSTANTS = (
    # l.49: "we set s = 1 and m = 0.1" for every comparison
    PaperNumber("isce", "I1", "s", "chosen", "s = 1", 49),
    PaperNumber("isce", "I1", "m", "chosen", "m = 0.1", 49),
    # l.53: SimBA's queries per image
    PaperNumber("isce", "I5", "SimBA queries MNIST", "per image", "300", 53),
    PaperNumber("isce", "I5", "SimBA queries CIFAR10", "per image", "500", 53),
    # App. A.2 (l.61): averages over all samples of MNIST and CIFAR10
    PaperNumber("isce", "I10", "sum_{j != i} exp f_j(x)", "average", "8", 61),
    PaperNumber("isce", "I10", "f_i(x)", "average", "0.97", 61),
)

ISCE_PAPER = Paper("isce", "the I-SCE paper (\"Improving robustness of softmax cross-entropy loss via inference "
                   "information\")", "003_0bd72013befc90d4.txt", _T7 + _CONSTANTS)


def _value(experiment: str, row: str, column: str) -> float:
    value = ISCE_PAPER.get(experiment, row, column).value
    assert value is not None
    return value


#: the chosen hyperparameters, SimBA's query budgets and App. A.2's constants as numbers (from the entries above)
S_CHOSEN = _value("I1", "s", "chosen")
M_CHOSEN = _value("I1", "m", "chosen")
SIMBA_QUERIES = {"mnist": int(_value("I5", "SimBA queries MNIST", "per image")),
                 "cifar10": int(_value("I5", "SimBA queries CIFAR10", "per image"))}
SUM_OTHERS = _value("I10", "sum_{j != i} exp f_j(x)", "average")
F_TRUE = _value("I10", "f_i(x)", "average")
