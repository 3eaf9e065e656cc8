"""Run folders: where training and evaluation meet the file system.

A run folder holds one run: ``config.json`` (the :class:`TrainConfig`),
``checkpoint.pt`` (written atomically after every epoch), ``log.jsonl``,
``runtime.json`` (thread count, world size, torch version, weight layout and
precisions of the training process) and ``eval/NAME.{json,md,robustbench.json}`` (evaluation results,
computed from the per-example rows in ``eval/NAME.rows/``).

* Training into a folder that holds a *different* run is refused unless
  ``force`` (which starts over); one that holds the *same* configuration needs
  ``resume`` (continue) or ``force``.  A folder with a config but no checkpoint
  (a start that failed before its first epoch) holds no run yet.
* Every writer holds the folder's lock (``.lock``, an exclusive ``flock``
  released by the kernel when the process dies, so a killed run never leaves a
  stale lock); a second writer gets an error naming the holder's PID.
* Everything is validated (config, data files, result name) before the first
  write, so a refused command creates nothing.

This layer sits above both training and evaluation: it turns a config into a
model (:func:`load_run`) and hands models to the evaluation engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustloss import datasets, distributed, external
from robustloss.attacks.transfer import MODEL_OPTIONS
from robustloss.classifier import Classifier, eval_mode
from robustloss.device import apply_channels_last, resolve_channels_last, resolve_device
from robustloss.distributed import World
from robustloss.errors import UserError, check_int, unknown_choice
from robustloss.evaluation import diagnostics
from robustloss.attacks import Attack
from robustloss.evaluation.engine import build_attack, evaluate_shard, result_from_rows
from robustloss.evaluation.rows import RowStore, Rows
from robustloss.evaluation.report import results_table
from robustloss.evaluation.suite import AttackSpec
from robustloss.external import ExternalSpec
from robustloss.io import atomic_write_json, atomic_write_text, read_json
from robustloss.models.randomization import DEFENSES, apply_defense
from robustloss.training.checkpoint import CHECKPOINT, load_checkpoint
from robustloss.training.config import TrainConfig
from robustloss.training.trainer import Trainer, build_classifier

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks
    fcntl = None  # type: ignore[assignment]

CONFIG = "config.json"
RUNTIME = "runtime.json"
LOCK = ".lock"
#: result names: a plain file name inside ``RUN/eval/``
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def read_config(run_dir: str | Path) -> TrainConfig:
    """The :class:`TrainConfig` in ``run_dir/config.json`` (a :class:`UserError` for anything else)."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run folder (no {CONFIG})")
    try:
        return TrainConfig.from_dict(read_json(path, "run config"))
    except TypeError as exc:
        raise UserError(f"{path} is not a valid run config: {str(exc).splitlines()[0]}") from None


class RunInUse(UserError):
    """Another process holds the run folder's lock (a :class:`UserError`: one line, exit 2)."""


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir``'s exclusive lock (the folder must exist); a second holder gets :class:`RunInUse`."""
    path = Path(run_dir) / LOCK
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise RunInUse(f"{run_dir} is in use by another robustloss process (PID {holder}); "
                            "wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)   # releases the lock


def _holds_run(run_dir: Path) -> bool:
    return (run_dir / CHECKPOINT).exists()


def prepare_run_dir(run_dir: str | Path, config: TrainConfig, *, resume: bool, force: bool) -> bool:
    """Make ``run_dir`` (existing, locked) ready for ``config``; ``True`` if an existing run should be resumed."""
    run_dir = Path(run_dir)
    if resume and force:
        raise UserError("--resume and --force contradict each other; pass one of them")
    has_run = _holds_run(run_dir)
    if has_run and force:
        for name in (CONFIG, CHECKPOINT, "log.jsonl", RUNTIME):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "eval", ignore_errors=True)
        has_run = False
    if has_run:
        old = read_config(run_dir) if (run_dir / CONFIG).is_file() else None
        if old is not None and old.to_dict() != config.to_dict():
            raise UserError(f"{run_dir} holds a different run; choose another --out, "
                            "or pass --force to overwrite it")
        if not resume:
            raise UserError(f"{run_dir} already holds this run; pass --resume to continue it "
                            "or --force to start over")
    atomic_write_json(run_dir / CONFIG, config.to_dict())
    return has_run


