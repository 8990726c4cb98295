"""
`vaswani.attention_maps`: the weights equal an eager forward's `output_attentions` in every stack layout (and with
additive scores), rows are distributions, padding and the future get no weight, the tokens are the tokenizer's, and
the model gets back its attention implementation and train/eval modes, also when the forward raises.
"""

import pytest
import torch

from helpers import VOCAB, random_ids, shakespeare_lines, tiny_config
from vaswani import (
    AttentionMaps,
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMaskedLM,
    attention_maps,
    train_tokenizer,
)
from vaswani.explore.maps import KEY_STACK

LAYOUTS = [VaswaniForCausalLM, VaswaniForConditionalGeneration, VaswaniForMaskedLM]
KINDS = {
    VaswaniForCausalLM: ("decoder",),
    VaswaniForConditionalGeneration: ("encoder", "decoder", "cross"),
    VaswaniForMaskedLM: ("encoder",),
}


def build(head, **overrides):
    torch.manual_seed(0)
    return head(tiny_config(**overrides))


def padded_inputs(model) -> dict:
    ids = random_ids(2, 7)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # the second example is two tokens shorter
    inputs = {"input_ids": ids, "attention_mask": mask}
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = random_ids(2, 5)
        inputs["decoder_attention_mask"] = torch.tensor([[1] * 5, [1] * 3 + [0] * 2])
    return inputs


def eager_attentions(model, inputs) -> dict:
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model.eval()(**inputs, output_attentions=True)
    if model.config.is_encoder_decoder:
        return {"encoder": out.encoder_attentions, "decoder": out.decoder_attentions, "cross": out.cross_attentions}
    return {KINDS[type(model)][0]: out.attentions}


@pytest.mark.parametrize("scores", ["scaled_dot_product", "additive"])
@pytest.mark.parametrize("head", LAYOUTS, ids=lambda h: h.__name__)
def test_maps_equal_output_attentions_of_an_eager_forward(head, scores):
    model = build(head, attention_scores=scores)
    inputs = padded_inputs(model)
    maps = attention_maps(model, inputs)
    assert isinstance(maps, AttentionMaps) and maps.kinds == KINDS[head]
    expected = eager_attentions(model, inputs)
    for kind in maps.kinds:
        assert maps.weights[kind].shape[:3] == (2, 2, 4)  # layers, batch, heads
        assert torch.equal(maps.weights[kind], torch.stack(expected[kind]))


@pytest.mark.parametrize("head", LAYOUTS, ids=lambda h: h.__name__)
def test_rows_sum_to_one_and_masked_keys_get_no_weight(head):
    model = build(head)
    inputs = padded_inputs(model)
    maps = attention_maps(model, inputs)
    for kind in maps.kinds:
        weights = maps.weights[kind]  # (layers, B, h, queries, keys)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
        keys = maps.masks[KEY_STACK[kind]]
        assert torch.all(weights[:, 1, :, :, ~keys[1]] == 0)  # padding keys of the second example
        if kind == "decoder":  # masked self-attention: no query sees a later token
            future = torch.ones(weights.shape[-2:], dtype=torch.bool).triu(1)
            assert torch.all(weights[..., future] == 0)
    layer, head_index = 1, 2
    kind = maps.kinds[-1]
    weights, queries, keys = maps.head(layer, head_index, kind, example=1)
    assert weights.shape == (len(queries), len(keys))
    assert len(keys) == 5 and len(queries) == (3 if kind == "cross" else 5)


def test_tokens_are_the_tokenizers_and_text_goes_through_it():
    tokenizer = train_tokenizer(shakespeare_lines(200), kind="char", vocab_size=80, model_max_length=64)
    model = build(VaswaniForCausalLM, vocab_size=len(tokenizer))
    texts = ["To be, or not", "Ay"]
    maps = attention_maps(model, texts, tokenizer=tokenizer)
    encoded = tokenizer(texts, return_tensors="pt", padding=True)
    assert maps.tokens["decoder"] == [tokenizer.convert_ids_to_tokens(row) for row in encoded["input_ids"].tolist()]
    assert maps.real_tokens("decoder", 1) == tokenizer.convert_ids_to_tokens(tokenizer("Ay")["input_ids"])
    assert torch.equal(maps.weights["decoder"], attention_maps(model, encoded, tokenizer=tokenizer).weights["decoder"])
    without = attention_maps(model, encoded)  # no tokenizer: the ids, as text
    assert without.tokens["decoder"][0] == [str(i) for i in encoded["input_ids"][0].tolist()]


