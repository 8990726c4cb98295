"""
Model tests for the Vaswani family, in the style of Hugging Face's model testers: a tiny config, every head, one
check per test. Nothing here touches the network; every checkpoint is written to `tmp_path`.
"""

import math

import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional as F
from transformers import AutoModel

from helpers import (
    BOS,
    ENCODER_HEADS,
    HEAD_CLASSES,
    HEADS,
    PAD,
    VOCAB,
    inputs_for,
    main_output,
    random_ids,
    tiny_config,
)
from vaswani import (
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMaskedLM,
    VaswaniForMultipleChoice,
    VaswaniForNextSentencePrediction,
    VaswaniForPreTraining,
    VaswaniForQuestionAnswering,
    VaswaniForSequenceClassification,
    VaswaniForTokenClassification,
    VaswaniModel,
)
from vaswani.modeling import sinusoidal_positions


ATTENTION_IMPLEMENTATIONS = ["eager", "sdpa"]
# Heads whose main output has one row per token (the others pool the first token or score choices).
TOKEN_LEVEL_HEADS = (
    VaswaniForMaskedLM,
    VaswaniForPreTraining,
    VaswaniForTokenClassification,
    VaswaniForQuestionAnswering,
)
# The three shapes of the paper's model: encoder-decoder, decoder-only, encoder-only.
LM_HEADS = [VaswaniForConditionalGeneration, VaswaniForCausalLM, VaswaniForMaskedLM]
# (head, paths of the parameters that share one matrix when `tie_word_embeddings`) -- paper 3.4.
TIED_PARAMETERS = [
    (
        VaswaniForConditionalGeneration,
        (
            "model.encoder.embeddings.word_embeddings.weight",
            "model.decoder.embeddings.word_embeddings.weight",
            "lm_head.weight",
        ),
    ),
    (VaswaniForCausalLM, ("model.decoder.embeddings.word_embeddings.weight", "lm_head.weight")),
    (VaswaniForMaskedLM, ("model.encoder.embeddings.word_embeddings.weight", "lm_head.decoder.weight")),
    (VaswaniForPreTraining, ("model.encoder.embeddings.word_embeddings.weight", "lm_head.decoder.weight")),
]


def head_id(value):
    return value.__name__ if isinstance(value, type) else None


# -- Helpers --------------------------------------------------------------------------------------------------------
def build(head_class, seed: int = 0, **overrides):
    """A tiny model of `head_class` in eval mode, with weights fixed by `seed`."""
    torch.manual_seed(seed)
    return head_class(tiny_config(**overrides)).eval()


def save_and_load(model, auto_class, folder, **kwargs):
    model.save_pretrained(folder)
    loaded, info = auto_class.from_pretrained(folder, output_loading_info=True, **kwargs)
    return loaded.eval(), info


def parameter(model, path: str) -> torch.Tensor:
    return model.get_parameter(path)


def assert_state_dicts_equal(actual: dict, expected: dict):
    assert sorted(actual) == sorted(expected)
    different = [name for name in expected if not torch.equal(actual[name], expected[name])]
    assert different == [], f"tensors differ after loading: {different}"


def sub_state_dict(state_dict: dict, prefix: str) -> dict:
    return {name[len(prefix) :]: tensor for name, tensor in state_dict.items() if name.startswith(prefix)}


def padded_inputs(model, length: int = 7, pad_last: int = 2) -> dict:
    """`inputs_for(model)` with the last `pad_last` tokens of the last row (and of the last target row) padded."""
    inputs = inputs_for(model, length=length)
    mask = inputs["attention_mask"]
    ids = inputs["input_ids"]
    mask.view(-1, length)[-1, -pad_last:] = 0
    ids.view(-1, length)[-1, -pad_last:] = PAD
    if "decoder_input_ids" in inputs:
        target = inputs["decoder_input_ids"]
        target_mask = torch.ones_like(target)
        target_mask[-1, -pad_last:] = 0
        target[-1, -pad_last:] = PAD
        inputs["decoder_attention_mask"] = target_mask
    return inputs


def lm_inputs_and_labels(model, batch: int = 2, length: int = 7, target_length: int = 5):
    """Inputs and token labels for a language-model head, with a few -100 labels."""
    inputs = inputs_for(model, batch=batch, length=length, target_length=target_length)
    labels_length = target_length if model.config.is_encoder_decoder else length
    labels = random_ids(batch, labels_length)
    labels[0, 1] = -100
    labels[1, -2] = -100
    if model.config.is_encoder_decoder:
        inputs.pop("decoder_input_ids")  # made from the labels
    return inputs, labels


# -- 1. Save / load through the Auto classes -------------------------------------------------------------------------
@pytest.mark.parametrize("head_class,auto_class", HEADS, ids=head_id)
def test_auto_class_loads_the_saved_class(head_class, auto_class, tmp_path):
    loaded, _ = save_and_load(build(head_class), auto_class, tmp_path)
    assert type(loaded) is head_class


@pytest.mark.parametrize("head_class,auto_class", HEADS, ids=head_id)
def test_save_load_reports_no_missing_unexpected_or_mismatched_keys(head_class, auto_class, tmp_path):
    _, info = save_and_load(build(head_class), auto_class, tmp_path)
    assert not info["missing_keys"]
    assert not info["unexpected_keys"]
    assert not info["mismatched_keys"]


@pytest.mark.parametrize("head_class,auto_class", HEADS, ids=head_id)
def test_save_load_restores_identical_state_dict(head_class, auto_class, tmp_path):
    model = build(head_class)
    loaded, _ = save_and_load(model, auto_class, tmp_path)
    assert_state_dicts_equal(loaded.state_dict(), model.state_dict())


