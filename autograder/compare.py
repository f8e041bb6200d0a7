"""Comparing a student's output with the reference's, with student-safe messages.

Every comparison uses the course's relative error
``max|x - y| / (max|x| + max|y|)`` against a threshold the calling check states
explicitly. A failure raises :class:`Fail`; its message names the function and what
differs (type, shape, dtype, device, NaN/inf, value error) and, when one of the given
bug signatures (:mod:`autograder.feedback`) matches, the likely mistake, else which
property differs (:mod:`autograder.describe`). Messages never contain hidden inputs or
expected values; :class:`Fail` carries them apart (:class:`FailureDetails`) for the
instructor's ``--explain`` report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from autograder.describe import dtype_advice, nonfinite_rows, shape_difference, value_difference

#: Prefix of the metadata entries a probe returns next to its outputs (0-d tensors).
META_PREFIX = "meta."


@dataclass
class FailureDetails:
    """What ``rcnn-kit grade --explain`` shows the instructor about a failed case (never the student).

    Attributes:
        what: the call or output compared, as in the student's message.
        actual: the student's output (a tensor, or whatever the probe returned).
        expected: the reference output, when there is one.
        inputs: the hidden inputs of the case (or the part the comparison used).
    """

    what: str
    actual: object
    expected: Tensor | None
    inputs: Mapping[str, Tensor] = field(default_factory=dict)


class Fail(AssertionError):
    """A failed hidden check; ``str(self)`` is shown to the student (no hidden data).

    Args:
        message: the student-visible message.
        details: inputs, expected and received values for the instructor's explain report.
    """

    def __init__(self, message: str = "", details: FailureDetails | None = None) -> None:
        super().__init__(message)
        self.details = details


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


def _first_hint(hints: Sequence[Hint], actual: Tensor, expected: Tensor, inputs: Mapping[str, Tensor]) -> str | None:
    for signature in hints:
        hint = signature(actual, expected, inputs)
        if hint is not None:
            return hint
    return None


def _with_hint(
    message: str,
    hints: Sequence[Hint],
    actual: Tensor,
    expected: Tensor,
    inputs: Mapping[str, Tensor],
    advice: str | None = None,
    prop: str | None = None,
) -> str:
    """``message`` plus the first matching signature's hint, else the property ``prop`` and the ``advice``."""
    hint = _first_hint(hints, actual, expected, inputs)
    if hint is not None:
        return f"{message} Likely mistake: {hint}."
    if prop:
        message = f"{message.rstrip('.')}: {prop}."
    return f"{message} Check: {advice}." if advice else message


def assert_tensor(actual: object, what: str, details: FailureDetails | None = None) -> Tensor:
    """``actual`` as a Tensor, or :class:`Fail` naming ``what`` and the type received."""
    if not isinstance(actual, Tensor):
        raise Fail(f"{what}: expected a torch.Tensor, got {type(actual).__name__}.", details)
    return actual


