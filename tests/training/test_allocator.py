"""retain_freed_memory: takes effect on glibc, leaves a user's own malloc settings alone, refuses bad input,
and changes no result (a training run in a fresh process ends with the same weights, bit for bit)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from pseudoanomaly.training import retain_freed_memory

# A short seeded run of the restoration U-Net at 128 x 128 (big enough for malloc to map its activations); prints
# whether the setting took effect and a hash of the trained weights.
_RUN = """
import sys, torch
from pseudoanomaly.training import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "on" else None
torch.set_num_threads(1)
torch.manual_seed(0)
from pseudoanomaly.models import RestorationUNet
net = RestorationUNet(base_width=4, depth=2)
opt = torch.optim.Adam(net.parameters(), 1e-3)
for step in range(3):
    x = torch.rand(4, 1, 128, 128)
    opt.zero_grad()
    (net(x) - x).abs().mean().backward()
    opt.step()
print(applied, torch.cat([p.detach().flatten() for p in net.parameters()]).numpy().tobytes().hex())
"""


def _run(mode: str, env: dict | None = None) -> tuple[str, str]:
    out = subprocess.run([sys.executable, "-c", _RUN, mode], capture_output=True, text=True, check=True, env=env)
    applied, weights = out.stdout.split()
    return applied, hashlib.sha256(weights.encode()).hexdigest()


def _glibc() -> bool:
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").gnu_get_libc_version
    except (OSError, AttributeError):
        return False
    return sys.platform.startswith("linux")


def test_training_gives_the_same_bits_with_and_without_it():
    applied, with_it = _run("on")
    assert applied == str(_glibc())
    assert _run("off")[1] == with_it


def test_leaves_malloc_settings_from_the_environment_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert retain_freed_memory() is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536")
    assert retain_freed_memory() is False


@pytest.mark.parametrize("bad", [0, -1, 2**31, 1.5, True, "1G"])
def test_refuses_a_bad_trim_size_naming_it(bad):
    with pytest.raises(ValueError, match=f"trim_bytes must be an integer.*got {bad!r}"):
        retain_freed_memory(bad)
