"""Command line of the liver-tumor example: ``pseudoanomaly-lits <command> [options]`` once installed
(``pip install .[lits]``), or ``python -m examples.lits <command> [options]`` from the repository root.

    demo       phantom cohort -> prepare -> train -> evaluate, in a few minutes (no data needed)
    prepare    a CT data set (BTCV, LiTS, MSD, 3D-IRCADb, CHAOS, or one image + mask) -> liver slices
    train      two-phase training on prepared healthy slices (presets: paper, cpu, demo)
    evaluate   Dice / AUROC on prepared tumor slices, report.md and figures
    calibrate  a run's lesion threshold, set on healthy livers alone
    segment    tumor lesions of CT scans (one, or a folder of them), in each scan's own voxel grid
    ablation   the paper's Table 2 rows over several seeds
    lesions    healthy CT -> a LiTS-layout set with realistic synthetic lesions: a label-free validation instrument
    score      NIfTI segmentations against ground-truth label maps, per case and pooled, in each scan's own grid

Errors a user can fix (a missing file, a folder without a run, a bad setting) are printed as one line naming the
path or value, with exit status 1; ``--traceback`` shows the full trace instead.

Only the module of the command that runs is imported. ``--help`` is answered from ``cli.json``, a record of the
commands' ``add_arguments`` calls (flags, defaults, help texts), so that it does not wait for torch to load (the
``train`` flags are generated from the library's config classes); ``tests/examples/test_lits_cli.py`` checks
that the record equals what the commands declare, and :func:`write_cli_record` rewrites it. A command missing
from the record gets its help from its module, only slower.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other jobs, spinning threads of two
# processes starve each other (we measured a tiny training run 4.5x slower with two spinning processes on two
# cores). Must be set before torch loads OpenMP; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["COMMANDS", "build_parser", "main", "write_cli_record"]

PROG = "pseudoanomaly-lits"
DESCRIPTION = ("Unsupervised liver tumor segmentation with pseudo anomaly synthesis (Zhang, Deng & Li, SASHIMI "
               "2023): train on healthy livers, find tumors as anomalies.")
# name -> (module of this package with add_arguments(parser) and main(args), one-line help). One line per command.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole pipeline on a phantom cohort (a few minutes, no data needed)"),
    "prepare": ("prepare", "turn a CT data set into liver slices"),
    "train": ("train", "train on prepared healthy slices"),
    "evaluate": ("evaluate", "score a run on prepared tumor slices and write the report"),
    "calibrate": ("calibrate", "set a run's lesion threshold on healthy livers (no tumour labels)"),
    "segment": ("segment", "tumor lesions of CT scans, one or a folder of them, in each scan's own grid"),
    "ablation": ("ablation", "the paper's Table 2 rows over several seeds"),
    "lesions": ("lesions", "insert synthetic liver lesions into healthy CT: a labelled LiTS-layout validation set"),
    "score": ("score", "score NIfTI tumor segmentations against label maps in each scan's own grid"),
}
# The record of the commands' flags that --help is built from (package data beside this file).
CLI_RECORD = Path(__file__).with_name("cli.json")
HELP_FLAGS = ("-h", "--help")


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _prog() -> str:
    # The name the user typed: the installed command, or ``python -m examples.lits`` in the repository.
    return f"python -m {__package__}" if Path(sys.argv[0]).name == "__main__.py" else PROG


def _top_parser() -> tuple[argparse.ArgumentParser, Any]:
    parser = argparse.ArgumentParser(prog=_prog(), description=DESCRIPTION)
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks of errors")
    parser.add_argument("--threads", type=int, default=available_cpus(),
                        help="CPU threads for torch (default: every core this process may use, %(default)s)")
    return parser, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


def _command_module(name: str):
    return importlib.import_module(f".{COMMANDS[name][0]}", __package__)


def _add_command(sub: Any, name: str, module: Any) -> argparse.ArgumentParser:
    text = COMMANDS[name][1]
    summary = (module.__doc__ or text).strip().splitlines()[0].replace("``", "")
    command = sub.add_parser(name, help=text, description=summary)
    module.add_arguments(command)
    command.set_defaults(handler=module.main)
    return command


def build_parser(commands: list[str] | None = None) -> argparse.ArgumentParser:
    """The full parser, importing the modules of ``commands`` (default: all); the others get no flags."""
    parser, sub = _top_parser()
    for name in COMMANDS:
        if commands is None or name in commands:
            _add_command(sub, name, _command_module(name))
        else:
            sub.add_parser(name, help=COMMANDS[name][1])
    return parser


# ------------------------------------------------------------------------------ --help without torch


class _Recorder:
    """Stands in for a parser in ``add_arguments``: records the calls that shape ``--help``."""

    def __init__(self, calls: list) -> None:
        self.calls = calls

    def add_argument(self, *flags: str, **options: Any) -> None:
        self.calls.append({"flags": list(flags), "options": _help_options(options)})

    def add_argument_group(self, *args: Any, **options: Any) -> _Recorder:
        calls: list = []
        self.calls.append({"group": list(args), "options": options, "calls": calls})
        return _Recorder(calls)

    def add_mutually_exclusive_group(self, **options: Any) -> _Recorder:
        calls: list = []
        self.calls.append({"exclusive": True, "options": options, "calls": calls})
        return _Recorder(calls)


def _help_options(options: dict[str, Any]) -> dict[str, Any]:
    """``add_argument`` options as JSON, keeping what help shows: values by their text, types dropped."""
    out = {}
    for key, value in options.items():
        if key == "type":
            continue  # parsing uses the live parser; help never shows a type
        if key == "action" and not isinstance(value, str):
            if getattr(argparse, value.__name__, None) is not value:
                raise TypeError(f"{value}: only argparse's own action classes can be recorded for --help")
            value = {"argparse": value.__name__}
        elif key == "default" and value is not None and value is not argparse.SUPPRESS:
            value = str(value)  # help shows %(default)s, i.e. str(value)
        elif key in ("choices", "metavar") and isinstance(value, (list, tuple)):
            value = [str(v) for v in value]
        out[key] = value
    return out


def _replay(parser: Any, calls: list) -> None:
    for call in calls:
        if "flags" in call:
            options = dict(call["options"])
            if isinstance(options.get("action"), dict):
                options["action"] = getattr(argparse, options["action"]["argparse"])
            if isinstance(options.get("metavar"), list):
                options["metavar"] = tuple(options["metavar"])
            parser.add_argument(*call["flags"], **options)
        elif "group" in call:
            _replay(parser.add_argument_group(*call["group"], **call["options"]), call["calls"])
        else:
            _replay(parser.add_mutually_exclusive_group(**call["options"]), call["calls"])


def cli_record() -> dict[str, Any]:
    """What each command declares for ``--help``: ``{name: {"description", "calls"}}`` (imports every command)."""
    record = {}
    for name in COMMANDS:
        module = _command_module(name)
        calls: list = []
        module.add_arguments(_Recorder(calls))
        record[name] = {"description": (module.__doc__ or COMMANDS[name][1]).strip().splitlines()[0]
                        .replace("``", ""), "calls": calls}
    return record


def write_cli_record(path: str | os.PathLike = CLI_RECORD) -> Path:
    """Rewrite the record ``--help`` is answered from (after changing a command's flags)."""
    from pseudoanomaly.io import atomic_write

    text = json.dumps(cli_record(), indent=1, sort_keys=True) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def help_parser() -> argparse.ArgumentParser:
    """A parser that prints the same help as :func:`build_parser` without importing the commands' modules
    (from the record; a command missing from it is imported)."""
    try:
        record = json.loads(CLI_RECORD.read_text())
    except (OSError, ValueError):
        record = {}
    parser, sub = _top_parser()
    for name, (_, text) in COMMANDS.items():
        if name in record:
            command = sub.add_parser(name, help=text, description=record[name]["description"])
            _replay(command, record[name]["calls"])
        else:
            _add_command(sub, name, _command_module(name))
    return parser


def _named_command(argv: list[str]) -> str | None:
    """The command ``argv`` names (the first word that is one, not the value of ``--threads``)."""
    for i, word in enumerate(argv):
        if word in COMMANDS and (i == 0 or argv[i - 1] != "--threads"):
            return word
    return None


# ------------------------------------------------------------------------------------------- running


def main(argv: list[str] | None = None) -> int:
    argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    command = _named_command(argv)
    if command is None or any(word in HELP_FLAGS for word in argv):
        help_parser().parse_args(argv)  # prints the help, or the usage error, and exits
    args = build_parser([command]).parse_args(argv)
    if args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2

    import torch

    from pseudoanomaly.training import NonFiniteLossError

    # What a user can fix from the message alone; anything else is a bug and keeps its traceback.
    user_errors = (OSError, ValueError, KeyError, NonFiniteLossError)
    previous = torch.get_num_threads()
    # By default every core this process may run on (torch's default may count cores it is not allowed to use).
    torch.set_num_threads(args.threads)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print(f"{args.command}: interrupted", file=sys.stderr)
        if args.command == "train":
            print("continue the run with the same command and --resume", file=sys.stderr)
        return 130
    except user_errors as exc:
        if args.traceback:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{args.command}: error: {message}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(previous)  # main() may be called in-process (tests); leave torch as it was


if __name__ == "__main__":
    # The application's start-up, not main(): callers of main() in their own process keep their malloc.
    from pseudoanomaly.training import retain_freed_memory

    retain_freed_memory()  # 1.08-1.18x faster CPU steps, same results (pseudoanomaly.training.allocator)
    sys.exit(main())
