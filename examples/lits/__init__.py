"""Liver tumor segmentation as anomaly segmentation (Zhang, Deng & Li, SASHIMI 2023), built on ``pseudoanomaly``.

Train on healthy livers (BTCV), test on tumor livers (LiTS), from the repository root::

    python -m examples.lits prepare --layout btcv --root BTCV_DIR --out prepared/train
    python -m examples.lits prepare --layout lits --root LITS_DIR --out prepared/test
    python -m examples.lits <command> --help

Modules: ``phantom`` (a phantom cohort in both layouts, for machines without the data), ``preprocess`` (the
per-volume transform shared by all data sets, and its inverse), ``prepare`` (the command: layouts, manifest,
parallel runs), ``dataset`` (prepared slices as tensors and torch datasets), ``arguments`` (argument types that
refuse a bad value while parsing), ``locking`` (one writer per output folder), and the commands built on them.
The package uses only the public API of ``pseudoanomaly``.
"""
