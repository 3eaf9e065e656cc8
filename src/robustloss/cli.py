"""The ``robustloss`` command: train, evaluate, reproduce, list.

User mistakes print one line ``robustloss: error: ...`` and exit with code 2;
a diverged training run exits with code 1.  Nothing is overwritten without
``--force``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from robustloss.errors import UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line instead of usage + message
        self.exit(2, f"robustloss: error: {message} (see '{self.prog} --help')\n")


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=32)


def _path(text: str) -> str:
    """A path argument: refuses ``''`` (which would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _int_at_least(low: int) -> Callable[[str], int]:
    """An integer argument ``>= low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value

    return parse


def _seed(text: str) -> int:
    """A seed argument, in [0, 2**63 - 1] (:func:`robustloss.errors.check_seed`)."""
    from robustloss.errors import check_seed

    try:
        return check_seed("seed", int(text))
    except (ValueError, UserError):
        raise argparse.ArgumentTypeError(f"must be an integer in [0, 2**63 - 1], got {text!r}") from None


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice; 1 helps on a busy shared machine)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars (they show only on a terminal)")


def _add_channels_last(p: argparse.ArgumentParser) -> None:
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="store the model's weights channels-last (NHWC): faster convolutions on the CPU, same "
                   "results to float rounding (default: on for convolutional models on an AVX-512 CPU, off on other "
                   "CPUs, on CUDA and for --model; BENCHMARKS.md 'Speed options' has the measurements)")


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="auto", choices=["auto", "gloo", "nccl"],
                   help="torch.distributed backend under torchrun: auto = nccl on CUDA, gloo on the CPU")


def build_parser() -> argparse.ArgumentParser:
    from robustloss import datasets
    from robustloss.device import AMP_CHOICES
    from robustloss.models import MODELS
    from robustloss.objectives import OBJECTIVES
    from robustloss.reproduce import ALIASES, RECIPES, SCALES
    from robustloss.training.config import OPTIMIZERS, AdversarialConfig, TrainConfig

    d, a = TrainConfig(), AdversarialConfig()
    parser = _Parser(prog="robustloss", description="Training objectives and adaptive attacks for "
                     "adversarial-robustness research.", formatter_class=_formatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model into a run folder", formatter_class=_formatter,
                       description="Train backbone + objective; a checkpoint is written atomically after every epoch.")
    t.add_argument("--dataset", default=d.dataset, help=f"one of: {', '.join(datasets.NAMES)}")
    t.add_argument("--model", default=d.model, help=f"backbone, one of: {', '.join(MODELS.names())}")
    t.add_argument("--objective", default=d.objective, help=f"one of: {', '.join(OBJECTIVES.names())}")
    t.add_argument("-O", "--objective-opt", action="append", metavar="KEY=VALUE", default=[],
                   help="objective option, e.g. -O c_mm=10 (see 'robustloss list objectives')")
    t.add_argument("-M", "--model-opt", action="append", metavar="KEY=VALUE", default=[],
                   help="backbone option, e.g. -M n=5 (ResNet depth 6n+2)")
    t.add_argument("--feature-dim", type=int, default=None, help="size of the feature layer z (backbone default)")
    t.add_argument("--epochs", type=int, default=d.epochs)
    t.add_argument("--batch-size", type=int, default=d.batch_size)
    t.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS,
                   help="sgd (momentum), adam or rmsprop")
    t.add_argument("--lr", type=float, default=d.lr, help="initial learning rate (the MMC paper, Sec. 4.1)")
    t.add_argument("--momentum", type=float, default=d.momentum)
    t.add_argument("--weight-decay", type=float, default=d.weight_decay)
    t.add_argument("--milestones", type=int, nargs="*", default=[],
                   help="epochs after which lr *= --lr-gamma (positive, strictly increasing)")
    t.add_argument("--lr-gamma", type=float, default=d.lr_gamma, help="lr decay factor at each milestone, in (0, 1]")
    t.add_argument("--seed", type=int, default=d.seed, help="in [0, 2**63 - 1]")
    t.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random shift + flip (default: on for CIFAR, off otherwise)")
    t.add_argument("--train-limit", type=int, default=None, help="use only the first N training images")
    t.add_argument("--data-dir", type=_path, default=None, help="folder with the dataset files (CIFAR python batches, KMNIST / Fashion-MNIST IDX or .npz, SVHN .mat)")
    t.add_argument("--download", action="store_true", help="download CIFAR with torchvision if installed")
    t.add_argument("--at", choices=None, default=None, metavar="{pgd,fgsm}",
                   help="adversarial training with this attack (uses the objective's adaptive loss)")
    t.add_argument("--at-eps", type=float, default=a.eps)
    t.add_argument("--at-eps-min", type=float, default=a.eps_min, help="FGSM-AT: eps drawn from [eps-min, eps]")
    t.add_argument("--at-steps", type=int, default=a.steps)
    t.add_argument("--at-step-size", type=float, default=a.step_size)
    t.add_argument("--at-untargeted", action="store_true", help="untargeted AT (default: targeted, random targets)")
    t.add_argument("--at-mix", default=a.mix, help="adv (adversarial only) or half (1:1 clean + adversarial)")
    t.add_argument("--amp", choices=AMP_CHOICES, default=None,
                   help="mixed precision (torch.autocast) of the forward passes that craft adversarial training "
                   "examples; losses, training step and evaluation stay fp32 (default: fp32). Needs --at; slower "
                   "on CPUs without native bf16/fp16 (see BENCHMARKS.md)")
    t.add_argument("--out", type=_path, required=True, help="run folder")
    existing = t.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue the run in --out")
    existing.add_argument("--force", action="store_true", help="overwrite the run in --out")
    t.add_argument("--sync-bn", action="store_true",
                   help="under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm, for ResNet)")
    _add_device(t)
    _add_channels_last(t)
    _add_backend(t)

    e = sub.add_parser("evaluate", help="evaluate a run (or any PyTorch model) under a suite of attacks",
                       formatter_class=_formatter,
                       description="Attack the model of RUN_DIR (results go to RUN_DIR/eval/NAME.{json,md}), or an "
                       "external nn.Module with --model module.path:factory --dataset NAME --out DIR (results go to "
                       "DIR/NAME.{json,md}; its attacks are non-adaptive: no objective is known).")
    e.add_argument("run_dir", type=_path, metavar="RUN_DIR", nargs="?", default=None,
                   help="run folder to evaluate (or give --model)")
    x = e.add_argument_group("any PyTorch model (instead of RUN_DIR)")
    x.add_argument("--model", dest="external", default=None, metavar="MODULE:FACTORY",
                   help="an nn.Module (logits out, inputs in [0,1]), or a class/function returning one, importable "
                   "from PYTHONPATH, e.g. mypkg.nets:resnet18")
    x.add_argument("--weights", type=_path, default=None, help="state dict for --model (torch.load, weights_only)")
    x.add_argument("--mean", default=None, help="input normalisation the model expects, per channel, e.g. "
                   "0.4914,0.4822,0.4465 (applied inside the evaluated model: attacks stay in [0,1])")
    x.add_argument("--std", default=None, help="per-channel std, with --mean")
    x.add_argument("--output-key", default=None, help="the logits in a dict/tuple/object output: key, index or "
                   "attribute name")
    x.add_argument("--dataset", default=None, help="dataset to evaluate --model on (one of: "
                   f"{', '.join(datasets.NAMES)})")
    x.add_argument("--out", type=_path, default=None, help="result folder for --model")
    e.add_argument("--suite", default=None, help="built-in suite name or a JSON file (default: mnist-pgd for "
                   "gray-scale runs (MNIST, KMNIST, Fashion-MNIST, synthetic), cifar-pgd for CIFAR and SVHN)")
    e.add_argument("--attack", action="append", default=[], metavar="NAME:K=V,...",
                   help="run this attack instead of a suite, e.g. pgd:eps=0.3,steps=40,step_size=0.01")
    e.add_argument("--name", type=_path, default=None, help="name of the result files (default: the suite's name)")
    e.add_argument("--n", "--num-points", dest="n", type=_int_at_least(1), default=1000,
                   help="evaluate on the first N images of the split (under torchrun write --num-points: torchrun "
                   "takes --n for one of its own options)")
    e.add_argument("--split", default="test", help="train, val or test")
    e.add_argument("--batch-size", type=_int_at_least(1), default=500)
    e.add_argument("--seed", type=_seed, default=0, help="seed of the attacks' randomness, in [0, 2**63 - 1]")
    e.add_argument("--worst-case", action="store_true",
                   help="ensemble mode: each attack only on the points that survived the previous ones")
    e.add_argument("--diagnose", action="store_true",
                   help="also run the gradient-masking checks (docs/attacks.md); a WARNING line per failed check")
    e.add_argument("--diagnose-eps", type=float, default=None,
                   help="L-inf eps of the checks, implies --diagnose; None: the suite's largest eps")
    e.add_argument("--defense", default=None, metavar="NAME",
                   help="evaluate the run's model behind a defence: randomization (Xie et al. 2018, random resize "
                   "and padding at every forward pass; attack it with eot=N, docs/attacks.md)")
    e.add_argument("--data-dir", type=_path, default=None)
    _add_device(e)
    _add_channels_last(e)
    _add_backend(e)

    r = sub.add_parser("reproduce", help="reproduce a paper experiment end to end", formatter_class=_formatter,
                       description="Writes report.md, results.json and PNG figures into --out; 'all' runs every "
                       "recipe and writes OUT/index.md. See 'robustloss list recipes' for what each scale runs.")
    r.add_argument("name", metavar="NAME", help=f"'all' or one of: {', '.join([*RECIPES, *ALIASES])}")
    r.add_argument("--scale", choices=SCALES, default=None,
                   help="smoke (tiny, seconds), cpu (MNIST analogue, <= ~2 h on 2 cores) or paper (the paper's "
                   "setting, a GPU job); default: the recipe's (cpu for most)")
    r.add_argument("--out", type=_path, default=None, help="output folder (default: results/NAME; for 'all': results)")
    r.add_argument("--runs", type=_path, default=None,
                   help="shared cache of training runs (default: runs/ next to the output folder)")
    r.add_argument("--epochs", type=_int_at_least(1), default=None, help="override the recipe's epochs")
    r.add_argument("--n", type=_int_at_least(1), default=None, help="override the number of test points")
    r.add_argument("--data-dir", type=_path, default=None, help="folder with the dataset files (CIFAR / KMNIST / Fashion-MNIST / SVHN at paper scale)")
    r.add_argument("--force", action="store_true", help="retrain and re-evaluate from scratch")
    _add_device(r)

    tr = sub.add_parser("transfer", help="transfer matrix: each run's adversarial examples against every run",
                        formatter_class=_formatter,
                        description="Craft untargeted (unless targeted=true) adversarial examples on every run "
                        "folder (the substitute, with its own adaptive loss, last iterate) and evaluate them on every "
                        "run folder (the target), as in the MMC paper's Fig. 4. Writes OUT/transfer-ATTACK.md, "
                        ".json and .png (heatmap).")
    tr.add_argument("runs", nargs="+", type=_path, metavar="RUN_DIR", help="two or more run folders (one test set)")
    tr.add_argument("--attack", required=True, metavar="pgd|mim[:K=V,...]",
                    help="gradient attack and options, e.g. pgd:eps=0.1,steps=10,step_size=0.025 or mim:eps=0.3 "
                    "(also fgsm, bim, apgd); no eps: the dataset's default (0.3 on MNIST, 8/255 on CIFAR)")
    tr.add_argument("--n", "--num-points", dest="n", type=_int_at_least(1), default=1000,
                    help="use the first N test images")
    tr.add_argument("--out", type=_path, default="results/transfer", help="output folder")
    tr.add_argument("--batch-size", type=_int_at_least(1), default=500)
    tr.add_argument("--data-dir", type=_path, default=None, help="folder with the dataset files (CIFAR runs)")
    _add_device(tr)

    ls = sub.add_parser("list", help="list objectives, models, attacks, suites or recipes with their options",
                        formatter_class=_formatter)
    ls.add_argument("what", choices=["objectives", "models", "attacks", "suites", "recipes"])
    return parser


def _train(args: argparse.Namespace) -> int:
    from robustloss.registry import parse_options
    from robustloss.training.config import AdversarialConfig, TrainConfig
    from robustloss.runs import train_run

    model_options: dict[str, object] = dict(parse_options(args.model_opt))
    if args.feature_dim is not None:
        model_options["feature_dim"] = args.feature_dim
    adversarial = None
    if args.at is not None:
        adversarial = AdversarialConfig(method=args.at, eps=args.at_eps, eps_min=args.at_eps_min,
                                        steps=args.at_steps, step_size=args.at_step_size,
                                        targeted=not args.at_untargeted, mix=args.at_mix)
    config = TrainConfig(dataset=args.dataset, model=args.model, model_options=model_options,
                         objective=args.objective, objective_options=parse_options(args.objective_opt),
                         epochs=args.epochs, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                         momentum=args.momentum, weight_decay=args.weight_decay, lr_milestones=list(args.milestones),
                         lr_gamma=args.lr_gamma, seed=args.seed, augment=args.augment, train_limit=args.train_limit,
                         data_dir=args.data_dir, adversarial=adversarial, amp=args.amp)
    if args.download:
        from robustloss import datasets

        datasets.load(args.dataset, "train", args.data_dir, download=True)
    train_run(config, args.out, resume=args.resume, force=args.force, device=args.device,
              progress=not args.no_progress, backend=args.backend, sync_bn=args.sync_bn,
              channels_last=args.channels_last)
    if _is_main():
        print(f"trained {args.objective} on {args.dataset}: {args.out}")
    return 0


def _external_spec(args: argparse.Namespace) -> Any:
    """The :class:`ExternalSpec` of ``evaluate --model ...`` (``None`` for a run folder); checks the combination."""
    from robustloss.external import ExternalSpec, parse_floats

    given = [flag for flag, value in (("--weights", args.weights), ("--mean", args.mean), ("--std", args.std),
                                      ("--output-key", args.output_key), ("--dataset", args.dataset),
                                      ("--out", args.out)) if value is not None]
    if args.external is None:
        if args.run_dir is None:
            raise UserError("give a run folder (RUN_DIR) or an external model (--model module.path:factory)")
        if given:
            raise UserError(f"{', '.join(given)} belong(s) to --model; a run folder knows its model and dataset")
        return None
    if args.run_dir is not None:
        raise UserError(f"give either a run folder ({args.run_dir}) or --model, not both")
    for flag, value in (("--dataset", args.dataset), ("--out", args.out)):
        if value is None:
            raise UserError(f"--model needs {flag}")
    return ExternalSpec(args.external, weights=args.weights, mean=parse_floats(args.mean, "--mean"),
                        std=parse_floats(args.std, "--std"), output_key=args.output_key)


def _evaluate(args: argparse.Namespace) -> int:
    from robustloss.evaluation.report import results_table
    from robustloss.evaluation.suite import load_suite, parse_spec, with_default_eps
    from robustloss.runs import evaluate_external, evaluate_run, read_config

    spec = _external_spec(args)
    dataset = read_config(args.run_dir).dataset if spec is None else args.dataset
    if args.attack:
        suite = [parse_spec(text) for text in args.attack]
        name = args.name or "custom"
    else:
        colour = dataset.startswith("cifar") or dataset == "svhn"
        suite_name = args.suite or ("cifar-pgd" if colour else "mnist-pgd")
        suite = load_suite(suite_name)
        name = args.name or suite_name.rsplit("/", 1)[-1].removesuffix(".json")
    suite, notes = with_default_eps(suite, dataset)
    for note in notes:
        print(f"robustloss: note: {note}", file=sys.stderr)
    options = dict(name=name, n=args.n, split=args.split, batch_size=args.batch_size, device=args.device,
                   seed=args.seed, worst_case=args.worst_case, data_dir=args.data_dir, progress=not args.no_progress,
                   diagnose=args.diagnose or args.diagnose_eps is not None, diagnose_eps=args.diagnose_eps,
                   backend=args.backend, channels_last=args.channels_last)
    if spec is None:
        summary = evaluate_run(args.run_dir, suite, defense=args.defense, **options)
    elif args.defense is not None:
        raise UserError("--defense applies to run folders; wrap an external model in the defence yourself "
                        "(robustloss.models.randomized)")
    else:
        summary = evaluate_external(spec, suite, dataset=dataset, out=args.out, **options)
    if not _is_main():
        return 0
    print(results_table({args.run_dir or spec.target: summary}), end="")
    if "note" in summary:
        print(f"note: {summary['note']}")
    if "diagnostics" in summary:
        from robustloss.evaluation.diagnostics import warning_lines

        checks = summary["diagnostics"]["checks"]
        print(f"diagnostics: {sum(c['passed'] for c in checks)} of {len(checks)} gradient-masking checks passed")
        for line in warning_lines(checks):
            print(f"robustloss: {line}", file=sys.stderr)
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from robustloss.reproduce import reproduce, reproduce_all

    options = dict(device=args.device, epochs=args.epochs, n_eval=args.n, data_dir=args.data_dir, force=args.force,
                   progress=not args.no_progress)
    if args.name == "all":
        if args.runs is not None:
            raise UserError("'reproduce all' keeps its run cache in OUT/runs; --runs applies to one recipe")
        index, ok = reproduce_all(args.scale or "cpu", args.out or "results", **options)
        print(index, end="")
        return 0 if ok else 1
    results = reproduce(args.name, args.out, scale=args.scale, runs=args.runs, **options)
    out = args.out or f"results/{results['recipe']}"
    verdicts = ", ".join(f"{v} {sum(c['verdict'] == v for c in results['claims'])}" for v in ("yes", "no"))
    print(f"{results['recipe']} ({results['scale']} scale, {results['wall_time_s']:.0f} s): {out}/report.md "
          f"({len(results['figures'])} figures; claims: {verdicts})")
    return 0


def _transfer(args: argparse.Namespace) -> int:
    from robustloss.reproduce.mmc_figures import transfer_command

    result, text, notes = transfer_command(args.runs, args.attack, n=args.n, out=args.out, batch_size=args.batch_size,
                                           device=args.device, data_dir=args.data_dir)
    for note in notes:
        print(f"robustloss: note: {note}", file=sys.stderr)
    stem = f"{args.out}/transfer-{result['attack']['attack']}"
    print(text, end="")
    print(f"written: {stem}.md, {stem}.json, {stem}.png")
    return 0


def _list(args: argparse.Namespace) -> int:
    from robustloss.attacks import ATTACKS
    from robustloss.evaluation.suite import SUITES
    from robustloss.models import MODELS
    from robustloss.objectives import OBJECTIVES
    from robustloss.registry import Registry
    from robustloss.reproduce import list_recipes

    if args.what in ("objectives", "models", "attacks"):
        registries: dict[str, Registry[Any]] = {"objectives": OBJECTIVES, "models": MODELS, "attacks": ATTACKS}
        reg = registries[args.what]
        for name in reg.names():
            print(reg.describe(name))
    elif args.what == "suites":
        for name, specs in SUITES.items():
            print(f"{name}: {', '.join(s.label for s in specs)}")
    else:
        print(list_recipes(), end="")
    return 0


def _os_error(exc: OSError) -> str:
    """``<strerror>: <filename>`` of an I/O error, on one line."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return " ".join(f"{reason}: {' -> '.join(names)}".split()) if names else " ".join(reason.split())


def _is_main() -> bool:
    from robustloss.distributed import world

    return world().is_main


def main(argv: Sequence[str] | None = None) -> int:
    """The ``robustloss`` command; under ``torchrun`` every rank runs it (rank 0 prints the results)."""
    from robustloss.distributed import teardown

    try:
        return _main(argv)
    finally:
        teardown()


def _main(argv: Sequence[str] | None = None) -> int:
    from robustloss.training.trainer import TrainingDiverged

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            print(f"robustloss: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
    handlers = {"train": _train, "evaluate": _evaluate, "reproduce": _reproduce, "transfer": _transfer,
                "list": _list}
    try:
        return handlers[args.command](args)
    except BrokenPipeError:   # e.g. `robustloss list attacks | head`: the reader left, nothing to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no second error at interpreter exit
        return 0
    except UserError as exc:
        import os

        from robustloss.distributed import RankError, world

        # under torchrun, errors every rank raises (argument and file checks before the ranks meet, and
        # RankError) are printed by rank 0 only
        shared = isinstance(exc, RankError) or not world().active
        if os.environ.get("RANK", "0") == "0" or not shared:
            print(f"robustloss: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only folder, a file where a folder should be, ...
        print(f"robustloss: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"robustloss: training diverged: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        from robustloss.distributed import lost_peer_message

        message = lost_peer_message(exc)
        if message is None:
            raise
        print(f"robustloss: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("robustloss: interrupted; rerun with --resume to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
