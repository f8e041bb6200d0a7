"""The sandboxed child's view of the machine, built with bubblewrap (``bwrap``).

bubblewrap is the unprivileged sandboxing engine Flatpak uses (Debian/Ubuntu package
``bubblewrap``). Each child starts as ``bwrap [mounts] python -I -B -c LAUNCH ...`` in:

- a new mount namespace whose root is an empty tmpfs holding only
  - the system's program and library folders (``/usr`` and its merged-usr links) and the
    dynamic loader's cache from ``/etc``, read-only;
  - the Python runtime the grader runs (its ``sys.prefix`` / ``sys.base_prefix``, e.g. a
    virtualenv and the interpreter it was made from), read-only, with the kit's own
    packages in it (an installed ``autograder``, ``rcnn_kit`` ...) hidden under empty folders;
  - ``/sandbox/harness`` (the probes and a copy of ``rcnn_kit``) and ``/sandbox/pkg`` (the
    student's files plus the reference modules its rubric group may hold), read-only;
    ``/sandbox/work``, the only writable folder besides a private ``/tmp``;
  - a fresh ``/proc`` and a minimal ``/dev`` (plus the NVIDIA device files when grading on
    a GPU);
  nothing else: no ``/home``, ``/root``, host ``/tmp``, ``/run``, the course folder, the
  hidden checks or other students' files. Any folder the grader must keep secret that lies
  inside a mounted runtime folder is covered by an empty tmpfs as well.
- new PID, network, IPC and UTS namespaces (``--unshare-pid --unshare-net ...``) and
  ``--die-with-parent``: when the grader ends the sandbox, the kernel ends every process
  the student started, however it forked.

Root graders keep the unprivileged uid switch inside (the child drops to the slot's uid
itself, so bwrap lets it keep ``CAP_SETUID``/``CAP_SETGID`` until then); other graders get a
user namespace (``--unshare-user``).
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: Where the child's own folders appear inside the sandbox.
SANDBOX_ROOT = PurePosixPath("/sandbox")
HARNESS_DIR = SANDBOX_ROOT / "harness"
PACKAGE_ROOT = SANDBOX_ROOT / "pkg"
WORK_DIR = SANDBOX_ROOT / "work"
CONFIG_FILE = SANDBOX_ROOT / "config.json"
#: System folders mounted read-only (or re-created as the same symbolic link, on merged-usr systems).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Files of /etc the dynamic loader and libc read.
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
#: Top-level names of the kit that must not be visible inside a mounted runtime (an installed copy).
KIT_NAMES = ("autograder", "rcnn_kit", "release_tool", "data_scripts", "solutions", "assignments", "tests")
#: Device files a CUDA child needs (glob patterns).
NVIDIA_DEVICES = ("/dev/nvidia*", "/dev/dri")
#: Seconds the availability probe may take.
PROBE_TIMEOUT_S = 30.0
#: Environment variable that forces the fallback (tests of that mode; machines where bwrap misbehaves).
DISABLE_ENV = "RCNN_KIT_NO_BWRAP"


@dataclass(frozen=True)
class HostFolders:
    """The host side of the child's folders (see the module docstring)."""

    harness: Path
    package_root: Path
    work: Path
    config: Path


def executable() -> str | None:
    """Path of ``bwrap``, or None when it is not installed."""
    return shutil.which("bwrap")


def runtime_dirs() -> list[Path]:
    """Folders of the Python runtime the child needs, outside :data:`SYSTEM_DIRS`.

    The interpreter prefixes and the real location of ``sys.executable`` (a virtualenv's
    ``python`` is a link into the base installation), minus those inside another one.
    """
    candidates = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)}
    candidates.add(Path(os.path.realpath(sys.executable)).parent.parent)
    candidates.add(Path(sys.executable).parent.parent.absolute())
    return _outermost(p for p in candidates if p.is_dir() and not _under_system(p))


