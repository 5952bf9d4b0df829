"""The ``text`` adapter: stored token ids ``(B, 3, L)`` (ids, attention mask, segment ids; the text
kind) → a ``transformers.BertModel`` → the last layer's ``[CLS]`` vector (methods.md §C3), or
CLIP's text tower for the ``clip_*`` names.

``clip_b32`` and ``clip_tiny`` are CLIP's text tower (:mod:`.clip_towers`): the projected text
embedding, pooled at the end token, from ``tokenizer: clip_bpe`` ids; ``weights`` is a Hugging Face
checkpoint folder. The BERT names read ``bert_wordpiece`` ids. ``config.validate`` stops a preset
whose text encoder and text tokenizer do not belong together, naming both keys.

``name`` picks the size: ``bert_base`` (bert-base-uncased: hidden 768, 12 layers, 12 heads,
intermediate 3072) for the paper presets, ``bert_tiny`` (hidden 128, 2 layers, 2 heads, intermediate
512; datasets.md §6.1: 0.17 s per fwd+bwd of 32×128 tokens on 2 CPU cores) for the embedded preset
and tests. Both use bert-base-uncased's 30,522-token vocabulary, 512 positions and 2 segment types,
built from a config: random initialisation, nothing downloaded. The pooler is not built (unused).

``weights`` loads a person's pretrained checkpoint: a directory in Hugging Face format (e.g. a
local copy of ``bert-base-uncased``: ``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``), whose sizes must equal the named ones, or a file holding a
``BertModel`` state dict. ``from_pretrained`` runs with ``local_files_only=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmbalance.data.kinds.text import DEFAULT_TOKENIZER
from mmbalance.errors import ConfigError, reject_unknown
from mmbalance.models.encoders._clip_towers import TEXT_SIZES, clip_text_encoder
from mmbalance.models.encoders.image import load_state
from mmbalance.registry import register_adapter

TEXT_KEYS = frozenset({"name", "weights"})
VOCAB_SIZE = 30522
SIZES = {
    "bert_base": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "bert_tiny": {
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 512,
    },
}


class TextEncoder(nn.Module):
    """(B, 3, L) int token ids, mask and segment ids → (B, hidden) last-layer ``[CLS]``."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.out_dim: int = bert.config.hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        out = self.bert(input_ids=x[:, 0], attention_mask=x[:, 1], token_type_ids=x[:, 2])
        return out.last_hidden_state[:, 0]


def build_bert(name: str, weights: str | None) -> nn.Module:
    """A ``BertModel`` of the named size, random or loaded from ``weights`` (module docstring)."""
    from transformers import BertConfig, BertModel

    if name not in SIZES:
        known = ", ".join([*SIZES, *TEXT_SIZES])
        raise ConfigError(f"encoder of a 'text' modality: unknown name '{name}' (known: {known})")
    sizes = SIZES[name]
    if weights and Path(weights).is_dir():
        try:
            bert = BertModel.from_pretrained(str(weights), local_files_only=True, add_pooling_layer=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{weights}: not a Hugging Face BERT checkpoint folder ({exc})") from exc
        got = {key: getattr(bert.config, key) for key in sizes}
        if got != sizes or bert.config.vocab_size != VOCAB_SIZE:
            raise ConfigError(
                f"{weights}: sizes {got} (vocab {bert.config.vocab_size}) are not {name}'s {sizes}"
            )
        return bert
    config = BertConfig(vocab_size=VOCAB_SIZE, max_position_embeddings=512, type_vocab_size=2, **sizes)
    bert = BertModel(config, add_pooling_layer=False)
    if weights:
        state = {k.removeprefix("bert."): v for k, v in load_state(weights, "BERT").items()}
        state = {k: v for k, v in state.items() if not k.startswith(("pooler.", "cls."))}
        try:
            bert.load_state_dict(state)
        except RuntimeError as exc:
            raise ConfigError(f"{weights}: does not fit {name} ({exc})") from exc
    return bert


@register_adapter("text")
def text_encoder(cfg: dict) -> nn.Module:
    """A BERT or a CLIP text tower of the named size on the stored tokens (module docstring)."""
    reject_unknown(sorted(cfg), TEXT_KEYS, context="encoder of a 'text' modality: ")
    if cfg["name"] in TEXT_SIZES:
        return clip_text_encoder(cfg)
    return TextEncoder(build_bert(cfg["name"], cfg.get("weights")))


text_encoder.model_names = (*SIZES, *TEXT_SIZES)  # listed by `mmbalance encoders`
TOKENIZER_OF = {**dict.fromkeys(SIZES, "bert_wordpiece"), **dict.fromkeys(TEXT_SIZES, "clip_bpe")}
"""The text kind's ``tokenizer`` whose ids each text encoder reads (checked by ``config.validate``)."""


def check_tokenizer(encoder: Mapping[str, Any], features: Mapping[str, Any], where: str) -> str | None:
    """Why a text modality's stored ``features`` (at ``where`` in params) do not fit its ``encoder``
    (None: they do): ``clip_*`` encoders read ``clip_bpe`` ids, ``bert_*`` encoders WordPiece (the
    default tokenizer of the text kind)."""
    name = encoder.get("name")
    wanted = TOKENIZER_OF.get(name)
    stored = features.get("tokenizer", DEFAULT_TOKENIZER)
    if wanted is None or wanted == stored:
        return None
    return f"{name} reads {wanted} ids, but {where}.tokenizer is {stored}"


text_encoder.check_features = check_tokenizer  # called by config.validate through the registry
