"""Where ``rcnn-kit data voc2007`` gets a tar from, always verified by md5.

In order:

1. ``--tar PATH``: the user's own file, used where it is (never copied, never
   downloaded over). Checked against ``--md5`` when given, else the official md5.
2. The tar already in the download folder under the official name (a previous
   run's verified download, or a file put there by hand): checked the same way.
3. A download from the mirrors: the user's (``--mirror``, ``$RCNN_KIT_VOC_MIRRORS``)
   first, then the official hosts, but only when the expected md5 is the
   official one (they cannot serve another file). ``--official-hosts`` uses the
   official hosts alone.

A file whose md5 is not the expected one is never deleted or replaced: the
command stops, says which md5 was expected and which was found, where the file
is, and which flag uses it as it is (``--md5 FOUND``). Messages speak in the
command's flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from data_scripts.download import ChecksumError, RemoteFile, adopt_kept, fetch_from_mirrors, file_md5


@dataclass(frozen=True)
class TarSource:
    """How the user asked for one tar (the flags of ``rcnn-kit data voc2007``).

    Attributes:
        remote: the official file: its name on the mirrors and its md5.
        tar: a local tar to use instead of downloading (``--tar``), or None.
        md5: the md5 the tar must have (``--md5``), or None for the official one.
        tar_flag: the flag that gives ``tar`` (``--tar`` or ``--test-tar``), for messages.
        md5_flag: the flag that gives ``md5``, for messages.
    """

    remote: RemoteFile
    tar: Path | None = None
    md5: str | None = None
    tar_flag: str = "--tar"
    md5_flag: str = "--md5"

    @property
    def expected(self) -> str:
        """The md5 the tar must have."""
        return self.md5 or self.remote.md5

    @property
    def official(self) -> bool:
        """Whether the expected md5 is the official one."""
        return self.expected == self.remote.md5

    def whose(self) -> str:
        """Where the expected md5 comes from, for messages."""
        return f"the official md5 of {self.remote.filename}" if self.official else f"given with {self.md5_flag}"

    def use_found(self, found: str) -> str:
        """The advice for a file with md5 ``found``."""
        return f"if it is your own copy, add {self.md5_flag} {found} to use it as it is"


def _verified(source: TarSource, path: Path, *, way_on: str = "") -> tuple[Path, str]:
    """``(path, md5)`` when ``path`` has the expected md5; else a ChecksumError that names the way on."""
    found = file_md5(path)
    if found != source.expected:
        raise ChecksumError(
            f"{path}: md5 is {found}, expected {source.expected} ({source.whose()}); the file was left as it is; "
            f"{source.use_found(found)}{way_on}",
            path,
            found,
            source.expected,
        )
    return path, found


def obtain_tar(
    source: TarSource,
    download_dir: Path,
    *,
    user_mirrors: Sequence[str] = (),
    official_mirrors: Sequence[str] = (),
    official_hosts: bool = False,
    offline: bool = False,
    progress: bool = True,
) -> tuple[Path, str]:
    """A verified tar for ``source``: the user's, an earlier download, or a new download.

    Args:
        source: the file and how the user asked for it.
        download_dir: where downloads go (and an earlier one is looked for).
        user_mirrors: the user's mirror base URLs (flag, then environment).
        official_mirrors: the official hosts.
        official_hosts: download from the official hosts only (``--official-hosts``);
            an md5 mismatch there moves on to the next official host.
        offline: never download (``--skip-download``).
        progress: show a progress bar.

    Returns:
        ``(path, md5)`` of a file whose md5 is ``source.expected``.

    Raises:
        ValueError: the flags contradict each other or leave no mirror to try.
        FileNotFoundError: ``--tar`` names no file, or ``offline`` and no tar is there.
        ChecksumError: a file with another md5 (the message says where it is kept and
            which flag uses it).
        DownloadError, PermissionError, StorageError, Interrupted: see
            :func:`data_scripts.download.fetch_from_mirrors`.
    """
    if official_hosts and not source.official:
        raise ValueError(
            f"--official-hosts serves md5 {source.remote.md5}, but {source.md5_flag} {source.md5} was given; "
            "use one or the other"
        )
    if source.tar is not None:
        if not source.tar.is_file():
            raise FileNotFoundError(f"{source.tar_flag}: no such file: {source.tar}")
        return _verified(source, source.tar)
    dest = download_dir / source.remote.filename
    if dest.exists():
        return _verified(source, dest, way_on=", or move it away to download the tar again")
    if adopt_kept(dest, source.expected):  # an earlier download with another md5, now asked for
        return dest, source.expected
    if offline:
        raise FileNotFoundError(
            f"--skip-download: no {source.remote.filename} in {download_dir}; "
            f"give your tar with {source.tar_flag} PATH (and {source.md5_flag} HEX if it is not the official one)"
        )
    if official_hosts:
        mirrors = list(official_mirrors)
    else:
        mirrors = [*user_mirrors, *(official_mirrors if source.official else ())]
        if not mirrors:
            raise ValueError(
                f"{source.md5_flag} {source.md5} is not the official md5 ({source.remote.md5}), so the official "
                f"hosts cannot serve it; give your copy with {source.tar_flag} PATH or its mirror with --mirror URL"
            )
    wanted = RemoteFile(source.remote.filename, source.expected)
    try:
        path = fetch_from_mirrors(
            wanted, download_dir, mirrors, progress=progress, next_mirror_on_mismatch=official_hosts
        )
    except ChecksumError as exc:
        if exc.path == dest:  # appeared while we were downloading: the message above applies
            raise
        raise ChecksumError(
            f"{exc} ({source.whose()}); stopped without trying other mirrors; {source.use_found(exc.found)}"
            + ("" if official_hosts or not source.official else ", or add --official-hosts to download the official tar"),
            exc.path,
            exc.found,
            exc.expected,
        ) from exc
    return path, source.expected
