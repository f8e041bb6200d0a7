"""Run student code in a confined child process and get plain arrays back.

Usage (what the hidden checks see through the ``student`` fixture)::

    client = SandboxClient(group, files, reference_dir=REF, scratch_root=tmp)
    try:
        out = client.call("call_function", {"boxes1": b1, "boxes2": b2},
                          module="iou", function="iou", args=["boxes1", "boxes2"])
        out["out"]            # torch.Tensor (CPU), validated: numeric dtype, bounded size
        out.devices["out"]    # device the student's tensor was on, e.g. "cpu"
        out.meta              # JSON metadata the probe returned
    except StudentError as err:
        err.kind, str(err)    # kind in STUDENT_ERROR_KINDS; message is safe to show
    finally:
        client.close()        # kills every process the child started

One child serves every call of a rubric group (and, through :meth:`SandboxClient.switch_group`,
of the following groups that load the same files): it starts on the first call (1-3 s
for the torch import; torchvision only when the group's files use it) inside a scratch
folder holding a copy of the harness, the probes, ``rcnn_kit`` and the hybrid ``faster_rcnn`` package (the student's modules of the group
plus reference copies of its dependencies). The group's ``timeout_s`` is a wall-clock
budget for all its calls; when a call runs out of time or the child dies, the child is
killed and the next call starts a new child if budget remains (a switched-to group always
gets its full budget).

Student stdout/stderr is captured (first :attr:`SandboxLimits.output_bytes` bytes per
stream) in :attr:`SandboxClient.log`; it is for the instructor only.
"""

from __future__ import annotations

import ast
import builtins

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from autograder import bubblewrap, isolation
from autograder.sandboxed import HARNESS_PACKAGE, wire
from autograder.sandboxed.child import LAUNCH
from autograder.isolation import Confinement, Identity
from rcnn_kit.course import PACKAGE_NAME, STUDENT_MODULES  # the student package's name inside the child too
from autograder.sandboxed.errors import ERROR_CATEGORIES
from autograder.student_errors import category_message, clean_details

#: Error kinds a student-caused failure can have (see docs/AUTOGRADER_DESIGN.md).
STUDENT_ERROR_KINDS = ("import", "exception", "timeout", "crash", "memory", "bad_output", "forbidden")
#: Longest student-visible error message (characters), before the frame list.
MESSAGE_CHARS = 200
#: Shortest reference source line that is scrubbed from messages (shorter ones are too generic).
SCRUB_MIN_CHARS = 12
#: Seconds a child may take to confine itself and import torch, on top of the group budget.
STARTUP_ALLOWANCE_S = 60.0
#: Longest wait for the drain threads at a group switch (seconds).
OUTPUT_SETTLE_S = 0.5
#: bubblewrap reports a child killed by signal N as exit status BWRAP_SIGNAL_BASE + N (as shells do).
BWRAP_SIGNAL_BASE = 128
#: Seconds of wall clock a restarted child needs at least to be worth starting.
MIN_RESTART_BUDGET_S = 5.0
#: The code that runs inside the sandbox: copied into each child's harness folder.
SANDBOXED_DIR = Path(__file__).resolve().parent / "sandboxed"
#: Files of :data:`SANDBOXED_DIR` every child gets (the probes are chosen per client).
HARNESS_CORE_FILES = ("__init__.py", "child.py", "wire.py", "errors.py")
#: The login name a child sees in USER/LOGNAME (the sandbox has no user table to look it up in).
SANDBOX_USER_NAME = "student"
#: Rubric kinds other than "unit" (see autograder/rubric.toml); ``probes_<kind>.py`` belongs to one.
NON_UNIT_KINDS = ("overfit",)
#: Imported by the child before the privilege drop only when the group's code uses them.
OPTIONAL_PREIMPORT = ("torchvision", "torchvision.ops")
#: Modules the child always finds in the hybrid package.
KNOWN_MODULES = STUDENT_MODULES


