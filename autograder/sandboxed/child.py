"""The sandboxed child: confines itself, then runs probes on the student's package.

This package (:mod:`autograder.sandboxed`) is *copied* into the child's harness folder
as ``rcnn_sandboxed/``, beside a copy of ``rcnn_kit``, and started by
:mod:`autograder.sandbox` with :data:`LAUNCH` (``python -I -B -c LAUNCH HARNESS CONFIG``).
It never imports the grader side. Order matters:

1. while still trusted (possibly root): set the parent-death signal, leave the network
   namespace (root only), import torch, numpy, the probes and common standard-library
   modules (the interpreter's own files may not be readable by the sandbox user);
2. set resource limits, drop to the sandbox uid/gid (when the grader is root) and check
   that the drop cannot be undone;
3. say hello, then answer requests: each request names a probe and carries input arrays;
   the student package is imported on the first request. Answers carry only numeric
   arrays (``.npz``) and JSON metadata, or a structured error.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from . import wire
from .errors import error_category

#: Python source run by ``python -I -B -c``: put the harness folder on the path and start.
LAUNCH = "import sys; sys.path.insert(0, sys.argv[1]); from rcnn_sandboxed.child import run; run(sys.argv[2])"

#: prctl options (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
#: unshare flag for a fresh, empty network namespace (linux/sched.h).
_CLONE_NEWNET = 0x40000000
#: Modules imported before the privilege drop, so student code finds them even when the
#: interpreter's own library folder is unreadable by the sandbox user.
PREIMPORT = (
    "abc", "bisect", "collections", "contextlib", "copy", "dataclasses", "enum", "functools",
    "heapq", "inspect", "itertools", "json", "math", "numbers", "operator", "random", "re",
    "statistics", "string", "textwrap", "time", "types", "typing", "warnings", "weakref",
    "encodings.ascii", "encodings.cp437", "encodings.latin_1", "encodings.utf_8", "io",
    "importlib.machinery", "importlib.util", "linecache", "pathlib", "select", "struct",
    "tokenize", "traceback", "zipfile",
    "numpy", "torch", "torch.nn", "torch.nn.functional", "torch.nn.init",
)
# torchvision (~1.4 s) and the probe modules of other rubric kinds are added per group by
# the grader (config "preimport", "probe_modules"), only when the group's code uses them.
#: Largest total number of input elements the child accepts in one request.
MAX_INPUT_ELEMENTS = 1 << 30
#: Exit code when the confinement itself fails (the parent reports an infrastructure error).
EXIT_CONFINEMENT_FAILED = 70


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _set_pdeathsig() -> None:
    """Die with SIGKILL when the grader dies (reset by the kernel on a uid change)."""
    _libc().prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _isolate_network() -> bool:
    """Enter an empty network namespace; True when it worked (needs root)."""
    return _libc().unshare(_CLONE_NEWNET) == 0


def _only_loopback() -> bool:
    """True when this network namespace has no interface but loopback (bubblewrap's --unshare-net)."""
    import socket

    try:
        names = [name for _, name in socket.if_nameindex()]
    except OSError:
        return False
    return set(names) <= {"lo"}


def _set_limits(limits: dict[str, int]) -> None:
    names = {
        "as": resource.RLIMIT_AS, "data": resource.RLIMIT_DATA, "cpu": resource.RLIMIT_CPU,
        "nproc": resource.RLIMIT_NPROC, "nofile": resource.RLIMIT_NOFILE,
        "fsize": resource.RLIMIT_FSIZE, "core": resource.RLIMIT_CORE,
    }
    for key, value in limits.items():
        resource.setrlimit(names[key], (value, value))


def _drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:
        raise RuntimeError("privilege drop did not take effect")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise RuntimeError("privilege drop is reversible")
    # A uid change makes the process non-dumpable (its /proc files become root's); nothing
    # secret is in memory, and torch reads /proc/self, so make it normal again.
    _libc().prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)