def assert_shape_dtype(
    actual: object,
    expected: Tensor,
    what: str,
    *,
    show_shape: bool = True,
    check_dtype: bool = True,
    hints: Sequence[Hint] = (),
    inputs: Mapping[str, Tensor] | None = None,
    details: FailureDetails | None = None,
) -> Tensor:
    """Check type, shape and dtype of ``actual`` against ``expected``.

    Args:
        actual: the student's output.
        expected: the reference output.
        what: the call being checked, e.g. ``"iou(boxes1, boxes2)"``.
        show_shape: include both shapes in the message (set False where the expected
            shape would reveal an expected value, e.g. the number of boxes NMS keeps).
        check_dtype: also require the same dtype.
        hints: signatures tried when the shapes differ (e.g. a variant with the student's shape).
        inputs: the hidden inputs, passed to ``hints`` only.
        details: what the instructor's explain report records if this fails.
    """
    details = details or FailureDetails(what, actual, expected, dict(inputs or {}))
    actual = assert_tensor(actual, what, details)
    if actual.shape != expected.shape:
        if show_shape:
            message = f"{what}: output shape {tuple(actual.shape)}, expected {tuple(expected.shape)}."
            prop = shape_difference(actual.shape, expected.shape)
        else:
            message = f"{what}: output has {actual.numel()} elements, which is not the expected number."
            prop = None
        raise Fail(_with_hint(message, hints, actual, expected, inputs or {}, prop=prop), details)
    if check_dtype and actual.dtype != expected.dtype:
        advice = dtype_advice(actual.dtype, expected.dtype)
        message = f"{what}: output dtype {actual.dtype}, expected {expected.dtype}."
        raise Fail(f"{message} {advice[0].upper()}{advice[1:]}." if advice else message, details)
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
    shape_hints: Sequence[Hint] = (),
    columns: Sequence[str] | None = None,
    row_groups: Mapping[str, Tensor] | None = None,
    case: str | None = None,
    explain_inputs: Mapping[str, Tensor] | None = None,
) -> None:
    """Assert ``rel_error(actual, expected) <= tol`` after type, shape and dtype checks.

    When the values differ and no signature in ``hints`` matches, the message says which
    property differs (:func:`autograder.describe.value_difference`) and the ``advice``.

    Args:
        actual: the student's output (CPU tensor, as returned by a probe).
        expected: the reference output for the same inputs.
        tol: the largest relative error accepted (stated by the check).
        what: the call being checked, shown to the student.
        inputs: the hidden inputs, passed to the signature detectors only.
        hints: bug signatures tried (in order) when the values differ.
        advice: what to check when no signature matches (the specification in a phrase).
        check_dtype: also require the same dtype.
        shape_hints: signatures tried when the shapes differ.
        columns: names of the last dimension's entries, for "only column dw is wrong".
        row_groups: ``{kind: Tensor[R] bool}`` of the rows, for "only background rows are wrong".
        case: the kind of input of this case in words (e.g. "zero-area boxes"), shown to the student.
        explain_inputs: the case's inputs for the instructor's explain report (default: ``inputs``).

    Raises:
        Fail: with a student-safe message.
    """
    details = FailureDetails(what, actual, expected, dict(explain_inputs if explain_inputs is not None else inputs or {}))
    actual = assert_shape_dtype(
        actual, expected, what, check_dtype=check_dtype, hints=shape_hints, inputs=inputs, details=details
    )
    on_case = f" on {case}" if case else ""
    if expected.is_floating_point() and torch.isfinite(expected).all() and not torch.isfinite(actual).all():
        message = f"{what}: output contains NaN or inf{on_case}."
        raise Fail(_with_hint(message, hints, actual, expected, inputs or {}, advice, prop=nonfinite_rows(actual)), details)
    err = rel_error(actual.to(expected.dtype) if actual.dtype != expected.dtype else actual, expected)
    if err > tol:
        message = f"{what}: relative error {err:.1e} (tolerance {tol:.0e}){on_case}."
        prop = value_difference(actual, expected, tol=tol, columns=columns, row_groups=row_groups)
        raise Fail(_with_hint(message, hints, actual, expected, inputs or {}, advice, prop=prop), details)


def assert_equal_indices(
    actual: object,
    expected: Tensor,
    *,
    what: str,
    inputs: Mapping[str, Tensor] | None = None,
    hints: Sequence[Hint] = (),
    explain: Callable[[Tensor], "str | None"] | None = None,
) -> None:
    """Assert two index tensors are identical (dtype int64, same elements in the same order).

    The expected number of indices is never shown (it is an expected value); whether the
    student returned more or fewer is.

    Args:
        explain: when no hint matches, a function of the student's indices saying which
            rule they break (e.g. :func:`autograder.feedback.nms_properties`), or None.
    """
    details = FailureDetails(what, actual, expected, dict(inputs or {}))
    actual = assert_tensor(actual, what, details)
    if actual.dtype != expected.dtype:
        advice = dtype_advice(actual.dtype, expected.dtype)
        message = f"{what}: output dtype {actual.dtype}, expected {expected.dtype}."
        raise Fail(f"{message} {advice[0].upper()}{advice[1:]}." if advice else message, details)
    if actual.dim() != expected.dim():
        raise Fail(f"{what}: output has {actual.dim()} dimensions, expected {expected.dim()}.", details)
    if actual.shape == expected.shape and bool((actual == expected).all()):
        return
    if actual.shape != expected.shape:
        more = "more" if actual.numel() > expected.numel() else "fewer"
        message = f"{what}: returned {actual.numel()} indices, {more} than the reference."
    else:
        message = f"{what}: the same number of indices as the reference but different indices or order."
    prop = explain(actual) if explain is not None else None
    raise Fail(_with_hint(message, hints, actual, expected, inputs or {}, prop=prop), details)


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