class StudentError(Exception):
    """Student code failed inside the sandbox; ``str(self)`` is safe to show the student.

    Attributes:
        kind: one of :data:`STUDENT_ERROR_KINDS`.
        message: the student-safe message (also ``str(self)``).
        exc_type: name of the exception the student's code raised (``"NotImplementedError"``),
            when there was one.
        category: the child's error category (:mod:`autograder.student_errors`), or None.
        details: the child's structured details of that category (cleaned; for the checks).
        instructor_message: the exception's own text (instructor-only reports, never the student).
    """

    def __init__(
        self, kind: str, message: str, exc_type: str | None = None, category: str | None = None,
        details: dict[str, Any] | None = None, instructor_message: str | None = None,
    ) -> None:
        if kind not in STUDENT_ERROR_KINDS:
            raise ValueError(f"kind: expected one of {STUDENT_ERROR_KINDS}, got {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.exc_type = exc_type
        self.category = category
        self.details = dict(details or {})
        self.instructor_message = instructor_message


class SandboxInfraError(RuntimeError):
    """The grader's own machinery failed (not the student's fault); shown to the instructor."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one child.

    Attributes:
        memory_mb: address-space limit (RLIMIT_AS) on CPU; data-segment limit (RLIMIT_DATA)
            when CUDA is used, since the CUDA runtime reserves huge address ranges.
            torch + torchvision import with a RegNet forward/backward peaks at ~3.6 GB of
            address space, so stay above 4096.
        nproc: extra tasks (processes + threads) the sandbox user may create.
        nofile: open file descriptors.
        fsize_mb: largest file the child may write.
        output_bytes: captured stdout/stderr kept per stream per group.
        max_elements: largest total number of array elements in one answer.
        threads: torch intra-op threads in the child.
    """

    memory_mb: int = 6144
    nproc: int = 64
    nofile: int = 256
    fsize_mb: int = 256
    output_bytes: int = 4096
    max_elements: int = 50_000_000
    threads: int = 1


@dataclass(frozen=True)
class Group:
    """What one rubric group needs in its child (a subset of a rubric entry)."""

    id: str
    student_modules: tuple[str, ...]
    reference_modules: tuple[str, ...] = ()
    timeout_s: float = 60.0
    kind: str = "unit"

    def share_key(self) -> tuple[frozenset[str], frozenset[str], str]:
        """Groups with equal keys load the same files and probes, so one child can serve them in turn."""
        return frozenset(self.student_modules), frozenset(self.reference_modules), self.kind


class ProbeResult(dict):
    """``dict[str, Tensor]`` of a probe's outputs, plus ``devices`` and ``meta``."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], devices: Mapping[str, str], meta: Mapping[str, Any]):
        super().__init__(tensors)
        self.devices: Mapping[str, str] = MappingProxyType(dict(devices))
        self.meta: Mapping[str, Any] = MappingProxyType(dict(meta))


@dataclass
class CapturedOutput:
    """First bytes of a child's stdout and stderr, and how much more there was."""

    limit: int
    data: dict[str, bytearray] = field(default_factory=lambda: {"stdout": bytearray(), "stderr": bytearray()})
    dropped: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})

    def add(self, stream: str, chunk: bytes) -> None:
        room = self.limit - len(self.data[stream])
        self.data[stream] += chunk[: max(room, 0)]
        self.dropped[stream] += max(len(chunk) - max(room, 0), 0)

    def text(self) -> str:
        parts = []
        for stream in ("stdout", "stderr"):
            body = self.data[stream].decode("utf-8", errors="replace")
            more = f"\n[... {self.dropped[stream]} more bytes dropped]" if self.dropped[stream] else ""
            if body or more:
                parts.append(f"--- {stream} ---\n{body}{more}")
        return "\n".join(parts)