def _check_threads(run_dir: Path, resuming: bool, world: World | None = None, sync_bn: bool = False,
                   channels_last: bool = False, amp: str | None = None) -> None:
    """Record thread count, world size and the speed options (float results depend on them); warn when a
    resumed run changes them.

    A changed world size is allowed: the batch size is global and every global
    batch is the same, so the updates are the same up to float summation order
    (as with another thread count) - except for BatchNorm without ``sync_bn``,
    whose batch statistics are per rank, so they change with the per-rank batch.
    ``channels_last`` (the weights' memory layout) changes only the summation order, too.
    ``amp`` is the config's crafting precision (recorded here so the file names every precision used).
    """
    threads = torch.get_num_threads()
    w = world if world is not None else World()
    path = run_dir / RUNTIME
    if resuming and path.is_file():
        try:
            before_all = json.loads(path.read_text())
            before, before_world = before_all.get("threads"), before_all.get("world_size", 1)
            before_layout = before_all.get("channels_last", False)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            before, before_world, before_layout = None, None, None
        if before is not None and before != threads:
            print(f"robustloss: warning: {run_dir} was trained with {before} threads and resumes with {threads}; "
                  "the weights will differ in the last digits from an uninterrupted run (pass --threads "
                  f"{before} to resume exactly)", file=sys.stderr)
        if before_world is not None and before_world != w.size:
            print(f"robustloss: warning: {run_dir} was trained by {before_world} process(es) and resumes with "
                  f"{w.size}; the global batch is unchanged, so the weights differ only in the last digits "
                  "(BatchNorm without --sync-bn: per-rank batch statistics change with the per-rank batch)",
                  file=sys.stderr)
        if before_layout is not None and bool(before_layout) != channels_last:
            flag = "--channels-last" if before_layout else "--no-channels-last"
            print(f"robustloss: warning: {run_dir} was trained with channels_last={bool(before_layout)} and resumes "
                  f"with {channels_last}; the weights will differ in the last digits from an uninterrupted run "
                  f"(pass {flag} to resume exactly)", file=sys.stderr)
    atomic_write_json(path, {"threads": threads, "torch": torch.__version__, "world_size": w.size,
                             "backend": w.backend or None, "sync_bn": bool(sync_bn),
                             "channels_last": bool(channels_last), "crafting_precision": amp or "fp32",
                             "training_precision": "fp32"})


def train_run(config: TrainConfig, run_dir: str | Path, *, resume: bool = False, force: bool = False,
              device: str = "auto", progress: bool = True, backend: str = "auto",
              sync_bn: bool = False, channels_last: bool | None = None) -> Classifier:
    """Train ``config`` into ``run_dir`` (resuming when asked) and return the model in eval mode.

    Under ``torchrun`` (``WORLD_SIZE > 1``) every process calls this; they train
    one model with DDP (:mod:`robustloss.training.trainer`).  Rank 0 alone takes
    the folder's lock, checks the folder, writes config, checkpoints, log and
    ``runtime.json`` (which records the world size); its decision (start, resume,
    or a refusal) is broadcast, so a refused start stops every rank with the same
    error.  ``backend``: ``auto`` (``nccl`` on CUDA, ``gloo`` on the CPU), ``gloo``
    or ``nccl``; ``sync_bn`` converts BatchNorm layers to ``SyncBatchNorm``.
    ``channels_last``: the weights' memory layout while training (``None``: channels-last for
    convolutional backbones on an AVX-512 CPU, else contiguous;
    :func:`robustloss.device.resolve_channels_last` says why);
    a runtime option recorded in ``runtime.json``, not part of the config.
    """
    run_dir = Path(run_dir)
    if str(run_dir) in ("", "."):
        raise UserError("the run folder must be a non-empty path other than '.'")
    if resume and force:
        raise UserError("--resume and --force contradict each other; pass one of them")
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"output path {run_dir} exists and is not a folder")
    w, dev = distributed.setup(resolve_device(device), backend)
    # validates every hyperparameter
    trainer = Trainer(config, run_dir, device=str(dev), progress=progress, world=w, sync_bn=sync_bn,
                      channels_last=channels_last)
    trainer.load_data()   # missing data files fail here, before anything is written
    created = not run_dir.exists()
    try:
        with contextlib.ExitStack() as stack:
            decision: bool | str = False
            if w.is_main:
                try:
                    run_dir.mkdir(parents=True, exist_ok=True)
                    stack.enter_context(run_lock(run_dir))
                    decision = prepare_run_dir(run_dir, config, resume=resume, force=force)
                    _check_threads(run_dir, decision, w, sync_bn, trainer.channels_last, config.amp)
                except UserError as exc:
                    if not w.active:
                        raise
                    decision = str(exc)
            decision = w.broadcast(decision)   # rank 0's decision, on every rank
            if isinstance(decision, str):
                raise UserError(decision)
            if decision:
                trainer.resume()
            return trainer.fit()
    except UserError:
        if w.is_main and created and not _holds_run(run_dir):   # a refused start leaves nothing behind
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def load_run(run_dir: str | Path, device: str = "cpu") -> Classifier:
    """The trained :class:`Classifier` of ``run_dir``, in eval mode."""
    config = read_config(run_dir)
    dev = resolve_device(device)
    state = load_checkpoint(Path(run_dir) / CHECKPOINT, map_location=dev)
    if not config.matches(state["config"]):
        raise UserError(f"checkpoint in {run_dir} is from another configuration than its {CONFIG}")
    model = build_classifier(config)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise UserError(f"checkpoint in {run_dir} does not fit the model: {str(exc).splitlines()[0]}") from None
    return model.to(dev).eval()


