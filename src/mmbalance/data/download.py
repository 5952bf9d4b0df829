"""Fetching and checking files whose checksums are known in advance, and placing local files.

:func:`fetch` downloads one URL (``https://``, ``http://`` or ``file://``) to a path and checks its
size and sha256:

- *Resumable.* A file already present with the right size and sha256 is not fetched again. A
  download goes to ``<name>.part`` and is renamed only once it is complete and verified. An
  interrupted ``.part`` is continued with an HTTP ``Range`` request; a server that answers with
  the whole file (status 200, or a ``file://`` URL) rewrites the ``.part`` from the start.
- *Verified.* A wrong size or sha256 is a :class:`~mmbalance.errors.DataError` naming the file
  and the URL; the bad ``.part`` is removed so that the next run fetches it afresh. A Git LFS
  pointer served in place of the content (a repository archive, or a server that does not resolve
  LFS) is named as such.
- *Missing vs failing.* A source that does not exist (HTTP 404/410, a missing ``file://`` path)
  raises :class:`MissingSource`, so a caller can count missing files instead of stopping at the
  first. Timeouts, dropped connections and HTTP 408/429/5xx are retried (``retries`` times, with
  exponential back-off); any other HTTP error stops with its status.

:func:`fetch_pinned` is the small-file variant (a split list with a published md5). :func:`place`
puts a file from a local folder into the raw folder (symbolic link, hard link or copy), after the
same checks when its checksum is pinned (CREMA-D from a clone) and as it is otherwise (the user's
YouTube clips). Only the standard library is used for the network (``urllib``).
"""

from __future__ import annotations

import http.client
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from mmbalance import __version__
from mmbalance.data.datasets._base import file_digest, sha256_file
from mmbalance.errors import DataError
from mmbalance.io import atomic_path

CHUNK = 1 << 20
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"
TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})
LINK_MODES = ("symlink", "hardlink", "copy")
USER_AGENT = f"mmbalance/{__version__} (+urllib)"


class MissingSource(DataError):  # noqa: N818 (a DataError, named for what it reports)
    """The source of a file does not exist (HTTP 404/410, or no such local file)."""


class _Transient(Exception):  # noqa: N818 (internal retry signal)
    """A failure worth retrying (timeout, dropped connection, HTTP 408/429/5xx)."""


def md5_file(path: Path) -> str:
    """Hex md5 of a file's bytes (the checksum published for split files)."""
    return file_digest(path, "md5")


def is_lfs_pointer(path: Path) -> bool:
    """Whether ``path`` is a Git LFS pointer file (the stub a clone without ``git lfs pull`` holds)."""
    with open(path, "rb") as handle:
        return handle.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX


def check_file(path: Path, sha256: str, size: int) -> str | None:
    """Why ``path`` is not the expected file (size first, then sha256), or ``None`` when it is."""
    path = Path(path)
    if not path.is_file():
        return "file not found"
    actual = path.stat().st_size
    if actual != size:
        if actual < 1024 and is_lfs_pointer(path):
            return "a Git LFS pointer, not the file's content (fetch the LFS objects: git lfs pull)"
        return f"size {actual} bytes, expected {size}"
    digest = sha256_file(path)
    if digest != sha256:
        return f"sha256 {digest}, expected {sha256}"
    return None


def fetch(url: str, dest: Path, sha256: str, size: int, timeout: float = 60.0, retries: int = 3) -> bool:
    """Make ``dest`` the verified content of ``url``; return whether anything was downloaded.

    See the module docstring for resuming, verification and errors.
    """
    dest = Path(dest)
    if dest.is_file() and check_file(dest, sha256, size) is None:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        try:
            _download(url, part, size, timeout)
            break
        except _Transient as exc:
            if attempt == retries:
                raise DataError(
                    f"{dest.name}: download from {url} failed {retries + 1} times ({exc}); "
                    f"run again to resume from {part}"
                ) from exc
            time.sleep(min(30.0, 2.0**attempt))
    reason = check_file(part, sha256, size)
    if reason is not None:
        part.unlink(missing_ok=True)
        raise DataError(f"{dest}: downloaded file is wrong: {reason} (from {url}); removed, run again")
    os.replace(part, dest)
    return True