@pytest.mark.parametrize("head_class,auto_class", HEADS, ids=head_id)
def test_save_load_gives_bit_identical_outputs(head_class, auto_class, tmp_path):
    model = build(head_class)
    inputs = inputs_for(model)
    loaded, _ = save_and_load(model, auto_class, tmp_path)
    with torch.no_grad():
        expected = main_output(model(**inputs))
        actual = main_output(loaded(**inputs))
    assert torch.equal(actual, expected)


# -- 2. AutoModel on any head's folder builds the matching body ------------------------------------------------------
@pytest.mark.parametrize("head_class", [head for head, _ in HEADS], ids=head_id)
def test_auto_model_builds_the_body_of_any_head(head_class, tmp_path):
    head = build(head_class)
    head.save_pretrained(tmp_path)
    body = AutoModel.from_pretrained(tmp_path)
    assert type(body) is VaswaniModel
    assert body.config.stacks == head.config.stacks


@pytest.mark.parametrize("head_class", [head for head, _ in HEADS], ids=head_id)
def test_auto_model_loads_every_body_weight_of_any_head(head_class, tmp_path):
    head = build(head_class)
    head.save_pretrained(tmp_path)
    body, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    prefix = "" if head_class is VaswaniModel else "model."
    assert not info["missing_keys"]
    assert_state_dicts_equal(body.state_dict(), sub_state_dict(head.state_dict(), prefix))


# -- 3. A masked-LM checkpoint starts every encoder head -------------------------------------------------------------
@pytest.mark.parametrize("head_class", ENCODER_HEADS, ids=head_id)
def test_mlm_checkpoint_loads_body_into_every_encoder_head(head_class, tmp_path):
    mlm = build(VaswaniForMaskedLM)
    mlm.save_pretrained(tmp_path)
    head = head_class.from_pretrained(tmp_path)
    assert_state_dicts_equal(
        sub_state_dict(head.state_dict(), "model."), sub_state_dict(mlm.state_dict(), "model.")
    )


@pytest.mark.parametrize("head_class", ENCODER_HEADS, ids=head_id)
def test_mlm_checkpoint_reports_only_the_new_head_as_missing(head_class, tmp_path):
    mlm = build(VaswaniForMaskedLM)
    mlm.save_pretrained(tmp_path)
    head, info = head_class.from_pretrained(tmp_path, output_loading_info=True)
    missing = set(info["missing_keys"])
    assert not any(name.startswith("model.") for name in missing), missing
    # Exactly the head's own weights that the MLM does not have (classifier, pooler, qa_outputs, nsp_head...).
    assert missing == set(head.state_dict()) - set(mlm.state_dict())
    assert not info["mismatched_keys"]


# -- 4. Causality ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
def test_causal_lm_does_not_see_the_future(attn_implementation):
    model = build(VaswaniForCausalLM)
    model.set_attn_implementation(attn_implementation)
    ids = random_ids(2, 9)
    changed = ids.clone()
    changed[:, 4:] = random_ids(2, 5)
    assert not torch.equal(ids[:, 4:], changed[:, 4:])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        after = model(input_ids=changed).logits
    assert torch.allclose(before[:, :4], after[:, :4], atol=1e-6)
    assert not torch.allclose(before[:, 4:], after[:, 4:], atol=1e-4)


@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
def test_seq2seq_decoder_does_not_see_the_future(attn_implementation):
    model = build(VaswaniForConditionalGeneration)
    model.set_attn_implementation(attn_implementation)
    source = random_ids(2, 7)
    target = random_ids(2, 8)
    changed = target.clone()
    changed[:, 3:] = random_ids(2, 5)
    with torch.no_grad():
        before = model(input_ids=source, decoder_input_ids=target).logits
        after = model(input_ids=source, decoder_input_ids=changed).logits
    assert torch.allclose(before[:, :3], after[:, :3], atol=1e-6)
    assert not torch.allclose(before[:, 3:], after[:, 3:], atol=1e-4)


@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
@pytest.mark.parametrize("head_class", ENCODER_HEADS, ids=head_id)
def test_encoder_heads_are_bidirectional(head_class, attn_implementation):
    model = build(head_class)
    model.set_attn_implementation(attn_implementation)
    inputs = inputs_for(model)
    changed = dict(inputs, input_ids=inputs["input_ids"].clone())
    # Every token after the first becomes another real token.
    changed["input_ids"][..., 1:] = (changed["input_ids"][..., 1:] - 3 + 1) % (VOCAB - 3) + 3
    with torch.no_grad():
        before = main_output(model(**inputs))
        after = main_output(model(**changed))
    if isinstance(model, TOKEN_LEVEL_HEADS):  # the first token's output must see the last token
        before, after = before[:, 0], after[:, 0]
    # Pooled heads have small logits at initialisation (std 0.02): compare the change to their scale.
    assert (before - after).abs().max() > 1e-4 * before.abs().max()


# -- 5. Right padding does not change the real positions -------------------------------------------------------------
def _pad_right(sequences, length):
    ids = torch.full((len(sequences), length), PAD, dtype=torch.long)
    mask = torch.zeros(len(sequences), length, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = sequence
        mask[row, : len(sequence)] = 1
    return ids, mask


@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
@pytest.mark.parametrize("head_class", [VaswaniForMaskedLM, VaswaniForCausalLM], ids=head_id)
def test_right_padding_leaves_real_positions_unchanged(head_class, attn_implementation):
    model = build(head_class)
    model.set_attn_implementation(attn_implementation)
    sequences = [random_ids(1, 6)[0], random_ids(1, 4)[0]]
    ids, mask = _pad_right(sequences, 9)
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits
        for row, sequence in enumerate(sequences):
            alone = model(input_ids=sequence[None]).logits[0]
            assert torch.allclose(batched[row, : len(sequence)], alone, atol=1e-5), f"row {row}"


@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
def test_seq2seq_source_padding_leaves_logits_unchanged(attn_implementation):
    model = build(VaswaniForConditionalGeneration)
    model.set_attn_implementation(attn_implementation)
    sources = [random_ids(1, 6)[0], random_ids(1, 4)[0]]
    ids, mask = _pad_right(sources, 9)
    target = random_ids(2, 5)
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask, decoder_input_ids=target).logits
        for row, source in enumerate(sources):
            alone = model(input_ids=source[None], decoder_input_ids=target[row : row + 1]).logits[0]
            assert torch.allclose(batched[row], alone, atol=1e-5), f"row {row}"


