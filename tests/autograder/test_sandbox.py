"""The sandboxed child: results, confinement, failure modes and cleanup.

One "chameleon" student ``iou.py`` changes behaviour with ``boxes1[0, 0]`` (a negative
sentinel), so one child serves several cases. Child start-up costs a few seconds, so
the cases share clients where the behaviour allows it.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torchvision

from autograder import bubblewrap, isolation
from autograder.sandboxed import wire
from autograder.grading import GradeOptions
from autograder.runner import DEFAULT_CHECKS_DIR
from autograder.sandbox import Group, SandboxClient, SandboxLimits, StudentError
from infra_helpers import (
    IOU_NMS_RUBRIC, KIT_TEST_PROBES, REFERENCE_DIR, hidden_log, pid_alive, running_as_root, score_of, solution_lines,
)

SLEEPER_PID_FILE = "sleeper.pid"
#: Why bubblewrap cannot confine children here (None when it can).
NO_BWRAP = None if bubblewrap.availability(running_as_root())[0] else bubblewrap.availability(running_as_root())[1]
needs_bwrap = pytest.mark.skipif(NO_BWRAP is not None, reason=f"bubblewrap cannot confine children here: {NO_BWRAP}")
CHAMELEON = '''
"""Test double: behaviour chosen by boxes1[0, 0] (negative sentinels), else the reference IoU."""
import ctypes, os, sys, time
from pathlib import Path
import torch

_HOARD = []

def iou(boxes1, boxes2):
    mode = int(boxes1[0, 0]) if boxes1.numel() else 0
    if mode == -1:
        os._exit(3)
    if mode == -2:
        while True:
            pass
    if mode == -3:
        raise ValueError("bad box " + "x" * 1000 + (Path(__file__).parent / "nms.py").read_text())
    if mode == -4:
        sys.stdout.write("y" * 100_000)
        sys.stdout.flush()
    if mode == -5:
        while True:
            _HOARD.append(bytearray(256 << 20))
    if mode == -6:
        return object()
    if mode == -7:
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                Path(os.environ["HOME"], "sleeper.pid").write_text(str(os.getpid()))
                time.sleep(3600)
            os._exit(0)
        time.sleep(1.0)
    if mode == -8:  # what torch 2.11 does while torchvision is imported (its compile cache's folder name)
        import getpass
        assert getpass.getuser()
    a1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    a2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    return inter / (a1[:, None] + a2[None, :] - inter)
'''


def _boxes(n: int, seed: int, first: float | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g) * 50], dim=1)
    if first is not None:
        boxes[0, 0] = first
    return boxes


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A folder the sandbox user can pass through (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="rcnn-sandbox-test-"))
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _client(base: Path, timeout_s: float = 60, unprivileged: bool = False, reference_modules=("nms",)) -> SandboxClient:
    student = base / "student_iou.py"
    student.write_text(CHAMELEON)
    scratch = base / "scratch"
    scratch.mkdir()
    os.chmod(scratch, 0o711)
    return SandboxClient(
        Group("iou", ("iou",), tuple(reference_modules), timeout_s), {"iou": student},
        reference_dir=REFERENCE_DIR, scratch_root=scratch, probe_files=[KIT_TEST_PROBES],
        limits=SandboxLimits(memory_mb=4096, output_bytes=2048),
        identity=isolation.sandbox_identity(unprivileged=unprivileged),
    )


@pytest.fixture(scope="module")
def shared_client() -> Iterator[SandboxClient]:
    base = Path(tempfile.mkdtemp(prefix="rcnn-sandbox-test-"))
    os.chmod(base, 0o711)
    client = _client(base)
    yield client
    client.close()
    shutil.rmtree(base, ignore_errors=True)


def test_values_come_back_equal_to_an_independent_oracle(shared_client: SandboxClient) -> None:
    b1, b2 = _boxes(7, 1), _boxes(5, 2)
    out = shared_client.call("call_iou", {"boxes1": b1, "boxes2": b2})
    torch.testing.assert_close(out["out"], torchvision.ops.box_iou(b1, b2))
    assert out.devices == {"out": "cpu"}
    assert type(out["out"]) is torch.Tensor


def test_child_runs_confined(shared_client: SandboxClient) -> None:
    shared_client.call("call_iou", {"boxes1": _boxes(1, 0), "boxes2": _boxes(1, 0)})
    facts = shared_client.facts
    assert facts["isolation"] == ("bubblewrap" if NO_BWRAP is None else "fallback")
    if NO_BWRAP is None:
        assert facts["network_isolated"] is True
    if running_as_root():
        assert facts["uid"] not in (None, 0)
        assert facts["network_isolated"] is True
    else:
        assert facts["uid"] == os.getuid()


@needs_bwrap
def test_the_login_name_is_known_without_a_user_table(shared_client: SandboxClient) -> None:
    """The sandbox shows no /etc/passwd, yet getpass.getuser() works (found on the GPU image)."""
    b1, b2 = _boxes(3, 1, first=-8), _boxes(4, 2)
    out = shared_client.call("call_iou", {"boxes1": b1, "boxes2": b2})
    torch.testing.assert_close(out["out"], torchvision.ops.box_iou(b1, b2))


def test_exception_message_is_short_scrubbed_and_points_at_student_frame(shared_client: SandboxClient) -> None:
    with pytest.raises(StudentError) as err:
        shared_client.call("call_iou", {"boxes1": _boxes(2, 3, first=-3), "boxes2": _boxes(2, 4)})
    assert err.value.kind == "exception"
    message = str(err.value)
    # This group holds reference modules, so free text from the child is withheld.
    assert message.startswith("ValueError: message withheld")
    assert "bad box xxx" not in message
    assert "(at iou.py:" in message and "in iou)" in message
    assert len(message) < 300
    for line in solution_lines("nms"):
        assert line not in message


def test_stdout_is_captured_and_truncated(shared_client: SandboxClient) -> None:
    shared_client.call("call_iou", {"boxes1": _boxes(2, 5, first=-4), "boxes2": _boxes(2, 6)})
    time.sleep(0.2)  # the drain thread reads asynchronously
    log = shared_client.log
    assert len(log.data["stdout"]) == 2048
    assert log.dropped["stdout"] >= 100_000 - 2048 - 1
    assert "more bytes dropped" in log.text()


def test_non_tensor_output_is_refused(shared_client: SandboxClient) -> None:
    with pytest.raises(StudentError) as err:
        shared_client.call("call_iou", {"boxes1": _boxes(2, 7, first=-6), "boxes2": _boxes(2, 8)})
    assert err.value.kind == "bad_output"


def test_memory_hog_is_stopped_with_a_memory_reason(shared_client: SandboxClient) -> None:
    with pytest.raises(StudentError) as err:
        shared_client.call("call_iou", {"boxes1": _boxes(2, 9, first=-5), "boxes2": _boxes(2, 10)})
    assert err.value.kind in ("memory", "crash")
    assert "memory" in str(err.value)


def test_crash_fails_the_call_and_the_next_call_restarts(shared_client: SandboxClient) -> None:
    starts = shared_client.facts["starts"]
    with pytest.raises(StudentError) as err:
        shared_client.call("call_iou", {"boxes1": _boxes(2, 11, first=-1), "boxes2": _boxes(2, 12)})
    assert err.value.kind == "crash" and "status 3" in str(err.value)
    b1, b2 = _boxes(3, 13), _boxes(4, 14)
    out = shared_client.call("call_iou", {"boxes1": b1, "boxes2": b2})
    torch.testing.assert_close(out["out"], torchvision.ops.box_iou(b1, b2))
    assert shared_client.facts["starts"] == starts + 1


def test_timeout_uses_up_the_group_budget(base_dir: Path) -> None:
    with _client(base_dir, timeout_s=3) as client:
        with pytest.raises(StudentError) as err:
            client.call("call_iou", {"boxes1": _boxes(2, 15, first=-2), "boxes2": _boxes(2, 16)})
        assert err.value.kind == "timeout" and "3 s" in str(err.value)
        with pytest.raises(StudentError, match="no time left"):
            client.call("call_iou", {"boxes1": _boxes(2, 17), "boxes2": _boxes(2, 18)})
        if running_as_root():
            assert isolation.processes_of_uid(client.identity.uid) == []  # type: ignore[arg-type]


#: Why the bubblewrap tests cannot run here (None when they can).


@pytest.fixture
def planted_references() -> Iterator[list[Path]]:
    """World-readable copies of the reference where careless machines keep them.

    The system temp folder, $HOME and a sibling of this checkout, each in a uniquely named
    folder this test makes and removes (other checkouts on the machine are none of its business).
    """
    roots = [Path(tempfile.gettempdir()), Path.home(), REFERENCE_DIR.parents[2]]
    planted = []
    try:
        for root in roots:
            folder = Path(tempfile.mkdtemp(prefix="rcnn-planted-", dir=root))
            os.chmod(folder, 0o755)
            copy = folder / "course" / "solutions" / "faster_rcnn"
            shutil.copytree(REFERENCE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
            for path in [folder / "course", folder / "course" / "solutions", *copy.rglob("*"), copy]:
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
            planted.append(copy / "iou.py")
        yield planted
    finally:
        for path in planted:
            shutil.rmtree(path.parents[3], ignore_errors=True)


@needs_bwrap
def test_bubblewrap_child_finds_no_reference_anywhere(base_dir: Path, planted_references: list[Path]) -> None:
    assert all(p.is_file() and p.stat().st_mode & 0o004 for p in planted_references)
    with _client(base_dir, reference_modules=()) as client:
        names = ["iou.py", "nms.py", "anchors.py", "deltas.py", "rpn.py", "detector.py", "test_iou.py", "rubric.toml"]
        markers = [line for module in ("iou", "nms", "rpn") for line in solution_lines(module)]
        out = client.call("find_files", {}, names=names, markers=markers)
        assert client.facts["isolation"] == "bubblewrap"
        assert out.meta["holding"] == [], out.meta["holding"]  # no copy of the reference anywhere
        # Besides its own file, only libraries' files of the same names (torchmetrics has an iou.py).
        runtime = tuple(str(p) + "/" for p in bubblewrap.runtime_dirs())
        others = [p for p in out.meta["paths"] if p != "/sandbox/pkg/faster_rcnn/iou.py"]
        assert all(p.startswith(runtime) or p.startswith("/usr/") for p in others), others
        assert not any(p.endswith(("test_iou.py", "rubric.toml")) for p in out.meta["paths"])
        for path in planted_references + [REFERENCE_DIR / "iou.py", DEFAULT_CHECKS_DIR / "conftest.py"]:
            assert int(client.call("can_read", {}, path=str(path))["readable"]) == 0, path


@needs_bwrap
def test_a_runtime_under_tmp_stays_visible(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A grader whose Python lives in the host's /tmp (a TA's fresh clone there) still runs children.

    The sandbox's private /tmp once covered such a runtime: bwrap could not exec the interpreter.
    """
    runtime = Path(tempfile.mkdtemp(prefix="rcnn-runtime-in-tmp-"))  # the system /tmp, like such a venv
    try:
        (runtime / "marker.txt").write_text("runtime is visible")
        os.chmod(runtime, 0o755)
        real = bubblewrap.runtime_dirs()
        monkeypatch.setattr(bubblewrap, "runtime_dirs", lambda: [*real, runtime])
        for name in ("harness", "pkg", "work"):
            (base_dir / name).mkdir()
        (base_dir / "config.json").write_text("{}")
        folders = bubblewrap.HostFolders(harness=base_dir / "harness", package_root=base_dir / "pkg",
                                         work=base_dir / "work", config=base_dir / "config.json")
        code = f"import pathlib; print(pathlib.Path({str(runtime / 'marker.txt')!r}).read_text())"
        argv = bubblewrap.build_argv(folders, [sys.executable, "-I", "-c", code], privileged=running_as_root(), cuda=False)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == "runtime is visible", proc.stderr
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


