"""Evaluation: suites of attack specs run by one engine into result tables."""

from __future__ import annotations

from robustloss.evaluation.engine import AttackResult, EvalResult, evaluate, run_attack
from robustloss.evaluation.suite import SUITES, AttackSpec, load_suite, parse_spec

__all__ = ["SUITES", "AttackResult", "AttackSpec", "EvalResult", "evaluate", "load_suite", "parse_spec",
           "run_attack"]