def run_is_complete(run_dir: str | Path) -> bool:
    """``True`` if ``run_dir`` holds a finished training run."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return False
    return bool(load_checkpoint(path).get("complete", False))


def check_result_name(name: str) -> str:
    """``name`` if it is a plain file name for ``RUN/eval/`` (no folders, no leading dot), else a :class:`UserError`."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UserError(f"result name {name!r} must be 1-100 letters, digits, '.', '_' or '-', starting with a "
                        "letter or digit (results go to RUN_DIR/eval/NAME.json)")
    return name


def _warn_if_unusable(run_dir: Path, model: nn.Module) -> None:
    state = load_checkpoint(run_dir / CHECKPOINT)
    if not state.get("complete", False):
        print(f"robustloss: warning: {run_dir} is unfinished (epoch {state.get('epoch', '?')} of "
              f"{state['config'].get('epochs', '?')}); evaluating its last checkpoint", file=sys.stderr)
    bad = [name for name, p in model.state_dict().items() if p.is_floating_point() and not bool(torch.isfinite(p).all())]
    if bad:
        print(f"robustloss: warning: {run_dir} has non-finite weights ({len(bad)} tensors, e.g. {bad[0]}); "
              "its results are meaningless", file=sys.stderr)


def substitute_models(suite: list[AttackSpec], device: str) -> dict[str, nn.Module]:
    """The run folders that the suite's transfer attacks name as substitutes, loaded."""
    names = {str(spec.params[key]) for spec in suite for key in MODEL_OPTIONS if isinstance(spec.params.get(key), str)}
    return {name: load_run(name, device=device) for name in sorted(names)}


def _settings(n: int, seed: int, worst_case: bool, split: str, suite: list[AttackSpec]) -> dict[str, Any]:
    """What a partial result must match to be reused.

    In worst-case mode an attack runs only on the survivors of the attacks before
    it, so the whole ordered suite is part of the settings.
    """
    out: dict[str, Any] = {"n": n, "seed": seed, "worst_case": worst_case, "split": split}
    if worst_case:
        out["order"] = [spec.key() for spec in suite]
    return out


def _prepare_rows(folder: Path, settings: dict[str, Any], reuse_finished: bool) -> None:
    """Make ``folder`` hold rows for ``settings`` only (rank 0, under the lock).

    Rows made with other settings, or of an evaluation that finished (unless
    ``reuse_finished``), are removed: an evaluation started again resumes only an
    *unfinished* one.
    """
    path = folder / "settings.json"
    if folder.is_dir():
        try:
            old = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            old = None
        keep = (isinstance(old, dict) and old.get("settings") == settings
                and (reuse_finished or not old.get("complete", False)))
        if not keep:
            shutil.rmtree(folder)
    if not folder.is_dir():
        folder.mkdir(parents=True)
        atomic_write_json(path, {"settings": settings, "complete": False})


