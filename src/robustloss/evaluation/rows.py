"""The per-example result store: one JSON line per (example, attack), appended as batches finish.

A folder ``RUN/eval/NAME.rows/`` holds ``settings.json`` (what the rows are
valid for) and one ``rank-R.jsonl`` per process that wrote rows.  Each finished
batch is written with one ``write`` followed by ``flush`` and ``fsync``: its
rows, then a commit line ``{"commit": ID, "rows": K, ...}``.  Reading keeps only
batches whose commit line is present with the right count, so a process killed
mid-write loses at most the batch it was writing; a torn last line is cut off
before the file is appended to again.  Rows are keyed by the example's *global*
index, so any number of processes (or another batch size) can resume from them.

Rows (``kind``):

* ``clean``: ``i`` (example index), ``label``, ``pred`` (clean prediction);
* ``attack``: ``attack`` (the attack's id, :func:`attack_id`), ``i``, ``label``,
  ``clean_pred``, ``adv_pred``, ``success`` (the attack's own criterion:
  misclassified, or the target reached), ``distortion`` (in the attack's norm),
  ``queries`` (the model evaluations spent on this example,
  :attr:`AttackResult.example_queries`; ``null`` for an attack that does not
  attribute them; absent in rows written before it was recorded), ``seed`` (the
  example's seed for this attack);

commit lines carry ``queries`` (model evaluations of the batch, the attack's
:attr:`AttackResult.queries`, which adds the call's probes to the rows' sum;
forward passes of the clean pass for ``clean``) and ``time_s``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def attack_id(spec_key: str, seed: int) -> str:
    """A short id of an attack spec run with ``seed`` (rows of another spec or seed never mix)."""
    return hashlib.sha256(f"{spec_key}\n{seed}".encode()).hexdigest()[:16]


@dataclass
class Rows:
    """The committed rows of a store, by kind."""

    clean: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: attack id -> example index -> row
    attacks: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    #: attack id (or ``"clean"``) -> (queries, time_s) summed over committed batches
    cost: dict[str, tuple[int, float]] = field(default_factory=dict)

    def add(self, rows: Iterable[dict[str, Any]], commit: dict[str, Any]) -> None:
        for row in rows:
            if row.get("kind") == "clean":
                self.clean[int(row["i"])] = row
            elif row.get("kind") == "attack":
                self.attacks.setdefault(str(row["attack"]), {})[int(row["i"])] = row
        key = str(commit.get("attack", "clean"))
        q, t = self.cost.get(key, (0, 0.0))
        self.cost[key] = (q + int(commit.get("queries", 0)), t + float(commit.get("time_s", 0.0)))


class RowStore:
    """Rows of one evaluation; this process appends to ``folder/rank-RANK.jsonl`` and reads every file."""

    def __init__(self, folder: str | Path, rank: int = 0) -> None:
        self.folder = Path(folder)
        self.path = self.folder / f"rank-{rank}.jsonl"
        self.rows = Rows()

    def load(self) -> Rows:
        """Every committed batch of every file in the folder (also kept in :attr:`rows`)."""
        rows = Rows()
        for path in sorted(self.folder.glob("rank-*.jsonl")):
            pending: dict[str, list[dict[str, Any]]] = {}
            try:
                lines = path.read_text().splitlines()
            except (OSError, UnicodeDecodeError):
                continue
            for line in lines:
                try:
                    item = json.loads(line)
                except json.JSONDecodeError:
                    continue   # a torn line: its batch has no commit, or the commit itself is lost
                if not isinstance(item, dict):
                    continue
                if "commit" in item:
                    batch = pending.pop(str(item["commit"]), [])
                    if len(batch) == int(item.get("rows", -1)):
                        rows.add(batch, item)
                elif "b" in item:
                    pending.setdefault(str(item["b"]), []).append(item)
        self.rows = rows
        return rows

    def append(self, rows: list[dict[str, Any]], commit: dict[str, Any]) -> None:
        """Write one batch durably (rows + commit line, one write, flushed and synced)."""
        batch = secrets.token_hex(8)
        text = "".join(json.dumps({"b": batch, **r}, sort_keys=True) + "\n" for r in rows)
        text += json.dumps({**commit, "commit": batch, "rows": len(rows)}, sort_keys=True) + "\n"
        self.folder.mkdir(parents=True, exist_ok=True)
        _cut_torn_tail(self.path)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        self.rows.add(rows, commit)


def _cut_torn_tail(path: Path) -> None:
    """Drop a last line without its newline (a write cut short), so the next append starts a fresh line."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        data = path.read_bytes()
        fh.truncate(data.rfind(b"\n") + 1)