@needs_bwrap
def test_course_folder_permissions_are_never_changed(tmp_path: Path) -> None:
    """Grading the reference leaves every folder of the checkout with the mode it had."""
    from autograder.grading import grade

    def modes() -> dict[Path, int]:
        root = REFERENCE_DIR.parents[1]
        return {p: p.stat().st_mode for p in [root, *root.iterdir(), REFERENCE_DIR, DEFAULT_CHECKS_DIR] if p.is_dir()}

    before = modes()
    submission = tmp_path / "sub"
    shutil.copytree(REFERENCE_DIR, submission, ignore=shutil.ignore_patterns("__pycache__"))
    rubric = tmp_path / "rubric.toml"
    rubric.write_text(IOU_NMS_RUBRIC)
    results, code = grade(GradeOptions(submission=submission, results=tmp_path / "results.json", rubric=rubric,
                                       device="cpu", require_isolation=True))
    assert code == 0 and results["score"] == 13.0
    assert "isolation: bubblewrap" in hidden_log(results)
    assert modes() == before


def test_fallback_is_named_and_require_isolation_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autograder.grading import grade

    monkeypatch.setenv(bubblewrap.DISABLE_ENV, "1")
    bubblewrap.availability.cache_clear()
    try:
        submission = tmp_path / "sub"
        shutil.copytree(REFERENCE_DIR, submission, ignore=shutil.ignore_patterns("__pycache__"))
        rubric = tmp_path / "rubric.toml"
        rubric.write_text(IOU_NMS_RUBRIC)
        options = GradeOptions(submission=submission, results=tmp_path / "refused.json", rubric=rubric, device="cpu",
                               keyword="test_iou_", require_isolation=True)
        refused, code = grade(options)
        assert code == 3 and refused["score"] == 0.0
        assert all("cannot isolate student code" in t["output"] for t in refused["tests"] if t.get("tags"))
        assert "--require-isolation" in hidden_log(refused)
        options.require_isolation, options.results = False, tmp_path / "fallback.json"
        graded, code = grade(options)
        assert code == 0 and score_of(graded, "iou") == 6.0
        assert "isolation: FALLBACK" in hidden_log(graded)
    finally:
        bubblewrap.availability.cache_clear()


