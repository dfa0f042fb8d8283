"""Every public name is documented the way the API reference needs it.

Walks ``__all__`` of every public module (the modules the docs have a page for) and checks each public class
and function: a docstring with a runnable ``Example`` (the examples themselves run as doctests, through
``--doctest-modules`` on ``src/``), ``Args:`` when it takes arguments, ``Returns:`` when calling it gives
something back, and ``Shape:`` when tensors go in or come out.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect

import pytest
from torch import nn

PUBLIC_MODULES = [
    "pseudoanomaly",
    "pseudoanomaly.noise",
    "pseudoanomaly.noise3d",
    "pseudoanomaly.masks",
    "pseudoanomaly.masks.functional",
    "pseudoanomaly.overlays",
    "pseudoanomaly.presets",
    "pseudoanomaly.integrations",
    "pseudoanomaly.integrations.kornia",
    *(f"pseudoanomaly.integrations.{name}" for name in ("monai", "torchio") if importlib.util.find_spec(name)),
    "pseudoanomaly.models",
    "pseudoanomaly.losses",
    "pseudoanomaly.metrics",
    "pseudoanomaly.training",
    "pseudoanomaly.lesions",
]


def _public_objects() -> list[tuple[str, object]]:
    found = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        assert hasattr(module, "__all__"), f"{module_name} has no __all__: its public API is not declared"
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):  # constants and submodules have no docstring
                found.append((f"{module_name}.{name}", obj))
    return found


PUBLIC = _public_objects()
IDS = [name for name, _ in PUBLIC]


def _doc(obj: object) -> str:
    return inspect.getdoc(obj) or ""


def _signature(obj: object) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):  # some builtins have none
        return None


def _takes_arguments(obj: object) -> bool:
    signature = _signature(obj)
    return signature is not None and len(signature.parameters) > 0


def _mentions_tensor(obj: object) -> bool:
    """Whether a tensor goes in or comes out: ``Tensor`` in the annotations (of ``forward`` too, for a module)."""
    targets = [obj]
    if inspect.isclass(obj) and issubclass(obj, nn.Module):
        targets.append(obj.forward)
    for target in targets:
        signature = _signature(target)
        if signature is None:
            continue
        annotations = [p.annotation for p in signature.parameters.values()] + [signature.return_annotation]
        if any("Tensor" in str(a) for a in annotations if a is not inspect.Signature.empty):
            return True
    return False


def _returns_something(obj: object) -> bool:
    if inspect.isclass(obj):
        return issubclass(obj, nn.Module)  # calling a module returns its output
    signature = _signature(obj)
    return signature is not None and signature.return_annotation not in (None, "None", inspect.Signature.empty)


def test_public_api_is_not_empty():
    assert len(PUBLIC) > 40, f"found only {len(PUBLIC)} public classes and functions: {IDS}"


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=IDS)
def test_has_a_docstring_with_an_example(name, obj):
    doc = _doc(obj)
    assert doc, f"{name} has no docstring"
    assert "Example" in doc, f"{name}'s docstring has no Example section (a runnable >>> example)"
    assert ">>>" in doc, f"{name}'s Example has no >>> line for the doctests to run"


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=IDS)
def test_documents_its_arguments(name, obj):
    if _takes_arguments(obj):
        assert "Args:" in _doc(obj), f"{name} takes arguments but its docstring has no Args: section"


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=IDS)
def test_documents_what_it_returns(name, obj):
    if _returns_something(obj):
        assert "Returns:" in _doc(obj), f"{name} returns a value but its docstring has no Returns: section"


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=IDS)
def test_documents_tensor_shapes(name, obj):
    if _mentions_tensor(obj):
        assert "Shape:" in _doc(obj), f"{name} takes or returns tensors but its docstring has no Shape: section"