@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
def test_seq2seq_target_padding_leaves_logits_unchanged(attn_implementation):
    model = build(VaswaniForConditionalGeneration)
    model.set_attn_implementation(attn_implementation)
    source = random_ids(2, 7)
    targets = [random_ids(1, 5)[0], random_ids(1, 3)[0]]
    target_ids, target_mask = _pad_right(targets, 8)
    with torch.no_grad():
        batched = model(input_ids=source, decoder_input_ids=target_ids, decoder_attention_mask=target_mask).logits
        for row, target in enumerate(targets):
            alone = model(input_ids=source[row : row + 1], decoder_input_ids=target[None]).logits[0]
            assert torch.allclose(batched[row, : len(target)], alone, atol=1e-5), f"row {row}"


@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
def test_causal_lm_left_padding_leaves_real_positions_unchanged(attn_implementation):
    # Batched generation pads on the left; positions come from the mask, so a padded prompt behaves as it does alone.
    model = build(VaswaniForCausalLM)
    model.set_attn_implementation(attn_implementation)
    prompt = random_ids(1, 5)
    ids = torch.cat([torch.full((1, 3), PAD), prompt], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask).logits[:, 3:]
        alone = model(input_ids=prompt).logits
    assert torch.allclose(padded, alone, atol=1e-5)


def test_omitted_token_type_ids_act_as_segment_zero():
    # As in BERT, a caller that passes no token_type_ids (a pipeline, a tokenizer without them) gets segment 0.
    model = build(VaswaniForMaskedLM)
    ids = random_ids(2, 7)
    with torch.no_grad():
        omitted = model(input_ids=ids).logits
        zeros = model(input_ids=ids, token_type_ids=torch.zeros_like(ids)).logits
    assert torch.allclose(omitted, zeros, atol=1e-6), f"max difference {(omitted - zeros).abs().max():.4f}"


# -- 6. A fully masked row stays finite ------------------------------------------------------------------------------
@pytest.mark.parametrize("attn_implementation", ATTENTION_IMPLEMENTATIONS)
@pytest.mark.parametrize(
    "head_class,masked",
    [
        (VaswaniForMaskedLM, "attention_mask"),
        (VaswaniForCausalLM, "attention_mask"),
        (VaswaniForConditionalGeneration, "attention_mask"),
        (VaswaniForConditionalGeneration, "decoder_attention_mask"),
    ],
    ids=["encoder", "causal", "seq2seq-source", "seq2seq-target"],
)
def test_fully_masked_row_gives_finite_outputs(head_class, masked, attn_implementation):
    model = build(head_class)
    model.set_attn_implementation(attn_implementation)
    inputs = inputs_for(model)
    if masked == "decoder_attention_mask":
        inputs["decoder_attention_mask"] = torch.ones_like(inputs["decoder_input_ids"])
    inputs[masked][1] = 0
    with torch.no_grad():
        logits = model(**inputs).logits
    assert torch.isfinite(logits).all()


# -- 7. Attention back-ends and attention outputs --------------------------------------------------------------------
@pytest.mark.parametrize("padded", [False, True], ids=["no-padding", "padding"])
@pytest.mark.parametrize("head_class,auto_class", HEADS, ids=head_id)
def test_eager_matches_sdpa(head_class, auto_class, padded):
    model = build(head_class)
    inputs = padded_inputs(model) if padded else inputs_for(model)
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    with torch.no_grad():
        eager = main_output(model(**inputs))
    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == "sdpa"
    with torch.no_grad():
        sdpa = main_output(model(**inputs))
    assert torch.allclose(eager, sdpa, atol=1e-5), (eager - sdpa).abs().max()


def _eager(head_class, **overrides):
    model = build(head_class, **overrides)
    model.set_attn_implementation("eager")
    return model


def _padded_mask(batch, length, pad_last=2):
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[-1, -pad_last:] = 0
    return mask


def test_encoder_attentions_have_one_tensor_per_layer_of_shape_batch_heads_q_k():
    model = _eager(VaswaniForMaskedLM, num_encoder_layers=3)
    with torch.no_grad():
        attentions = model(input_ids=random_ids(2, 7), output_attentions=True).attentions
    assert len(attentions) == 3
    assert all(tuple(a.shape) == (2, 4, 7, 7) for a in attentions)


def test_encoder_attention_probabilities_sum_to_one_and_skip_padding():
    model = _eager(VaswaniForMaskedLM)
    mask = _padded_mask(2, 7)
    with torch.no_grad():
        attentions = model(input_ids=random_ids(2, 7), attention_mask=mask, output_attentions=True).attentions
    for layer in attentions:
        assert torch.allclose(layer.sum(-1), torch.ones(2, 4, 7), atol=1e-5)
        assert torch.all(layer[1, :, :, -2:] < 1e-6)  # no weight on the padded keys


def test_decoder_self_attention_probabilities_sum_to_one_and_are_causal():
    model = _eager(VaswaniForCausalLM, num_decoder_layers=3)
    with torch.no_grad():
        attentions = model(input_ids=random_ids(2, 7), output_attentions=True).attentions
    assert len(attentions) == 3
    for layer in attentions:
        assert tuple(layer.shape) == (2, 4, 7, 7)
        assert torch.allclose(layer.sum(-1), torch.ones(2, 4, 7), atol=1e-5)
        future = torch.ones(7, 7, dtype=torch.bool).triu(1)
        assert torch.all(layer[..., future] < 1e-6)


