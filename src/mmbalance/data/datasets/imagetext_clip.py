"""``sarcasm_clip`` and ``twitter2015_clip``: Sarcasm and Twitter2015 for CLIP image and text encoders
(LFM Table 5, MIE Table 6; methods.md §C3: "CLIP image/text encoders, fine-tuned, with the method's
head").

Each is its dataset with the same raw data, splits, labels and class names; only the presets
differ (``features.<profile>.<name>``: ``tokenizer: clip_bpe``, 77 tokens; ``train.<profile>.<name>``:
the ``clip_*`` encoders). They set :attr:`~mmbalance.data.datasets._base.Dataset.raw_from`, so they
read ``data.sarcasm`` / ``data.twitter2015`` (and have no ``data`` block of their own), and their raw
folder is the ResNet/BERT dataset's ``<paths.data>/raw/<sarcasm|twitter2015>/<data id>/``: the split
files are downloaded and the images gathered and checked once for both, whichever is generated
first. Their feature stores and runs are their own (``features/sarcasm_clip/…``,
``results/sarcasm_clip/…``), and the report tables read them under their own names.
"""

from __future__ import annotations

from mmbalance.data.datasets.sarcasm import Sarcasm
from mmbalance.data.datasets.twitter2015 import Twitter2015
from mmbalance.registry import register_dataset


@register_dataset("sarcasm_clip")
class SarcasmClip(Sarcasm):
    """Sarcasm with CLIP encoders: Sarcasm's raw data, its own presets (module docstring)."""

    name = "sarcasm_clip"
    raw_from = "sarcasm"


@register_dataset("twitter2015_clip")
class Twitter2015Clip(Twitter2015):
    """Twitter2015 with CLIP encoders: Twitter2015's raw data, its own presets (module docstring)."""

    name = "twitter2015_clip"
    raw_from = "twitter2015"