@needs_bwrap  # the fallback ends what the child started by uid, as root only (docs/AUTOGRADER_DESIGN.md)
@pytest.mark.parametrize("unprivileged", [False, True], ids=["as_root_if_possible", "unprivileged"])
def test_detached_sleeper_does_not_outlive_the_check(base_dir: Path, unprivileged: bool) -> None:
    client = _client(base_dir, unprivileged=unprivileged)
    client.call("call_iou", {"boxes1": _boxes(2, 19, first=-7), "boxes2": _boxes(2, 20)})
    assert next((base_dir / "scratch").glob(f"group-iou-*/work/{SLEEPER_PID_FILE}")).is_file()
    assert client._proc is not None
    # Host pids of the child and the setsid'd grandchild (the intermediate fork is a zombie by now).
    tree = [pid for pid in isolation.descendants_of(client._proc.pid) if pid_alive(pid)]
    assert len(tree) >= 2
    client.close()
    assert not [pid for pid in tree if pid_alive(pid)]


def _npz(arrays: dict, compress: bool = False, pickle_ok: bool = False) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compress else np.savez)(buf, **arrays)
    return buf.getvalue()


def test_wire_round_trip_keeps_values_and_dtypes() -> None:
    arrays = {"f": np.arange(6, dtype=np.float32).reshape(2, 3), "i": np.array([1, -2], dtype=np.int64),
              "b": np.array([True, False]), "scalar": np.asarray(3.5)}
    back = wire.decode_arrays(wire.encode_arrays(arrays), max_elements=100)
    assert set(back) == set(arrays)
    for key, value in arrays.items():
        assert back[key].dtype == value.dtype and np.array_equal(back[key], value)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (_npz({"obj": np.array([object()], dtype=object)}), "dtype|unreadable"),
        (_npz({"x": np.zeros(10)}, compress=True), "compressed"),
        (_npz({"bad name!": np.zeros(1)}), "not allowed"),
        (_npz({"c": np.zeros(2, dtype=np.complex64)}), "dtype"),
        (_npz({"big": np.zeros(1000)}), "elements"),
        (b"not a zip at all", "not an npz"),
    ],
    ids=["object_dtype", "compressed", "bad_name", "complex", "too_many_elements", "garbage"],
)
def test_wire_refuses_unsafe_payloads(payload: bytes, reason: str) -> None:
    with pytest.raises(wire.WireError, match=reason):
        wire.decode_arrays(payload, max_elements=100)


