"""CLIP's image and text towers as names of the ``image`` and ``text`` adapters: sizes and output
shapes, pooling at the end token, checkpoints written by ``save_pretrained`` (one tower, or a whole
CLIP model with the older ``eos_token_id: 2``) loading back to identical outputs, and the errors
that name the folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance.data import clip_bpe
from mmbalance.errors import ConfigError
from mmbalance.models.encoders import _clip_towers as clip_towers
from mmbalance.models.encoders.adapters import build_encoder


def tokens(*texts: str, length: int = 16) -> torch.Tensor:
    return torch.from_numpy(np.stack([clip_bpe.tokenize(text, length) for text in texts]))


def images(batch: int = 2, size: int = 64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=generator)


def test_vit_b32_sizes_and_projected_features() -> None:
    torch.manual_seed(0)
    image = build_encoder("image", {"name": "clip_vit_b32"}).eval()
    text = build_encoder("text", {"name": "clip_b32"}).eval()
    vision, language = image.tower.config, text.tower.config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (768, 12, 12)
    assert (vision.image_size, vision.patch_size, vision.intermediate_size) == (224, 32, 3072)
    assert (language.hidden_size, language.num_hidden_layers, language.num_attention_heads) == (512, 12, 8)
    assert (language.max_position_embeddings, language.vocab_size) == (77, 49408)
    assert image.out_dim == text.out_dim == 512
    with torch.no_grad():
        assert image(images(1, 224)).shape == (1, 512)
        assert text(tokens("a photo of a cat", length=77)).shape == (1, 512)
    torch.testing.assert_close(image.mean.flatten(), torch.tensor(clip_towers.CLIP_MEAN))
    torch.testing.assert_close(image.std.flatten(), torch.tensor(clip_towers.CLIP_STD))


def test_tiny_towers_shapes_and_resize() -> None:
    torch.manual_seed(0)
    image = build_encoder("image", {"name": "clip_tiny"}).eval()
    text = build_encoder("text", {"name": "clip_tiny"}).eval()
    assert image.out_dim == text.out_dim == 64
    with torch.no_grad():
        assert image(images()).shape == (2, 64) and text(tokens("a cat", "two\nlines")).shape == (2, 64)
        small = images(2, 32)  # another stored size is resized to the tower's 64 pixels
        assert image.images(small).shape == (2, 3, 64, 64) and image(small).shape == (2, 64)
    other = build_encoder("image", {"name": "clip_tiny", "mean": [0.5] * 3, "std": [0.25] * 3})
    assert other.mean.flatten().tolist() == [0.5] * 3
    with pytest.raises(ConfigError, match="clip_tiny has no 'width'"):
        build_encoder("image", {"name": "clip_tiny", "width": 16})
    with pytest.raises(ConfigError, match="clip_tiny has no 'input_size'"):
        build_encoder("image", {"name": "clip_tiny", "input_size": [32, 32]})
    with pytest.raises(ConfigError, match=r"unknown name 'clip_vit_b32' \(known: bert_base, bert_tiny, clip"):
        build_encoder("text", {"name": "clip_vit_b32"})


def test_text_feature_is_pooled_at_the_end_token() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("text", {"name": "clip_tiny"}).eval()
    x = tokens("a photo of a cat", "a cat")
    end = (x[:, 0] == clip_bpe.EOT_ID).int().argmax(dim=1)
    assert end.tolist() == [6, 3]
    with torch.no_grad():
        feature = encoder(x)
        tower = encoder.tower
        hidden = tower.text_model(input_ids=x[:, 0].long(), attention_mask=x[:, 1].long()).last_hidden_state
        torch.testing.assert_close(feature, tower.text_projection(hidden[torch.arange(2), end]))
        assert not torch.allclose(feature, tower.text_projection(hidden[:, 0]))
        after = x.clone()
        after[:, 0, 7:] = 1234  # tokens behind the end token change nothing (causal attention, pooled at EOT)
        torch.testing.assert_close(encoder(after), feature)
        moved = x.clone()
        moved[0, 0, 6], moved[0, 0, 5] = 2368, clip_bpe.EOT_ID  # the end token one place earlier
        assert not torch.allclose(encoder(moved)[0], feature[0])


def test_checkpoint_folders_load_back_to_identical_outputs(tmp_path: Path) -> None:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    image = build_encoder("image", {"name": "clip_tiny"}).eval()
    text = build_encoder("text", {"name": "clip_tiny"}).eval()
    image.tower.save_pretrained(tmp_path / "vision")
    text.tower.save_pretrained(tmp_path / "text")
    x, t = images(), tokens("a photo of a cat", "sarcasm\ntarget")
    with torch.no_grad():
        loaded_image = build_encoder("image", {"name": "clip_tiny", "weights": str(tmp_path / "vision")})
        loaded_text = build_encoder("text", {"name": "clip_tiny", "weights": str(tmp_path / "text")})
        assert torch.equal(loaded_image.eval()(x), image(x)) and torch.equal(loaded_text.eval()(t), text(t))

    # a whole CLIP model, as openai/clip-vit-base-patch32 is stored, with the older text eos_token_id 2
    config = CLIPConfig(
        text_config={**clip_towers.TEXT_SIZES["clip_tiny"], "eos_token_id": 2},
        vision_config=clip_towers.IMAGE_SIZES["clip_tiny"],
        projection_dim=64,
    )
    full = CLIPModel(config).eval()
    full.save_pretrained(tmp_path / "clip")
    weights = {"name": "clip_tiny", "weights": str(tmp_path / "clip")}
    with torch.no_grad():
        both_image, both_text = build_encoder("image", weights).eval(), build_encoder("text", weights).eval()
        pixels = both_image.images(x)
        vision = full.vision_model(pixel_values=pixels).pooler_output
        torch.testing.assert_close(both_image(x), full.visual_projection(vision))
        hidden = full.text_model(input_ids=t[:, 0].long(), attention_mask=t[:, 1].long()).last_hidden_state
        end = (t[:, 0] == clip_bpe.EOT_ID).int().argmax(dim=1)
        torch.testing.assert_close(both_text(t), full.text_projection(hidden[torch.arange(2), end]))
    assert both_text.tower.text_model.eos_token_id == clip_bpe.EOT_ID


def test_weights_errors_name_the_folder(tmp_path: Path) -> None:
    torch.manual_seed(0)
    build_encoder("text", {"name": "clip_tiny"}).tower.save_pretrained(tmp_path / "tiny_text")
    folder = tmp_path / "tiny_text"
    with pytest.raises(ConfigError, match=rf"{folder}: sizes .* are not clip_b32's"):
        build_encoder("text", {"name": "clip_b32", "weights": str(folder)})
    with pytest.raises(ConfigError, match=rf"{folder}: a 'clip_text_model' checkpoint; clip_tiny needs"):
        build_encoder("image", {"name": "clip_tiny", "weights": str(folder)})
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'nowhere'}: CLIP checkpoint folder not found"):
        build_encoder("image", {"name": "clip_vit_b32", "weights": str(tmp_path / "nowhere")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=rf"{tmp_path / 'empty'}: no readable config\.json"):
        build_encoder("text", {"name": "clip_tiny", "weights": str(tmp_path / "empty")})


def test_the_encoders_command_lists_the_clip_names(capsys: pytest.CaptureFixture) -> None:
    from mmbalance.cli import main

    assert main(["encoders"]) == 0
    lines = capsys.readouterr().out.splitlines()
    image = next(index for index, line in enumerate(lines) if line.startswith("image "))
    assert lines[image + 1].strip() == "names: resnet50, clip_vit_b32, clip_tiny"
    assert any(line.strip() == "names: bert_base, bert_tiny, clip_b32, clip_tiny" for line in lines)


def test_masked_inputs_are_the_mean_colour_and_the_empty_text() -> None:
    torch.manual_seed(0)
    image = build_encoder("image", {"name": "clip_tiny"}).eval()
    text = build_encoder("text", {"name": "clip_tiny"}).eval()
    blank = image.masked_input(images())
    assert blank.shape == (2, 3, 64, 64)
    torch.testing.assert_close(image.images(blank), torch.zeros(2, 3, 64, 64), atol=1e-5, rtol=0)
    empty = text.masked_input(tokens("a photo of a cat", "x"))
    assert torch.equal(empty, tokens("", ""))
