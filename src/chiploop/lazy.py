"""Deferred import of torch, so that reading a spec, listing rules or reporting an error costs
milliseconds instead of seconds.

``defer("torch")`` puts a lazy module object for torch into ``sys.modules`` (the recipe of
:class:`importlib.util.LazyLoader`, Python docs "Implementing lazy imports"); torch really loads on
the first attribute access (``torch.zeros``, ``torch.Tensor``) and the object then *is* the torch
module, so later accesses cost nothing extra. Modules of the spec path (the emulator's crossbars,
chip and networks, every rule) write ``from chiploop.lazy import torch`` instead of ``import
torch`` and must not touch ``torch.X`` at module level; ``tests/test_lazy_imports.py`` fails when
one does. (A plain ``import torch`` statement would load it: the import system reads the module's
``__spec__``.)

Caveat of Python 3.11's LazyLoader: the first attribute access must not race between threads.
chiploop touches torch first on the thread that builds a run (the main thread, or a Dask worker's
single task thread).
"""

from __future__ import annotations

import importlib.util
import sys
import types


def defer(name: str) -> types.ModuleType | None:
    """Register a lazy ``name`` in ``sys.modules`` unless it is imported already (then return the
    real module); ``None`` if it is not installed (the ordinary import then fails where used)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return None
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def loaded(name: str) -> bool:
    """Whether ``name`` has really been executed (not merely registered as lazy)."""
    module = sys.modules.get(name)
    return module is not None and not isinstance(module, importlib.util._LazyModule)


torch = defer("torch")
