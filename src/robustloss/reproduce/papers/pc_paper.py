"""The PC paper (Li, Li, Pan, Zhu, "Improving Adversarial Robustness via Probabilistically Compact Loss
with Logit Constraints"): the numbers of Tables 1-5, verbatim with their lines.

Cells the paper prints bold are stored without the ``<b>`` markup.  Columns are
attack + parameter as the paper's "Param." column prints it (``"PGD 0.1"``,
``"PGD 0.04"`` for the colour datasets; ``"CW 0.0"`` is C&W with confidence 0,
printed "C&W" in Tables 2 and 5) and ``"clean"``.  Rows are the model; the
MNIST rows are plain (``"CE"``, ``"PC"`` = the paper's "Ours", ``"GCE*"``,
``"CE+AT"``, ...), the other datasets' rows carry the dataset
(``"KMNIST PC"``, ``"CIFAR-10 CE"``).  Experiment IDs: ``seed-experiments.md``
(P1 = the probability gaps of the introduction, P4 = Table 1, P5 = Table 2, P6 = Table 3, P8 = Table 4, P9 = Table 5).
"""

from __future__ import annotations

from collections.abc import Sequence

from robustloss.reproduce.papers import Paper, PaperNumber


def _wide(experiment: str, models: Sequence[str], lines: Sequence[tuple[int, str, str]]) -> tuple[PaperNumber, ...]:
    """A table printed one attack setting per line: ``(line, "ATTACK GRAY-PARAM [| COLOUR-PARAM]", cells)``.

    ``models`` names the row of each cell (``"CIFAR-10 CE"``); a model whose name starts with a colour
    dataset takes the second parameter.  ``cells`` are separated by whitespace, in the paper's order.
    """
    out = []
    for line, setting, cells in lines:
        attack, *params = setting.split()
        texts = cells.split()
        if len(texts) != len(models):
            raise ValueError(f"pc {experiment} l.{line}: {len(texts)} cells for {len(models)} models")
        for model, text in zip(models, texts):
            colour = model.startswith(("CIFAR-10 ", "SVHN ")) and len(params) > 1
            param = params[1] if colour else params[0]
            column = attack if param == "-" else f"{attack} {param}"
            out.append(PaperNumber("pc", experiment, model, column, text, line))
    return tuple(out)