def _download(url: str, part: Path, size: int, timeout: float) -> None:
    """Write ``url`` into ``part``, continuing a partial ``part`` where the server allows it."""
    have = part.stat().st_size if part.is_file() else 0
    if have >= size:  # complete (checked by the caller) or too long (rewritten)
        if have == size:
            return
        part.unlink()
        have = 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            raise MissingSource(f"{url}: not found (HTTP {exc.code})") from exc
        if exc.code == 416:  # the partial file does not fit the server's: start again
            part.unlink(missing_ok=True)
            raise _Transient(f"HTTP 416 for the range of {part.name}") from exc
        if exc.code in TRANSIENT_HTTP:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise DataError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, FileNotFoundError):
            raise MissingSource(f"{url}: not found") from exc
        raise _Transient(str(exc.reason)) from exc
    except (TimeoutError, ConnectionError) as exc:
        raise _Transient(repr(exc)) from exc
    written = 0
    try:
        with response:
            declared = response.headers.get("Content-Length")
            resumed = have > 0 and getattr(response, "status", None) == 206
            with open(part, "ab" if resumed else "wb") as handle:
                for block in iter(lambda: response.read(CHUNK), b""):
                    handle.write(block)
                    written += len(block)
    except (TimeoutError, ConnectionError, http.client.IncompleteRead, urllib.error.URLError) as exc:
        raise _Transient(repr(exc)) from exc
    if declared is not None and written < int(declared):  # closed early; http.client may not raise
        raise _Transient(f"connection closed after {written} of {declared} bytes")


def fetch_pinned(url: str, dest: Path, algorithm: str, expected: str, progress: bool = True) -> Path:
    """Download a small pinned file (a split list) ``url`` to ``dest`` and verify its ``algorithm``
    digest (:func:`file_digest`); resumable, atomic, with a byte progress bar.

    A ``dest`` already present with the right digest is kept. Bytes go to ``dest.part``; an
    interrupted download resumes with an HTTP Range request (a server that ignores it, or a
    ``file://`` URL, restarts from the beginning). The finished file is verified, then renamed to
    ``dest``; a digest mismatch deletes it and raises :class:`DataError` naming the file and URL.
    """
    dest = Path(dest)
    if dest.is_file() and file_digest(dest, algorithm) == expected:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": f"mmbalance/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
            if offset and getattr(response, "status", None) != 206:
                offset = 0
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length else None
            with (
                open(part, "ab" if offset else "wb") as out,
                tqdm(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                    leave=False,
                ) as bar,
            ):
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as exc:
        if exc.code != 416:  # 416: the range starts at the end, the part is complete
            raise DataError(f"{dest.name}: download from {url} failed ({exc}); re-run to resume") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(
            f"{dest.name}: download from {url} failed ({exc}); {part} is kept, re-run to resume"
        ) from exc
    actual = file_digest(part, algorithm)
    if actual != expected:
        part.unlink()
        raise DataError(
            f"{dest.name}: {algorithm} {actual} does not match the pinned {expected} (downloaded from "
            f"{url}); the download was deleted (a changed upstream file or a corrupt transfer)"
        )
    os.replace(part, dest)
    return dest


def place(
    source: Path, dest: Path, sha256: str | None = None, size: int | None = None, mode: str = "symlink"
) -> bool:
    """Link or copy the local file ``source`` to ``dest`` (atomically); return whether ``dest`` changed.

    ``mode`` is ``symlink`` (an absolute link to the resolved source: nothing is copied, and the
    source must stay where it is), ``hardlink`` (the same file system only; otherwise a
    :class:`DataError` says so) or ``copy`` (with its timestamps). A missing source raises
    :class:`MissingSource`. With ``sha256`` and ``size`` (a pinned file, CREMA-D) the source is
    verified first, a wrong one is a :class:`DataError` naming it; without them (a user's video
    clip, :mod:`mmbalance.data.youtube`) it is taken as it is.

    A ``dest`` that already is the source is left alone, so a re-run changes nothing: a link of the
    requested kind to the same file, or a regular-file copy that verifies (pinned) or, unpinned, is
    as large as the source and not older (re-hashing every clip of a dataset at each run would read
    it whole again).
    """
    if mode not in LINK_MODES:
        raise ValueError(f"link mode {mode!r} is not one of {LINK_MODES}")
    if (sha256 is None) != (size is None):
        raise ValueError("place: give both sha256 and size, or neither")
    source, dest = Path(source), Path(dest)
    if not source.is_file():
        raise MissingSource(f"{source}: not found")
    if sha256 is not None:
        reason = check_file(source, sha256, size)
        if reason is not None:
            raise DataError(f"{source}: {reason}")
    if _already_placed(source, dest, mode, sha256, size):
        return False
    with atomic_path(dest) as tmp:
        tmp.unlink(missing_ok=True)  # left by an earlier process of the same id
        if mode == "symlink":
            tmp.symlink_to(source.resolve())
        elif mode == "hardlink":
            try:
                os.link(source, tmp)
            except OSError as exc:
                raise DataError(
                    f"{dest}: cannot hard-link {source} ({exc}); use link: symlink or copy"
                ) from exc
        else:
            shutil.copy2(source, tmp)
    return True


def _already_placed(source: Path, dest: Path, mode: str, sha256: str | None, size: int | None) -> bool:
    if not dest.is_file():  # also false for a broken link
        return False
    if mode != "copy":
        return dest.is_symlink() == (mode == "symlink") and os.path.samefile(source, dest)
    if dest.is_symlink():
        return False
    if sha256 is not None:
        return check_file(dest, sha256, size) is None
    here, there = dest.stat(), source.stat()
    return here.st_size == there.st_size and here.st_mtime >= there.st_mtime