def evaluate_run(run_dir: str | Path, suite: list[AttackSpec], *, name: str, n: int | None = 1000,
                 split: str = "test", batch_size: int = 500, device: str = "auto", seed: int = 0,
                 worst_case: bool = False, data_dir: str | None = None, progress: bool = True,
                 diagnose: bool = False, diagnose_eps: float | None = None, reuse: bool = False,
                 backend: str = "auto", channels_last: bool | None = None,
                 defense: str | None = None) -> dict[str, Any]:
    """Evaluate the model of ``run_dir`` on the first ``n`` images of ``split``; returns the result dict.

    Results go to ``RUN_DIR/eval/NAME.json`` and ``.md``, and a RobustBench-style
    summary to ``NAME.robustbench.json``.  Every example's outcome under every
    attack is appended to ``RUN_DIR/eval/NAME.rows/`` as each batch finishes
    (:mod:`robustloss.evaluation.rows`); the tables are computed from these rows,
    and a killed evaluation started again with the same settings resumes at the
    first unfinished batch (also with another batch size or process count).
    ``reuse=True`` returns an existing ``eval/NAME.json`` made with the same suite
    and settings instead of running it again (retraining with ``--force`` deletes
    ``eval/``, so such a file always belongs to the current weights).
    ``diagnose=True`` also runs the gradient-masking checks of
    :mod:`robustloss.evaluation.diagnostics` (after the suite) at ``diagnose_eps``
    (default: the suite's largest L-inf eps) and stores them under ``"diagnostics"``.
    Transfer attacks name their substitute by run folder (``substitute_model=RUN``).

    Under ``torchrun`` every rank calls this: the points are split over the ranks
    (every ``world``-th point), each rank attacks its shard and writes its own
    rows file, and rank 0 merges the rows into the same files a single process
    writes (every rank returns the summary).

    Every evaluation runs in fp32 (``"precision"`` in the result); ``channels_last``
    sets the model's weight layout (``None``: channels-last for convolutional backbones on an
    AVX-512 CPU, else contiguous, :func:`robustloss.device.resolve_channels_last`; the logits agree with the
    contiguous model's to float rounding) and is recorded as ``"channels_last"``.

    ``defense="randomization"`` evaluates the run's model behind Xie et al. 2018's input randomisation
    (:mod:`robustloss.models.randomization`, its generator seeded with ``seed``; no retraining): the
    attacks, the clean pass and the diagnostics all see the defended model.  The defence is recorded as
    ``"defense"`` in the result and in the settings its rows and a reused result must match, so results of
    the model with and without it are never mixed up.  Its randomness follows the order of the forward
    passes: an uninterrupted evaluation is reproducible; a resumed one or one split over processes draws
    other transformations.  Attack it with EoT (the gradient attacks' ``eot`` option).
    """
    run_dir = Path(run_dir)
    _check_eval_args(name, n, batch_size, seed, suite)
    if defense is not None and defense not in DEFENSES:
        raise unknown_choice("defense", str(defense), DEFENSES)
    config = read_config(run_dir)
    out_dir = run_dir / "eval"
    diag_eps = _check_out_dir(out_dir, suite, diagnose, diagnose_eps)
    w, dev = distributed.setup(resolve_device(device), backend)
    trained = load_run(run_dir, device=str(dev))
    x, y = datasets.load(config.dataset, split, data_dir if data_dir is not None else config.data_dir)
    model = trained if defense is None else apply_defense(defense, trained, int(x.shape[-1]), seed)
    about = {"run": str(run_dir), "config": config.to_dict()}
    card = {"dataset": config.dataset, "model": config.model, "objective": config.objective}
    return _evaluate_model(model, x, y, suite, w, dev, lock_dir=run_dir, out_dir=out_dir, name=name, n=n,
                           split=split, batch_size=batch_size, seed=seed, worst_case=worst_case, progress=progress,
                           diag_eps=diag_eps, reuse=reuse, about=about, card=card,
                           key=run_dir.name if defense is None else f"{run_dir.name} + {defense}",
                           channels_last=channels_last, before=lambda: _warn_if_unusable(run_dir, trained),
                           defense=defense)


