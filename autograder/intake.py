"""Find the student's six modules in a submitted zip or folder, safely.

Accepted layouts (inside a zip or a folder): ``faster_rcnn/iou.py`` ..., the six files
flat (``iou.py`` ...), either of them nested one folder down (``hw5/faster_rcnn/iou.py``,
``hw5/iou.py``), or a folder holding a single such zip (Gradescope keeps an uploaded zip
as is when it cannot unpack it).

Nothing is extracted wholesale: only the module files are read, each with a size bound
that holds whatever the archive claims. Absolute names, ``..`` components, symlinks,
device files, encrypted members and archives whose declared size or entry count is too
large are refused with a problem message; the grader still writes a results.json.
"""

from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rcnn_kit.course import PACKAGE_NAME, STUDENT_MODULES

#: Largest module file accepted (bytes); the reference modules are ~10-30 KB.
MAX_FILE_BYTES = 1 << 20
#: Largest total declared uncompressed size of a submitted zip.
MAX_ZIP_TOTAL_BYTES = 100 << 20
#: Most entries in a submitted zip, or files scanned in a submitted folder.
MAX_ENTRIES = 5000
#: Folders whose content is never a submission (macOS resource forks, caches, VCS).
IGNORED_DIRS = frozenset({"__MACOSX", "__pycache__", ".git", ".ipynb_checkpoints"})
#: Name of the package folder (the course's, rcnn_kit/course.py).
PACKAGE = PACKAGE_NAME


class SubmissionError(Exception):
    """The submission as a whole cannot be used (message is shown to the student)."""


@dataclass
class Submission:
    """The student's modules, copied into a fresh folder.

    Attributes:
        dir: folder holding ``faster_rcnn/<module>.py`` copies (grader-owned).
        found: module name -> copied file, for the modules found.
        problems: student-visible notes (missing modules, refused entries, ...).
    """

    dir: Path
    found: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def load_submission(source: str | Path, dest: str | Path) -> Submission:
    """Locate and copy the student's modules from ``source`` into ``dest/faster_rcnn/``.

    Args:
        source: a ``.zip`` file or a folder.
        dest: a folder that must not exist yet (created with mode 0700).

    Returns:
        The :class:`Submission`; it never raises for a bad submission: everything wrong
        with it is in ``problems`` (an unusable one has ``found == {}``).

    Raises:
        FileNotFoundError: ``source`` does not exist.
        FileExistsError: ``dest`` already exists.
    """
    source, dest = Path(source), Path(dest)
    if not source.exists() and not source.is_symlink():
        raise FileNotFoundError(f"submission {source} does not exist")
    dest.mkdir(mode=0o700, parents=True)
    (dest / PACKAGE).mkdir(mode=0o700)
    submission = Submission(dest)
    try:
        if source.is_symlink():
            raise SubmissionError(f"{source.name} is a symbolic link")
        if source.is_dir():
            single_zip = _single_zip(source)
            if single_zip is not None:
                _load_zip(single_zip, submission)
            else:
                _load_folder(source, submission)
        elif zipfile.is_zipfile(source):
            _load_zip(source, submission)
        else:
            raise SubmissionError(f"{source.name} is neither a folder nor a zip archive")
    except SubmissionError as exc:
        submission.problems.append(str(exc))
        submission.found.clear()
    missing = [m for m in STUDENT_MODULES if m not in submission.found]
    if not submission.found:
        submission.problems.append(
            f"no {PACKAGE} modules found; submit {PACKAGE}/iou.py, {PACKAGE}/nms.py, ... (or the six .py files)"
        )
    elif missing:
        submission.problems.append(f"missing module files: {', '.join(m + '.py' for m in missing)}")
    return submission


def _choose_package_dir(paths: list[PurePosixPath]) -> PurePosixPath | None:
    """The folder (relative) that holds the most module files, preferring ``faster_rcnn`` and shallow ones."""
    names = {f"{m}.py" for m in STUDENT_MODULES}
    counts: dict[PurePosixPath, int] = {}
    for path in paths:
        depth = len(path.parts) - 1
        inside_package = path.parent.name == PACKAGE
        if path.name in names and (depth <= 1 or (inside_package and depth <= 2)):
            counts[path.parent] = counts.get(path.parent, 0) + 1
    if not counts:
        return None
    return max(counts, key=lambda d: (counts[d], d.name == PACKAGE, -len(d.parts)))