def test_seq2seq_attentions_shapes_and_probabilities():
    model = _eager(VaswaniForConditionalGeneration, num_encoder_layers=2, num_decoder_layers=3)
    source_mask = _padded_mask(2, 7)
    with torch.no_grad():
        output = model(
            input_ids=random_ids(2, 7),
            attention_mask=source_mask,
            decoder_input_ids=random_ids(2, 5),
            output_attentions=True,
        )
    expected = {
        "encoder_attentions": (2, (2, 4, 7, 7)),
        "decoder_attentions": (3, (2, 4, 5, 5)),
        "cross_attentions": (3, (2, 4, 5, 7)),
    }
    for name, (layers, shape) in expected.items():
        attentions = getattr(output, name)
        assert len(attentions) == layers, name
        for layer in attentions:
            assert tuple(layer.shape) == shape, name
            assert torch.allclose(layer.sum(-1), torch.ones(shape[:-1]), atol=1e-5), name
    for layer in output.cross_attentions:
        assert torch.all(layer[1, :, :, -2:] < 1e-6)  # cross-attention skips the padded source


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("stacks", ["encoder-only", "decoder-only"])
def test_hidden_states_are_num_layers_plus_one_ending_with_last_hidden_state(stacks, norm_first):
    model = build(VaswaniModel, stacks=stacks, num_encoder_layers=3, num_decoder_layers=3, norm_first=norm_first)
    with torch.no_grad():
        output = model(input_ids=random_ids(2, 7), output_hidden_states=True)
    assert len(output.hidden_states) == 3 + 1
    assert torch.equal(output.hidden_states[-1], output.last_hidden_state)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_seq2seq_hidden_states_are_num_layers_plus_one_ending_with_last_hidden_state(norm_first):
    model = build(VaswaniModel, num_encoder_layers=2, num_decoder_layers=3, norm_first=norm_first)
    with torch.no_grad():
        output = model(input_ids=random_ids(2, 7), decoder_input_ids=random_ids(2, 5), output_hidden_states=True)
    assert len(output.encoder_hidden_states) == 2 + 1
    assert len(output.decoder_hidden_states) == 3 + 1
    assert torch.equal(output.encoder_hidden_states[-1], output.encoder_last_hidden_state)
    assert torch.equal(output.decoder_hidden_states[-1], output.last_hidden_state)


def test_first_hidden_state_is_the_embedding_output():
    model = build(VaswaniModel, stacks="encoder-only")
    ids = random_ids(2, 7)
    with torch.no_grad():
        output = model(input_ids=ids, output_hidden_states=True)
        embedded = model.encoder.embeddings(ids, torch.arange(7).expand(2, 7))
    assert torch.allclose(output.hidden_states[0], embedded, atol=1e-6)


# -- 8. Weight tying (paper 3.4) -------------------------------------------------------------------------------------
def _pointers(model, paths):
    return {parameter(model, path).data_ptr() for path in paths}


@pytest.mark.parametrize("head_class,paths", TIED_PARAMETERS, ids=head_id)
def test_embeddings_and_softmax_projection_share_one_matrix(head_class, paths):
    model = build(head_class)
    assert len(_pointers(model, paths)) == 1


@pytest.mark.parametrize("head_class,paths", TIED_PARAMETERS, ids=head_id)
def test_tying_survives_save_and_load(head_class, paths, tmp_path):
    model = build(head_class)
    model.save_pretrained(tmp_path)
    loaded = head_class.from_pretrained(tmp_path)
    assert len(_pointers(loaded, paths)) == 1
    assert torch.equal(parameter(loaded, paths[-1]), parameter(model, paths[0]))


@pytest.mark.parametrize("head_class,paths", TIED_PARAMETERS, ids=head_id)
def test_resize_token_embeddings_updates_config_and_shapes(head_class, paths):
    model = build(head_class)
    model.resize_token_embeddings(VOCAB + 13)
    assert model.config.vocab_size == VOCAB + 13
    assert all(tuple(parameter(model, path).shape) == (VOCAB + 13, 32) for path in paths)


@pytest.mark.parametrize("head_class,paths", TIED_PARAMETERS, ids=head_id)
def test_resize_token_embeddings_keeps_tying(head_class, paths):
    model = build(head_class)
    model.resize_token_embeddings(VOCAB + 13)
    assert len(_pointers(model, paths)) == 1


@pytest.mark.parametrize("head_class,paths", TIED_PARAMETERS, ids=head_id)
def test_resize_token_embeddings_keeps_old_rows(head_class, paths):
    model = build(head_class)
    old = parameter(model, paths[0]).detach().clone()
    model.resize_token_embeddings(VOCAB + 13)
    assert torch.equal(parameter(model, paths[-1])[:VOCAB], old)


@pytest.mark.parametrize("head_class,paths", TIED_PARAMETERS, ids=head_id)
def test_forward_with_a_new_token_after_resize(head_class, paths):
    model = build(head_class)
    model.resize_token_embeddings(VOCAB + 13)
    inputs = inputs_for(model)
    inputs["input_ids"][0, 2] = VOCAB + 12  # an id the old vocabulary did not have
    if "decoder_input_ids" in inputs:
        inputs["decoder_input_ids"][0, 1] = VOCAB + 5
    with torch.no_grad():
        logits = main_output(model(**inputs))
    assert logits.shape[-1] == VOCAB + 13
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("head_class,paths", TIED_PARAMETERS, ids=head_id)
def test_untied_embeddings_are_distinct_tensors(head_class, paths):
    model = build(head_class, tie_word_embeddings=False)
    assert len(_pointers(model, paths)) == len(paths)


