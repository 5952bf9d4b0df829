"""Shared machinery of the image–text datasets (Sarcasm, Twitter2015): download and verify the split
files, gather the tweet images from the archives a person downloads, write one text file per sample.

**Split files** are fetched by URL (``https://``, ``http://`` or ``file://``) into the dataset's
``download_dir`` with :func:`mmbalance.data.download.fetch_pinned`: a file already there with the
pinned md5 is not fetched again;
otherwise the bytes go to ``<name>.part`` (an interrupted HTTP download resumes with a ``Range``
request; a server that ignores it, or a ``file://`` source, sends the whole file again), the md5 is
checked and only then is the file renamed into place. A wrong md5 removes the partial file and stops
with a :class:`DataError` naming the file, the URL and both checksums.

**Images** live on Google Drive behind a confirmation page, so no script fetches them: the person
downloads the archives named in the dataset's message and puts them, unopened or extracted, into
``download_dir``. :func:`gather_images` looks there for ``*.zip`` archives and loose image files and
copies every wanted image (by file name, optionally only from folders of a given name) into the raw
folder. A copy already there is kept when its CRC-32 matches the archive member's (or its size and
bytes match the loose file), so a second run only adds what is new. Every image is then decoded
with PIL; an image that is absent or does not decode is *reported*, never silently dropped: the
dataset records it in ``missing.csv`` with the reason and counts it per split in the raw manifest.
The archives carry no published checksums; the zip CRC-32 of each member (checked on reading) and
the full decode are the checks available.

**Text.** The text kind reads a file, so every sample gets ``texts/<clip_id>.txt`` (UTF-8, no
trailing newline): its first line is the text; a second line, when present, is a second segment
(Twitter2015's target, TomBERT's sentence pair). Line breaks inside a tweet become spaces.
"""

from __future__ import annotations

import abc
import shutil
import sys
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image
from tqdm import tqdm

from mmbalance import __version__
from mmbalance.data.datasets._base import (
    MANIFEST,
    SPLIT_DIR,
    SPLITS,
    Dataset,
    Item,
    parallel_map,
    read_split_rows,
    sha256_file,
    write_raw_manifest,
)
from mmbalance.data.download import fetch_pinned
from mmbalance.errors import DataError
from mmbalance.io import atomic_open, atomic_path, write_csv

IMAGE_DIR = "images"
TEXT_DIR = "texts"
MISSING = "missing.csv"
SPLIT_FIELDS = ("clip_id", "label", "image", "text")
MISSING_FIELDS = ("split", "clip_id", "image", "reason")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Sample:
    """One listed sample: its id, label, image file name and text (segments joined by a newline)."""

    clip_id: str
    label: int
    image: str
    text: str


@dataclass(frozen=True)
class SplitFiles:
    """Where a dataset's split files come from and what they must hold."""

    folder: str
    """Raw-folder relative folder of the files (the source repository's layout)."""
    names: Mapping[str, str]
    """Split → file name (under the ``split_url`` base and in ``folder``)."""
    md5: Mapping[str, str]
    """File name → pinned md5."""
    counts: Mapping[str, int] | None
    """The papers' split sizes after parsing (a difference is a parsing bug); None: not checked."""


def _scan(download_dir: Path, wanted: set[str], folder: str) -> dict[str, tuple[Path, str | None]]:
    """Where each wanted image is: ``(archive, member)`` or ``(loose file, None)``; the first seen wins
    (archives and files in sorted path order)."""
    found: dict[str, tuple[Path, str | None]] = {}
    for path in sorted(p for p in download_dir.rglob("*") if p.is_file()):
        if path.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(path) as archive:
                    members = [m for m in archive.infolist() if not m.is_dir()]
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"{path}: not a readable zip archive ({exc}); download it again") from exc
            for member in members:
                parts = member.filename.split("/")
                if parts[-1] in wanted and (not folder or folder in parts[:-1]):
                    found.setdefault(parts[-1], (path, member.filename))
        elif path.name in wanted and (not folder or folder in path.relative_to(download_dir).parts[:-1]):
            found.setdefault(path.name, (path, None))
    return found


def _place(source: tuple[Path, str | None], target: Path, archives: dict[Path, zipfile.ZipFile]) -> str:
    """Copy one image into the raw folder unless an identical copy is there; '' or the error."""
    path, member = source
    try:
        if member is None:
            same_size = target.is_file() and target.stat().st_size == path.stat().st_size
            if same_size and sha256_file(target) == sha256_file(path):
                return ""
            with atomic_path(target) as tmp:
                shutil.copyfile(path, tmp)
            return ""
        archive = archives.setdefault(path, zipfile.ZipFile(path))
        info = archive.getinfo(member)
        same_size = target.is_file() and target.stat().st_size == info.file_size
        if same_size and zlib.crc32(target.read_bytes()) == info.CRC:
            return ""
        with atomic_path(target) as tmp, archive.open(info) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)  # zipfile checks the member's CRC-32 at the end
        return ""
    except (zipfile.BadZipFile, OSError, KeyError, EOFError, zlib.error) as exc:
        return f"unreadable in {path.name}: {exc}"


