"""Consecutive rubric groups with the same files share one sandboxed child.

Runs the real runner on small hand-made rubrics and check files (written by the tests),
with a student ``iou.py`` whose behaviour is picked by a negative sentinel in
``boxes1[0, 0]``: it prints a marker, or hangs. Oracles: torchvision's ``box_iou`` and
``nms`` for the values, the runner's count of started children for the sharing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autograder import isolation
from autograder.runner import DEFAULT_CHECKS_DIR, GradeSettings, run_checks
from autograder.sandbox import Group, SandboxClient, SandboxLimits, uses_torchvision
from infra_helpers import KIT_TEST_PROBES, REFERENCE_DIR, REPO_ROOT

#: Student iou.py: sentinel -2 hangs, other negative sentinels print "marker<sentinel>".
STUDENT_IOU = '''
import torch

def iou(boxes1, boxes2):
    mode = int(boxes1[0, 0])
    if mode == -2:
        while True:
            pass
    if mode < 0:
        print(f"marker{mode}")
        boxes1 = boxes1.clone()
        boxes1[0, 0] = 0.0
    a1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    a2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    return inter / (a1[:, None] + a2[None, :] - inter)
'''

#: Hidden-check file of the tests' rubrics: ``iou_call(student, sentinel)`` checks one IoU call.
CHECKS_HEAD = '''
import pytest
import torch
import torchvision


def boxes(sentinel=None):
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(5, 2, generator=g) * 50
    b = torch.cat([xy, xy + 1 + torch.rand(5, 2, generator=g) * 30], dim=1)
    if sentinel is not None:
        b[0, 0] = sentinel
    return b


def iou_call(student, sentinel=None):
    b1, b2 = boxes(sentinel), boxes()
    out = student.call("call_function", {"boxes1": b1, "boxes2": b2}, module="iou", function="iou",
                       args=["boxes1", "boxes2"])
    b1[0, 0] = 0.0 if sentinel is not None else b1[0, 0]
    assert torch.allclose(out["out"], torchvision.ops.box_iou(b1, b2), atol=1e-6), "iou differs from box_iou"


def nms_call(student):
    b, s = boxes(), torch.linspace(1.0, 0.1, 5)
    out = student.call("call_function", {"boxes": b, "scores": s}, module="nms", function="nms",
                       args=["boxes", "scores"], kwargs={"iou_threshold": 0.3})
    assert torch.equal(out["out"], torchvision.ops.nms(b, s, 0.3)), "nms differs from torchvision"
'''


def _entry(rid: str, modules: list[str], references: list[str], timeout_s: float) -> str:
    return (f'[[check]]\nid = "{rid}"\nname = "{rid}"\npoints = 1.0\nstudent_modules = {modules}\n'
            f"reference_modules = {references}\ntimeout_s = {timeout_s}\n\n").replace("'", '"')


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A folder the sandbox user can pass through (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="rcnn-sharing-test-"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _grade(base: Path, rubric: str, checks: str):
    checks_dir = base / "checks"
    checks_dir.mkdir()
    shutil.copy(DEFAULT_CHECKS_DIR / "conftest.py", checks_dir / "conftest.py")
    # A unique name per run: one pytest process cannot import two check files of the same name.
    (checks_dir / f"test_sharing_checks_{base.name.replace('-', '_')}.py").write_text(CHECKS_HEAD + checks)
    (base / "rubric.toml").write_text(rubric)
    student = base / "iou.py"
    student.write_text(STUDENT_IOU)
    files = {"iou": student, "nms": REFERENCE_DIR / "nms.py"}
    settings = GradeSettings(reference_dir=REFERENCE_DIR, checks_dir=checks_dir, rubric_path=base / "rubric.toml",
                             skip_overfit=True, limits=SandboxLimits(memory_mb=4096))
    run = run_checks(settings, files)
    assert not run.collect_errors, run.collect_errors
    assert not [n for g in run.groups for n in g.instructor_notes]
    return run, {g.entry.id: g for g in run.groups}


def test_adjacent_groups_share_a_child_and_keep_their_own_output(base_dir: Path) -> None:
    # "third" has the same files as "first"/"second" but is not adjacent to them.
    rubric = (_entry("first", ["iou"], [], 60) + _entry("second", ["iou"], [], 60)
              + _entry("other", ["nms"], ["iou"], 60) + _entry("third", ["iou"], [], 60))
    checks = '''
@pytest.mark.rubric("first")
def test_first_a(student): iou_call(student, -10)
@pytest.mark.rubric("first")
def test_first_b(student): iou_call(student)
@pytest.mark.rubric("second")
def test_second(student): iou_call(student, -11)
@pytest.mark.rubric("other")
def test_other(student): nms_call(student)
@pytest.mark.rubric("third")
def test_third(student): iou_call(student, -12)
'''
    run, groups = _grade(base_dir, rubric, checks)
    assert {rid: (g.passed, g.failed) for rid, g in groups.items()} == {
        "first": (2, 0), "second": (1, 0), "other": (1, 0), "third": (1, 0)}
    assert run.child_starts == 3  # first+second, other, third
    assert groups["second"].facts["shared_child"] is True and groups["second"].facts["starts"] == 0
    assert groups["third"].facts["starts"] == 1
    for rid, marker in (("first", "marker-10"), ("second", "marker-11"), ("third", "marker-12")):
        own = groups[rid].student_output
        assert marker in own, (rid, own)
        assert all(m not in own for m in ("marker-10", "marker-11", "marker-12") if m != marker), (rid, own)


def test_a_timeout_in_a_shared_group_costs_the_next_group_only_a_restart(base_dir: Path) -> None:
    rubric = _entry("hangs", ["iou"], [], 3) + _entry("after", ["iou"], [], 60)
    checks = '''
@pytest.mark.rubric("hangs")
def test_hangs_a(student): iou_call(student, -2)
@pytest.mark.rubric("hangs")
def test_hangs_b(student): iou_call(student)
@pytest.mark.rubric("after")
def test_after_a(student): iou_call(student)
@pytest.mark.rubric("after")
def test_after_b(student): iou_call(student, -13)
'''
    run, groups = _grade(base_dir, rubric, checks)
    assert (groups["hangs"].passed, groups["hangs"].failed) == (0, 2)
    assert "time limit" in groups["hangs"].failures[0] and "no time left" in groups["hangs"].failures[1]
    assert (groups["after"].passed, groups["after"].failed) == (2, 0)
    assert run.child_starts == 2 and groups["after"].facts["starts"] == 1
    # The kill is recorded in the group that caused it; "after" only saw its child closed at its end.
    assert any("time limit" in event for event in groups["hangs"].facts["events"])
    assert groups["after"].facts["events"] == ["closed"]
    assert "marker-13" in groups["after"].student_output
    if isolation.sandbox_identity().privileged:
        assert isolation.processes_of_uid(isolation.sandbox_identity().uid) == []  # type: ignore[arg-type]


def test_switch_group_refuses_a_group_with_other_files(base_dir: Path) -> None:
    client = SandboxClient(Group("a", ("iou",)), {"iou": REFERENCE_DIR / "iou.py"}, reference_dir=REFERENCE_DIR,
                           scratch_root=base_dir, probe_files=[KIT_TEST_PROBES])
    with pytest.raises(ValueError, match="cannot share"):
        client.switch_group(Group("b", ("iou",), ("nms",)))
    client.close()


def test_torchvision_is_imported_only_for_groups_whose_files_name_it(base_dir: Path) -> None:
    plain = base_dir / "iou.py"
    plain.write_text(STUDENT_IOU)
    uses_tv = base_dir / "iou_tv.py"
    uses_tv.write_text("import torchvision\n" + STUDENT_IOU)
    for student, expected in ((plain, 0), (uses_tv, 1)):
        with SandboxClient(Group("iou", ("iou",)), {"iou": student}, reference_dir=REFERENCE_DIR,
                           scratch_root=base_dir, probe_files=[KIT_TEST_PROBES],
                           limits=SandboxLimits(memory_mb=4096)) as client:
            assert int(client.call("module_loaded", {}, name="torchvision")["loaded"]) == expected


@pytest.mark.parametrize("source, expected", [
    ("import torchvision\n", True),
    ("import torch, torchvision.ops as ops\n", True),
    ("def f():\n    from torchvision.ops import nms\n", True),
    ("import importlib\nops = importlib.import_module('torchvision.ops')\n", True),
    ("import torch\n# do not call torchvision.ops.nms here\n", False),
    ('"""Written without torchvision."""\nimport torch\n', False),
    ("from .iou import iou\nimport torchvisionx\n", False),
    ("def broken(:\n", False),
])
def test_uses_torchvision_reads_imports_not_prose(source: str, expected: bool) -> None:
    assert uses_torchvision(source.encode()) is expected


def test_tripwires_block_a_late_torchvision_import() -> None:
    # A fresh interpreter without torchvision, like a sandbox child of the iou or nms group.
    script = (
        "import sys\n"
        "from autograder.sandboxed import probes\n"
        "assert 'torchvision' not in sys.modules\n"
        "hits = []\n"
        "with probes.library_tripwires(hits):\n"
        "    try:\n"
        "        import torchvision.ops\n"
        "    except probes.ProbeError as exc:\n"
        "        print('blocked:', exc)\n"
        "assert hits == ['import torchvision'], hits\n"
        "import torchvision.ops\n"  # allowed again once the check is over
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "blocked: torchvision was imported" in proc.stdout and proc.stdout.strip().endswith("ok")


# One child start per module set for the whole reference: tests/autograder/test_cli.py's
# test_rcnn_kit_grade_gives_the_reference_full_unit_marks (from results.json's instructor log).