def _to_array(name: str, value: Any, devices: dict[str, str]) -> Any:
    """A probe output as a plain numpy array (tensor subclasses are stripped first)."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        with torch._C.DisableTorchFunctionSubclass():
            tensor = torch.Tensor.as_subclass(value, torch.Tensor)
            devices[name] = str(tensor.device)
            arr = tensor.detach().cpu().resolve_conj().resolve_neg().numpy()
        return np.array(arr, copy=True)
    if type(value) in (bool, int, float):  # exact types: no student subclasses
        return np.asarray(value)
    raise wire.WireError(f"output {name!r} is a {type(value).__name__}, not a tensor or number")


class Harness:
    """Request loop of the child (runs after confinement)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.req_fd = int(config["req_fd"])
        self.resp_fd = int(config["resp_fd"])
        self.pkg_dir = Path(config["package_dir"])
        self.package: Any = None
        self.import_error: dict[str, Any] | None = None
        self.probe_modules = [importlib.import_module(m) for m in config["probe_modules"]]
        self.lazy_probe_modules = list(config.get("lazy_probe_modules", ()))

    def serve(self) -> None:
        while True:
            try:
                header, payload = wire.recv_frame(self.req_fd)
            except wire.WireClosed:
                return
            if header.get("op") == "exit":
                return
            response, arrays = self.handle(header, payload)
            _flush_student_output()  # before the answer: the grader splits the log per group
            try:
                body = wire.encode_arrays(arrays)
            except wire.WireError as exc:
                response, body = self._error("bad_output", exc), b""
            wire.send_frame(self.resp_fd, response, body)

    def handle(self, header: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        import torch

        if header.get("op") == "ping":
            return {"ok": True}, {}
        if self.package is None and self.import_error is None:
            self._import_package()
        if self.import_error is not None:
            return self.import_error, {}
        try:
            probe = self._find_probe(str(header.get("probe")))
        except Exception as exc:  # a lazily imported probe module failed to import
            return {"ok": False, "kind": "infrastructure", "type": type(exc).__name__,
                    "message": f"importing a probe module failed: {exc}", "frames": []}, {}
        if probe is None:
            return {"ok": False, "kind": "infrastructure", "type": "LookupError",
                    "message": f"no probe named {header.get('probe')!r}", "frames": []}, {}
        inputs = {k: torch.from_numpy(v) for k, v in wire.decode_arrays(payload, MAX_INPUT_ELEMENTS).items()}
        try:
            result = probe(self.package, inputs, **dict(header.get("params") or {}))
            outputs, meta = result if isinstance(result, tuple) else (result, {})
            if not isinstance(outputs, dict):
                raise wire.WireError(f"probe returned a {type(outputs).__name__}, not a dict")
            devices: dict[str, str] = {}
            arrays = {str(k): _to_array(str(k), v, devices) for k, v in outputs.items()}
            try:
                json.dumps(meta, allow_nan=False)  # must travel in the JSON header
            except (TypeError, ValueError) as exc:
                raise wire.WireError(f"probe metadata is not JSON: {exc}") from None
        except wire.WireError as exc:
            return self._error("bad_output", exc), {}
        except BaseException as exc:  # student code may raise anything, SystemExit included
            return self._error(_classify(exc), exc), {}
        return {"ok": True, "meta": meta, "devices": devices}, arrays

    def _import_package(self) -> None:
        from rcnn_kit.impl import import_faster_rcnn

        try:
            pkg = import_faster_rcnn(self.pkg_dir, name="faster_rcnn")
            for module in self.config["modules"]:
                importlib.import_module(f"faster_rcnn.{module}")
            self.package = pkg
        except BaseException as exc:  # a syntax error, sys.exit at import, ...
            self.import_error = self._error("import", exc)

    def _find_probe(self, name: str) -> Any:
        if not name.isidentifier() or name.startswith("_"):
            return None
        for module in self.probe_modules:
            fn = getattr(module, name, None)
            if callable(fn):
                return fn
        while self.lazy_probe_modules:  # not preloaded for this group: import on first miss
            module = importlib.import_module(self.lazy_probe_modules.pop(0))
            self.probe_modules.append(module)
            fn = getattr(module, name, None)
            if callable(fn):
                return fn
        return None

    def _error(self, kind: str, exc: BaseException) -> dict[str, Any]:
        frames = []
        pkg = str(self.pkg_dir)
        for entry in traceback.extract_tb(exc.__traceback__):
            if entry.filename.startswith(pkg):
                frames.append([Path(entry.filename).name, entry.lineno or 0, entry.name])
        if isinstance(exc, SyntaxError) and exc.filename and str(exc.filename).startswith(pkg):
            frames.append([Path(exc.filename).name, exc.lineno or 0, "<module>"])
        try:
            message = str(exc)
        except BaseException:  # a student exception whose __str__ raises
            message = "<unprintable exception>"
        return {"ok": False, "kind": kind, "type": type(exc).__name__[:100],
                "message": message[:2000], "frames": frames[-10:], **error_category(exc)}


def _flush_student_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # student code may have replaced or closed the stream
            pass


def _classify(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "memory"
    if isinstance(exc, RuntimeError) and "allocate" in str(exc):
        return "memory"
    return "exception"


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    _set_pdeathsig()
    if config["parent_pid"] is not None and os.getppid() != int(config["parent_pid"]):
        return EXIT_CONFINEMENT_FAILED  # the grader is already gone
    network_isolated = _isolate_network() if config["isolate_network"] else _only_loopback()
    for name in (*PREIMPORT, *config.get("preimport", ()), *config["probe_modules"], "rcnn_kit.impl"):
        importlib.import_module(name)
    import torch

    torch.set_num_threads(int(config["threads"]))
    harness = Harness(config)
    _set_limits({k: int(v) for k, v in config["limits"].items()})
    if config["uid"] is not None:
        _drop_privileges(int(config["uid"]), int(config["gid"]))
        _set_pdeathsig()
    os.chdir(config["work_dir"])
    hello = {"ok": True, "uid": os.getuid(), "network_isolated": network_isolated}
    wire.send_frame(harness.resp_fd, hello)
    harness.serve()
    return 0


def run(config_path: str) -> None:
    """Entry point (see :data:`LAUNCH`): serve until the grader closes the pipe, then exit."""
    try:
        code = main(["rcnn_child", config_path])
    except Exception:
        traceback.print_exc()
        code = EXIT_CONFINEMENT_FAILED
    sys.stdout.flush()
    os._exit(code)
