"""The adapters load lazily: ``import pseudoanomaly`` (and ``pseudoanomaly.integrations``) imports no MONAI or
TorchIO, which are optional extras."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest


def test_importing_the_package_imports_neither_monai_nor_torchio():
    code = ("import sys, pseudoanomaly, pseudoanomaly.integrations; "
            "print(sorted(m for m in ('monai', 'torchio', 'SimpleITK') if m in sys.modules)); "
            "print(sorted(set(dir(pseudoanomaly.integrations)) & {'kornia', 'monai', 'torchio'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "['kornia', 'monai', 'torchio']"]


@pytest.mark.parametrize("name, cls", [("monai", "RandPseudoAnomalyd"), ("torchio", "RandomPseudoAnomaly")])
def test_an_adapter_loads_on_first_use(name, cls):
    if importlib.util.find_spec(name) is None:
        pytest.skip(f'{name} is not installed: pip install -c constraints.txt -e ".[{name}]"')
    import pseudoanomaly.integrations

    assert getattr(pseudoanomaly.integrations, name).__all__ == [cls]


@pytest.mark.parametrize("name, extra", [("monai", "monai"), ("torchio", "torchio")])
def test_an_adapter_without_its_library_says_which_extra_to_install(name, extra):
    code = (f"import sys; sys.modules[{name!r}] = None\n"  # as if it were not installed
            f"import pseudoanomaly.integrations.{name}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert 'needs' in out.stderr and f'pip install "pseudoanomaly[{extra}]"' in out.stderr, out.stderr[-2000:]
