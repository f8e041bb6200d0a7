"""Static scans of a student's source (read in the grader, never imported there).

- :func:`find_library_box_ops`: iou.py / nms.py must be the student's own code;
- :func:`find_random_sampling`: the RPN / detector losses must sample with the given
  ``sample_rpn_training`` (the grader replaces it with a deterministic sampler), not with
  a hand-written ``randperm`` sampler whose picks cannot match the reference's.
"""

from __future__ import annotations

import ast

#: Names of library box operations students must not call in iou.py / nms.py.
FORBIDDEN_BOX_OPS: frozenset[str] = frozenset(
    {
        "box_iou", "generalized_box_iou", "distance_box_iou", "complete_box_iou",
        "nms", "batched_nms", "box_area", "_box_inter_union",
    }
)

#: Modules students must not import from in iou.py / nms.py.
FORBIDDEN_MODULE_PREFIXES: tuple[str, ...] = ("torchvision.ops", "torchvision._C", "detectron2", "mmcv", "mmdet")


def find_library_box_ops(source: str, filename: str) -> list[str]:
    """Library box operations that ``source`` imports or calls (static scan, never imports it).

    Args:
        source: the text of the student's ``iou.py`` or ``nms.py``.
        filename: the file's name, used in the messages.

    Returns:
        One student-facing sentence per finding (empty when nothing was found). A file that
        does not parse is reported as such.
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as exc:
        return [f"{filename} does not parse: {exc.msg} (line {exc.lineno})"]
    findings: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(FORBIDDEN_MODULE_PREFIXES):
                    findings.append(f"{filename} line {node.lineno} imports {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.startswith(FORBIDDEN_MODULE_PREFIXES) or (
                module.startswith("torchvision") and any(a.name in FORBIDDEN_BOX_OPS | {"ops"} for a in node.names)
            ):
                findings.append(f"{filename} line {node.lineno} imports from {module}")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_BOX_OPS:
            base = ast.unparse(node.value)
            if "torchvision" in base or base.endswith("ops"):
                findings.append(f"{filename} line {node.lineno} uses {base}.{node.attr}")
    return findings


#: Random draws a hand-written sampler uses (torch, numpy and the standard library).
RANDOM_CALLS: frozenset[str] = frozenset(
    {"randperm", "randint", "rand", "multinomial", "shuffle", "choice", "sample", "permutation", "bernoulli"}
)
#: Functions whose random draws are not sampling: the given sampler and constructors (weight init).
NOT_SAMPLING = frozenset({"sample_rpn_training", "__init__"})


def find_random_sampling(source: str, filename: str) -> list[str]:
    """Random draws in ``source`` outside the given ``sample_rpn_training`` and constructors (static scan).

    Args:
        source: the text of the student's ``rpn.py`` or ``detector.py``.
        filename: the file's name, used in the findings.

    Returns:
        ``"<filename> line <n> calls <name>"`` per random draw found (empty when none, or
        when the file does not parse: the sandbox reports that separately).
    """
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError:
        return []
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in NOT_SAMPLING:
            skipped |= {id(inner) for inner in ast.walk(node)}
    findings = []
    for node in ast.walk(tree):
        if id(node) in skipped or not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in RANDOM_CALLS:
            findings.append(f"{filename} line {node.lineno} calls {name}")
    return findings
