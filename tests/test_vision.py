"""
Images as sequences (issue 19, work in progress): a Vaswani encoder that reads pixels (`image_size`) computes what
transformers' ViT computes, at its own size and at others (positions resized as ViT resizes them), and bad images
are refused by name.
"""

import pytest
import torch
from transformers import ViTConfig, ViTForImageClassification

from vaswani import VaswaniConfig
from vaswani.convert import convert
from vaswani.modeling.modeling_vaswani_heads import VaswaniForImageClassification

VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=16,
           patch_size=4, num_channels=3, num_labels=5)


def vaswani_config(**overrides) -> VaswaniConfig:
    settings = dict(stacks="encoder-only", vocab_size=8, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=2,
                    num_decoder_layers=0, image_size=16, patch_size=4, num_channels=3, norm_first=True,
                    final_layer_norm=True, activation_function="gelu", position_embedding_type="learned",
                    layer_norm_eps=1e-12, scale_embedding=False, dropout=0.0, type_vocab_size=0, num_labels=5,
                    pad_token_id=None, bos_token_id=None, eos_token_id=None)
    settings.update(overrides)
    return VaswaniConfig(**settings)


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    vit = ViTForImageClassification(ViTConfig(**VIT)).eval()
    ours = VaswaniForImageClassification(vaswani_config()).eval()
    # The converter's weights (it insists on every tensor of both sides) in a model built from the ViT-shaped config
    # here: the config above is what a user writes for ViT's numbers.
    ours.load_state_dict(convert(vit).state_dict())
    return vit, ours


@pytest.mark.parametrize("size", [16, 24, 8], ids=["own-size", "larger", "smaller"])
def test_logits_equal_vits(pair, size):
    vit, ours = pair
    images = torch.randn(2, 3, size, size)
    interpolate = size != 16
    with torch.no_grad():
        expected = vit(images, interpolate_pos_encoding=interpolate).logits
        got = ours(images, interpolate_pos_encoding=interpolate).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_loss_is_vits(pair):
    vit, ours = pair
    images, labels = torch.randn(3, 3, 16, 16), torch.tensor([0, 4, 2])
    torch.testing.assert_close(ours(images, labels=labels).loss, vit(images, labels=labels).loss)


@pytest.mark.parametrize("kind", ["sinusoidal", "alibi", "relative"])
def test_other_positions_run_on_patches(kind):
    torch.manual_seed(0)
    model = VaswaniForImageClassification(vaswani_config(position_embedding_type=kind)).eval()
    output = model(torch.randn(2, 3, 16, 16), labels=torch.tensor([1, 3]))
    assert output.logits.shape == (2, 5) and torch.isfinite(output.loss)
    assert not any("position_embeddings" in name for name, _ in model.named_parameters())


def test_save_and_load_are_exact(pair, tmp_path):
    _, ours = pair
    ours.save_pretrained(tmp_path)
    loaded = VaswaniForImageClassification.from_pretrained(tmp_path).eval()
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(images).logits, ours(images).logits)


@pytest.mark.parametrize(
    "images,message",
    [
        (torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8), "float tensor"),
        (torch.randn(3, 16, 16), "batch dimension"),
        (torch.randn(1, 1, 16, 16), "1 channels, the model 3"),
        (torch.randn(1, 3, 20, 20), "interpolate_pos_encoding=True"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
        (None, "pass `pixel_values`"),
    ],
    ids=["bytes", "no-batch", "grey", "other-size", "nan", "none"],
)
def test_bad_images_are_refused_by_name(pair, images, message):
    with pytest.raises(ValueError, match=message):
        pair[1](images)


def test_other_sizes_must_be_whole_patches(pair):
    with pytest.raises(ValueError, match="whole 4x4 patches"):
        pair[1](torch.randn(1, 3, 18, 18), interpolate_pos_encoding=True)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"image_size": 18}, "must divide `image_size`"),
        ({"image_size": 0}, "`image_size` must be a positive integer"),
        ({"num_channels": 0}, "`num_channels` must be a positive integer"),
        ({"image_size": 16, "stacks": "decoder-only", "num_decoder_layers": 2, "num_encoder_layers": 0}, "no encoder"),
    ],
)
def test_bad_image_configs_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        vaswani_config(**overrides).check_stacks()


def test_a_text_config_is_refused_by_the_image_head():
    with pytest.raises(ValueError, match="no `image_size`"):
        VaswaniForImageClassification(vaswani_config(image_size=None))


