"""Operating-system side of the sandbox: how the child is confined, who it runs as, ending it.

Confinement (:func:`choose_confinement`): **bubblewrap** whenever ``bwrap`` works on the
machine (:mod:`autograder.bubblewrap`: the child sees only the Python runtime and its own
folders, in its own PID and network namespaces); otherwise the **fallback** below, which
the instructor log names with its reason (``--require-isolation`` refuses to grade
instead). In the fallback the child can read every world-readable file of the machine.
Permissions of the course folders are never changed.

Identity, in both confinements:

- **root** (Gradescope, CI): the child drops to a dedicated unprivileged uid. Each grader
  process holds one *slot* (an exclusive ``flock``), so graders running in parallel get
  different uids: slot 0 is the ``rcnn-sandbox`` user (uid 3700000 when it does not exist; never a shared account such as ``nobody``),
  slot ``k > 0`` is the numeric uid ``SLOT_UID_BASE + k`` (no passwd entry needed).
  Ending a check kills every process of that uid (``kill(-1)`` from a helper that took
  the uid), which catches processes that called ``setsid`` or double-forked (with
  bubblewrap the PID namespace already ended them: this is a second line).
- **unprivileged** (an instructor's laptop): no uid switch. The grader becomes a child
  subreaper, so orphans re-parent to it, and ending a check kills every descendant of the
  child plus every new orphan. Student code runs as the instructor here: use it only for
  trusted submissions.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import os
import pwd
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from autograder import bubblewrap

#: Name of the sandbox user created by ``useradd --system --no-create-home rcnn-sandbox``.
SANDBOX_USER = "rcnn-sandbox"
#: Numeric uid/gid base of the extra slots used by parallel graders.
SLOT_UID_BASE = 3_700_000
#: Number of slots (parallel root graders on one machine).
MAX_SLOTS = 64
#: Folder of the slot lock files (root only).
SLOT_LOCK_DIR = Path("/run/lock/rcnn-kit-sandbox") if Path("/run/lock").is_dir() else Path("/tmp/rcnn-kit-sandbox-locks")
#: prctl option that makes orphaned descendants re-parent to this process.
_PR_SET_CHILD_SUBREAPER = 36
#: How long the kill loops try before giving up (seconds).
KILL_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Identity:
    """Who the child runs as: ``uid``/``gid`` None means "as the grader" (unprivileged mode)."""

    uid: int | None
    gid: int | None
    lock: IO[bytes] | None = None

    @property
    def privileged(self) -> bool:
        return self.uid is not None


#: Confinement modes, strongest first.
CONFINEMENTS = ("bubblewrap", "fallback")


class IsolationUnavailable(RuntimeError):
    """``--require-isolation`` was given and bubblewrap cannot confine children here."""


@dataclass(frozen=True)
class Confinement:
    """How children are confined.

    Attributes:
        mode: ``"bubblewrap"`` or ``"fallback"`` (see the module docstring).
        reason: why bubblewrap is not used (empty in bubblewrap mode).
        secrets: paths that must stay hidden from children even inside mounted folders.
    """

    mode: str
    reason: str = ""
    secrets: tuple[Path, ...] = ()

    @property
    def bubblewrap(self) -> bool:
        return self.mode == "bubblewrap"

    def describe(self) -> str:
        """One line for the instructor log."""
        if self.bubblewrap:
            return "isolation: bubblewrap (own mount, PID and network namespaces; only the Python runtime and its own folders are visible)"
        return (f"isolation: FALLBACK ({self.reason}): rlimits, uid switch and network namespace when root, but the "
                "child can read every world-readable file of this machine; install bubblewrap or grade with --require-isolation")


def choose_confinement(identity: "Identity", *, require: bool = False, secrets: tuple[Path, ...] = ()) -> Confinement:
    """Bubblewrap when it works here, else the fallback (or :class:`IsolationUnavailable` when ``require``)."""
    ok, why = bubblewrap.availability(identity.privileged)
    if ok:
        return Confinement("bubblewrap", "", tuple(secrets))
    if require:
        raise IsolationUnavailable(f"--require-isolation: bubblewrap cannot confine children on this machine: {why}")
    return Confinement("fallback", why, tuple(secrets))


_identity: Identity | None = None


def sandbox_identity(unprivileged: bool = False) -> Identity:
    """The identity for this grader process (acquired once, held until the process ends).

    Args:
        unprivileged: force the no-uid-switch mode even when running as root (tests, TAs).
    """
    global _identity
    if unprivileged or os.geteuid() != 0:
        return Identity(None, None)
    if _identity is None:
        _identity = _acquire_slot()
        if _identity.lock is not None:  # release the slot at exit (the kernel would too, with a ResourceWarning)
            atexit.register(_identity.lock.close)
    return _identity


def _acquire_slot() -> Identity:
    SLOT_LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    for slot in range(MAX_SLOTS):
        handle = open(SLOT_LOCK_DIR / f"slot-{slot}.lock", "wb")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        if slot == 0:
            try:
                entry = pwd.getpwnam(SANDBOX_USER)
                return Identity(entry.pw_uid, entry.pw_gid, handle)
            except KeyError:
                # No dedicated user: take an unused numeric uid rather than a shared account
                # such as "nobody", since ending a group kills every process of the uid.
                pass
        return Identity(SLOT_UID_BASE + slot, SLOT_UID_BASE + slot, handle)
    raise RuntimeError(f"all {MAX_SLOTS} sandbox slots in {SLOT_LOCK_DIR} are taken")


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process; True when the kernel agreed."""
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _proc_status(pid: int) -> dict[str, str]:
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    return fields


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def processes_of_uid(uid: int) -> list[int]:
    """Pids of the live (non-zombie) processes whose real uid is ``uid``."""
    found = []
    for pid in _all_pids():
        status = _proc_status(pid)
        if status and int(status["Uid"].split()[0]) == uid and not status["State"].startswith("Z"):
            found.append(pid)
    return found