@pytest.mark.parametrize("head_class,paths", TIED_PARAMETERS, ids=head_id)
def test_untied_embeddings_round_trip_exactly(head_class, paths, tmp_path):
    model = build(head_class, tie_word_embeddings=False)
    model.save_pretrained(tmp_path)
    loaded, info = head_class.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert len(_pointers(loaded, paths)) == len(paths)
    for path in paths:
        assert torch.equal(parameter(loaded, path), parameter(model, path)), path


# -- 9. Gradient checkpointing ---------------------------------------------------------------------------------------
def _gradients(model, inputs, labels) -> dict:
    model.zero_grad(set_to_none=True)
    model(**inputs, labels=labels).loss.backward()
    return {name: p.grad.clone() if p.grad is not None else None for name, p in model.named_parameters()}


@pytest.mark.parametrize("head_class", LM_HEADS, ids=head_id)
def test_gradient_checkpointing_gives_the_same_gradients(head_class):
    model = build(head_class, dropout=0.0, attention_dropout=0.0).train()
    inputs, labels = lm_inputs_and_labels(model)
    plain = _gradients(model, inputs, labels)
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    checkpointed = _gradients(model, inputs, labels)
    assert [name for name in plain if (plain[name] is None) != (checkpointed[name] is None)] == []
    different = [
        name
        for name in plain
        if plain[name] is not None and not torch.allclose(plain[name], checkpointed[name], atol=1e-6)
    ]
    assert different == []
    assert any(grad is not None and grad.abs().sum() > 0 for grad in checkpointed.values())


def test_gradient_checkpointing_refuses_a_cache_in_training():
    model = build(VaswaniForCausalLM, dropout=0.0).train()
    ids = random_ids(2, 6)
    with torch.no_grad():
        cache = model(input_ids=ids, use_cache=True).cache
    model.gradient_checkpointing_enable()
    out = model(input_ids=ids, labels=ids)
    assert out.cache is None  # the config's use_cache=True makes none here
    out.loss.backward()
    with pytest.raises(ValueError, match="cannot update a cache"):
        model(input_ids=ids[:, :1], past_key_values=cache)  # the older argument name, still accepted


@pytest.mark.parametrize("head_class", LM_HEADS, ids=head_id)
def test_every_parameter_gets_a_gradient(head_class):
    # A parameter the forward never uses breaks DistributedDataParallel (find_unused_parameters=False) and is dead
    # weight in every checkpoint.
    model = build(head_class).train()
    inputs, labels = lm_inputs_and_labels(model)
    gradients = _gradients(model, inputs, labels)
    assert [name for name, grad in gradients.items() if grad is None] == []


# -- 10. bfloat16 ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("head_class", LM_HEADS, ids=head_id)
def test_bf16_forward_with_padding_is_finite(head_class):
    model = build(head_class).to(torch.bfloat16)
    inputs = padded_inputs(model)
    _, labels = lm_inputs_and_labels(model)
    with torch.no_grad():
        output = model(**inputs, labels=labels)
    assert output.logits.dtype == torch.bfloat16
    assert torch.isfinite(output.logits).all()
    assert torch.isfinite(output.loss)


# -- 11. Losses ------------------------------------------------------------------------------------------------------
def _token_logits_for_labels(model, output):
    """The logits that line up with `labels` position by position (the causal LM predicts the next token)."""
    logits = output.logits
    return logits[:, :-1] if isinstance(model, VaswaniForCausalLM) else logits


def _aligned_labels(model, labels):
    return labels[:, 1:] if isinstance(model, VaswaniForCausalLM) else labels


@pytest.mark.parametrize("head_class", LM_HEADS + [VaswaniForTokenClassification], ids=head_id)
def test_ignored_labels_do_not_affect_the_loss(head_class):
    model = build(head_class)
    inputs, labels = lm_inputs_and_labels(model)
    if head_class is VaswaniForTokenClassification:
        labels = torch.randint(0, model.config.num_labels, labels.shape)
    ignored = labels.clone()
    ignored[0, 3] = -100
    ignored[1, 2:5] = -100
    with torch.no_grad():
        output = model(**inputs, labels=ignored)
    logits = _token_logits_for_labels(model, output)
    targets = _aligned_labels(model, ignored)
    keep = targets != -100
    expected = F.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(output.loss, expected, atol=1e-6)


@pytest.mark.parametrize("head_class", LM_HEADS, ids=head_id)
def test_label_smoothing_matches_torch_cross_entropy(head_class):
    model = build(head_class)
    inputs, labels = lm_inputs_and_labels(model)
    with torch.no_grad():
        output = model(**inputs, labels=labels, smoothing=0.1)
    logits = _token_logits_for_labels(model, output)
    targets = _aligned_labels(model, labels)
    expected = F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), label_smoothing=0.1)
    assert torch.allclose(output.loss, expected, atol=1e-6)


@pytest.mark.parametrize("head_class", LM_HEADS, ids=head_id)
def test_label_smoothing_changes_the_loss(head_class):
    plain = build(head_class)
    inputs, labels = lm_inputs_and_labels(plain)
    with torch.no_grad():
        plain_loss = plain(**inputs, labels=labels).loss
        smoothed_loss = plain(**inputs, labels=labels, smoothing=0.1).loss
    assert not torch.allclose(plain_loss, smoothed_loss, atol=1e-4)


@pytest.mark.parametrize("as_tensor", [False, True], ids=["int", "tensor"])
@pytest.mark.parametrize("head_class", LM_HEADS + [VaswaniForTokenClassification], ids=head_id)
def test_num_items_in_batch_divides_the_summed_loss(head_class, as_tensor):
    model = build(head_class)
    inputs, labels = lm_inputs_and_labels(model)
    if head_class is VaswaniForTokenClassification:
        labels = torch.randint(0, model.config.num_labels, labels.shape)
        labels[0, 1] = -100
    num_items = torch.tensor(23) if as_tensor else 23
    with torch.no_grad():
        output = model(**inputs, labels=labels, num_items_in_batch=num_items)
    logits = _token_logits_for_labels(model, output)
    targets = _aligned_labels(model, labels)
    expected = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum") / 23
    assert torch.allclose(output.loss, expected, atol=1e-6)


