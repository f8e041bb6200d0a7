"""Comparing a student's output with the reference's, with student-safe messages.

Every comparison uses the course's relative error
``max|x - y| / (max|x| + max|y|)`` against a threshold the calling check states
explicitly. A failure raises :class:`Fail`; its message names the function and what
differs (type, shape, dtype, device, NaN/inf, value error) and, when one of the given
bug signatures (:mod:`autograder.feedback`) matches, the likely mistake. Messages never
contain hidden inputs or expected values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

#: Prefix of the metadata entries a probe returns next to its outputs (0-d tensors).
META_PREFIX = "meta."


class Fail(AssertionError):
    """A failed hidden check; ``str(self)`` is shown to the student (no hidden data)."""


def rel_error(x: Tensor, y: Tensor) -> float:
    """The course's relative error ``max|x - y| / (max|x| + max|y|)``.

    Args:
        x: Tensor of any shape.
        y: Tensor of the same shape as ``x``.

    Returns:
        0.0 for empty or all-zero tensors, ``inf`` if either holds NaN or inf, else the
        relative error in ``[0, 1]``.

    Raises:
        ValueError: the shapes differ.
    """
    if x.shape != y.shape:
        raise ValueError(f"x, y: shapes differ, {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.numel() == 0:
        return 0.0
    x = x.detach().to("cpu", torch.float64)
    y = y.detach().to("cpu", torch.float64)
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
        return float("inf")
    denom = x.abs().max() + y.abs().max()
    if denom == 0:
        return 0.0
    return float((x - y).abs().max() / denom)


Hint = Callable[[Tensor, Tensor, Mapping[str, Tensor]], "str | None"]


def _with_hint(
    message: str,
    hints: Sequence[Hint],
    actual: Tensor,
    expected: Tensor,
    inputs: Mapping[str, Tensor],
    advice: str | None = None,
) -> str:
    """``message`` plus the first matching signature's hint, else the general ``advice``."""
    for signature in hints:
        hint = signature(actual, expected, inputs)
        if hint is not None:
            return f"{message} Likely mistake: {hint}."
    return f"{message} Check: {advice}." if advice else message


def assert_tensor(actual: object, what: str) -> Tensor:
    """``actual`` as a Tensor, or :class:`Fail` naming ``what`` and the type received."""
    if not isinstance(actual, Tensor):
        raise Fail(f"{what}: expected a torch.Tensor, got {type(actual).__name__}.")
    return actual


def assert_shape_dtype(actual: object, expected: Tensor, what: str, *, show_shape: bool = True) -> Tensor:
    """Check type, shape and dtype of ``actual`` against ``expected``.

    Args:
        actual: the student's output.
        expected: the reference output.
        what: the call being checked, e.g. ``"iou(boxes1, boxes2)"``.
        show_shape: include both shapes in the message (set False where the expected
            shape would reveal an expected value, e.g. the number of boxes NMS keeps).
    """
    actual = assert_tensor(actual, what)
    if actual.shape != expected.shape:
        if show_shape:
            raise Fail(f"{what}: output shape {tuple(actual.shape)}, expected {tuple(expected.shape)}.")
        raise Fail(f"{what}: output has {actual.numel()} elements, which is not the expected number.")
    if actual.dtype != expected.dtype:
        raise Fail(f"{what}: output dtype {actual.dtype}, expected {expected.dtype}.")
    return actual


def assert_close(
    actual: object,
    expected: Tensor,
    *,
    tol: float,
    what: str,
    inputs: Mapping[str, Tensor] | None = None,
    hints: Sequence[Hint] = (),
    advice: str | None = None,
    check_dtype: bool = True,
) -> None:
    """Assert ``rel_error(actual, expected) <= tol`` after type, shape and dtype checks.

    Args:
        actual: the student's output (CPU tensor, as returned by a probe).
        expected: the reference output for the same inputs.
        tol: the largest relative error accepted (stated by the check).
        what: the call being checked, shown to the student.
        inputs: the hidden inputs, passed to the signature detectors only.
        hints: bug signatures tried (in order) when the values differ.
        advice: what to check when no signature matches (the specification in a phrase).
        check_dtype: also require the same dtype.

    Raises:
        Fail: with a student-safe message.
    """
    if check_dtype:
        actual = assert_shape_dtype(actual, expected, what)
    else:
        actual = assert_tensor(actual, what)
        if actual.shape != expected.shape:
            raise Fail(f"{what}: output shape {tuple(actual.shape)}, expected {tuple(expected.shape)}.")
    if expected.is_floating_point() and torch.isfinite(expected).all() and not torch.isfinite(actual).all():
        message = f"{what}: output contains NaN or inf."
        raise Fail(_with_hint(message, hints, actual, expected, inputs or {}, advice))
    err = rel_error(actual.to(expected.dtype) if actual.dtype != expected.dtype else actual, expected)
    if err > tol:
        message = f"{what}: relative error {err:.1e} is above the tolerance {tol:.0e}."
        raise Fail(_with_hint(message, hints, actual, expected, inputs or {}, advice))


def assert_equal_indices(
    actual: object, expected: Tensor, *, what: str, inputs: Mapping[str, Tensor] | None = None, hints: Sequence[Hint] = ()
) -> None:
    """Assert two index tensors are identical (dtype int64, same elements in the same order).

    The expected number of indices is never shown (it is an expected value).
    """
    actual = assert_tensor(actual, what)
    if actual.dtype != expected.dtype:
        raise Fail(f"{what}: output dtype {actual.dtype}, expected {expected.dtype}.")
    if actual.dim() != expected.dim():
        raise Fail(f"{what}: output has {actual.dim()} dimensions, expected {expected.dim()}.")
    if actual.shape == expected.shape and bool((actual == expected).all()):
        return
    if actual.shape != expected.shape:
        message = f"{what}: returned {actual.numel()} indices, a different number from the reference."
    else:
        message = f"{what}: the same number of indices as the reference but different indices or order."
    raise Fail(_with_hint(message, hints, actual, expected, inputs or {}))


def assert_on_device(outputs: Mapping[str, Tensor], what: str) -> None:
    """Fail when a probe reported an output on another device than its inputs.

    Probes add ``meta.device_ok`` (1 or 0) since outputs come back as CPU arrays.
    """
    flag = outputs.get(META_PREFIX + "device_ok")
    if flag is not None and int(flag) != 1:
        raise Fail(f"{what}: the output is on another device than the inputs; create tensors on the inputs' device.")


def split_levels(outputs: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """Entries ``"<prefix>.<key>"`` of a probe's flat output dict, as ``{key: tensor}``."""
    start = prefix + "."
    return {name[len(start):]: value for name, value in outputs.items() if name.startswith(start)}
