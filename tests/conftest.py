"""Shared fixtures and the Hypothesis profile.

The "ci" profile (default) has no deadline and is derandomized, so a CI run is reproducible and never fails
on a slow machine; set HYPOTHESIS_PROFILE=dev locally for fresh random examples.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", deadline=None, derandomize=True, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=40)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Every device this machine has: the CPU always, a GPU when there is one."""
    return torch.device(request.param)


@pytest.fixture
def generator(device) -> torch.Generator:
    """A seeded generator on the test's device."""
    return torch.Generator(device=device).manual_seed(1234)