def _decode_check(path: str) -> tuple[str, str]:
    """Worker: ``('', sha256)`` when the image decodes completely, else ``(reason, '')``."""
    try:
        with Image.open(path) as image:
            image.convert("RGB").load()
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        return f"does not decode: {type(exc).__name__}: {exc}", ""
    return "", sha256_file(Path(path))


def gather_images(
    download_dir: Path, names: set[str], folder: str, image_dir: Path, workers: int, progress: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """Copy the wanted images from ``download_dir`` into ``image_dir`` and decode each one.

    Returns ``(hashes, problems)``: sha256 per usable image name, and a reason per unusable one
    (absent from every archive, unreadable in its archive, or not decodable). Images in
    ``image_dir`` that are not wanted are removed (left over from another configuration).
    """
    image_dir.mkdir(parents=True, exist_ok=True)
    for old in image_dir.iterdir():
        if old.name not in names:
            old.unlink()
    found = _scan(download_dir, names, folder)
    problems = {name: f"not found in {download_dir}" for name in names if name not in found}
    archives: dict[Path, zipfile.ZipFile] = {}
    try:
        for name in tqdm(sorted(found), desc="images", unit="img", file=sys.stderr, disable=not progress):
            reason = _place(found[name], image_dir / name, archives)
            if reason:
                problems[name] = reason
    finally:
        for archive in archives.values():
            archive.close()
    usable = sorted(name for name in found if name not in problems)
    tasks = [str(image_dir / name) for name in usable]
    hashes = {}
    for name, (reason, digest) in zip(
        usable, parallel_map(_decode_check, tasks, workers, progress, desc="decode"), strict=True
    ):
        if reason:
            problems[name] = reason
        else:
            hashes[name] = digest
    for name in problems:
        (image_dir / name).unlink(missing_ok=True)
    return hashes, problems


def text_file_content(segments: tuple[str, ...]) -> str:
    """The text file of a sample: one segment per line (line breaks inside a segment become spaces)."""
    return "\n".join(s.replace("\r", " ").replace("\n", " ") for s in segments)


class ImageTextDataset(Dataset):
    """The prepare/items shared by Sarcasm and Twitter2015 (module docstring). A dataset gives only what
    differs: its pinned split files (:meth:`split_files`), how one is read (:meth:`parse`), the class
    names, and what a person must download (:meth:`images_message`)."""

    modalities: ClassVar[dict[str, str]] = {"image": "image", "text": "text"}
    unit = "samples"
    missing_reason = "no usable image: missing from the archives or not decodable"
    image_folder_key: ClassVar[str | None] = None
    """The ``data.<dataset>`` key naming the archive folder to take images from (None: any folder)."""

    @abc.abstractmethod
    def split_files(self, data_cfg: Mapping[str, Any]) -> SplitFiles:
        """The dataset's pinned split files (read at call time, so a test can pin its fixtures)."""

    @abc.abstractmethod
    def parse(
        self, path: Path, split: str, data_cfg: Mapping[str, Any]
    ) -> tuple[list[Sample], dict[str, Any]]:
        """The samples of one verified split file, and this split's value of each extra manifest key
        (Sarcasm: ``{"filtered": n}``; the manifest gets ``key → {split: value}``)."""

    @abc.abstractmethod
    def images_message(self, download_dir: Path) -> str:
        """What a person must download, and where to put it, when no image is found."""

    def sources(self, data_cfg: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
        """Split files: raw-folder relative path → (URL under ``data_cfg["split_url"]``, pinned md5)."""
        files = self.split_files(data_cfg)
        base = str(data_cfg["split_url"]).rstrip("/") + "/"
        return {f"{files.folder}/{name}": (base + name, files.md5[name]) for name in files.names.values()}

    def samples(self, data_cfg: Mapping[str, Any], out_dir: Path) -> tuple[dict[str, list[Sample]], dict]:
        """Parse the verified split files in ``out_dir`` (:meth:`parse`, in split order); check that clip
        ids are unique and the split sizes are the papers'. Returns the samples per split and the extra
        manifest keys."""
        files = self.split_files(data_cfg)
        listed: dict[str, list[Sample]] = {}
        extra: dict[str, dict[str, Any]] = {}
        for split, name in files.names.items():
            listed[split], values = self.parse(out_dir / files.folder / name, split, data_cfg)
            for key, value in values.items():
                extra.setdefault(key, {})[split] = value
        clip_ids_unique(self.name, listed)
        if files.counts is not None:
            check_counts(self.name, listed, files.counts)
        return listed, extra

    def prepare(self, data_cfg: Mapping[str, Any], out_dir: Path, workers: int, progress: bool) -> Path:
        """Fetch and verify the split files, gather and decode the images, write texts, splits, manifest."""
        out_dir = Path(out_dir)
        download_dir = Path(data_cfg["download_dir"])
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / MANIFEST).unlink(missing_ok=True)
        files: dict[str, str] = {}
        for rel, (url, md5) in self.sources(data_cfg).items():
            cached = fetch_pinned(url, download_dir / Path(rel).name, "md5", md5, progress)
            with atomic_path(out_dir / rel) as tmp:
                shutil.copyfile(cached, tmp)
            files[rel] = sha256_file(out_dir / rel)
        listed, extra = self.samples(data_cfg, out_dir)

        names = {s.image for rows in listed.values() for s in rows}
        folder = str(data_cfg[self.image_folder_key]) if self.image_folder_key else ""
        hashes, problems = gather_images(download_dir, names, folder, out_dir / IMAGE_DIR, workers, progress)
        if not hashes:
            raise DataError(self.images_message(download_dir.resolve()))
        if problems and data_cfg["missing_images"] == "error":
            name, reason = sorted(problems.items())[0]
            raise DataError(
                f"{self.name}: image {name}: {reason} ({len(problems)} of {len(names)} images unusable; "
                f"set data.{self.name}.missing_images: report to continue without them)"
            )
        files.update({f"{IMAGE_DIR}/{name}": digest for name, digest in hashes.items()})

        for sub in (TEXT_DIR, SPLIT_DIR):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
            (out_dir / sub).mkdir()
        counts, missing, missing_rows = {}, {}, []
        for split in SPLITS:
            kept = []
            for sample in listed[split]:
                if sample.image in problems:
                    missing_rows.append(
                        {"split": split, "clip_id": sample.clip_id, "image": sample.image,
                         "reason": problems[sample.image]}
                    )  # fmt: skip
                    continue
                rel = f"{TEXT_DIR}/{sample.clip_id}.txt"
                with atomic_open(out_dir / rel, encoding="utf-8", newline="") as handle:
                    handle.write(sample.text)
                files[rel] = sha256_file(out_dir / rel)
                kept.append(
                    {"clip_id": sample.clip_id, "label": sample.label,
                     "image": f"{IMAGE_DIR}/{sample.image}", "text": rel}
                )  # fmt: skip
            rel = f"{SPLIT_DIR}/{split}.csv"
            write_csv(out_dir / rel, kept, SPLIT_FIELDS)
            files[rel] = sha256_file(out_dir / rel)
            counts[split] = len(kept)
            missing[split] = len(listed[split]) - len(kept)
        write_csv(out_dir / MISSING, missing_rows, MISSING_FIELDS)
        files[MISSING] = sha256_file(out_dir / MISSING)
        with atomic_open(out_dir / "classes.txt") as handle:
            handle.write("".join(f"{name}\n" for name in self.class_names(data_cfg)))
        files["classes.txt"] = sha256_file(out_dir / "classes.txt")
        if missing_rows:
            print(
                f"{self.name}: {len(missing_rows)} samples without a usable image left out "
                f"({', '.join(f'{s} {n}' for s, n in missing.items())}); see {out_dir / MISSING}",
                file=sys.stderr,
            )
        extra = {
            "listed": {split: len(listed[split]) for split in SPLITS},
            "missing_images": missing,
            **extra,
            "sources": {rel: {"url": url, "md5": md5} for rel, (url, md5) in self.sources(data_cfg).items()},
            "generator": f"mmbalance {__version__}",
        }
        return write_raw_manifest(out_dir, self.name, data_cfg, counts, files, extra)

    def items(self, raw_dir: Path, split: str) -> list[Item]:
        """Read ``splits/<split>.csv``; a missing or malformed file raises :class:`DataError` naming it."""
        return [
            Item(
                clip_id=row["clip_id"],
                label=row["label"],
                paths={"image": Path(raw_dir) / row["image"], "text": Path(raw_dir) / row["text"]},
            )
            for row in read_split_rows(raw_dir, split, SPLIT_FIELDS)
        ]


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-empty lines of a UTF-8 file with their 1-based numbers."""
    with open(path, encoding="utf-8", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line.rstrip("\r\n")


def check_counts(name: str, listed: Mapping[str, list[Sample]], expected: Mapping[str, int]) -> None:
    """Stop when the parsed split sizes differ from the papers' (the split files were md5-verified,
    so a difference is a parsing bug, not a data problem)."""
    got = {split: len(listed[split]) for split in SPLITS}
    if got != dict(expected):
        raise DataError(f"{name}: split sizes {got} differ from the papers' {dict(expected)}")


def clip_ids_unique(name: str, listed: Mapping[str, list[Sample]]) -> None:
    """Every clip id names one text file; a repeated id would overwrite another sample's text."""
    seen: set[str] = set()
    for rows in listed.values():
        for sample in rows:
            if sample.clip_id in seen:
                raise DataError(f"{name}: sample id {sample.clip_id} is listed twice")
            seen.add(sample.clip_id)
