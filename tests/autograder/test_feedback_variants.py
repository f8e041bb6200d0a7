"""autograder/feedback/variants.py and variants.toml: the buggy variants of the reference.

Every variant must still apply to the current reference, change its check's outputs on at
least one hidden case (else it can never name a mistake), and be recognised by the
machinery from its own outputs; pairs of variants must be found; a failing student output
must not cost a correct submission anything (nothing runs while outputs match).
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from torch import Tensor

from autograder.feedback.core import matches
from autograder.feedback.variants import MAX_HINT_CHARS, VariantHints, load_variants, runner_for
from autograder.runner import FAILURE_CHARS
from check_driver import CHECKS_DIR, load_check_module
from test_corpus import UNIT_IDS

VARIANTS = load_variants()
ALL = [v for variants in VARIANTS.values() for v in variants]
PROBE_CASES: dict[str, tuple[Callable[..., Any], list[str], Callable[..., Any]]] = {
    **load_check_module(CHECKS_DIR / "test_rpn.py").PROBE_CASES,
    **load_check_module(CHECKS_DIR / "test_detector.py").PROBE_CASES,
}


class Owner:
    """Stands for a student fixture (the variant search remembers per student)."""


def outputs_differ(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    keys = {k for k in (*a, *b) if not k.startswith("meta.")}
    return any(k not in a or k not in b or not matches(a[k], b[k]) for k in keys)


@pytest.fixture(scope="module")
def cases(ref: ModuleType) -> dict[str, list[tuple[str, dict[str, Tensor], dict[str, Any], dict[str, Tensor]]]]:
    """Per check with variants: ``[(case, inputs, params, reference outputs)]``."""
    out = {}
    for check in VARIANTS:
        probe, names, build = PROBE_CASES[check]
        out[check] = []
        for name in names:
            inputs, params = build(ref, name)
            out[check].append((name, inputs, params, probe(ref, inputs, **params, device="cpu")))
    return out


def test_variants_file_is_well_formed() -> None:
    ids = [v.id for v in ALL]
    assert len(ids) == len(set(ids))
    assert set(VARIANTS) <= set(UNIT_IDS) and set(VARIANTS) <= set(PROBE_CASES)
    for variant in ALL:
        assert len(variant.hint) <= MAX_HINT_CHARS, variant.id
        assert "0.0" not in variant.hint or "ROI" in variant.hint, variant.id  # no case values in hints
    # two hints joined, plus the longest label and relative-error text, fit the runner's failure line
    longest = sorted((len(v.hint) for v in ALL), reverse=True)[:2]
    assert len("RPN.predict_proposals: proposals['p3'][0]: relative error 5.0e-01 (tolerance 1e-05). ") + \
        len("Likely mistake: ; and .") + sum(longest) <= FAILURE_CHARS


@pytest.mark.parametrize("variant", ALL, ids=[v.id for v in ALL])
def test_variant_applies_changes_its_check_and_is_recognised(variant, cases, ref: ModuleType) -> None:
    runner = runner_for(ref)
    assert runner.package([variant]) is not None, f"{variant.id} no longer applies to the reference"
    probe = PROBE_CASES[variant.check][0]
    changed = []
    for name, inputs, params, expected in cases[variant.check]:
        out = runner.outputs([variant], probe, inputs, params)
        if out is not None and outputs_differ(out, expected):
            changed.append((name, inputs, params, expected, out))
    assert changed, f"{variant.id} gives the reference's outputs on every case of {variant.check}"
    name, inputs, params, expected, out = changed[0]
    key = next(k for k in out if not k.startswith("meta.") and (k not in expected or not matches(out[k], expected[k])))
    hints = VariantHints(ref, variant.check, probe, inputs, params, out, expected, Owner())
    found = hints.hint(key)
    assert found is not None and variant.hint in found or _same_output_other_variant(variant, found, hints, key)


def _same_output_other_variant(variant, found: str | None, hints: VariantHints, key: str) -> bool:
    """Another variant with the same output on this case may be named instead (they are indistinguishable)."""
    if found is None:
        return False
    mine = hints.runner.outputs([variant], hints.probe, hints.inputs, hints.params)
    for other in VARIANTS[variant.check]:
        if other.hint in found:
            theirs = hints.runner.outputs([other], hints.probe, hints.inputs, hints.params)
            if theirs is not None and mine is not None and key in theirs and matches(theirs[key], mine[key]):
                return True
    return False


def test_a_pair_of_mistakes_is_named_together(cases, ref: ModuleType) -> None:
    by_id = {v.id: v for v in ALL}
    pair = [by_id["proposals_nms_before_clip"], by_id["proposals_clip_width_height"]]
    runner = runner_for(ref)
    probe = PROBE_CASES["rpn_proposals"][0]
    for name, inputs, params, expected in cases["rpn_proposals"]:
        out = runner.outputs(pair, probe, inputs, params)
        singles = [runner.outputs([v], probe, inputs, params) for v in pair]
        key = next((k for k in expected if not k.startswith("meta.") and not matches(out[k], expected[k])
                    and all(not matches(out[k], s[k]) for s in singles)), None)
        if key is None:
            continue
        found = VariantHints(ref, "rpn_proposals", probe, inputs, params, out, expected, Owner()).hint(key)
        assert found is not None and all(v.hint in found for v in pair), found
        return
    pytest.fail("no case where the pair differs from both singles")


def test_variant_outputs_are_cached(cases, ref: ModuleType) -> None:
    runner = runner_for(ref)
    variant = VARIANTS["rpn_losses"][0]
    name, inputs, params, _ = cases["rpn_losses"][0]
    probe = PROBE_CASES["rpn_losses"][0]
    first = runner.outputs([variant], probe, inputs, params)
    assert runner.outputs([variant], probe, {k: v.clone() for k, v in inputs.items()}, dict(params)) is first
