"""Download and safely extract the Google Speech Commands archives.

Only the standard library is used for networking (``urllib.request``).  A
download goes to ``<dest>/<filename>.part`` and resumes from there with an
HTTP Range request; the finished file is checked (size and SHA-256) before it
is renamed to its final name.  Extraction rejects members that would land
outside the target folder and happens in a temporary sibling folder that is
renamed into place only once it is complete.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..outputs import MARKER, mark

__all__ = [
    "ARCHIVES",
    "Archive",
    "DownloadError",
    "UnknownVersionError",
    "UnsafeArchiveError",
    "download_dataset",
]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    url: str
    filename: str
    size: int | None  # bytes; None skips the size check
    sha256: str | None  # hex digest; None skips the checksum
    folder: str  # folder under dest that receives the extracted files


# Sizes and SHA-256 digests as published by TensorFlow Datasets
# (tensorflow_datasets/url_checksums/speech_commands.txt) for v0.02 and the
# v0.02 test set, and by torchaudio (torchaudio/datasets/speechcommands.py,
# _CHECKSUMS) for v0.01.  The v0.01 size is the Content-Length served by
# download.tensorflow.org.
ARCHIVES: dict[str, Archive] = {
    "v0.01": Archive(
        url="http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
        filename="speech_commands_v0.01.tar.gz",
        size=1_489_096_277,
        sha256="743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
        folder="speech_commands_v0.01",
    ),
    "v0.02": Archive(
        url="http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        filename="speech_commands_v0.02.tar.gz",
        size=2_428_923_189,
        sha256="af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
        folder="speech_commands_v0.02",
    ),
    "test-v0.02": Archive(
        url="http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz",
        filename="speech_commands_test_set_v0.02.tar.gz",
        size=112_563_277,
        sha256="cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
        folder="speech_commands_test_set_v0.02",
    ),
}


class DownloadError(RuntimeError):
    """A download or extraction failed; the message says what to do next."""


class UnknownVersionError(DownloadError, ValueError):
    """The requested data set version is not in ARCHIVES."""


class UnsafeArchiveError(DownloadError):
    """An archive member would be written outside the target folder."""


def download_dataset(
    version: str,
    dest: str | Path,
    *,
    url: str | None = None,
    expected: Archive | None = None,
    progress: bool = True,
    timeout: float = 30,
    force: bool = False,
    keep_archive: bool = True,
) -> Path:
    """Download, verify and extract one Speech Commands archive.

    ``url`` overrides the download address (a mirror) while keeping the
    published size and checksum; ``expected`` replaces the whole table entry.
    An existing non-empty ``<dest>/<folder>`` is returned untouched unless
    ``force`` is set.  Returns the folder holding the extracted data set.
    """
    if version not in ARCHIVES:
        raise UnknownVersionError(
            f"unknown Speech Commands version {version!r}; "
            f"valid versions: {', '.join(ARCHIVES)}"
        )
    archive = expected or ARCHIVES[version]
    if url is not None:
        archive = dataclasses.replace(archive, url=url)

    dest = Path(dest)
    target = dest / archive.folder
    if target.is_dir() and any(target.iterdir()):
        if not force:
            return target
        if not (target / MARKER).is_file():  # --force replaces only a folder this code extracted
            raise DownloadError(f"{target}: not extracted by tinykws (no {MARKER} marker); --force will not "
                                f"replace it: delete or move it yourself")
    dest.mkdir(parents=True, exist_ok=True)

    final = dest / archive.filename
    # An archive left by an earlier run is reused when it verifies (else deleted).
    if not (final.exists() and _verify(final, archive) is None):
        part = final.with_name(final.name + ".part")
        _fetch(archive, part, final, progress=progress, timeout=timeout)
        error = _verify(part, archive)
        if error:
            raise DownloadError(error)
        os.replace(part, final)

    _extract(final, target)
    if not keep_archive:
        final.unlink()
    return target


# --------------------------------------------------------------------------
# download


def _hint(archive: Archive, final: Path) -> str:
    return (
        f"Download {archive.url} manually and either put it at {final} and run "
        f"again, or extract it and pass the folder with --data."
    )


def _open(archive: Archive, start: int, timeout: float):
    headers = {"User-Agent": "tinykws"}
    if start:
        headers["Range"] = f"bytes={start}-"
    request = urllib.request.Request(archive.url, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)


def _fetch(archive: Archive, part: Path, final: Path, *, progress: bool, timeout: float) -> None:
    """Download ``archive.url`` into ``part``, resuming from its current size."""
    start = part.stat().st_size if part.exists() else 0
    if archive.size is not None:
        if start == archive.size:
            return  # complete already, only verification is left
        if start > archive.size:
            start = 0
    try:
        try:
            response = _open(archive, start, timeout)
        except urllib.error.HTTPError as e:
            if e.code != 416 or not start:  # 416: the range makes no sense, restart
                raise
            start = 0
            response = _open(archive, 0, timeout)
    except urllib.error.HTTPError as e:
        raise DownloadError(
            f"HTTP error {e.code} ({e.reason}) downloading {archive.url}. {_hint(archive, final)}"
        ) from e
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(
            f"could not reach {archive.url} ({reason}); are you offline? {_hint(archive, final)}"
        ) from e

    with response:
        if start and response.status != 206:
            start = 0  # the server ignored the Range header: start over
        elif start and not response.headers.get("Content-Range", "").startswith(f"bytes {start}-"):
            raise DownloadError(
                f"unexpected Content-Range {response.headers.get('Content-Range')!r} from "
                f"{archive.url}; delete {part} and run again."
            )
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else archive.size
        written = start
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, disable=not progress) as bar, open(part, "ab" if start else "wb") as f:
            task = bar.add_task(archive.filename, total=total, completed=start)
            try:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    written += len(chunk)
                    bar.update(task, advance=len(chunk))
            except OSError as e:
                raise DownloadError(
                    f"connection lost downloading {archive.url} ({e}); "
                    f"run again to resume from {part}."
                ) from e
    if total is not None and written < total:
        raise DownloadError(
            f"download of {archive.url} stopped early ({written} of {total} bytes); "
            f"run again to resume from {part}."
        )


def _verify(path: Path, archive: Archive) -> str | None:
    """Return None when ``path`` has the expected size and checksum; else delete it
    and return a message."""
    size = path.stat().st_size
    error = None
    if archive.size is not None and size != archive.size:
        error = f"size mismatch for {archive.url}: expected {archive.size} bytes, got {size}"
    elif archive.sha256 is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(_CHUNK):
                digest.update(block)
        if digest.hexdigest() != archive.sha256.lower():
            error = (
                f"checksum mismatch for {archive.url}: expected sha256 {archive.sha256}, "
                f"got {digest.hexdigest()}"
            )
    if error:
        path.unlink()
        error += f"; the bad file {path} was deleted, run again to download it afresh."
    return error


# --------------------------------------------------------------------------
# extraction


def _inside(root: Path, path: Path) -> bool:
    return os.path.commonpath([root, path]) == str(root)


def _check_member(member: tarfile.TarInfo, root: Path, archive: Path) -> None:
    """Raise UnsafeArchiveError when ``member`` is anything but a plain file or folder inside ``root``.

    Link members (symbolic and hard) are refused outright: the data sets hold none, and a
    Python without the tarfile filter fixes cannot be trusted to extract them safely.
    """
    def reject(why: str) -> None:
        raise UnsafeArchiveError(f"{archive}: refusing to extract archive member {member.name!r}: {why}")

    name = PurePosixPath(member.name)
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        reject(f"{kind} link (to {member.linkname!r}); Speech Commands archives contain no links")
    if name.is_absolute() or PureWindowsPath(member.name).anchor:
        reject("absolute path")
    if ".." in name.parts:
        reject("path contains '..'")
    path = Path(os.path.realpath(root / name))
    if not _inside(root, path):
        reject("path escapes the target folder")
    if not (member.isfile() or member.isdir()):
        reject("special file (device or fifo)")


def _extract(archive_path: Path, target: Path) -> None:
    """Extract into a temporary sibling of ``target`` and rename it into place."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        root = Path(os.path.realpath(tmp))
        with tarfile.open(archive_path, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, root, archive_path)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(root, members=members, filter="data")
            else:
                tar.extractall(root, members=members)
        mark(tmp)
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(tmp, target)
    except (tarfile.TarError, EOFError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, getattr(tarfile, "FilterError", ())):
            raise UnsafeArchiveError(f"refusing to extract {archive_path}: {e}") from e
        raise DownloadError(
            f"could not extract {archive_path} ({e}); delete it and run again."
        ) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