def test_seq2seq_loss_compares_logits_and_labels_without_shift():
    model = build(VaswaniForConditionalGeneration)
    source, labels = random_ids(2, 7), random_ids(2, 5)
    with torch.no_grad():
        output = model(input_ids=source, labels=labels)
    expected = F.cross_entropy(output.logits.reshape(-1, VOCAB), labels.reshape(-1))
    assert torch.allclose(output.loss, expected, atol=1e-6)


def test_prepare_decoder_input_ids_from_labels_shifts_right_behind_start_token():
    model = build(VaswaniForConditionalGeneration, decoder_start_token_id=BOS)
    labels = torch.tensor([[11, 12, 13, 14, 2], [21, 22, 2, -100, -100]])
    shifted = model.prepare_decoder_input_ids_from_labels(labels)
    assert shifted.tolist() == [[BOS, 11, 12, 13, 14], [BOS, 21, 22, 2, PAD]]


def test_seq2seq_decoder_start_token_is_configurable():
    model = build(VaswaniForConditionalGeneration, decoder_start_token_id=7)
    labels = torch.tensor([[11, 12, 13]])
    assert model.prepare_decoder_input_ids_from_labels(labels).tolist() == [[7, 11, 12]]


def test_seq2seq_labels_alone_equal_explicit_shifted_decoder_inputs():
    model = build(VaswaniForConditionalGeneration)
    source, labels = random_ids(2, 7), random_ids(2, 5)
    labels[1, -1] = -100
    shifted = torch.cat([torch.full((2, 1), BOS), labels[:, :-1]], dim=1).masked_fill(
        torch.cat([torch.zeros(2, 1, dtype=torch.bool), labels[:, :-1] == -100], dim=1), PAD
    )
    with torch.no_grad():
        implicit = model(input_ids=source, labels=labels)
        explicit = model(input_ids=source, decoder_input_ids=shifted, labels=labels)
    assert torch.equal(implicit.logits, explicit.logits)
    assert torch.equal(implicit.loss, explicit.loss)