# -- Through the usual doors: the Auto class, the image processor, the pipeline, remote code ----------------------------
@pytest.fixture(scope="module")
def folder(pair, tmp_path_factory):
    from vaswani import image_processor_for

    _, ours = pair
    path = tmp_path_factory.mktemp("vit") / "digits"
    ours.config.id2label = {i: f"digit {i}" for i in range(5)}
    ours.config.label2id = {v: k for k, v in ours.config.id2label.items()}
    ours.save_pretrained(path)
    image_processor_for(ours.config).save_pretrained(path)
    return path


def _images(count: int = 2):
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    return [Image.fromarray(torch.randint(0, 256, (12, 10, 3), generator=generator, dtype=torch.uint8).numpy())
            for _ in range(count)]


def test_the_auto_classes_load_the_folder(folder, pair):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    assert type(model) is VaswaniForImageClassification and model.main_input_name == "pixel_values"
    batch = processor(_images(), return_tensors="pt")
    assert batch["pixel_values"].shape == (2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, pair[1](**batch).logits)


def test_the_image_classification_pipeline_from_a_folder_and_an_object(folder, pair):
    from transformers import AutoImageProcessor, pipeline

    from_folder = pipeline("image-classification", model=str(folder))
    from_object = pipeline("image-classification", model=pair[1], image_processor=AutoImageProcessor.from_pretrained(folder))
    image = _images(1)[0]
    with torch.no_grad():
        expected = torch.softmax(pair[1](**from_folder.image_processor(image, return_tensors="pt")).logits, -1)[0]
    for classify in (from_folder, from_object):
        answers = classify(image, top_k=5)
        assert [a["label"] for a in answers] == [f"digit {int(i)}" for i in expected.argsort(descending=True)]
        assert answers[0]["score"] == pytest.approx(float(expected.max()), abs=1e-6)


def test_the_folder_loads_with_remote_code_where_the_package_is_absent(folder, pair, tmp_path):
    from test_hub import run_without_vaswani
    from transformers import AutoImageProcessor

    batch = AutoImageProcessor.from_pretrained(folder)(_images(), return_tensors="pt")
    with torch.no_grad():
        logits = pair[1](**batch).logits
    torch.save({"batch": dict(batch), "logits": logits}, tmp_path / "case.pt")
    result = run_without_vaswani(
        f"""
        folder, case = {str(folder)!r}, torch.load({str(tmp_path / "case.pt")!r})
        model = transformers.AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
        processor = transformers.AutoImageProcessor.from_pretrained(folder)
        classify = transformers.pipeline("image-classification", model=folder, trust_remote_code=True)
        with torch.no_grad():
            logits = model(**case["batch"]).logits
        print(json.dumps({{"module": type(model).__module__, "logits": torch.equal(logits, case["logits"]),
                          "processor": type(processor).__name__,
                          "labels": len(classify(case["batch"]["pixel_values"][0].permute(1, 2, 0).add(1).mul(127.5)
                                                 .byte().numpy(), top_k=5))}}))
        """,
        tmp_path,
    )
    assert result["module"].startswith("transformers_modules.") and result["logits"] is True
    assert result["processor"].startswith("ViTImageProcessor") and result["labels"] == 5


def test_the_image_processor_needs_an_image_model():
    from vaswani import image_processor_for

    with pytest.raises(ValueError, match="no `image_size`"):
        image_processor_for(vaswani_config(image_size=None))
    with pytest.raises(ValueError, match="num_channels=1"):
        image_processor_for(vaswani_config(num_channels=1))


def test_the_card_speaks_of_images(folder):
    card = (folder / "README.md").read_text()
    assert "reads images of 16x16 pixels (3 channels) as 16 patches of 4x4" in card
    assert "| vocabulary | none: it reads images |" in card and "AutoImageProcessor.from_pretrained" in card
    assert "AutoTokenizer" not in card and "tokens (learned positions stop there)" not in card


# -- The converter -------------------------------------------------------------------------------------------------------
def test_vit_converts_with_the_same_numbers(pair):
    from transformers import ViTModel

    from vaswani.convert import convert

    vit, _ = pair
    converted = convert(vit).eval()
    assert type(converted) is VaswaniForImageClassification and converted.config.image_size == 16
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(converted(images).logits, vit(images).logits, atol=1e-5, rtol=1e-5)
        bare = ViTModel(vit.config, add_pooling_layer=True).eval()
        torch.testing.assert_close(convert(bare).eval()(pixel_values=images).last_hidden_state,
                                   bare(images).last_hidden_state, atol=1e-5, rtol=1e-5)


def test_a_vit_without_qkv_bias_is_refused_by_name():
    from vaswani.convert import ConversionError, convert

    with pytest.raises(ConversionError, match="qkv_bias=False"):
        convert(ViTForImageClassification(ViTConfig(**VIT, qkv_bias=False)))
