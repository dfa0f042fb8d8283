"""Root conftest: names every docstring example may use without importing them; the doctests of adapters whose
library is not installed are not collected (tests/integrations skip them with the reason)."""

import importlib.util

import pytest
import torch

collect_ignore = [f"src/pseudoanomaly/integrations/{name}.py" for name in ("monai", "torchio")
                  if importlib.util.find_spec(name) is None]


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    doctest_namespace["torch"] = torch
