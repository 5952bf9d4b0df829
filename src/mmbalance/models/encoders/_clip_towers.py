"""CLIP's image and text towers (``transformers``), the ``clip_*`` names of the ``image`` and ``text``
adapters (LFM Table 5, MIE Table 6: "CLIP image/text encoders", fine-tuned with the method's head;
methods.md §C3). They read the ``image`` kind's uint8 images and the ``text`` kind's ``clip_bpe`` ids.

Sizes (``name``):

* image ``clip_vit_b32``: ``CLIPVisionModelWithProjection`` with ViT-B/32's sizes (hidden 768,
  12 layers, 12 heads, MLP 3072, 224-pixel input, 32-pixel patches, projection 512);
* text ``clip_b32``: ``CLIPTextModelWithProjection`` with ViT-B/32's text sizes (hidden 512,
  12 layers, 8 heads, MLP 2048, 77 positions, 49,408 tokens, projection 512);
* ``clip_tiny`` (both; for the embedded preset and tests): hidden 64, 2 layers, 2 heads, MLP 128,
  projection 64; the image tower takes 64-pixel images in 16-pixel patches, the text tower has
  CLIP's 77 positions and 49,408 tokens.

The papers do not say which CLIP they used; ViT-B/32 is our choice, the CLIP whose checkpoint
(``openai/clip-vit-base-patch32``) transformers' own CLIP documentation uses. **Feature**: the
projected embedding (``image_embeds``, ``text_embeds``: 512-d for the ViT-B/32 sizes), the space in
which CLIP compares images with texts, not L2-normalised (the papers do not say which output they
took; the method's head sees the same vector for every method).

**Image input**: ``x/255``, then CLIP's mean ``(0.48145466, 0.4578275, 0.40821073)`` and std
``(0.26862954, 0.26130258, 0.27577711)`` (``mean``/``std`` override them), then a bilinear resize
to the tower's input size when the stored image has another (the paper preset stores 224×224,
the tower's size, so nothing is resized there).

**Text input**: ids and attention mask (rows 0 and 1 of the stored tokens). The tower pools the
hidden state at the first end token (``<|endoftext|>``, 49407): its ``eos_token_id`` is set to
49407 also after loading a checkpoint whose config says 2 (older Hugging Face CLIP configs, whose
tower then takes the largest id instead, the same position for these ids).

**Masked inputs** (AGM's Shapley passes): the image whose normalised value is zero (CLIP's mean
colour), as for the other encoders, and the empty text (start and end token only).

**Weights**: random initialisation from the sizes (nothing is ever downloaded), unless
``weights`` names a folder in Hugging Face format (``config.json`` + ``model.safetensors`` or
``pytorch_model.bin``), e.g. a local copy of ``openai/clip-vit-base-patch32``: one CLIP checkpoint
serves both towers, each loading its part. It is read with ``local_files_only=True`` in float32;
sizes that differ from the named ones, or tower weights missing from the checkpoint, stop with a
:class:`ConfigError` naming the folder.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmbalance.data.clip_bpe import CONTEXT, EOT_ID, SOT_ID, VOCAB_SIZE
from mmbalance.errors import ConfigError
from mmbalance.models.encoders.adapters import NormalisedImages

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_SIZES: dict[str, dict[str, int]] = {
    "clip_vit_b32": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "image_size": 224,
        "patch_size": 32,
        "projection_dim": 512,
    },
    "clip_tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "image_size": 64,
        "patch_size": 16,
        "projection_dim": 64,
    },
}
TEXT_SIZES: dict[str, dict[str, int]] = {
    "clip_b32": {
        "hidden_size": 512,
        "num_hidden_layers": 12,
        "num_attention_heads": 8,
        "intermediate_size": 2048,
        "max_position_embeddings": CONTEXT,
        "vocab_size": VOCAB_SIZE,
        "projection_dim": 512,
    },
    "clip_tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "max_position_embeddings": CONTEXT,
        "vocab_size": VOCAB_SIZE,
        "projection_dim": 64,
    },
}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Only errors from ``transformers`` while a tower loads: a full CLIP checkpoint holds the other
    tower too, whose tensors it would list as unexpected; missing ones are checked here instead."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_tower(model_class: type, config_class: type, name: str, sizes: dict[str, int], weights: str) -> Any:
    """A tower of ``model_class`` from a Hugging Face checkpoint folder, sizes checked (module docstring)."""
    path = Path(weights)
    if not path.is_dir():
        raise ConfigError(
            f"{path}: CLIP checkpoint folder not found; place a Hugging Face CLIP checkpoint there "
            f"(docs/datasets.md) or set the encoder's weights: null for random initialisation"
        )
    try:
        model_type = json.loads((path / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: no readable config.json of a Hugging Face checkpoint ({exc})") from exc
    if model_type not in ("clip", config_class.model_type):
        raise ConfigError(
            f"{path}: a '{model_type}' checkpoint; {name} needs 'clip' or '{config_class.model_type}'"
        )
    try:
        with quiet_transformers():
            config = config_class.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a Hugging Face CLIP checkpoint folder ({exc})") from exc
    got = {key: getattr(config, key, None) for key in sizes}
    if got != sizes:
        raise ConfigError(f"{path}: sizes {got} are not {name}'s {sizes}")
    try:
        with quiet_transformers():
            model, info = model_class.from_pretrained(
                str(path), config=config, local_files_only=True, dtype=torch.float32, output_loading_info=True
            )
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{path}: cannot load {name} from it ({exc})") from exc
    missing = sorted(info.get("missing_keys", []))
    if missing:
        raise ConfigError(f"{path}: the checkpoint lacks {len(missing)} tensors of {name}: {missing[:3]}")
    return model


class ClipImageEncoder(NormalisedImages):
    """A (B, 3, H, W) uint8 image → (B, projection) CLIP image embedding (masked: CLIP's mean colour)."""

    def __init__(self, tower: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__(mean, std)
        self.tower = tower
        size = tower.config.image_size
        self.input_size = (size, size)
        self.out_dim: int = tower.config.projection_dim

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 → float, CLIP-normalised, resized to the tower's input size if needed."""
        x = self.normalise(x)
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tower(pixel_values=self.images(x)).image_embeds


class ClipTextEncoder(nn.Module):
    """(B, 3, L) int ``clip_bpe`` ids, mask and zeros → (B, projection) CLIP text embedding."""

    def __init__(self, tower: nn.Module) -> None:
        super().__init__()
        self.tower = tower
        self.out_dim: int = tower.config.projection_dim

    def masked_input(self, x: torch.Tensor) -> torch.Tensor:
        """AGM's masked text (:mod:`mmbalance.models.shapley`): the empty text, start and end token
        only (all-zero CLIP tokens would be a masked-out run of ``!`` with no end token to pool at)."""
        out = torch.zeros_like(x)
        out[:, 0, 0], out[:, 0, 1] = SOT_ID, EOT_ID
        out[:, 1, :2] = 1
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.long()
        return self.tower(input_ids=x[:, 0], attention_mask=x[:, 1]).text_embeds


def build_image_tower(name: str, weights: str | None) -> nn.Module:
    """``CLIPVisionModelWithProjection`` of the named size, random or loaded from ``weights``."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    sizes = IMAGE_SIZES[name]
    if weights:
        return load_tower(CLIPVisionModelWithProjection, CLIPVisionConfig, name, sizes, weights)
    return CLIPVisionModelWithProjection(CLIPVisionConfig(**sizes))


def build_text_tower(name: str, weights: str | None) -> nn.Module:
    """``CLIPTextModelWithProjection`` of the named size, random or loaded from ``weights``; it pools
    at the first ``<|endoftext|>`` (module docstring)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    sizes = TEXT_SIZES[name]
    if weights:
        tower = load_tower(CLIPTextModelWithProjection, CLIPTextConfig, name, sizes, weights)
    else:
        config = CLIPTextConfig(**sizes, bos_token_id=SOT_ID, eos_token_id=EOT_ID)
        tower = CLIPTextModelWithProjection(config)
    tower.config.eos_token_id = EOT_ID
    tower.text_model.eos_token_id = EOT_ID
    return tower


def clip_image_encoder(cfg: dict, mean: Sequence[float], std: Sequence[float]) -> ClipImageEncoder:
    """The image adapter's ``clip_*`` names (``cfg`` already checked by the adapter)."""
    for key in ("width", "input_size"):
        if key in cfg:
            raise ConfigError(
                f"encoder of an 'image' modality: {cfg['name']} has no '{key}' (the tower fixes its input)"
            )
    return ClipImageEncoder(build_image_tower(cfg["name"], cfg.get("weights")), mean, std)


def clip_text_encoder(cfg: dict) -> ClipTextEncoder:
    """The text adapter's ``clip_*`` names (``cfg`` already checked by the adapter)."""
    return ClipTextEncoder(build_text_tower(cfg["name"], cfg.get("weights")))