def task_count_of_uid(uid: int) -> int:
    """Threads (tasks) owned by ``uid``: what RLIMIT_NPROC counts."""
    total = 0
    for pid in _all_pids():
        status = _proc_status(pid)
        if status and int(status["Uid"].split()[0]) == uid:
            total += int(status.get("Threads", "1"))
    return total


def children_of(pid: int) -> set[int]:
    """Pids whose parent is ``pid`` (zombies included)."""
    return {p for p in _all_pids() if _proc_status(p).get("PPid") == str(pid)}


def descendants_of(pid: int) -> set[int]:
    """Every process below ``pid`` in the process tree."""
    parents: dict[int, int] = {}
    for p in _all_pids():
        ppid = _proc_status(p).get("PPid")
        if ppid is not None:
            parents[p] = int(ppid)
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier and p not in found}
        found |= frontier
    return found


def kill_uid(identity: Identity) -> None:
    """Kill every process of the sandbox uid, then reap those that were our children.

    Raises:
        RuntimeError: processes of the uid survive :data:`KILL_TIMEOUT_S` seconds of killing.
    """
    if identity.uid is None:
        raise ValueError("identity: kill_uid needs a privileged identity")
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while True:
        _reap_zombie_children(uid=identity.uid)
        alive = processes_of_uid(identity.uid)
        if not alive:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {alive} of sandbox uid {identity.uid} survive SIGKILL")
        pid = os.fork()
        if pid == 0:  # helper: become the sandbox user, kill everything it owns
            try:
                os.setgroups([])
                os.setgid(identity.gid if identity.gid is not None else identity.uid)
                os.setuid(identity.uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.01)


def kill_descendants(root_pid: int, baseline_children: set[int]) -> None:
    """Unprivileged mode: kill ``root_pid``'s tree and every orphan that re-parented to us.

    Args:
        root_pid: the sandbox child.
        baseline_children: children of this process that existed before the sandbox child
            started (they are not the sandbox's and are left alone).
    """
    me = os.getpid()
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while True:
        targets = descendants_of(root_pid) | {root_pid}
        for orphan in children_of(me) - baseline_children:
            targets |= {orphan} | descendants_of(orphan)
        live = [p for p in targets if _proc_status(p) and not _proc_status(p)["State"].startswith("Z")]
        for pid in live:  # stop first so nothing forks while we kill
            _signal(pid, signal.SIGSTOP)
        for pid in live:
            _signal(pid, signal.SIGKILL)
        _reap_zombie_children(exclude=baseline_children)
        if not live:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"sandbox processes {live} survive SIGKILL")
        time.sleep(0.01)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap_zombie_children(exclude: set[int] | None = None, uid: int | None = None) -> None:
    """Reap our zombie children, except ``exclude``; with ``uid``, only those of that uid."""
    for pid in children_of(os.getpid()) - (exclude or set()):
        status = _proc_status(pid)
        if not status.get("State", "").startswith("Z"):
            continue
        if uid is None or int(status["Uid"].split()[0]) == uid:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # already reaped elsewhere
                continue
