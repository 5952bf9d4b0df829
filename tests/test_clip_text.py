"""CLIP's byte-level BPE (``tokenizer: clip_bpe`` of the text kind): the md5-pinned merges file, ids
read off that file by hand, the stored layout (start and end tokens, mask, zero padding), truncation
that keeps the end token last, and equality with OpenAI's own ``SimpleTokenizer`` as clip-anytorch
ships it."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from mmbalance.data import clip_bpe
from mmbalance.errors import ConfigError, DataError
from mmbalance.registry import KINDS


def merge_id(symbols: str) -> int:
    """The id of a merged token read off the file: 512 + its merge's line number after the header."""
    lines = gzip.decompress(clip_bpe.bpe_path().read_bytes()).decode("utf-8").split("\n")
    merged = ["".join(line.split(" ")) for line in lines[1 : 1 + clip_bpe.MERGES]]
    return 512 + merged.index(symbols)


def openai_tokenizer() -> object:
    """OpenAI's ``SimpleTokenizer`` from clip-anytorch's ``simple_tokenizer.py``, loaded by path (the
    package's ``__init__`` needs ``pkg_resources``), over the same merges file."""
    path = Path(str(metadata.distribution("clip-anytorch").locate_file("clip/simple_tokenizer.py")))
    spec = importlib.util.spec_from_file_location("openai_simple_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SimpleTokenizer(bpe_path=str(clip_bpe.bpe_path()))


def test_merges_file_is_openais() -> None:
    path = clip_bpe.bpe_path()
    assert path.name == "bpe_simple_vocab_16e6.txt.gz" and path.stat().st_size == 1356917
    assert hashlib.md5(path.read_bytes()).hexdigest() == "933b7abbbbde62c36f02f0e6ccde464f"
    assert len(clip_bpe.tokenizer().ids) == 49408


def test_merges_file_with_another_md5_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clip_bpe, "BPE_MD5", "0" * 32)
    with pytest.raises(DataError, match=r"bpe_simple_vocab_16e6\.txt\.gz: md5 933b7abb\w+ is not OpenAI's"):
        clip_bpe.bpe_path()


def test_ids_read_off_the_vocabulary() -> None:
    bpe = clip_bpe.tokenizer()
    # bytes: '!' is the first symbol, 'a' the 65th; with the end-of-word mark 256 later
    assert bpe.encode("!") == [0 + 256] and bpe.encode("a") == [64 + 256] == [320]
    photo, cat, of = merge_id("photo</w>"), merge_id("cat</w>"), merge_id("of</w>")
    assert (photo, of, cat) == (1125, 539, 2368)  # the ids CLIP users know for "a photo of a cat"
    assert bpe.encode("A  PHOTO\tof a Cat ") == [320, photo, of, 320, cat]  # lower-cased, spaces collapsed
    x = 256 + ord("x") - ord("!")  # a printable ASCII byte's symbol sits at its code minus 33
    assert bpe.encode("<|startoftext|>x<|endoftext|>") == [49406, x, 49407]
    assert bpe.encode("&amp;amp;") == bpe.encode("&")  # HTML entities unescaped twice, as OpenAI's


def test_layout_start_end_mask_and_zero_padding() -> None:
    ids, mask, zeros = clip_bpe.tokenize("a photo of a cat", 10)
    assert ids.tolist() == [49406, 320, 1125, 539, 320, 2368, 49407, 0, 0, 0]
    assert mask.tolist() == [1] * 7 + [0] * 3 and zeros.tolist() == [0] * 10
    array = clip_bpe.tokenize("", 4)
    assert array.dtype == np.int32 and array[0].tolist() == [49406, 49407, 0, 0]


def test_truncation_keeps_the_end_token_last() -> None:
    ids, mask, _ = clip_bpe.tokenize(" ".join(["cat"] * 100), 77)
    assert ids.tolist() == [49406, *[2368] * 75, 49407] and mask.all()
    ids = clip_bpe.tokenize("a photo of a cat", 5)[0]
    assert ids.tolist() == [49406, 320, 1125, 539, 49407]


def test_two_lines_are_one_sequence_truncated_longest_first() -> None:
    joined = clip_bpe.tokenize("a photo of a cat", 12)
    np.testing.assert_array_equal(clip_bpe.tokenize("a photo of\na cat", 12), joined)
    ids = clip_bpe.tokenize(" ".join(["of"] * 10) + "\ncat", 8)[0]  # the target survives a long sentence
    assert ids.tolist() == [49406, 539, 539, 539, 539, 539, 2368, 49407]
    with pytest.raises(ValueError, match="one or two lines"):
        clip_bpe.tokenize("a\nb\nc", 8)


def test_ids_equal_openais_simple_tokenizer() -> None:
    reference = openai_tokenizer()
    rng = np.random.default_rng(0)
    alphabet = [*"abcdefghijklmnopqrstuvwxyz ABCXYZ'!?.,#@0123456789éüñç😂\t\n&;", "&amp;", "'s", "'LL"]
    texts = [
        "Hello World!! it's I'LL   be   there\t\n soon",
        "émoji café 😂😂 #fun @user <user> emoji_15 #not",
        "&amp;lt;b&amp;gt; tags &quot;quoted&quot;",
        "日本語のテキスト 123456 ½ Ⅻ ﬁne naïve",
        "don't won't they'd we've you're",
        "\u00ad soft hyphen \u200b zero width",
        *("".join(rng.choice(alphabet, size=int(rng.integers(0, 60)))) for _ in range(200)),
    ]
    bpe = clip_bpe.tokenizer()
    for text in texts:
        assert bpe.encode(text) == reference.encode(text), text


def test_text_kind_tokenizer_option(tmp_path: Path) -> None:
    kind = KINDS.get("text")()
    cfg = kind.check("text", {"max_length": 12, "tokenizer": "clip_bpe"})
    (tmp_path / "a.txt").write_text("A photo\nof a cat", encoding="utf-8")
    array = kind.compute(tmp_path / "a.txt", cfg)
    assert array.shape == kind.shape(cfg) == (3, 12) and array.dtype == np.int32
    assert array[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    kind.preload(cfg)
    bert = kind.compute(tmp_path / "a.txt", kind.check("text", {"max_length": 12}))
    assert bert[0, 0] == 101  # the default is still WordPiece
    assert kind.check("text", {"max_length": 512, "tokenizer": "bert_wordpiece"})["max_length"] == 512
    with pytest.raises(ConfigError, match=r"max_length': expected an integer in \[4, 77\] for tokenizer"):
        kind.check("text", {"max_length": 78, "tokenizer": "clip_bpe"})
    with pytest.raises(ConfigError, match=r"'text\.tokenizer': 'gpt2' is not one of bert_wordpiece, clip"):
        kind.check("text", {"max_length": 16, "tokenizer": "gpt2"})
