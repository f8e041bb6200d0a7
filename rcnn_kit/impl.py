"""Import a ``faster_rcnn`` package (reference or student) from a folder.

The reference and a student's package share the name ``faster_rcnn``; a grader
needs both at once, so we import a package from an explicit folder under a
chosen module name instead of relying on ``sys.path`` order.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from rcnn_kit.course import STUDENT_MODULES

__all__ = ["STUDENT_MODULES", "import_faster_rcnn", "import_module", "import_all"]


def import_faster_rcnn(folder: str | Path, name: str = "faster_rcnn") -> ModuleType:
    """Import the package in ``folder`` as module ``name`` (and its submodules).

    Args:
        folder: directory holding ``iou.py``, ``nms.py``, ... (an ``__init__.py`` is optional).
        name: module name to register in ``sys.modules``; an existing module of
            that name and its submodules are replaced.

    Returns:
        The package module; its submodules are importable as ``name.iou`` etc.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"folder: {folder} is not a directory holding a faster_rcnn package")
    for key in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[key]
    init = folder / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        name,
        init if init.exists() else None,
        submodule_search_locations=[str(folder)],
    )
    if spec is None or spec.loader is None:  # namespace-like package without __init__.py
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        if spec.loader is not None:
            spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def import_module(package: ModuleType, module: str) -> ModuleType:
    """Import ``package.module`` (e.g. the ``rpn`` module of an imported package)."""
    if module not in STUDENT_MODULES:
        raise ValueError(f"module: expected one of {STUDENT_MODULES}, got {module!r}")
    return importlib.import_module(f"{package.__name__}.{module}")


def import_all(folder: str | Path, name: str = "faster_rcnn") -> ModuleType:
    """Import the package in ``folder`` as ``name`` and then every module of :data:`STUDENT_MODULES`.

    Returns:
        The package; ``package.iou`` ... ``package.detector`` are set.

    Raises:
        FileNotFoundError: ``folder`` is not a directory.
        Exception: whatever importing a module raises (a syntax error, a missing name).
    """
    package = import_faster_rcnn(folder, name=name)
    for module in STUDENT_MODULES:
        import_module(package, module)
    return package
