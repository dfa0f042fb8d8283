"""Command line of the liver-tumor example: ``python -m examples.lits <command> [options]``.

    demo       phantom cohort -> prepare -> train -> evaluate, in a few minutes (no data needed)
    prepare    a CT data set (BTCV, LiTS, or one image + mask) -> liver slices
    train      two-phase training on prepared healthy slices (presets: paper, cpu, demo)
    evaluate   Dice / AUROC on prepared tumor slices, report.md and figures
    segment    tumor probability map of one CT scan, in its own voxel grid
    ablation   the paper's Table 2 rows over several seeds
    lesions    healthy CT -> a LiTS-layout set with realistic synthetic lesions: a label-free validation instrument

Errors a user can fix (a missing file, a folder without a run, a bad setting) are printed as one line naming the
path or value, with exit status 1; ``--traceback`` shows the full trace instead.
"""

from __future__ import annotations

import argparse
import os
import sys

# Idle OpenMP threads sleep instead of spinning: on a CPU shared with other jobs, spinning threads of two
# processes starve each other (we measured a tiny training run 4.5x slower with two spinning processes on two
# cores). Must be set before torch loads OpenMP; an explicit setting in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from pseudoanomaly.training import NonFiniteLossError  # noqa: E402

from . import ablation, demo, evaluate, lesions, prepare, segment, train  # noqa: E402

# name -> (module with add_arguments/main, one-line help)
COMMANDS = {
    "demo": (demo, "run the whole pipeline on a phantom cohort (a few minutes, no data needed)"),
    "prepare": (prepare, "turn a CT data set into liver slices"),
    "train": (train, "train on prepared healthy slices"),
    "evaluate": (evaluate, "score a run on prepared tumor slices and write the report"),
    "segment": (segment, "tumor probability map of one CT scan"),
    "ablation": (ablation, "the paper's Table 2 rows over several seeds"),
    "lesions": (lesions, "insert synthetic liver lesions into healthy CT: a labelled LiTS-layout validation set"),
    "score": (__import__(f"{__package__}.score", fromlist=["main"]), "score NIfTI tumor segmentations natively"),
}
# What a user can fix from the message alone; anything else is a bug and keeps its traceback.
USER_ERRORS = (OSError, ValueError, KeyError, NonFiniteLossError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m examples.lits",
        description="Unsupervised liver tumor segmentation with pseudo anomaly synthesis (Zhang, Deng & Li, "
                    "SASHIMI 2023): train on healthy livers, find tumors as anomalies.",
    )
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks of errors")
    parser.add_argument("--threads", type=int, default=available_cpus(),
                        help="CPU threads for torch (default: every core this process may use, %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, text) in COMMANDS.items():
        summary = (module.__doc__ or text).strip().splitlines()[0].replace("``", "")
        command = sub.add_parser(name, help=text, description=summary)
        module.add_arguments(command)
        command.set_defaults(handler=module.main)
    return parser


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
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
    except USER_ERRORS as exc:
        if args.traceback:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{args.command}: error: {message}", file=sys.stderr)
        return 1
    finally:
        torch.set_num_threads(previous)  # main() may be called in-process (tests); leave torch as it was


if __name__ == "__main__":
    sys.exit(main())