def evaluate_external(spec: ExternalSpec, suite: list[AttackSpec], *, dataset: str, out: str | Path, name: str,
                      n: int | None = 1000, split: str = "test", batch_size: int = 500, device: str = "auto",
                      seed: int = 0, worst_case: bool = False, data_dir: str | None = None, progress: bool = True,
                      diagnose: bool = False, diagnose_eps: float | None = None, reuse: bool = False,
                      backend: str = "auto", channels_last: bool | None = None) -> dict[str, Any]:
    """Evaluate an external ``nn.Module`` (:mod:`robustloss.external`) on ``dataset``; results go to ``out/NAME.*``.

    The same engine, row store, resume, sharding under ``torchrun`` and files as
    :func:`evaluate_run`, with ``out`` in place of ``RUN_DIR/eval`` (``out`` is
    created only once the model, its weights, the data and every attack passed
    their checks).  The rows are tied to the model's description (import path,
    preprocessing, output key, SHA-256 of the weights), so rows of another model
    in the same folder are never reused.  An attack asked for the adaptive loss
    attacks the logits (CE or margin, see :mod:`robustloss.external`); the
    summary's ``"note"`` and the Markdown report say so.  ``channels_last`` ``None`` means
    contiguous here (not the rule of our own backbones): a module we do not know may
    ``.view()`` its activations, which channels-last outputs break.
    """
    _check_eval_args(name, n, batch_size, seed, suite)
    if dataset not in datasets.NAMES:
        raise unknown_choice("dataset", dataset, datasets.NAMES)
    out_dir = Path(out)
    diag_eps = _check_out_dir(out_dir, suite, diagnose, diagnose_eps)
    x, y = datasets.load(dataset, split, data_dir)
    # checked before the ranks meet: the same one-line error on every rank, printed once (by rank 0)
    model = external.load_external(spec, x[:8], "cpu")
    w, dev = distributed.setup(resolve_device(device), backend)
    model = model.to(dev)
    if channels_last:   # asked for: an unknown module may not run channels-last (our backbones do)
        apply_channels_last(model, True)
        _check_runs_channels_last(model, x[:2].to(dev))
    about: dict[str, Any] = {"model": external.describe(spec), "dataset": dataset}
    card = {"dataset": dataset, "model": spec.target, "objective": None}
    return _evaluate_model(model, x, y, suite, w, dev, lock_dir=out_dir, out_dir=out_dir, name=name, n=n,
                           split=split, batch_size=batch_size, seed=seed, worst_case=worst_case, progress=progress,
                           diag_eps=diag_eps, reuse=reuse, about=about, card=card, key=spec.target,
                           # an unknown module may .view() its activations, which channels-last outputs break:
                           # contiguous unless asked for
                           channels_last=bool(channels_last),
                           identity={k: v for k, v in about["model"].items() if k != "weights"})


def _check_eval_args(name: str, n: int | None, batch_size: int, seed: int, suite: list[AttackSpec]) -> None:
    check_result_name(name)
    if n is not None:
        check_int("number of evaluation points", n, 1)
    check_int("batch size", batch_size, 1)
    check_int("seed", seed, 0, 2 ** 63 - 1)
    if not suite:
        raise UserError("the suite is empty; give at least one attack")


def _check_out_dir(out_dir: Path, suite: list[AttackSpec], diagnose: bool, diagnose_eps: float | None) -> float | None:
    """The diagnostics' eps (``None`` without ``diagnose``), after checking ``out_dir`` can hold results."""
    diag_eps = diagnostics.default_eps(suite, diagnose_eps) if diagnose else None  # fail before the attacks
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder; move it away to store evaluation results")
    return diag_eps


def non_adaptive_note(attacks: list[Attack]) -> str | None:
    """A sentence naming the attacks that asked for the adaptive loss but found no objective (else ``None``).

    Such an attack used the logit form of the loss instead
    (:func:`robustloss.attacks.losses.resolve_loss`): ``adaptive`` -> CE,
    ``adaptive-margin`` -> the C&W margin.
    """
    fallback = {"adaptive": "cross-entropy", "adaptive-margin": "C&W margin"}
    fell_back = sorted({f"{a.name} ({a.loss_name} -> {fallback[a.loss_name]})" for a in attacks
                        if a.located is None and a.loss_name in fallback})
    if not fell_back:
        return None
    return (f"non-adaptive attacks: no objective is known for this model, so {', '.join(fell_back)} "
            "attacked its logits")