def test_wire_frames_time_out_and_detect_closed_pipes() -> None:
    r, w = os.pipe()
    try:
        with pytest.raises(wire.WireTimeout):
            wire.recv_frame(r, deadline=time.monotonic() + 0.2)
        wire.send_frame(w, {"op": "ping"}, b"abc")
        header, payload = wire.recv_frame(r, deadline=time.monotonic() + 1)
        assert header == {"op": "ping"} and payload == b"abc"
    finally:
        os.close(w)
    with pytest.raises(wire.WireClosed):
        wire.recv_frame(r, deadline=time.monotonic() + 1)
    os.close(r)


def test_zipfile_helper_sanity() -> None:
    """The compressed-payload case above really holds a compressed member (guards the test itself)."""
    with zipfile.ZipFile(io.BytesIO(_npz({"x": np.zeros(10)}, compress=True))) as archive:
        assert archive.infolist()[0].compress_type != zipfile.ZIP_STORED


def test_exception_message_is_shown_where_no_reference_code_runs(shared_client: SandboxClient) -> None:
    # Closing a client ends every process of the sandbox user: stop the shared one first.
    shared_client.close()
    base = Path(tempfile.mkdtemp(prefix="rcnn-sandbox-test-"))
    os.chmod(base, 0o711)
    try:
        with _client(base, reference_modules=()) as client:
            with pytest.raises(StudentError) as err:
                client.call("call_iou", {"boxes1": _boxes(2, 3, first=-3), "boxes2": _boxes(2, 4)})
        # The same student code as above: it tries to put the reference nms.py into its
        # message; here no reference file exists, and the student's own text is shown.
        assert str(err.value).startswith("FileNotFoundError: ") and "nms.py" in str(err.value)
        assert "(at iou.py:" in str(err.value)
    finally:
        shutil.rmtree(base, ignore_errors=True)