def library_path_dirs() -> list[Path]:
    """Existing folders of ``$LD_LIBRARY_PATH`` outside the system folders (CUDA drivers live there on some images)."""
    found = [Path(p).resolve() for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    return _outermost(p for p in found if p.is_dir() and not _under_system(p))


def site_dirs() -> list[Path]:
    """site-packages folders of the runtime (where an installed copy of the kit would sit)."""
    dirs = [Path(p) for p in site.getsitepackages()]
    user = site.getusersitepackages()
    if isinstance(user, str):
        dirs.append(Path(user))
    return [d.resolve() for d in dirs if d.is_dir()]


def build_argv(
    folders: HostFolders,
    command: Sequence[str],
    *,
    privileged: bool,
    cuda: bool,
    secrets: Iterable[Path] = (),
) -> list[str]:
    """The ``bwrap`` command line that runs ``command`` (paths as seen inside) in the sandbox.

    Args:
        folders: the child's folders on the host.
        command: the program and its arguments, e.g. ``[sys.executable, "-I", ...]``.
        privileged: the grader is root (keep the capabilities the child needs to drop to its
            uid; otherwise use a user namespace).
        cuda: also expose the NVIDIA device files, ``/sys`` and ``$LD_LIBRARY_PATH``.
        secrets: folders and files that must stay hidden even if they lie inside a mounted
            runtime folder (reference, hidden checks, results, the course checkout).

    Raises:
        FileNotFoundError: bwrap is not installed.
    """
    bwrap = executable()
    if bwrap is None:
        raise FileNotFoundError("bwrap is not installed (Debian/Ubuntu package 'bubblewrap')")
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
    if privileged:
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user"]
    made: set[PurePosixPath] = {PurePosixPath("/")}
    for name in SYSTEM_DIRS:
        path = Path(name)
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            argv += ["--ro-bind", name, name]
        made.add(PurePosixPath(name))
    for name in ETC_FILES:
        if os.path.exists(name):
            argv += _parents(PurePosixPath(name), made) + ["--ro-bind", name, name]
    # The private /tmp first: a runtime that lives under the host's /tmp (a TA's virtualenv in
    # /tmp/course/.venv) is then bound on top of it, not hidden by it.
    argv += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    made.add(PurePosixPath("/tmp"))
    mounted = runtime_dirs() + (library_path_dirs() if cuda else [])
    for path in _outermost(mounted):
        argv += _parents(PurePosixPath(path), made) + ["--ro-bind", str(path), str(path)]
    if cuda:
        argv += ["--ro-bind", "/sys", "/sys"]
        for pattern in NVIDIA_DEVICES:
            for device in sorted(glob.glob(pattern)):
                argv += ["--dev-bind", device, device]
    argv += _hide(mounted, secrets)
    argv += _parents(SANDBOX_ROOT / "x", made)
    argv += ["--ro-bind", str(folders.harness), str(HARNESS_DIR), "--ro-bind", str(folders.package_root), str(PACKAGE_ROOT),
             "--bind", str(folders.work), str(WORK_DIR), "--ro-bind", str(folders.config), str(CONFIG_FILE),
             "--chdir", str(WORK_DIR), "--", *command]
    return argv


def _hide(mounted: Sequence[Path], secrets: Iterable[Path]) -> list[str]:
    """Cover secret paths and installed copies of the kit that lie inside the mounted folders."""
    targets = [Path(s).resolve() for s in secrets if os.path.lexists(s)]
    for folder in site_dirs():
        targets += [folder / name for name in KIT_NAMES if (folder / name).is_dir()]
    argv: list[str] = []
    for target in sorted(set(targets)):
        if not any(m in target.parents for m in mounted) and not _under_system(target):
            continue  # outside every mounted folder (or containing one): not visible inside
        if target in mounted:
            raise ValueError(f"secrets: {target} is the Python runtime mounted into the sandbox; "
                             "install the grader's Python outside the folders it must hide")
        argv += ["--tmpfs", str(target)] if target.is_dir() else ["--ro-bind", "/dev/null", str(target)]
    return argv


def _parents(path: PurePosixPath, made: set[PurePosixPath]) -> list[str]:
    """``--dir`` entries (mode 0755) for the missing ancestors of ``path`` (bwrap would make them 0700)."""
    argv: list[str] = []
    for parent in reversed(path.parents):
        if parent not in made and not _under_system(Path(parent)):
            argv += ["--perms", "0755", "--dir", str(parent)]
            made.add(parent)
    return argv


def _under_system(path: Path) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in SYSTEM_DIRS)


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The paths that are not inside another one of them, sorted."""
    unique = sorted(set(paths))
    return [p for p in unique if not any(q != p and q in p.parents for q in unique)]


@functools.lru_cache(maxsize=None)
def availability(privileged: bool) -> tuple[bool, str]:
    """(whether bubblewrap confines a child here, why not): runs a trivial confined Python once.

    False when bwrap is missing, :data:`DISABLE_ENV` is set, or the kernel refuses the
    namespaces (e.g. unprivileged user namespaces switched off, or a container without
    ``CAP_SYS_ADMIN``).
    """
    if os.environ.get(DISABLE_ENV):
        return False, f"disabled by ${DISABLE_ENV}"
    if executable() is None:
        return False, "bwrap is not installed (apt-get install bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="rcnn-bwrap-probe-") as tmp:
        root = Path(tmp)
        folders = HostFolders(root / "h", root / "p", root / "w", root / "config.json")
        for folder in (folders.harness, folders.package_root, folders.work):
            folder.mkdir()
        folders.config.write_text("{}")
        argv = build_argv(folders, [sys.executable, "-I", "-S", "-c", "import os; os.listdir('/sandbox/harness')"],
                          privileged=privileged, cuda=False)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"bwrap did not run: {exc}"
    if proc.returncode != 0:
        return False, f"bwrap failed (exit {proc.returncode}): {proc.stderr.strip()[:300]}"
    return True, ""