def _check_runs_channels_last(model: nn.Module, x: torch.Tensor) -> None:
    """A :class:`UserError` if ``model`` (weights already channels-last) fails a forward pass on ``x``.

    Code written for contiguous activations (``.view()`` after a convolution) breaks on
    channels-last outputs; the user should hear that in one line, before anything is written.
    """
    try:
        with eval_mode(model), torch.no_grad():   # no batch-norm statistics updated by the probe
            model(x)
    except RuntimeError as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"the model does not run with channels-last weights ({reason}); "
                        "evaluate it with --no-channels-last") from None


def _evaluate_model(model: nn.Module, x: torch.Tensor, y: torch.Tensor, suite: list[AttackSpec], w: World,
                    dev: torch.device, *, lock_dir: Path, out_dir: Path, name: str, n: int | None, split: str,
                    batch_size: int, seed: int, worst_case: bool, progress: bool, diag_eps: float | None,
                    reuse: bool, about: dict[str, Any], card: dict[str, Any], key: str,
                    channels_last: bool | None = None, identity: dict[str, Any] | None = None,
                    before: Callable[[], None] | None = None, defense: str | None = None) -> dict[str, Any]:
    """The evaluation both entry points share: shard, rows, merge, files (see :func:`evaluate_run`).

    ``about`` heads the summary (what was evaluated), ``card`` names dataset,
    model and objective in the RobustBench summary, ``key`` is the table's row
    name; ``identity`` (if given) is part of the settings the rows must match.
    ``lock_dir`` is created (rank 0) only after every check passed.  ``defense`` (the name of the defence
    ``model`` is already wrapped in, or ``None``) becomes part of the settings (so of the rows' and a reused
    result's identity) and of the summary.
    """
    layout = resolve_channels_last(channels_last, dev, model)
    apply_channels_last(model, layout)
    models = substitute_models(suite, str(dev))
    for index, spec in enumerate(suite):   # a bad spec fails here, before anything is written
        build_attack(model, spec, seed + index, models)
    if n is not None:
        x, y = x[:n], y[:n]
    if w.size > len(x):
        raise distributed.RankError(f"{w.size} processes (--nproc_per_node) for only {len(x)} evaluation points; "
                                    f"use at most {len(x)} processes or more points (--n)")
    settings = _settings(len(x), seed, worst_case, split, suite)
    if identity is not None:
        settings["model"] = identity
    if defense is not None:   # absent for an undefended model: its existing rows and results stay valid
        settings["defense"] = defense
    if reuse and diag_eps is None:
        previous = _finished(out_dir / f"{name}.json", settings, suite)
        if previous is not None:
            return previous
    if w.is_main and before is not None:
        before()
    rows_dir = out_dir / f"{name}.rows"
    row_settings = {k: v for k, v in settings.items() if k != "n"}   # rows stay valid for another n
    with contextlib.ExitStack() as stack:
        problem: str | None = None
        if w.is_main:
            try:
                lock_dir.mkdir(parents=True, exist_ok=True)
                stack.enter_context(run_lock(lock_dir))
                _prepare_rows(rows_dir, row_settings, reuse_finished=reuse)
            except UserError as exc:
                if not w.active:
                    raise
                problem = str(exc)
        problem = w.broadcast(problem)
        if problem is not None:
            raise UserError(problem)
        store = RowStore(rows_dir, w.rank)
        evaluate_shard(model, x, y, suite, indices=distributed.shard(torch.arange(len(x)), w), store=store,
                       batch_size=batch_size, device=dev, seed=seed, worst_case=worst_case, progress=progress,
                       models=models)
        w.barrier()   # every shard's rows are on disk
        summary: dict[str, Any] | None = None
        if w.is_main:
            attacks = [build_attack(model, spec, seed + index, models) for index, spec in enumerate(suite)]
            result = result_from_rows(store.load(), len(x), suite, attacks, worst_case=worst_case)
            summary = {**about, "suite": name,
                       **{k: v for k, v in settings.items() if k not in ("order", "model")}, **result.to_dict(),
                       "precision": "fp32", "channels_last": layout}
            report = results_table({key: summary})
            if defense is not None:
                report += (f"\nDefense: {defense} (Xie et al. 2018, random resize and padding at every forward "
                           "pass; robustloss.models.randomization): accuracies are of one random draw per "
                           "prediction; attacks without EoT (eot=1) overestimate its robustness.\n")
            note = non_adaptive_note(attacks)
            if note is not None:
                summary["note"] = note
                report += f"\nNote: {note}.\n"
            if diag_eps is not None:
                diag_n = min(len(x), diagnostics.DEFAULT_N)
                checks = diagnostics.diagnose(model, x, y, eps=diag_eps, n=diag_n, batch_size=batch_size,
                                              device=dev, seed=seed)
                summary["diagnostics"] = diagnostics.summary(checks, eps=diag_eps, n=diag_n)
                report += diagnostics.markdown(summary["diagnostics"])
            atomic_write_json(out_dir / f"{name}.json", summary)
            atomic_write_text(out_dir / f"{name}.md", report)
            atomic_write_json(out_dir / f"{name}.robustbench.json",
                              robustbench_summary(summary, attacks, store.rows, card, world_size=w.size))
            atomic_write_json(rows_dir / "settings.json", {"settings": row_settings, "complete": True})
        summary = w.broadcast(summary)
    assert summary is not None
    return summary