def test_causal_loss_predicts_the_next_token():
    model = build(VaswaniForCausalLM)
    ids = random_ids(2, 7)
    with torch.no_grad():
        output = model(input_ids=ids, labels=ids)
    expected = F.cross_entropy(output.logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    assert torch.allclose(output.loss, expected, atol=1e-6)


@pytest.mark.parametrize("explicit", [False, True], ids=["inferred", "explicit"])
@pytest.mark.parametrize(
    "problem_type,num_labels",
    [("regression", 1), ("single_label_classification", 3), ("multi_label_classification", 3)],
)
def test_sequence_classification_loss_follows_problem_type(problem_type, num_labels, explicit):
    model = build(
        VaswaniForSequenceClassification, num_labels=num_labels, problem_type=problem_type if explicit else None
    )
    inputs = inputs_for(model, batch=4)
    if problem_type == "regression":
        labels = torch.randn(4)
    elif problem_type == "single_label_classification":
        labels = torch.tensor([0, 2, 1, 2])
    else:
        labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    with torch.no_grad():
        output = model(**inputs, labels=labels)
    logits = output.logits
    assert tuple(logits.shape) == (4, num_labels)
    if problem_type == "regression":
        expected = F.mse_loss(logits.squeeze(-1), labels)
    elif problem_type == "single_label_classification":
        expected = F.cross_entropy(logits, labels)
    else:
        expected = F.binary_cross_entropy_with_logits(logits, labels)
    assert torch.allclose(output.loss, expected, atol=1e-6)


def test_question_answering_loss_averages_start_and_end_cross_entropy():
    model = build(VaswaniForQuestionAnswering)
    inputs = inputs_for(model)
    start, end = torch.tensor([1, 3]), torch.tensor([2, 6])
    with torch.no_grad():
        output = model(**inputs, start_positions=start, end_positions=end)
    expected = (F.cross_entropy(output.start_logits, start) + F.cross_entropy(output.end_logits, end)) / 2
    assert torch.allclose(output.loss, expected, atol=1e-6)


def test_question_answering_ignores_answers_outside_the_window():
    model = build(VaswaniForQuestionAnswering)
    inputs = inputs_for(model)  # length 7
    start, end = torch.tensor([1, 40]), torch.tensor([2, 41])
    with torch.no_grad():
        output = model(**inputs, start_positions=start, end_positions=end)
    # The second answer lies past the 7 tokens: only the first one counts.
    start_loss = F.cross_entropy(output.start_logits[:1], start[:1])
    end_loss = F.cross_entropy(output.end_logits[:1], end[:1])
    expected = (start_loss + end_loss) / 2
    assert torch.allclose(output.loss, expected, atol=1e-6)


def test_multiple_choice_loss_is_cross_entropy_over_choices():
    model = build(VaswaniForMultipleChoice)
    inputs = inputs_for(model)
    labels = torch.tensor([2, 0])
    with torch.no_grad():
        output = model(**inputs, labels=labels)
    assert tuple(output.logits.shape) == (2, 3)
    assert torch.allclose(output.loss, F.cross_entropy(output.logits, labels), atol=1e-6)


def test_next_sentence_prediction_loss_is_cross_entropy():
    model = build(VaswaniForNextSentencePrediction)
    inputs = inputs_for(model)
    labels = torch.tensor([1, 0])
    with torch.no_grad():
        output = model(**inputs, labels=labels)
    assert torch.allclose(output.loss, F.cross_entropy(output.logits, labels), atol=1e-6)


def test_pretraining_loss_is_mlm_plus_nsp():
    model = build(VaswaniForPreTraining)
    inputs, labels = lm_inputs_and_labels(model)
    next_sentence = torch.tensor([0, 1])
    with torch.no_grad():
        output = model(**inputs, labels=labels, next_sentence_label=next_sentence)
    mlm = F.cross_entropy(output.prediction_logits.reshape(-1, VOCAB), labels.reshape(-1))
    nsp = F.cross_entropy(output.seq_relationship_logits, next_sentence)
    assert torch.allclose(output.loss, mlm + nsp, atol=1e-6)


# -- 12. Sinusoidal positions ----------------------------------------------------------------------------------------
def _sinusoidal_tables(model):
    return {name: buffer for name, buffer in model.named_buffers() if name.endswith("sinusoidal_table")}


@pytest.mark.parametrize("head_class", LM_HEADS, ids=head_id)
def test_sinusoidal_table_is_not_saved(head_class, tmp_path):
    build(head_class).save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert saved, "nothing was saved"
    assert [name for name in saved if "sinusoidal" in name] == []


@pytest.mark.parametrize("head_class", LM_HEADS, ids=head_id)
def test_sinusoidal_table_is_rebuilt_by_from_pretrained(head_class, tmp_path):
    model = build(head_class)
    model.save_pretrained(tmp_path)
    loaded = head_class.from_pretrained(tmp_path)
    fresh, rebuilt = _sinusoidal_tables(model), _sinusoidal_tables(loaded)
    assert fresh and sorted(rebuilt) == sorted(fresh)
    assert all(torch.equal(rebuilt[name], fresh[name]) for name in fresh)


def test_sinusoidal_table_follows_the_paper_formula():
    model = build(VaswaniForCausalLM)
    table = model.model.decoder.embeddings.sinusoidal_table
    d_model = 32
    expected = torch.zeros(64, d_model, dtype=torch.float64)
    for pos in range(64):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            expected[pos, 2 * i] = math.sin(angle)
            expected[pos, 2 * i + 1] = math.cos(angle)
    assert torch.allclose(table.double(), expected, atol=1e-5)


def test_sinusoidal_positions_extend_past_the_table():
    model = build(VaswaniForCausalLM, max_position_embeddings=8)
    ids = random_ids(1, 12)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    assert logits.shape == (1, 12, VOCAB)
    assert torch.equal(
        model.model.decoder.embeddings.position_encoding(torch.arange(12)),
        sinusoidal_positions(torch.arange(12), 32),
    )


def test_learned_positions_are_saved(tmp_path):
    build(VaswaniForCausalLM, position_embedding_type="learned").save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert "model.decoder.embeddings.position_embeddings.weight" in saved
    assert saved["model.decoder.embeddings.position_embeddings.weight"].shape == (64, 32)


# -- 13. Training sanity ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("head_class", [VaswaniForCausalLM, VaswaniForConditionalGeneration], ids=head_id)
def test_training_reduces_the_loss_on_a_fixed_batch(head_class):
    model = build(head_class).train()
    inputs, labels = lm_inputs_and_labels(model, batch=4, length=8, target_length=6)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert math.isfinite(losses[-1])
    assert losses[-1] < 0.5 * losses[0], losses



@pytest.mark.parametrize("name", ["gelu_new", "gelu_pytorch_tanh", "gelu", "relu", "silu"])
def test_feed_forward_applies_the_configured_activation(name):
    """FFN(x) = act(x W_1 + b_1) W_2 + b_2, with `gelu_new` (GPT-2's Python formula) run as the fused tanh kernel."""
    from transformers.activations import ACT2FN

    from vaswani.modeling import VaswaniFeedForward

    torch.manual_seed(0)
    ffn = VaswaniFeedForward(tiny_config(activation_function=name, init_std=0.5))
    x = torch.randn(2, 5, 32) * 3
    expected = ffn.fc2(ACT2FN[name](ffn.fc1(x)))  # transformers' own definition of the activation
    torch.testing.assert_close(ffn(x), expected, rtol=0, atol=1e-5)
    if name == "gelu_new":
        assert type(ffn.activation) is type(ACT2FN["gelu_pytorch_tanh"])


@pytest.mark.parametrize("head_class", [VaswaniForMaskedLM, VaswaniForPreTraining])
def test_sparse_prediction_gives_the_dense_loss_gradients_and_labelled_logits(head_class):
    """`sparse_prediction` projects only the labelled positions; loss and gradients stay those of the dense head."""
    generator = torch.Generator().manual_seed(0)
    ids = random_ids(3, 10, generator=generator)
    labels = torch.full_like(ids, -100)
    labelled = torch.rand(ids.shape, generator=generator) < 0.3
    labelled[0, 0] = True
    labels[labelled] = ids[labelled]
    extra = {"next_sentence_label": torch.tensor([0, 1, 0])} if head_class is VaswaniForPreTraining else {}
    results = {}
    for sparse in (False, True):
        torch.manual_seed(0)
        model = head_class(tiny_config(sparse_prediction=sparse, init_std=0.2)).train()
        out = model(input_ids=ids, labels=labels, **extra)
        out.loss.backward()
        logits = out.logits if head_class is VaswaniForMaskedLM else out.prediction_logits
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        model.eval()
        with torch.no_grad():
            unlabelled = main_output(model(input_ids=ids))
        results[sparse] = (out.loss.detach(), logits.detach(), grads, unlabelled)
    (dense_loss, dense_logits, dense_grads, dense_free), (loss, logits, grads, free) = results[False], results[True]
    assert dense_logits.shape == (3, 10, VOCAB) and logits.shape == (int(labelled.sum()), VOCAB)
    torch.testing.assert_close(logits, dense_logits[labelled], rtol=0, atol=1e-6)
    torch.testing.assert_close(loss, dense_loss, rtol=0, atol=1e-6)
    assert grads.keys() == dense_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], dense_grads[name], rtol=1e-5, atol=1e-6, msg=name)
    torch.testing.assert_close(free, dense_free, rtol=0, atol=0)  # no labels: every position, as without the option


