"""Structured error categories, computed by the trusted child from an exception.

A child that holds reference code never passes free text to the student (see
docs/AUTOGRADER_DESIGN.md, "Reference copies and messages"). So that such a child can
still say *what* went wrong, :func:`error_category` reduces an exception to a category of
a fixed enum (and, for the probes' own ``ProbeError``, a parameter name and a shape); the
grader maps each category to its own fixed text (:mod:`autograder.student_errors`).

Copied into every child with ``child.py`` and ``wire.py``; imports only the standard library.
"""

from __future__ import annotations

from typing import Any

#: Error categories the child computes from an exception (a fixed enum: the grader shows its
#: own text for each, so a child holding reference code can still say what went wrong).
ERROR_CATEGORIES = (
    "cuda_unavailable", "device_mismatch", "dtype_mismatch", "shape_mismatch",
    "param_missing", "param_shape", "param_extra",
)
#: (category, exception types, message fragments) tried in order on built-in exceptions.
_CATEGORY_RULES: tuple[tuple[str, tuple[type[BaseException], ...], tuple[str, ...]], ...] = (
    ("cuda_unavailable", (RuntimeError, AssertionError), (
        "Torch not compiled with CUDA", "Found no NVIDIA driver", "No CUDA GPUs are available",
        "CUDA driver initialization failed", "no CUDA-capable device", "CUDA_VISIBLE_DEVICES",
    )),
    ("device_mismatch", (RuntimeError,), ("to be on the same device",)),
    ("dtype_mismatch", (RuntimeError,), ("expected scalar type", "must have the same dtype", "to have the same dtype")),
    ("shape_mismatch", (RuntimeError,), ("must match the size of tensor", "shapes cannot be multiplied", "Given groups=")),
)
#: Largest structured detail a ProbeError may carry: a name and a shape.
_DETAIL_NAME_CHARS = 100
_DETAIL_MAX_DIMS = 8


def error_category(exc: BaseException) -> dict[str, Any]:
    """``{"category": ..., "details": {...}}`` for an exception, or ``{}`` (trusted code, fixed enum).

    A probe's ``ProbeError`` names its own category (``param_*``) and details (a reference
    parameter name and the student's shape: a short name and a few integers, which the
    grader checks against what it sent). Built-in exceptions are classified by type and
    message (:data:`_CATEGORY_RULES`); nothing of the message itself is passed on.
    """
    if type(exc).__name__ == "ProbeError":
        code, raw = getattr(exc, "code", None), getattr(exc, "details", None)
        if code not in ERROR_CATEGORIES or not isinstance(raw, dict):
            return {}
        details: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, str) and len(value) <= _DETAIL_NAME_CHARS:
                details[str(key)[:20]] = value
            elif isinstance(value, (list, tuple)) and len(value) <= _DETAIL_MAX_DIMS and all(type(v) is int for v in value):
                details[str(key)[:20]] = list(value)
            elif type(value) is int:
                details[str(key)[:20]] = value
        return {"category": code, "details": details}
    try:
        text = str(exc)
    except BaseException:  # a student exception whose __str__ raises
        return {}
    for category, types, fragments in _CATEGORY_RULES:
        if type(exc) in types and any(fragment in text for fragment in fragments):
            return {"category": category}
    return {}
