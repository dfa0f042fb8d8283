"""Argument types of the command line: a bad value is refused while the arguments are parsed, before any file is
read or written, with argparse's one-line ``error: argument --flag: ...`` naming the value."""

from __future__ import annotations

import argparse
import math

from pseudoanomaly.training.distributed import process_device

__all__ = [
    "positive_int", "non_negative_float", "open_unit_interval", "unit_interval", "device", "missing_layout_inputs",
    "add_inference_arguments", "INFER_PRECISIONS",
]

#: ``--precision`` of inference: float32, or bfloat16 autocast with channels-last nets (the fast path on CPUs
#: with AMX or AVX-512 BF16; :class:`pseudoanomaly.models.AnomalySegmenter`'s ``precision`` and ``channels_last``).
INFER_PRECISIONS = ("fp32", "bf16")


def positive_int(text: str) -> int:
    """An integer >= 1 (``--batch-size``, ``--workers``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _number(text: str, accept, expected: str, refused: str) -> float:
    # a float that ``accept`` takes, else argparse's error: "must be <expected>" when it is not a number at all,
    # "must be <refused>" when it is one outside the range (NaN included: every range test fails on it)
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"must be {refused}, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (``--affine-tol``)."""
    return _number(text, lambda v: math.isfinite(v) and v >= 0, "a number >= 0", "a finite number >= 0")


def open_unit_interval(text: str) -> float:
    """A number strictly between 0 and 1 (``segment --threshold``)."""
    return _number(text, lambda v: 0 < v < 1, "a number in (0, 1)", "in (0, 1)")


def unit_interval(text: str) -> float:
    """A number between 0 and 1, both included (``score --min-overlap``)."""
    return _number(text, lambda v: 0 <= v <= 1, "a number in [0, 1]", "in [0, 1]")


def device(text: str) -> str:
    """``--device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ... that this machine has (checked as the
    library's trainer checks its ``config.device``)."""
    if text == "auto":  # CUDA when there is one, else the CPU (runs.pick_device)
        return text
    try:
        process_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_inference_arguments(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """``--device``, ``--batch-size`` (default ``batch_size``) and ``--precision`` of the commands that apply a
    trained run."""
    parser.add_argument("--device", type=device, default="auto",
                        help="where the net runs: auto (CUDA when there is one, else the CPU), cpu, cuda, cuda:N "
                             "(default: %(default)s)")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help="slices per forward pass (default: %(default)s)")
    parser.add_argument("--precision", choices=INFER_PRECISIONS, default="fp32",
                        help="bf16: bfloat16 autocast and channels-last nets, about 3x faster on a CPU with AMX or "
                             "AVX-512 BF16 (and on recent GPUs), probabilities within bfloat16 rounding of fp32's "
                             "(default: %(default)s)")


def missing_layout_inputs(args: argparse.Namespace) -> str | None:
    """What ``--layout`` still needs (``prepare`` and ``lesions`` read data sets alike), or ``None``."""
    if args.layout == "pair" and (args.image is None or args.mask is None):
        return "--layout pair needs --image and --mask"
    if args.layout != "pair" and args.root is None:
        return f"--layout {args.layout} needs --root"
    return None