def test_labels_become_the_shifted_target():
    model = build(VaswaniForConditionalGeneration)
    ids, labels = random_ids(2, 6), random_ids(2, 4)
    maps = attention_maps(model, {"input_ids": ids, "labels": labels})
    shifted = model.prepare_decoder_input_ids_from_labels(labels)
    assert maps.tokens["decoder"] == [[str(i) for i in row] for row in shifted.tolist()]
    assert maps.weights["cross"].shape == (2, 2, 4, 4, 6)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_the_implementation_and_modes_are_restored(implementation):
    model = build(VaswaniForConditionalGeneration)
    model.set_attn_implementation(implementation)
    model.train()
    model.model.encoder.eval()  # a mixed state comes back as it was, module by module
    modes = {name: module.training for name, module in model.named_modules()}
    attention_maps(model, padded_inputs(model))
    assert model.config._attn_implementation == implementation
    assert {name: module.training for name, module in model.named_modules()} == modes


def test_the_implementation_is_restored_after_an_exception():
    model = build(VaswaniForCausalLM)
    model.train()
    seen = []
    # The forward raises inside the call, after the switch to eager: an id past the vocabulary.
    model.register_forward_pre_hook(lambda module, args: seen.append(module.config._attn_implementation))
    with pytest.raises(ValueError, match="input_ids"):
        attention_maps(model, {"input_ids": torch.full((1, 4), VOCAB + 5)})
    assert seen == ["eager"]
    assert model.config._attn_implementation == "sdpa" and model.training
    assert all(module.training for module in model.modules())


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda m: attention_maps(torch.nn.Linear(2, 2), {"input_ids": random_ids()}), TypeError, "`model`"),
        (lambda m: attention_maps(m, 42), TypeError, "`inputs`"),
        (lambda m: attention_maps(m, "some text"), ValueError, "`tokenizer`"),
        (lambda m: attention_maps(m, {"attention_mask": torch.ones(1, 3)}), ValueError, "`input_ids`"),
        (lambda m: attention_maps(m, {"input_ids": random_ids()}), ValueError, "decoder_input_ids"),
    ],
    ids=["not-a-model", "not-inputs", "text-without-tokenizer", "no-input-ids", "seq2seq-without-target"],
)
def test_bad_arguments_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call(build(VaswaniForConditionalGeneration))


@pytest.mark.parametrize("argument,value", [("layer", 2), ("head", 4), ("example", 2), ("layer", 1.0), ("kind", "x")])
def test_head_refuses_what_is_not_there(argument, value):
    model = build(VaswaniForConditionalGeneration)
    maps = attention_maps(model, padded_inputs(model))
    arguments = {"layer": 0, "head": 0, "kind": "cross", "example": 0, argument: value}
    with pytest.raises(ValueError, match=f"`{argument}`"):
        maps.head(**arguments)


def test_a_peft_model_gives_the_maps_of_its_adapted_weights():
    peft = pytest.importorskip("peft")
    model = build(VaswaniForCausalLM)
    adapted = peft.get_peft_model(model, peft.LoraConfig(r=4, init_lora_weights=False))  # adapters that change things
    inputs = padded_inputs(model)
    maps = attention_maps(adapted, inputs)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        expected = adapted.eval()(**inputs, output_attentions=True).attentions
    assert torch.equal(maps.weights["decoder"], torch.stack(expected))
    with adapted.disable_adapter():
        assert not torch.equal(attention_maps(adapted, inputs).weights["decoder"], maps.weights["decoder"])


# -- Models that read images: the encoder's tokens are [CLS] and the patches, row by row ----------------------------
def image_classifier():
    from vaswani import VaswaniConfig, VaswaniForImageClassification

    torch.manual_seed(0)
    return VaswaniForImageClassification(VaswaniConfig(
        stacks="encoder-only", vocab_size=8, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=2,
        num_decoder_layers=0, image_size=8, patch_size=4, num_labels=3, pad_token_id=None, bos_token_id=None,
        eos_token_id=None,
    ))


def test_image_maps_are_the_eager_attentions_over_cls_and_the_patches_row_by_row():
    model = image_classifier()
    pixels = torch.randn(2, 3, 8, 12)  # wider than tall: 2 rows and 3 columns of patches
    inputs = {"pixel_values": pixels, "interpolate_pos_encoding": True}
    maps = attention_maps(model, inputs)
    assert model.config._attn_implementation == "sdpa" and model.training  # given back
    model.set_attn_implementation("eager")
    with torch.no_grad():
        expected = model.eval()(**inputs, output_attentions=True).attentions
    assert maps.kinds == ("encoder",) and torch.equal(maps.weights["encoder"], torch.stack(expected))
    assert maps.patch_grid == (2, 3)
    assert maps.tokens["encoder"] == [["[CLS]", "p(0,0)", "p(0,1)", "p(0,2)", "p(1,0)", "p(1,1)", "p(1,2)"]] * 2
    assert maps.masks["encoder"].shape == (2, 7) and bool(maps.masks["encoder"].all())


