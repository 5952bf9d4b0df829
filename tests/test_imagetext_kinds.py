"""The ``image`` and ``text`` modality kinds and their encoder adapters: geometry, tokenisation with
the verified bert-base-uncased vocabulary, key checks, output sizes and loading a person's weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmbalance.data.kinds import text as text_kind
from mmbalance.data.kinds.image import load_image
from mmbalance.errors import ConfigError, DataError
from mmbalance.models.encoders.adapters import build_encoder
from mmbalance.registry import KINDS


def bands(path: Path, mode: str = "RGB") -> Path:
    """A 40×20 image: 10 green columns, 20 red, 10 blue (a centre crop keeps only the red)."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :10, 1] = 255
    pixels[:, 10:30, 0] = 255
    pixels[:, 30:, 2] = 255
    Image.fromarray(pixels).convert(mode).save(path)
    return path


def test_image_stretch_and_crop(tmp_path: Path) -> None:
    path = bands(tmp_path / "a.png")
    stretched = load_image(path, 16, "stretch")  # Resize((16, 16)): every band stays, squeezed
    assert stretched.shape == (3, 16, 16) and stretched.dtype == np.uint8
    assert (
        stretched[1, :, :3].min() > 200
        and stretched[0, :, 6:10].min() > 200
        and stretched[2, :, -3:].min() > 200
    )
    cropped = load_image(path, 16, "crop")  # 40×20 → 32×16, the centre 16 columns are the red band
    assert cropped.shape == (3, 16, 16)
    assert cropped[0].min() > 200 and cropped[1].max() < 60 and cropped[2].max() < 60


def test_image_modes_become_rgb_and_bad_files_are_named(tmp_path: Path) -> None:
    for mode in ("L", "P", "RGBA", "CMYK"):
        suffix = ".jpg" if mode == "CMYK" else ".png"
        assert load_image(bands(tmp_path / f"m{mode}{suffix}", mode), 8, "stretch").shape == (3, 8, 8)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(DataError, match=r"bad\.jpg: not a decodable image"):
        load_image(tmp_path / "bad.jpg", 8, "stretch")


def test_image_kind_checks_its_keys() -> None:
    kind = KINDS.get("image")()
    assert kind.shape(kind.check("image", {"size": 24, "resize": "crop"})) == (3, 24, 24)
    with pytest.raises(ConfigError, match=r"missing key 'image\.resize'"):
        kind.check("image", {"size": 24})
    with pytest.raises(ConfigError, match=r"'image\.resize': 'squash'"):
        kind.check("image", {"size": 24, "resize": "squash"})
    with pytest.raises(ConfigError, match=r"unknown key 'image\.frames'"):
        kind.check("image", {"size": 24, "resize": "crop", "frames": 3})


def test_vocabulary_is_bert_base_uncased() -> None:
    path = text_kind.vocab_path()
    assert hashlib.md5(path.read_bytes()).hexdigest() == "64800d5d8528ce344256daf115d4965e"
    assert path.stat().st_size == 231508


def test_tokenize_single_pair_and_truncation() -> None:
    ids, mask, segments = text_kind.tokenize("Hello World # sarcasm", 8)
    assert ids.tolist() == [101, 7592, 2088, 1001, 20954, 102, 0, 0]  # lower-cased WordPiece, [PAD] = 0
    assert mask.tolist() == [1, 1, 1, 1, 1, 1, 0, 0] and segments.tolist() == [0] * 8
    ids, mask, segments = text_kind.tokenize("hello world\nworld", 8)
    assert ids.tolist() == [101, 7592, 2088, 102, 2088, 102, 0, 0]
    assert segments.tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
    long = text_kind.tokenize(" ".join(["word"] * 50), 6)
    assert long[0].tolist() == [101, 2773, 2773, 2773, 2773, 102] and long[1].all()


def test_text_kind_reads_files_and_checks_keys(tmp_path: Path) -> None:
    kind = KINDS.get("text")()
    cfg = kind.check("text", {"max_length": 12})
    (tmp_path / "a.txt").write_text("émoji café", encoding="utf-8")
    array = kind.compute(tmp_path / "a.txt", cfg)
    assert array.shape == kind.shape(cfg) == (3, 12) and array.dtype == kind.dtype == np.int32
    (tmp_path / "b.txt").write_text("one\ntwo\nthree", encoding="utf-8")
    with pytest.raises(DataError, match=r"b\.txt: cannot tokenise"):
        kind.compute(tmp_path / "b.txt", cfg)
    with pytest.raises(ConfigError, match="max_length"):
        kind.check("text", {"max_length": 1000})