def robustbench_summary(summary: dict[str, Any], attacks: list[Attack], rows: Rows, card: dict[str, Any],
                        world_size: int = 1) -> dict[str, Any]:
    """A RobustBench-style record of one evaluation (clean/robust accuracy, threat model, attacks, cost, versions).

    Field names follow RobustBench's model-card JSON where one exists
    (``clean_acc``, ``autoattack_acc`` is ours ``robust_acc``, ``eps``,
    ``threat_model``); ``eps`` is the largest ``eps`` the suite gives, as given.
    ``forward_passes`` counts input rows through the model (clean pass + every
    attack's :attr:`AttackResult.queries`), summed over all processes.
    """
    norms = sorted({str(a.norm) for a in attacks if hasattr(a, "eps")})
    eps_values = [float(getattr(a, "eps")) for a in attacks if isinstance(getattr(a, "eps", None), (int, float))]
    threat = {"linf": "Linf", "l2": "L2"}
    forward = sum(q for q, _ in rows.cost.values())
    import platform

    import numpy

    return {
        "run": summary.get("run"), "dataset": card["dataset"], "model": card["model"], "objective": card["objective"],
        "n_examples": summary["n"], "split": summary["split"], "seed": summary["seed"],
        "clean_acc": summary["clean_accuracy"], "robust_acc": summary["worst_case_accuracy"],
        "worst_case_mode": summary["worst_case_mode"],
        "threat_model": "+".join(threat.get(nm, nm) for nm in norms) or "corruptions",
        "eps": max(eps_values) if eps_values else None,
        "attacks": [{"label": res["label"], "attack": res["attack"], "params": a.params(),
                     "robust_acc": res["robust_accuracy"], "attacked": res["attacked"],
                     "adaptive": a.located is not None and a.loss_name in ("adaptive",)}
                    for res, a in zip(summary["attacks"], attacks)],
        "forward_passes": forward, "processes": world_size,
        "precision": summary.get("precision", "fp32"), "channels_last": summary.get("channels_last"),
        "versions": {"robustloss": _package_version(), "torch": torch.__version__, "numpy": numpy.__version__,
                     "python": platform.python_version()},
        "git_commit": _git_commit(),
    }


def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("robustloss")
    except PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The commit of the robustloss source checkout, if it is one (``None`` otherwise)."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", text) else None


def _finished(path: Path, settings: dict[str, Any], suite: list[AttackSpec]) -> dict[str, Any] | None:
    """The summary at ``path`` if it was made with ``settings`` and exactly ``suite``, else ``None``."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    same = all(data.get(k) == v for k, v in settings.items() if k != "order") \
        and data.get("defense") == settings.get("defense")
    specs = [(a.get("label"), a.get("attack"), a.get("params")) for a in data.get("attacks", [])]
    return data if same and specs == [(s.label, s.attack, s.params) for s in suite] else None
