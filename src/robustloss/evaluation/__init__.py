"""Evaluation: suites of attack specs run by one engine into result tables."""

from __future__ import annotations

from robustloss.evaluation.engine import EvalResult, SpecResult, evaluate, run_attack
from robustloss.evaluation.suite import SUITES, AttackSpec, load_suite, parse_spec
from robustloss.evaluation.transfer import transfer_matrix

__all__ = ["SUITES", "AttackSpec", "EvalResult", "SpecResult", "evaluate", "load_suite", "parse_spec",
           "run_attack", "transfer_matrix"]