class SandboxClient:
    """One rubric group's persistent, confined child (see the module docstring).

    Only one client per sandbox identity should be live at a time: in root mode, ending a
    child kills every process of the sandbox uid (the runner runs groups one after another;
    each grader process holds its own uid slot).
    """

    def __init__(
        self,
        group: Group,
        submission_files: Mapping[str, Path],
        *,
        reference_dir: Path,
        scratch_root: Path,
        limits: SandboxLimits = SandboxLimits(),
        identity: Identity | None = None,
        device: str = "cpu",
        probe_files: Sequence[Path] | None = None,
        cpu_budget_s: float | None = None,
        confinement: Confinement | None = None,
        hard_deadline: float | None = None,
    ) -> None:
        """
        Args:
            group: the rubric group (its modules and wall-clock budget).
            submission_files: module name (``"iou"``) -> the student's file.
            reference_dir: folder of the reference ``faster_rcnn`` package.
            scratch_root: folder for the child's scratch folders (the grader's temp dir).
            limits: resource limits of the child.
            identity: who the child runs as (default: :func:`isolation.sandbox_identity`).
            device: ``"cpu"`` or ``"cuda"``; with ``"cpu"`` the child sees no GPU.
            probe_files: probe modules to copy into the child (default: ``autograder/sandboxed/probes.py``
                and ``autograder/sandboxed/probes_*.py``).
            cpu_budget_s: seconds of CPU time a child may use before RLIMIT_CPU ends it, on top
                of :data:`STARTUP_ALLOWANCE_S` (default: ``group.timeout_s``). A child shared by
                several groups (:meth:`switch_group`) needs the sum of their budgets.
            confinement: bubblewrap or the fallback (default: :func:`isolation.choose_confinement`).
            hard_deadline: ``time.monotonic()`` after which no call may run, whatever the group's
                budget (the whole grading run's deadline); None for none.
        """
        for module in (*group.student_modules, *group.reference_modules):
            if module not in KNOWN_MODULES:
                raise ValueError(f"group {group.id!r}: unknown module {module!r}, expected one of {KNOWN_MODULES}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")
        self.group = group
        self.submission_files = dict(submission_files)
        self.reference_dir = Path(reference_dir)
        self.scratch_root = Path(scratch_root)
        self.limits = limits
        self.identity = identity if identity is not None else isolation.sandbox_identity()
        self.confinement = confinement if confinement is not None else isolation.choose_confinement(self.identity)
        self.device = device
        self.probe_files = list(probe_files) if probe_files is not None else default_probe_files()
        self.cpu_budget_s = float(cpu_budget_s) if cpu_budget_s is not None else group.timeout_s
        self.total_starts = 0  # children started by this client, over all its groups
        self.log = CapturedOutput(limits.output_bytes)
        self.facts: dict[str, Any] = {}
        self.events: list[str] = []
        self.deadline: float | None = None  # set when the first child is ready
        self.hard_deadline = hard_deadline
        self._proc: subprocess.Popen[bytes] | None = None
        self._fds: tuple[int, int] | None = None
        self._threads: list[threading.Thread] = []
        self._log_lock = threading.Lock()  # held while a drain thread adds to self.log
        self._dead_reason: str | None = None
        self._broken: str | None = None  # set when a child could not start: no more tries
        self._starts = 0
        self._scrub_lines = _reference_lines(self.reference_dir, group.reference_modules)
        if self.identity.privileged and not self.confinement.bubblewrap:  # the child walks host paths itself
            _check_reachable(self.scratch_root)
        isolation.become_subreaper()

    # ------------------------------------------------------------------ public API
    def call(self, probe: str, inputs: Mapping[str, torch.Tensor], **params: Any) -> ProbeResult:
        """Run ``probes.<probe>(pkg, inputs, **params)`` in the child.

        Args:
            probe: name of a public function in the probe modules.
            inputs: name -> tensor (any device; sent as CPU arrays).
            **params: JSON-able keyword arguments of the probe.

        Returns:
            The probe's output tensors (CPU), with ``.devices`` and ``.meta``.

        Raises:
            StudentError: the student's code failed, hung, crashed or returned bad output.
            SandboxInfraError: the grader's machinery failed.
        """
        missing = [m for m in self.group.student_modules if m not in self.submission_files]
        if missing:
            raise StudentError("import", f"file {missing[0]}.py was not found in the submission")
        if self._dead_reason is not None and self._remaining() < MIN_RESTART_BUDGET_S:
            raise StudentError("timeout", f"{self._dead_reason}; no time left in this group's budget")
        if self._broken is not None:
            raise SandboxInfraError(self._broken)
        if self._proc is None:
            self._start()
        assert self._fds is not None
        arrays = {k: _to_numpy(k, v) for k, v in inputs.items()}
        payload = wire.encode_arrays(arrays)
        req_fd, resp_fd = self._fds
        try:
            wire.send_frame(req_fd, {"op": "call", "probe": probe, "params": params}, payload, self._call_deadline())
            header, body = wire.recv_frame(resp_fd, self._call_deadline())
        except wire.WireTimeout:
            if self.hard_deadline is not None and time.monotonic() >= self.hard_deadline:
                self._kill("the grading run's deadline was reached")
                raise StudentError("timeout", "grading stopped at its deadline during this check (not your fault)") from None
            self._kill(f"time limit of {self.group.timeout_s:g} s for this group reached")
            raise StudentError("timeout", f"your code did not finish within this group's {self.group.timeout_s:g} s time limit") from None
        except wire.WireClosed:
            raise self._crash_error() from None
        except wire.WireError as exc:
            self._kill(f"malformed answer: {exc}")
            raise StudentError("bad_output", "the sandboxed process sent a malformed answer (did your code write to file descriptors?)") from None
        return self._parse(header, body)

    def source(self, module: str) -> str:
        """The text of the student's ``module`` file (read in the grader; never executed here).

        Raises:
            StudentError: the module is not part of the submission.
        """
        if module not in KNOWN_MODULES:
            raise ValueError(f"module: expected one of {KNOWN_MODULES}, got {module!r}")
        path = self.submission_files.get(module)
        if path is None:
            raise StudentError("import", f"file {module}.py was not found in the submission")
        return Path(path).read_bytes().decode("utf-8", errors="replace")

    def close(self) -> None:
        """Stop the child and every process it started; idempotent."""
        self._kill("closed")
        self._dead_reason = None

    def switch_group(self, group: Group) -> None:
        """Hand this client (and its live child, if any) to the next rubric group.

        The new group gets its own wall-clock budget (from now when the child is alive,
        else from when the next child is ready), a fresh :attr:`log`, :attr:`events` and
        :attr:`facts`; a child that died in the previous group is restarted on the next
        call whatever budget that group had left. Read the previous group's ``log``,
        ``facts`` and ``events`` before calling this.

        Raises:
            ValueError: ``group`` loads other files or probes (its :meth:`Group.share_key` differs).
        """
        if group.share_key() != self.group.share_key():
            raise ValueError(f"group: {group.id!r} cannot share the child of {self.group.id!r} (different modules or kind)")
        self._settle_output()
        self.group = group
        with self._log_lock:
            self.log = CapturedOutput(self.limits.output_bytes)
        self.events = []
        alive = self._proc is not None
        self.facts = {k: v for k, v in self.facts.items() if k in ("uid", "network_isolated", "isolation")}
        self.facts.update(starts=0, shared_child=alive)
        self._starts = 0
        self._dead_reason = None
        self._broken = None
        self.deadline = time.monotonic() + group.timeout_s if alive else None

    def __enter__(self) -> "SandboxClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ child lifecycle
    def _call_deadline(self) -> float | None:
        """The earlier of the group's budget and the whole run's deadline."""
        ends = [d for d in (self.deadline, self.hard_deadline) if d is not None]
        return min(ends) if ends else None

    def _remaining(self) -> float:
        end = self._call_deadline()
        return float("inf") if end is None else end - time.monotonic()

    def _start(self) -> None:
        self._starts += 1
        self.total_starts += 1
        root = Path(tempfile.mkdtemp(prefix=f"group-{self.group.id}-", dir=self.scratch_root))
        os.chmod(root, 0o755)
        harness = _build_harness(root / "harness", self.probe_files)
        pkg = root / "pkg" / PACKAGE_NAME
        self._build_package(pkg)
        work = root / "work"
        work.mkdir(mode=0o700)
        if self.identity.uid is not None:
            os.chown(work, self.identity.uid, self.identity.gid if self.identity.gid is not None else self.identity.uid)
        config_path = root / "config.json"
        wrapped = self.confinement.bubblewrap
        # Paths as the child sees them: inside bubblewrap its folders are mounted under /sandbox.
        inside_pkg = Path(bubblewrap.PACKAGE_ROOT) / PACKAGE_NAME if wrapped else pkg
        inside_work = Path(bubblewrap.WORK_DIR) if wrapped else work
        inside_harness = Path(bubblewrap.HARNESS_DIR) if wrapped else harness
        inside_config = Path(bubblewrap.CONFIG_FILE) if wrapped else config_path
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        config = {
            # bubblewrap's --die-with-parent replaces the parent check (the child's parent is bwrap's init)
            "parent_pid": None if wrapped else os.getpid(), "req_fd": req_r, "resp_fd": resp_w,
            "uid": self.identity.uid, "gid": self.identity.gid,
            "isolate_network": self.identity.privileged and not wrapped, "package_dir": str(inside_pkg),
            "modules": [*self.group.student_modules, *self.group.reference_modules],
            "probe_modules": [f"{HARNESS_PACKAGE}.{p.stem}" for p in self.probe_files if _preloads(p, self.group.kind)],
            "lazy_probe_modules": [f"{HARNESS_PACKAGE}.{p.stem}" for p in self.probe_files if not _preloads(p, self.group.kind)],
            "preimport": list(OPTIONAL_PREIMPORT) if self._needs_torchvision() else [],
            "threads": self.limits.threads,
            "work_dir": str(inside_work), "limits": self._rlimits(),
        }
        config_path.write_text(json.dumps(config, indent=1))
        os.chmod(config_path, 0o644)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(inside_work), "TMPDIR": str(inside_work),
            "LANG": "C.UTF-8", "OMP_NUM_THREADS": str(self.limits.threads),
            "MKL_NUM_THREADS": str(self.limits.threads), "RCNN_KIT_OFFLINE": "1",
            "RCNN_GRADE_DEVICE": self.device,
            # The sandbox shows no /etc/passwd: getpass.getuser() (which torch's compile cache
            # calls while torchvision is imported, torch 2.11) reads these before the user table.
            "USER": SANDBOX_USER_NAME, "LOGNAME": SANDBOX_USER_NAME,
            "TORCHINDUCTOR_CACHE_DIR": str(inside_work / "torchinductor"),
        }
        if self.device == "cpu":
            env["CUDA_VISIBLE_DEVICES"] = ""
        elif os.environ.get("LD_LIBRARY_PATH"):  # CUDA driver libraries on some images
            env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
        command = [sys.executable, "-I", "-B", "-c", LAUNCH, str(inside_harness), str(inside_config)]
        if wrapped:
            folders = bubblewrap.HostFolders(harness=harness, package_root=pkg.parent, work=work, config=config_path)
            command = bubblewrap.build_argv(folders, command, privileged=self.identity.privileged,
                                            cuda=self.device == "cuda", secrets=self.confinement.secrets)
        self._baseline_children = isolation.children_of(os.getpid())
        try:
            self._proc = subprocess.Popen(
                command,
                cwd=str(work), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, pass_fds=(req_r, resp_w), close_fds=True,
            )
        finally:
            os.close(req_r)
            os.close(resp_w)
        self._fds = (req_w, resp_r)
        self._threads = [
            threading.Thread(target=self._drain, args=(self._proc.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._drain, args=(self._proc.stderr, "stderr"), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        startup_deadline = min(time.monotonic() + STARTUP_ALLOWANCE_S, self.hard_deadline or float("inf"))
        try:
            hello, _ = wire.recv_frame(resp_r, startup_deadline)
        except wire.WireError as exc:
            self._kill("failed to start")
            self._broken = f"sandbox child for group {self.group.id!r} failed to start ({exc}); its output:\n{self.log.text()}"
            raise SandboxInfraError(self._broken) from None
        self.facts.update(uid=hello.get("uid"), network_isolated=bool(hello.get("network_isolated")), starts=self._starts,
                          isolation=self.confinement.mode)
        if self.deadline is None:  # the budget starts once the first child is ready
            self.deadline = time.monotonic() + self.group.timeout_s

    def _rlimits(self) -> dict[str, int]:
        mb = 1 << 20
        budget = int(self.cpu_budget_s + STARTUP_ALLOWANCE_S) + 1
        limits = {
            "cpu": budget, "nofile": self.limits.nofile, "fsize": self.limits.fsize_mb * mb, "core": 0,
            "as" if self.device == "cpu" else "data": self.limits.memory_mb * mb,
        }
        if self.identity.uid is not None:
            limits["nproc"] = isolation.task_count_of_uid(self.identity.uid) + self.limits.nproc
        else:
            limits["nproc"] = isolation.task_count_of_uid(os.getuid()) + self.limits.nproc
        return limits

    def _needs_torchvision(self) -> bool:
        """True when a file of the hybrid package, or the reference version of one, uses torchvision.

        torchvision costs ~1.4 s of start-up, so groups whose code never uses it skip it. When
        used, it must be imported before the privilege drop (its imports reach standard-library
        files the sandbox user may not read), see :func:`uses_torchvision`.
        """
        paths = [self.reference_dir / f"{m}.py" for m in (*self.group.student_modules, *self.group.reference_modules)]
        paths += [self.submission_files[m] for m in self.group.student_modules if m in self.submission_files]
        return any(uses_torchvision(Path(p).read_bytes()) for p in paths if Path(p).is_file())

    def _build_package(self, pkg: Path) -> None:
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text('"""Hybrid package built by the grader: student modules + reference dependencies."""\n')
        for module in self.group.reference_modules:
            shutil.copyfile(self.reference_dir / f"{module}.py", pkg / f"{module}.py")
        for module in self.group.student_modules:
            shutil.copyfile(self.submission_files[module], pkg / f"{module}.py")
        for path in (pkg.parent, pkg, *pkg.iterdir()):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)

    def _drain(self, stream: Any, name: str) -> None:
        while True:
            chunk = stream.read1(1 << 16)
            if not chunk:
                return
            with self._log_lock:
                self.log.add(name, chunk)

    def _settle_output(self) -> None:
        """Wait (briefly) until the drain threads have taken what the live child wrote so far.

        The child flushes its streams before each answer, so at a group switch everything
        the previous group printed is already in the pipes; once they are empty and no add
        is in progress, the log can be split.
        """
        proc = self._proc
        if proc is None or proc.stdout is None or proc.stderr is None:
            return
        streams = [proc.stdout, proc.stderr]
        deadline = time.monotonic() + OUTPUT_SETTLE_S
        while select.select(streams, [], [], 0)[0] and time.monotonic() < deadline:
            time.sleep(0.005)
        with self._log_lock:
            pass

    def _kill(self, reason: str) -> None:
        """End the child and everything it started; remember why."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        self._dead_reason = reason
        self.events.append(reason)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if self.identity.uid is not None:
            isolation.kill_uid(self.identity)
        else:
            isolation.kill_descendants(proc.pid, self._baseline_children)
        for thread in self._threads:
            thread.join(timeout=5)
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        self.facts["returncode"] = proc.returncode

    def _crash_error(self) -> StudentError:
        proc = self._proc
        code: int | None = None
        if proc is not None:
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:  # alive, but it closed its answer pipe
                self._kill("closed its answer pipe")
                return StudentError("crash", "the process running your code closed the grader's pipe during this check")
        if code is not None and self.confinement.bubblewrap and code > BWRAP_SIGNAL_BASE:
            code = BWRAP_SIGNAL_BASE - code  # bwrap exits with 128 + N when its child died of signal N
        if code == -signal.SIGKILL:
            how = "was killed by signal SIGKILL (often: out of memory)"
        elif code is not None and code < 0:
            how = f"was killed by signal {signal.Signals(-code).name}"
            if -code == signal.SIGXCPU:
                how += " (CPU time limit)"
        else:
            how = f"exited with status {code} (os._exit or a crash)"
        self._kill(f"the process running your code {how}")
        return StudentError("crash", f"the process running your code {how} during this check")

    # ------------------------------------------------------------------ answers
    def _parse(self, header: dict[str, Any], body: bytes) -> ProbeResult:
        if header.get("ok") is True:
            try:
                arrays = wire.decode_arrays(body, self.limits.max_elements)
            except wire.WireError as exc:
                raise StudentError("bad_output", f"your function returned something that is not a plain tensor ({_short(str(exc))})") from None
            devices = header.get("devices") if isinstance(header.get("devices"), dict) else {}
            meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
            tensors = {name: torch.from_numpy(np.array(arr, copy=True)) for name, arr in arrays.items()}
            return ProbeResult(tensors, {str(k): str(v)[:40] for k, v in devices.items()}, meta)
        kind = header.get("kind")
        if kind == "infrastructure":
            raise SandboxInfraError(f"probe failed in group {self.group.id!r}: {_short(str(header.get('message')), 500)}")
        if kind not in STUDENT_ERROR_KINDS:
            kind = "exception"
        exc_type = header.get("type") if isinstance(header.get("type"), str) else None
        category = header.get("category") if header.get("category") in ERROR_CATEGORIES else None
        raise StudentError(str(kind), self._student_message(header), exc_type, category,
                           clean_details(header.get("details")), _short(str(header.get("message", "")), 500))

    def _student_message(self, header: dict[str, Any]) -> str:
        exc_type = _short(str(header.get("type", "Exception")), 60)
        message = self._scrub(str(header.get("message", "")))
        fixed = category_message(header.get("category"), withheld=bool(self.group.reference_modules))
        if fixed is not None:  # the grader's own text for the child's error category
            exc_type, message = fixed, ""
        elif self.group.reference_modules and header.get("kind") in ("exception", "import", None):
            # This child held copies of reference modules, so student code could
            # smuggle them out through exception text (scrubbing only catches
            # verbatim lines). Show a built-in type name and the student's own
            # frames, never free text chosen by the code that ran.
            if exc_type == "ProbeError":  # the grader's own probe refused the module; its text stays inside
                exc_type = "your module does not match the specification"
                message = "check attribute names, parameter shapes and return values against the docstring"
            else:
                if exc_type not in _BUILTIN_EXCEPTION_NAMES:
                    exc_type = "an exception raised by your code"
                message = "message withheld in this check (it runs beside instructor code); reproduce it in your notebook"
        text = f"{exc_type}: {message}" if message else exc_type
        if header.get("kind") == "import":
            text = f"importing your package failed: {text}"
        if header.get("kind") == "memory":
            text = f"ran out of memory (limit {self.limits.memory_mb} MB): {text}"
        frames = header.get("frames") if isinstance(header.get("frames"), list) else []
        student = set(self.group.student_modules)
        places = []
        for frame in frames:
            if isinstance(frame, list) and len(frame) == 3 and str(frame[0]).removesuffix(".py") in student:
                places.append(f"{_short(str(frame[0]), 40)}:{int(frame[1]) if str(frame[1]).isdigit() else '?'} in {_short(str(frame[2]), 40)}")
        if places:
            text += f" (at {', '.join(places[-3:])})"
        return text

    def _scrub(self, message: str) -> str:
        """Drop lines of the reference dependency sources from ``message`` and truncate it."""
        for line in self._scrub_lines:
            if line in message:
                message = message.replace(line, "[reference code removed]")
        message = " ".join(message.split())
        return _short(message, MESSAGE_CHARS)


def default_probe_files() -> list[Path]:
    """``autograder/sandboxed/probes.py`` and ``autograder/sandboxed/probes_*.py`` (those that exist)."""
    files = sorted(SANDBOXED_DIR.glob("probes_*.py"))
    main = SANDBOXED_DIR / "probes.py"
    return ([main] if main.exists() else []) + files


def uses_torchvision(source: bytes) -> bool:
    """Whether Python ``source`` imports torchvision or names it as a module path in a string.

    Counts ``import torchvision...``, ``from torchvision... import ...`` anywhere (function
    bodies included) and string constants such as ``"torchvision.ops"`` (for
    ``importlib.import_module``); prose that merely mentions torchvision does not count.
    Source that does not parse counts as not using it (its import fails in the child anyway).
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(_is_torchvision(alias.name) for alias in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _is_torchvision(node.module or ""):
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _is_torchvision(node.value):
            return True
    return False


def _is_torchvision(name: str) -> bool:
    return re.fullmatch(r"torchvision(\.\w+)*", name) is not None


def _preloads(probe_file: Path, kind: str) -> bool:
    """Whether the child imports ``probe_file`` at start-up for a group of rubric ``kind``.

    ``probes_<kind>.py`` of a non-unit kind (``probes_overfit.py``: the training runtime, ~0.4 s
    of imports) is preloaded only for groups of that kind; others find it on first use.
    """
    topic = probe_file.stem.removeprefix("probes_")
    return topic == probe_file.stem or topic not in NON_UNIT_KINDS or topic == kind


def _build_harness(harness: Path, probe_files: Sequence[Path]) -> Path:
    """Copy the child script, the wire module, the probes and ``rcnn_kit`` into ``harness``."""
    import rcnn_kit

    package = harness / HARNESS_PACKAGE
    package.mkdir(parents=True)
    for name in HARNESS_CORE_FILES:
        shutil.copyfile(SANDBOXED_DIR / name, package / name)
    for probe in probe_files:
        if not re.fullmatch(r"probes(_\w+)?\.py", probe.name):
            raise ValueError(f"probe_files: {probe} is not named probes.py or probes_<topic>.py")
        shutil.copyfile(probe, package / probe.name)
    shutil.copytree(Path(rcnn_kit.__file__).parent, harness / "rcnn_kit", ignore=shutil.ignore_patterns("__pycache__"))
    for dirpath, _dirnames, filenames in os.walk(harness):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    return harness


def _check_reachable(folder: Path) -> None:
    """Raise ValueError unless other users may pass through ``folder`` and all its parents."""
    for path in (folder.resolve(), *folder.resolve().parents):
        if not os.stat(path).st_mode & 0o001:
            raise ValueError(f"scratch_root: the sandbox user cannot enter {path} (mode {oct(os.stat(path).st_mode & 0o777)}); "
                             f"use a folder whose parents all allow others to pass through (o+x), e.g. under {tempfile.gettempdir()}")


def _reference_lines(reference_dir: Path, modules: Sequence[str]) -> list[str]:
    lines: set[str] = set()
    for module in modules:
        path = reference_dir / f"{module}.py"
        if path.exists():
            lines |= {ln.strip() for ln in path.read_text().splitlines() if len(ln.strip()) >= SCRUB_MIN_CHARS}
    return sorted(lines, key=len, reverse=True)


def _to_numpy(name: str, value: torch.Tensor) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"inputs[{name!r}]: expected a torch.Tensor, got {type(value).__name__}")
    return value.detach().cpu().numpy()


#: Exception type names that may be shown verbatim from a child holding reference code.
_BUILTIN_EXCEPTION_NAMES = frozenset(
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
) | {"torch.OutOfMemoryError", "NotImplementedError"}


def _short(text: str, limit: int = MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