def test_sparse_prediction_rejects_labels_of_another_shape():
    model = VaswaniForMaskedLM(tiny_config(sparse_prediction=True))
    ids = random_ids(2, 6)
    with pytest.raises(ValueError, match="one label per token"):
        model(input_ids=ids, labels=ids[:, :4])


# -- Losses through transformers' loss functions, with every keyword they take ------------------------------------------
def test_causal_lm_trains_against_shift_labels_when_given():
    """Sequence- and context-parallel training pass targets already shifted: they, not `labels`, decide the loss."""
    model = build(VaswaniForCausalLM)
    inputs, labels = lm_inputs_and_labels(model)
    shift_labels = random_ids(*labels.shape)
    shift_labels[:, -1] = -100
    with torch.no_grad():
        output = model(**inputs, labels=labels, shift_labels=shift_labels)
        other_labels = model(**inputs, labels=random_ids(*labels.shape), shift_labels=shift_labels).loss
        other_targets = model(**inputs, labels=labels, shift_labels=random_ids(*labels.shape)).loss
        only_targets = model(**inputs, shift_labels=shift_labels).loss
    keep = shift_labels != -100
    expected = F.cross_entropy(output.logits[keep], shift_labels[keep])  # no shift: position i against target i
    torch.testing.assert_close(output.loss, expected, atol=1e-6, rtol=0)
    assert output.loss == other_labels == only_targets  # changing `labels` does not move it
    assert not torch.isclose(output.loss, other_targets)  # changing `shift_labels` does


@pytest.mark.parametrize("head_class", LM_HEADS + [VaswaniForTokenClassification], ids=head_id)
def test_ignore_index_reaches_the_loss(head_class):
    model = build(head_class)
    inputs, labels = lm_inputs_and_labels(model)
    if head_class is VaswaniForTokenClassification:
        labels = torch.randint(0, model.config.num_labels, labels.shape)
    marked = labels.masked_fill(labels == -100, 0).clone()
    marked[0, 2] = 1  # an ordinary label the loss is told to ignore
    if model.config.is_encoder_decoder:  # the same decoder inputs for every call: only the loss may differ
        inputs["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(marked)
    with torch.no_grad():
        ignored = model(**inputs, labels=marked, ignore_index=1).loss
        expected = model(**inputs, labels=marked.masked_fill(marked == 1, -100)).loss
        counted = model(**inputs, labels=marked).loss
    torch.testing.assert_close(ignored, expected, atol=1e-6, rtol=0)
    assert not torch.isclose(ignored, counted)


@pytest.mark.parametrize(
    "head_class",
    [VaswaniForConditionalGeneration, VaswaniForCausalLM, VaswaniForMaskedLM, VaswaniForPreTraining,
     VaswaniForTokenClassification, VaswaniForSequenceClassification],
    ids=head_id,
)
def test_heads_with_a_transformers_loss_use_it(head_class, monkeypatch):
    """
    The loss goes through `self.loss_function` (transformers' loss for this kind of head) with the keywords Trainer
    passes. (Question answering keeps its own: transformers' QA loss is NaN when no answer lies in the window.)
    """
    model = build(head_class)
    calls = []
    original = type(model).loss_function.fget(model)
    monkeypatch.setattr(type(model), "loss_function", property(lambda self: lambda *a, **k: calls.append(k) or original(*a, **k)))
    inputs = inputs_for(model)
    if head_class in (VaswaniForConditionalGeneration, VaswaniForCausalLM, VaswaniForMaskedLM, VaswaniForPreTraining):
        inputs, labels = lm_inputs_and_labels(model)
    elif head_class is VaswaniForTokenClassification:
        labels = torch.randint(0, model.config.num_labels, inputs["input_ids"].shape)
    else:
        labels = torch.randint(0, model.config.num_labels, (inputs["input_ids"].shape[0],))
    with torch.no_grad():
        model(**inputs, labels=labels, num_items_in_batch=5)
    assert len(calls) == 1 and calls[0]["num_items_in_batch"] == 5


@pytest.mark.parametrize("head_class", HEAD_CLASSES, ids=head_id)
def test_trainer_finds_only_real_labels_in_the_forward(head_class):
    """Trainer takes every forward argument named `*label*` for a label and skips the evaluation loss without it."""
    from transformers.utils import find_labels

    assert all(name in ("labels", "next_sentence_label", "start_positions", "end_positions")
               for name in find_labels(head_class))


def test_a_plain_trainer_reports_the_evaluation_loss_of_a_token_head(tmp_path):
    from transformers import Trainer, TrainingArguments

    model = build(VaswaniForCausalLM)
    rows = [{"input_ids": random_ids(1, 8)[0].tolist(), "labels": random_ids(1, 8)[0].tolist()} for _ in range(4)]
    arguments = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True, per_device_eval_batch_size=2)
    metrics = Trainer(model=model, args=arguments).evaluate(rows)
    with torch.no_grad():
        batches = [rows[:2], rows[2:]]
        expected = sum(
            model(input_ids=torch.tensor([r["input_ids"] for r in b]), labels=torch.tensor([r["labels"] for r in b])).loss
            for b in batches
        ) / 2
    assert metrics["eval_loss"] == pytest.approx(float(expected), abs=1e-5)


def test_a_token_loss_takes_labels_that_are_a_slice():
    """Labels sliced out of a wider batch (not contiguous) give the loss of their contiguous copy."""
    from vaswani import VaswaniForMaskedLM

    torch.manual_seed(0)
    model = VaswaniForMaskedLM(tiny_config()).eval()
    ids = torch.randint(3, VOCAB, (2, 6))
    wide = torch.randint(3, VOCAB, (2, 12))
    labels = wide[:, ::2]
    assert not labels.is_contiguous()
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids, labels=labels).loss, model(input_ids=ids, labels=labels.contiguous()).loss)