def _load_folder(root: Path, submission: Submission) -> None:
    files: list[PurePosixPath] = []
    scanned = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRS and len(rel_dir.parts) < 2]
        for name in filenames:
            scanned += 1
            if scanned > MAX_ENTRIES:
                raise SubmissionError(f"the submission holds more than {MAX_ENTRIES} files")
            files.append(PurePosixPath(*rel_dir.parts, name))
    package_dir = _choose_package_dir(files)
    if package_dir is None:
        return
    for module in STUDENT_MODULES:
        rel = package_dir / f"{module}.py"
        path = root.joinpath(*rel.parts)
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(info.st_mode):
            submission.problems.append(f"{rel} is not a regular file (symbolic link or special file); ignored")
            continue
        if info.st_size > MAX_FILE_BYTES:
            submission.problems.append(f"{rel} is larger than {MAX_FILE_BYTES} bytes; ignored")
            continue
        with open(path, "rb") as fh:  # the file was just checked to be regular; read bounded anyway
            data = fh.read(MAX_FILE_BYTES + 1)
        _store(submission, module, rel, data)


def _load_zip(path: Path, submission: Submission) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise SubmissionError(f"{path.name} is not a readable zip archive ({exc})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise SubmissionError(f"{path.name} holds {len(infos)} entries, more than {MAX_ENTRIES}")
        if sum(i.file_size for i in infos) > MAX_ZIP_TOTAL_BYTES:
            raise SubmissionError(f"{path.name} is larger than {MAX_ZIP_TOTAL_BYTES >> 20} MB uncompressed")
        members: dict[PurePosixPath, zipfile.ZipInfo] = {}
        for info in infos:
            name = info.filename.replace("\\", "/")
            rel = PurePosixPath(name)
            if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in rel.parts:
                submission.problems.append(f"refused entry {name!r}: absolute path or '..' in the name")
                continue
            if rel.parts and rel.parts[0] in IGNORED_DIRS or info.is_dir():
                continue
            file_type = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip tool stored no type
            if file_type not in (0, stat.S_IFREG):
                submission.problems.append(f"refused entry {name!r}: symbolic link or special file")
                continue
            members[rel] = info
        package_dir = _choose_package_dir(list(members))
        if package_dir is None:
            return
        for module in STUDENT_MODULES:
            rel = package_dir / f"{module}.py"
            info = members.get(rel)
            if info is None:
                continue
            if info.flag_bits & 0x1:
                submission.problems.append(f"{rel} is encrypted; ignored")
                continue
            try:
                with archive.open(info) as fh:  # bounded read: the declared size may lie
                    data = fh.read(MAX_FILE_BYTES + 1)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError) as exc:
                submission.problems.append(f"{rel} could not be read from the zip ({exc}); ignored")
                continue
            _store(submission, module, rel, data)


def _store(submission: Submission, module: str, rel: PurePosixPath, data: bytes) -> None:
    if len(data) > MAX_FILE_BYTES:
        submission.problems.append(f"{rel} is larger than {MAX_FILE_BYTES} bytes; ignored")
        return
    target = submission.dir / PACKAGE / f"{module}.py"
    with open(target, "xb") as fh:
        fh.write(data)
    submission.found[module] = target


def _single_zip(folder: Path) -> Path | None:
    """The one ``.zip`` regular file in ``folder`` when it holds no module files itself."""
    entries = [p for p in folder.iterdir() if p.name not in IGNORED_DIRS]
    zips = [p for p in entries if p.suffix.lower() == ".zip" and not p.is_symlink() and p.is_file()]
    has_py = any(p.suffix == ".py" or p.is_dir() for p in entries)
    return zips[0] if len(zips) == 1 and not has_py else None

