"""Argument types of the command line: a bad value is refused while the arguments are parsed, before any file is
read or written, with argparse's one-line ``error: argument --flag: ...`` naming the value."""

from __future__ import annotations

import argparse
import math

import torch

__all__ = [
    "positive_int", "non_negative_float", "device", "check_device", "missing_layout_inputs", "add_inference_arguments",
]


def positive_int(text: str) -> int:
    """An integer >= 1 (``--batch-size``, ``--workers``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (``--affine-tol``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def check_device(name: str) -> str:
    """``name`` if this machine can run torch on it (``"auto"`` always can); else ``ValueError`` naming it."""
    if name == "auto":
        return name
    try:
        parsed = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if parsed.type == "meta":
        raise ValueError(f"device {name!r} holds no data; use auto, cpu, cuda or cuda:N")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (parsed.index is not None and parsed.index >= count):
            raise ValueError(f"device {name!r}, but this machine has {count} usable CUDA device(s); use --device cpu")
    elif parsed.type != "cpu":
        backend = getattr(torch, parsed.type, None) or getattr(torch.backends, parsed.type, None)
        available = getattr(backend, "is_available", None)
        if available is None or not available():
            raise ValueError(f"device {name!r} is not available on this machine; use --device cpu")
    return name


def device(text: str) -> str:
    """``--device``: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ... that this machine has."""
    try:
        return check_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_inference_arguments(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """``--device`` and ``--batch-size`` (default ``batch_size``) of the commands that apply a trained run."""
    parser.add_argument("--device", type=device, default="auto", help="auto (default), cpu, cuda, ...")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size,
                        help="slices per forward pass (default: %(default)s)")


def missing_layout_inputs(args: argparse.Namespace) -> str | None:
    """What ``--layout`` still needs (``prepare`` and ``lesions`` read data sets alike), or ``None``."""
    if args.layout == "pair" and (args.image is None or args.mask is None):
        return "--layout pair needs --image and --mask"
    if args.layout != "pair" and args.root is None:
        return f"--layout {args.layout} needs --root"
    return None