def _models(groups: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    return [f"{g} {m}".strip() for g, ms in groups for m in ms]


#: Table 1 (l.193-206): MNIST, KMNIST, FMNIST (LeNet-5), CIFAR-10, SVHN (VGG-13); eps 0.1/0.2/0.3 (gray),
#: 0.04/0.12/0.2 (colour)
P4_MODELS = _models([("", ("CE", "PC")), ("KMNIST", ("CE", "PC")), ("FMNIST", ("CE", "PC")),
                     ("CIFAR-10", ("CE", "PC")), ("SVHN", ("CE", "PC"))])
_P4 = _wide("P4", P4_MODELS, [
    (193, "clean - -", "99.2 99.2 95.5 95.4 90.1 90.2 91.6 91.2 94.9 94.7"),
    (194, "FGSM 0.1 0.04", "71.5 80.5 26.2 62.8 17.5 58.0 4.3 53.1 8.7 39.5"),
    (195, "FGSM 0.2 0.12", "51.6 76.3 1.8 39.7 9.5 43.3 11.7 30.3 4.5 24.2"),
    (196, "FGSM 0.3 0.2", "31.8 65.0 1.2 34.1 7.6 31.8 11.5 18.7 2.6 17.1"),
    (197, "BIM 0.1 0.04", "52.8 72.0 55.8 82.5 0.0 18.7 0.0 29.0 1.3 26.2"),
    (198, "BIM 0.2 0.12", "4.5 48.6 28.7 73.3 0.3 8.4 0.0 21.0 0.0 18.2"),
    (199, "BIM 0.3 0.2", "1.5 39.5 16.8 60.5 0.0 6.4 0.0 20.0 0.0 17.6"),
    (200, "PGD 0.1 0.04", "49.0 72.3 31.3 62.4 0.0 15.7 0.0 27.6 0.0 27.6"),
    (201, "PGD 0.2 0.12", "3.3 50.2 3.9 39.9 0.0 7.0 0.0 14.6 0.0 22.0"),
    (202, "PGD 0.3 0.2", "0.8 39.7 2.0 33.2 0.0 4.6 0.0 7.5 0.0 21.0"),
    (203, "MIM 0.1 0.04", "49.8 73.8 26.0 65.4 0.0 14.8 0.0 34.3 0.0 29.2"),
    (204, "MIM 0.2 0.12", "5.0 54.0 4.2 45.4 0.0 6.3 0.0 32.7 0.0 27.6"),
    (205, "MIM 0.3 0.2", "1.5 43.3 2.0 36.9 0.0 4.5 0.0 32.4 0.0 26.0"),
    (206, "CW 0.0 0.0", "42.2 78.0 19.5 57.3 0.2 21.8 0.0 30.2 0.0 36.2"),
])

#: Table 2 (l.212-224): MNIST (LeNet-5) and CIFAR-10 (ResNet-56); GCE* copied by the paper from Chen et al. 2019a
P5_MODELS = _models([("", ("CE", "GCE*", "PC")), ("CIFAR-10", ("CE", "GCE*", "PC"))])
_P5 = _wide("P5", P5_MODELS, [
    (212, "FGSM 0.1 0.04", "71.5 87.7 80.5 12.7 41.2 58.4"),
    (213, "FGSM 0.2 0.12", "51.6 62.7 76.3 10.3 14.8 17.3"),
    (214, "FGSM 0.3 0.2", "31.8 47.2 65.0 7.0 11.8 12.0"),
    (215, "BIM 0.1 0.04", "52.8 61.9 72.0 0.0 19.6 16.6"),
    (216, "BIM 0.2 0.12", "4.5 34.5 48.6 0.0 3.0 3.4"),
    (217, "BIM 0.3 0.2", "1.5 33.5 39.5 0.0 2.0 2.6"),
    (218, "PGD 0.1 0.04", "49.0 51.9 72.3 0.0 5.9 10.2"),
    (219, "PGD 0.2 0.12", "3.3 9.6 50.2 0.0 1.9 3.5"),
    (220, "PGD 0.3 0.2", "0.8 2.2 39.7 0.0 1.6 2.7"),
    (221, "MIM 0.1 0.04", "49.8 61.2 73.8 0.0 15.4 16.0"),
    (222, "MIM 0.2 0.12", "5.0 39.8 54.0 0.0 13.1 11.6"),
    (223, "MIM 0.3 0.2", "1.5 38.8 43.3 0.0 12.7 11.2"),
    (224, "CW 0.0 0.0", "0.0 25.6 30.1 0.0 0.8 3.3"),
])

#: Table 3 (l.238-244): black-box; transfer PGD/MIM from a 3-layer CNN (gray) / ResNet-56 (colour); SPSA eps 0.3
_P6 = _wide("P6", P4_MODELS, [
    (238, "PGD 0.1 0.04", "96.6 98.1 90.8 92.5 65.5 74.0 19.5 42.2 43.6 48.8"),
    (239, "PGD 0.2 0.12", "84.3 92.8 76.7 85.0 50.4 57.1 13.2 38.0 19.5 28.1"),
    (240, "PGD 0.3 0.2", "61.1 85.6 59.1 77.7 47.8 53.5 16.7 35.6 13.2 24.5"),
    (241, "MIM 0.1 0.04", "96.4 98.1 90.4 92.2 62.4 72.3 17.2 42.0 40.1 44.2"),
    (242, "MIM 0.2 0.12", "84.2 94.7 74.9 83.0 43.3 54.2 1.3 16.3 13.3 21.7"),
    (243, "MIM 0.3 0.2", "56.7 81.2 48.4 63.8 30.5 36.0 0.3 11.2 10.0 16.2"),
    (244, "SPSA 0.3 0.3", "72.9 95.7 50.2 78.0 4.3 39.8 0.0 45.3 4.0 58.0"),
])

#: Table 4 (l.255-262): CIFAR-100 and Tiny ImageNet (VGG-13), CE / GCE / PC
_P8 = _wide("P8", _models([("CIFAR-100", ("CE", "GCE", "PC")), ("Tiny ImageNet", ("CE", "GCE", "PC"))]), [
    (255, "clean -", "40.2 64.5 67.7 38.2 32.8 37.7"),
    (256, "PGD 0.005", "11.4 24.4 56.7 11.3 8.9 24.8"),
    (257, "PGD 0.010", "2.0 14.8 54.6 2.8 2.6 19.2"),
    (258, "PGD 0.015", "0.4 9.1 52.6 0.8 1.0 15.8"),
    (259, "MIM 0.005", "8.7 21.9 55.8 7.9 7.3 23.5"),
    (260, "MIM 0.010", "1.4 12.3 52.8 1.9 2.1 18.0"),
    (261, "MIM 0.015", "0.3 7.4 48.9 0.6 1.4 14.6"),
    (262, "SPSA 0.015", "3.9 11.5 22.1 6.3 7.3 16.2"),
])

#: Table 5 (l.278-282): FGSM adversarial training (gray: eps in [0.1, 0.3]; CIFAR-10: 5-step PGD, eps in [0, 0.1]);
#: "PC" = the paper's "Ours" without AT; the FMNIST header's "CGE+AT" (a typo) is stored as GCE+AT
P9_MODELS = _models([("", ("CE+AT", "GCE+AT", "PC+AT", "PC")), ("KMNIST", ("CE+AT", "GCE+AT", "PC+AT", "PC")),
                     ("FMNIST", ("CE+AT", "GCE+AT", "PC+AT", "PC")), ("CIFAR-10", ("CE+AT", "PC+AT"))])
_P9 = _wide("P9", P9_MODELS, [
    (278, "BIM 0.3 0.04", "27.0 28.3 86.1 39.5 58.4 8.1 65.9 60.5 0.1 4.8 18.6 4.9 17.3 38.7"),
    (279, "PGD 0.3 0.04", "3.2 26.8 72.3 39.7 37.2 0.5 48.7 33.2 0.0 2.7 13.4 2.8 11.4 33.7"),
    (280, "MIM 0.3 0.04", "10.8 27.7 78.8 43.3 22.3 15.7 51.9 36.9 0.0 1.4 9.1 2.2 9.0 33.3"),
    (281, "CW 0.0 0.0", "75.5 69.4 96.4 78.0 47.9 48.2 67.1 57.3 4.0 21.5 29.8 21.8 0.0 33.7"),
    (282, "SPSA 0.3 0.3", "77.3 56.6 97.1 95.7 72.0 69.9 79.0 78.0 14.2 30.0 41.6 39.8 6.5 39.6"),
])

#: the introduction (l.37): average gap between the true-class probability and the most probable false class,
#: ResNet-56, test data
_P1 = (PaperNumber("pc", "P1", "CIFAR-100 CE", "gap", "0.527", 37),
       PaperNumber("pc", "P1", "CIFAR-100 PC", "gap", "0.558", 37),
       PaperNumber("pc", "P1", "Tiny ImageNet CE", "gap", "0.131", 37),
       PaperNumber("pc", "P1", "Tiny ImageNet PC", "gap", "0.231", 37))

#: the datasets of each table, as the prefixes of their rows ("" = MNIST)
DATASET_PREFIX = {"MNIST": "", "KMNIST": "KMNIST ", "FMNIST": "FMNIST ", "CIFAR-10": "CIFAR-10 ", "SVHN": "SVHN "}

PC_PAPER = Paper("pc", "the PC paper (Li et al.)", "004_47b8a8a080d3078d.txt", _P1 + _P4 + _P5 + _P6 + _P8 + _P9)
