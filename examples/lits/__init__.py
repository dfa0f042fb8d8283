"""Liver tumor segmentation as anomaly segmentation (Zhang, Deng & Li, SASHIMI 2023), built on ``pseudoanomaly``.

Train on healthy livers (BTCV), test on tumor livers (LiTS), from the repository root::

    python -m examples.lits prepare --layout btcv --root BTCV_DIR --out prepared/train
    python -m examples.lits prepare --layout lits --root LITS_DIR --out prepared/test
    python -m examples.lits <command> --help

or from anywhere once installed (``pip install .[lits]`` installs this folder as the package
``pseudoanomaly_lits``, with the command ``pseudoanomaly-lits``; its modules import each other relatively, so
they work under either name).

Two floors, imports pointing down only (``tests/examples/test_lits_layout.py`` checks it):

- the base, which no command and nothing of ``pseudoanomaly`` depends on: ``arguments`` (argument types that
  refuse a bad value while parsing), ``locking`` (one writer per output folder), ``cases`` (finding and reading
  the inputs of each data set layout), ``dicom`` (a DICOM series as a volume and its affine), ``preprocess``
  (the per-volume transform shared by all data sets, and its inverse), ``volumes`` (one prepared volume and its
  file), ``dataset`` (a prepared folder: manifest, slices as tensors, torch datasets), ``settings`` (training
  settings, presets, generated flags), ``runs`` (a run folder: files, loading a trained run), ``scoring``
  (metrics and label-free baselines), ``report`` (markdown and figures) and
  ``phantom`` (a phantom cohort in both layouts, for machines without the data);
- the commands, each importing only the base: ``prepare``, ``train``, ``evaluate``, ``segment``, ``lesions``,
  ``ablation``; and ``demo``, which composes ``prepare``, ``train`` and ``evaluate`` as a user would run them.

``__main__`` builds the command line from the commands' ``add_arguments`` / ``main``, importing only the
command that runs; ``--help`` comes from ``cli.json``, a record of those flags that the tests check against them.
The package uses only the public API of ``pseudoanomaly``.
"""
