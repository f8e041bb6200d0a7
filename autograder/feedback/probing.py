"""Explanations that need the student's code again: parameter errors, random samplers.

- :func:`call_explained` runs a probe like ``student.call`` and, when the child reports a
  missing or misshaped parameter (hard-coded channel counts or RoI size), replaces the
  fixed "does not match the specification" text with the parameter's name and shapes,
  accepted only for names the check itself sent (:mod:`autograder.student_errors`).
- :func:`sampler_hints` tells a hand-written random sampler from a wrong formula: the
  student's probe is run a second time on the same inputs (only after a failure); losses
  that change between the two runs cannot come from the given ``sample_rpn_training``,
  which the grader replaces with a deterministic sampler. A static scan of the file backs
  it up (a sampler seeded inside ``forward`` gives the same numbers twice).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from torch import Tensor

from autograder.compare import META_PREFIX
from autograder.feedback.core import matches
from autograder.feedback.static_scan import find_random_sampling
from autograder.sandbox import StudentError
from autograder.student_errors import explain_parameter_error

#: Prefix of the weight tensors a check sends (``w.<parameter name>``).
WEIGHT_PREFIX = "w."

HINT_RANDOM_SAMPLER = (
    "call the given sample_rpn_training (the grader makes it deterministic), not your own randperm sampler"
)


class Student(Protocol):
    """What these helpers use of the ``student`` fixture (a SandboxClient, or the kit's in-process fake)."""

    def call(self, probe: str, inputs: Mapping[str, Tensor], **params: Any) -> Mapping[str, Tensor]: ...

    def source(self, module: str) -> str: ...


def sent_shapes(inputs: Mapping[str, Tensor], prefix: str = WEIGHT_PREFIX) -> dict[str, tuple[int, ...]]:
    """``{parameter name: shape}`` of the weights in a probe's inputs."""
    return {name[len(prefix):]: tuple(t.shape) for name, t in inputs.items() if name.startswith(prefix)}


def call_explained(
    student: Student, probe: str, inputs: Mapping[str, Tensor], advice: Mapping[str, str], **params: Any
) -> Mapping[str, Tensor]:
    """``student.call(probe, inputs, **params)``, with a specific message for a parameter error.

    Args:
        student: the ``student`` fixture.
        probe: the probe's name.
        inputs: the probe's inputs (weights as ``w.<name>``).
        advice: ``{parameter name prefix: how that layer is built}`` for the message.
        **params: the probe's keyword arguments.

    Raises:
        StudentError: as ``student.call`` does; for a missing, misshaped or extra parameter
            the message names the reference parameter and the shapes.
    """
    try:
        return student.call(probe, inputs, **params)
    except StudentError as err:
        text = explain_parameter_error(err.category, err.details, sent_shapes(inputs), advice)
        if text is None:
            raise
        raise StudentError(err.kind, text, err.exc_type, err.category, err.details, err.instructor_message) from None


def _outputs_equal(first: Mapping[str, Tensor], second: Mapping[str, Tensor], keys: Sequence[str]) -> bool:
    for key in keys:
        a, b = first.get(key), second.get(key)
        if isinstance(a, Tensor) != isinstance(b, Tensor):
            return False
        if isinstance(a, Tensor) and isinstance(b, Tensor) and not matches(a, b, tol=0.0):
            return False
    return True


def rerun_hint(
    student: Student, probe: str, inputs: Mapping[str, Tensor], params: Mapping[str, Any], first: Mapping[str, Tensor]
) -> str | None:
    """The random-sampler hint when a second run on the same inputs gives other outputs, else None.

    Args:
        student: the ``student`` fixture.
        probe: the probe the check ran.
        inputs, params: what the check sent.
        first: the student's outputs of the first run.
    """
    keys = [k for k in first if not k.startswith(META_PREFIX)]
    try:
        second = student.call(probe, inputs, **params)
    except StudentError:
        return None
    if not _outputs_equal(first, second, keys):
        return f"your losses differ between two runs on the same inputs: {HINT_RANDOM_SAMPLER}"
    return None


def random_call_hint(student: Student, module: str) -> str | None:
    """The random-sampler hint when the student's file draws random numbers outside the given sampler."""
    findings = find_random_sampling(student.source(module), f"{module}.py")
    return f"{findings[0]}: {HINT_RANDOM_SAMPLER}" if findings else None


def sampler_hints(
    student: Student, module: str, probe: str, inputs: Mapping[str, Tensor], params: Mapping[str, Any],
    first: Mapping[str, Tensor],
) -> tuple[Callable[..., str | None], Callable[..., str | None]]:
    """(rerun, static) signatures for :func:`autograder.compare.assert_close`: try the rerun first
    (cheap, behavioural) and the static scan last (after the known-mistake variants).

    The rerun is done once per case, however many outputs fail.
    """
    memo: dict[str, str | None] = {}

    def rerun(*_: Any) -> str | None:
        if "rerun" not in memo:
            memo["rerun"] = rerun_hint(student, probe, inputs, params, first)
        return memo["rerun"]

    def static(*_: Any) -> str | None:
        return random_call_hint(student, module)

    return rerun, static
