"""The grader's own texts for the error categories a sandboxed child reports.

The child reduces an exception to a category of a fixed enum
(:data:`autograder.sandboxed.errors.ERROR_CATEGORIES`); this module turns a category into
a student-facing sentence written here, never text from the child. For the probes' own
"parameter" errors the child also sends a reference parameter name and the student's
shape; :func:`explain_parameter_error` accepts them only when they match the weights the
check sent, so nothing but a known name and a few integers can come back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autograder.sandboxed.errors import ERROR_CATEGORIES

#: Student-facing text per category.
CATEGORY_TEXT: dict[str, str] = {
    "cuda_unavailable": (
        'your code asks for a CUDA GPU (device="cuda" or .cuda()), but the grader runs on the CPU: create tensors '
        "on the inputs' device (x.device, x.new_zeros); the overfit test fails for the same reason"
    ),
    "device_mismatch": (
        "tensors on different devices were combined: create new tensors on the inputs' device "
        "(x.device, torch.zeros_like, x.new_zeros), never on a fixed device"
    ),
    "dtype_mismatch": (
        "tensors of different dtypes were combined (e.g. float32 with float64): create new tensors "
        "with the inputs' dtype (x.dtype, x.new_zeros)"
    ),
    "shape_mismatch": (
        "an operation got tensors of incompatible shapes: build layers from the constructor's arguments "
        "(no fixed channel counts or sizes) and check every reshape/permute"
    ),
    "param_missing": (
        "your module does not match the specification: check attribute names, parameter shapes and return "
        "values against the docstring"
    ),
}
CATEGORY_TEXT["param_shape"] = CATEGORY_TEXT["param_extra"] = CATEGORY_TEXT["param_missing"]
#: Categories whose fixed text replaces the student's own message even where it may be shown.
ALWAYS_FIXED = frozenset({"cuda_unavailable"})
#: Largest number accepted in a shape sent by the child.
MAX_DIM = 10**7
#: Longest parameter name accepted from the child.
MAX_NAME_CHARS = 100


def category_message(category: object, withheld: bool) -> str | None:
    """The fixed text for ``category``, or None (unknown category, or the student's own message is shown).

    Args:
        category: what the child reported (any value; only the known enum counts).
        withheld: True when the child held reference code, so its free text is not shown.
    """
    if not isinstance(category, str) or category not in CATEGORY_TEXT or category not in ERROR_CATEGORIES:
        return None
    if withheld or category in ALWAYS_FIXED:
        return CATEGORY_TEXT[category]
    return None


def clean_details(raw: object) -> dict[str, Any]:
    """The child's structured details reduced to short names and small integer lists (else dropped)."""
    if not isinstance(raw, dict):
        return {}
    details: dict[str, Any] = {}
    for key, value in list(raw.items())[:8]:
        if not isinstance(key, str) or len(key) > 20:
            continue
        if isinstance(value, str) and len(value) <= MAX_NAME_CHARS:
            details[key] = value
        elif type(value) is int and 0 <= value <= MAX_DIM:
            details[key] = value
        elif isinstance(value, list) and len(value) <= 8 and all(type(v) is int and 0 <= v <= MAX_DIM for v in value):
            details[key] = list(value)
    return details


def explain_parameter_error(
    category: str | None, details: Mapping[str, Any], sent: Mapping[str, tuple[int, ...]], advice: Mapping[str, str]
) -> str | None:
    """A specific message for a missing or misshaped parameter, or None when the details do not check out.

    Args:
        category: the error's category (``param_missing``, ``param_shape``, ``param_extra``).
        details: the child's cleaned details (``owner``, ``param``, ``received``, ``count``).
        sent: ``{reference parameter name: shape}`` the check sent; a name not in it is rejected.
        advice: ``{parameter name prefix: how to build it}``, the longest matching prefix wins.

    Returns:
        ``"<owner> does not match the specification: parameter '<name>' has shape (...), expected (...): <advice>"``
        or a missing/extra variant; only names from ``sent`` and integer shapes appear in it.
    """
    owner = details.get("owner")
    owners = {"RPNPredictionNetwork", "FasterRCNN", "roi_stem", "cls_pred", "box_pred"}
    owner = owner if owner in owners else "your module"
    if category == "param_extra":
        count = details.get("count")
        many = f"{count} parameters" if isinstance(count, int) else "parameters"
        return f"{owner} does not match the specification: it has {many} more than specified (extra layers?)"
    name = details.get("param")
    if not isinstance(name, str) or name not in sent:
        return None
    how = next((advice[p] for p in sorted(advice, key=len, reverse=True) if name.startswith(p)), None)
    tail = f": {how}" if how else ""
    expected = tuple(sent[name])
    if category == "param_missing":
        return f"{owner} does not match the specification: it has no parameter '{name}' of shape {expected}{tail}"
    received = details.get("received")
    if category == "param_shape" and isinstance(received, list):
        return (
            f"{owner} does not match the specification: parameter '{name}' has shape {tuple(received)}, "
            f"expected {expected}{tail}"
        )
    return None