def test_a_token_model_has_no_patch_grid():
    model = build(VaswaniForMaskedLM)
    assert attention_maps(model, padded_inputs(model)).patch_grid is None


def test_a_captioners_maps_are_its_eager_attentions_from_the_caption_to_the_patches():
    from vaswani import VaswaniConfig

    torch.manual_seed(0)
    model = VaswaniForConditionalGeneration(VaswaniConfig(
        vocab_size=VOCAB, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=2, num_decoder_layers=1, image_size=8,
        patch_size=4, dropout=0.0, max_position_embeddings=32,
    ))
    inputs = {"pixel_values": torch.randn(2, 3, 8, 8), "labels": random_ids(2, 3)}
    maps = attention_maps(model, inputs)
    caption = model.prepare_decoder_input_ids_from_labels(inputs["labels"])
    expected = eager_attentions(model, {"pixel_values": inputs["pixel_values"], "decoder_input_ids": caption})
    assert maps.kinds == ("encoder", "decoder", "cross") and maps.patch_grid == (2, 2)
    for kind in maps.kinds:
        assert torch.equal(maps.weights[kind], torch.stack(expected[kind])), kind
    assert maps.weights["cross"].shape == (1, 2, 4, 3, 5)  # layers, batch, heads, caption tokens, [CLS] + 4 patches
    assert maps.tokens["decoder"] == [[str(t) for t in row] for row in caption.tolist()]
    assert maps.tokens["encoder"][1] == ["[CLS]", "p(0,0)", "p(0,1)", "p(1,0)", "p(1,1)"]


def test_a_vision_encoder_decoder_with_a_vaswani_image_encoder_has_its_patch_tokens():
    from transformers import GPT2Config, GPT2LMHeadModel, VisionEncoderDecoderModel

    from vaswani import VaswaniModel

    encoder = image_classifier().model
    assert isinstance(encoder, VaswaniModel)
    decoder = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=1, n_head=4, add_cross_attention=True,
                                         is_decoder=True, bos_token_id=1, eos_token_id=2))
    model = VisionEncoderDecoderModel(encoder=encoder, decoder=decoder)
    caption = random_ids(2, 3)
    maps = attention_maps(model, {"pixel_values": torch.randn(2, 3, 8, 8), "decoder_input_ids": caption})
    assert maps.kinds == ("encoder", "decoder", "cross") and maps.patch_grid == (2, 2)
    assert maps.weights["cross"].shape == (1, 2, 4, 3, 5)  # layers, batch, heads, caption tokens, [CLS] + 4 patches
    assert maps.tokens["decoder"] == [[str(t) for t in row] for row in caption.tolist()]
    assert maps.tokens["encoder"][1] == ["[CLS]", "p(0,0)", "p(0,1)", "p(1,0)", "p(1,1)"]


@pytest.mark.parametrize(
    "make,inputs,error,message",
    [
        (image_classifier, {"input_ids": torch.ones(1, 5, dtype=torch.long)}, ValueError, "pixel_values"),
        (image_classifier, {"pixel_values": torch.randn(3, 8, 8)}, ValueError, r"\(batch, channels, height, width\)"),
        (image_classifier, "a picture", TypeError, "image processor"),
        (lambda: build(VaswaniForMaskedLM), {"pixel_values": torch.randn(1, 3, 8, 8)}, ValueError, "reads tokens"),
    ],
    ids=["ids-to-an-image-model", "no-batch-dimension", "text-to-an-image-model", "pixels-to-a-token-model"],
)
def test_images_and_tokens_are_not_mixed_up(make, inputs, error, message):
    with pytest.raises(error, match=message):
        attention_maps(make(), inputs)


def test_transformers_vit_has_the_same_layout_and_deit_is_refused_by_name():
    from transformers import DeiTConfig, DeiTForImageClassification, ViTConfig, ViTForImageClassification

    sizes = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64, image_size=8,
                 patch_size=4, num_labels=3)
    pixels = torch.randn(1, 3, 8, 8)
    maps = attention_maps(ViTForImageClassification(ViTConfig(**sizes)), {"pixel_values": pixels})
    assert maps.patch_grid == (2, 2) and maps.weights["encoder"].shape == (1, 1, 4, 5, 5)
    with pytest.raises(ValueError, match="attends over 6 tokens, not \\[CLS\\] and the 2 x 2 patches"):
        attention_maps(DeiTForImageClassification(DeiTConfig(**sizes)), {"pixel_values": pixels})