def test_vocabulary_with_another_md5_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(text_kind, "VOCAB_MD5", "0" * 32)
    with pytest.raises(DataError, match=r"vocab\.txt: md5 64800d5d8528ce344256daf115d4965e is not"):
        text_kind.vocab_path()


def test_image_adapters_sizes_and_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    resnet50 = build_encoder("image", {"name": "resnet50"})
    assert resnet50.out_dim == 2048 and resnet50.eval()(x).shape == (2, 2048)
    assert resnet50.trunk.stage_channels == [256, 512, 1024, 2048]  # stage-wise models (MMTM) can run it
    import torchvision

    reference = torchvision.models.resnet50(weights=None).eval()
    torch.save(reference.state_dict(), tmp_path / "resnet50.pth")  # torchvision's key layout, fc included
    loaded = build_encoder("image", {"name": "resnet50", "weights": str(tmp_path / "resnet50.pth")}).eval()
    with torch.no_grad():
        images = loaded.images(x)
        expected = torch.nn.Sequential(*list(reference.children())[:-2])(images).mean(dim=(2, 3))
        torch.testing.assert_close(loaded(x), expected)
    small = build_encoder("image", {"name": "resnet18", "width": 8, "mean": [0.5] * 3, "std": [0.25] * 3})
    assert small.out_dim == 64 and small(x).shape == (2, 64)
    with pytest.raises(ConfigError, match="resnet50 has no 'width'"):
        build_encoder("image", {"name": "resnet50", "width": 16})
    with pytest.raises(ConfigError, match=r"nowhere\.pth: ResNet50 weights not found"):
        build_encoder("image", {"name": "resnet50", "weights": str(tmp_path / "nowhere.pth")})
    with pytest.raises(ConfigError, match="unknown key 'frames'"):
        build_encoder("image", {"name": "resnet18", "width": 8, "frames": 3})


def test_text_adapter_cls_feature_and_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tokens = torch.from_numpy(np.stack([text_kind.tokenize("a tweet\ntarget", 10)] * 2))
    encoder = build_encoder("text", {"name": "bert_tiny"}).eval()
    assert encoder.out_dim == 128
    with torch.no_grad():
        feature = encoder(tokens)
        assert feature.shape == (2, 128)
        full = encoder.bert(input_ids=tokens[:, 0].long(), attention_mask=tokens[:, 1].long(),
                            token_type_ids=tokens[:, 2].long()).last_hidden_state  # fmt: skip
        torch.testing.assert_close(feature, full[:, 0])
    torch.save(encoder.bert.state_dict(), tmp_path / "tiny.pt")
    encoder.bert.save_pretrained(tmp_path / "tiny_hf")
    for weights in (tmp_path / "tiny.pt", tmp_path / "tiny_hf"):
        loaded = build_encoder("text", {"name": "bert_tiny", "weights": str(weights)}).eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded(tokens), feature)
    with pytest.raises(ConfigError, match="are not bert_base's"):
        build_encoder("text", {"name": "bert_base", "weights": str(tmp_path / "tiny_hf")})
    with pytest.raises(ConfigError, match="unknown name 'gpt2'"):
        build_encoder("text", {"name": "gpt2"})
    with pytest.raises(ConfigError, match="unknown key 'width'"):
        build_encoder("text", {"name": "bert_tiny", "width": 4})


def test_masked_image_is_zero_after_the_encoders_own_normalisation() -> None:
    """AGM masks an image with the input whose normalised value is zero: the preset's mean colour."""
    mean, std = [0.42455, 0.44051, 0.47076], [0.24485, 0.24617, 0.25451]
    encoder = build_encoder("image", {"name": "resnet18", "width": 4, "mean": mean, "std": std})
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    masked = encoder.masked_input(images)
    assert masked.shape == images.shape
    assert torch.allclose(encoder.images(masked), torch.zeros(()), atol=1e-6)
