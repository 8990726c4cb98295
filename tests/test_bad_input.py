"""
Bad input is a `ValueError` that names the problem: never an IndexError or RuntimeError from deep in torch, never NaN,
never a silently wrong answer.
"""

import math

import pytest
import torch

from helpers import ENCODER_HEADS, GENERATIVE_HEADS, HEAD_CLASSES, VOCAB, inputs_for, random_ids, tiny_config
from vaswani import (
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMaskedLM,
    VaswaniForMultipleChoice,
    VaswaniForSequenceClassification,
    VaswaniModel,
)

OUT_OF_VOCABULARY = "outside the vocabulary"


def _build(head, **overrides):
    return head(tiny_config(**overrides)).eval()


def _set(ids: torch.Tensor, value: int) -> torch.Tensor:
    """A copy of `ids` with one token (in the last row, middle position) replaced by `value`."""
    ids = ids.clone()
    flat = ids.view(-1, ids.shape[-1])
    flat[-1, ids.shape[-1] // 2] = value
    return ids


# -- Token ids outside the vocabulary --------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_id", [VOCAB, VOCAB + 1000, -1])
@pytest.mark.parametrize("head", GENERATIVE_HEADS + ENCODER_HEADS, ids=lambda h: getattr(h, "__name__", h))
def test_input_ids_outside_the_vocabulary(head, bad_id):
    model = _build(head)
    inputs = inputs_for(model)
    inputs["input_ids"] = _set(inputs["input_ids"], bad_id)
    with pytest.raises(ValueError, match=OUT_OF_VOCABULARY) as error:
        model(**inputs)
    assert str(bad_id) in str(error.value)
    assert str(VOCAB) in str(error.value)


@pytest.mark.parametrize("bad_id", [VOCAB, -1])
def test_seq2seq_decoder_input_ids_outside_the_vocabulary(bad_id):
    model = _build(VaswaniForConditionalGeneration)
    inputs = inputs_for(model)
    inputs["decoder_input_ids"] = _set(inputs["decoder_input_ids"], bad_id)
    with pytest.raises(ValueError, match=OUT_OF_VOCABULARY) as error:
        model(**inputs)
    assert str(bad_id) in str(error.value)


@pytest.mark.parametrize("bad_id", [VOCAB, -7])
def test_seq2seq_labels_that_become_decoder_inputs_outside_the_vocabulary(bad_id):
    model = _build(VaswaniForConditionalGeneration)
    labels = random_ids(2, 5)
    labels[1, 1] = bad_id  # shifted right, it becomes decoder input 2
    with pytest.raises(ValueError, match=OUT_OF_VOCABULARY):
        model(input_ids=random_ids(), labels=labels)


def test_seq2seq_ignored_labels_are_not_bad_ids():
    model = _build(VaswaniForConditionalGeneration)
    labels = random_ids(2, 5)
    labels[:, 3:] = -100
    loss = model(input_ids=random_ids(), labels=labels).loss
    assert torch.isfinite(loss) and loss > 0


@pytest.mark.parametrize(
    "head, labels_for",
    [
        (VaswaniForCausalLM, lambda ids: _set(ids, VOCAB)),
        (VaswaniForCausalLM, lambda ids: _set(ids, -5)),
        (VaswaniForMaskedLM, lambda ids: _set(torch.full_like(ids, -100), VOCAB + 3)),
        (VaswaniForConditionalGeneration, None),
    ],
    ids=["causal-too-big", "causal-negative", "masked-lm", "seq2seq-last-label"],
)
def test_labels_outside_the_vocabulary(head, labels_for):
    # Labels are token ids too: a label the softmax cannot produce is a ValueError, not torch's IndexError.
    model = _build(head)
    inputs = inputs_for(model)
    if labels_for is None:  # the last label never becomes a decoder input, so only the loss sees it
        labels = random_ids(2, 5)
        labels[0, -1] = VOCAB
        inputs["labels"] = labels
        inputs.pop("decoder_input_ids")
    else:
        inputs["labels"] = labels_for(inputs["input_ids"])
    with pytest.raises(ValueError, match="labels"):
        model(**inputs)


@pytest.mark.parametrize("bad_id", [VOCAB, -1])
@pytest.mark.parametrize("head", GENERATIVE_HEADS, ids=lambda h: h.__name__)
def test_generate_rejects_prompt_ids_outside_the_vocabulary(head, bad_id):
    model = _build(head)
    prompt = _set(random_ids(2, 6), bad_id)
    with pytest.raises(ValueError, match=OUT_OF_VOCABULARY):
        model.generate(prompt, max_new_tokens=3, do_sample=False)


def test_generate_rejects_decoder_prompt_ids_outside_the_vocabulary():
    model = _build(VaswaniForConditionalGeneration)
    decoder_prompt = torch.tensor([[1, VOCAB + 3], [1, 5]])
    with pytest.raises(ValueError, match=OUT_OF_VOCABULARY):
        model.generate(random_ids(2, 6), decoder_input_ids=decoder_prompt, max_new_tokens=3, do_sample=False)


# -- Token ids of the wrong dtype ------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", HEAD_CLASSES, ids=lambda h: h.__name__)
def test_float_input_ids(head):
    model = _build(head)
    inputs = inputs_for(model)
    inputs["input_ids"] = inputs["input_ids"].float()
    with pytest.raises(ValueError, match=r"(?i)integer|dtype"):
        model(**inputs)


@pytest.mark.parametrize("dtype", [torch.bool, torch.float16])
def test_bool_and_half_input_ids(dtype):
    model = _build(VaswaniForCausalLM)
    with pytest.raises(ValueError, match="dtype"):
        model(input_ids=random_ids().to(dtype))


def test_float_decoder_input_ids():
    model = _build(VaswaniForConditionalGeneration)
    inputs = inputs_for(model)
    inputs["decoder_input_ids"] = inputs["decoder_input_ids"].float()
    with pytest.raises(ValueError, match=r"(?i)integer|dtype"):
        model(**inputs)


def test_generate_rejects_float_prompt():
    model = _build(VaswaniForCausalLM)
    with pytest.raises(ValueError, match=r"(?i)integer|dtype"):
        model.generate(random_ids(2, 6).float(), max_new_tokens=2, do_sample=False)


def test_int32_input_ids_are_token_ids_too():
    model = _build(VaswaniForMaskedLM)
    ids = random_ids()
    torch.testing.assert_close(model(input_ids=ids.int()).logits, model(input_ids=ids).logits)


# -- Sequences longer than the position table ------------------------------------------------------------------------
@pytest.mark.parametrize("head", [VaswaniForCausalLM, VaswaniForMaskedLM, VaswaniForConditionalGeneration])
def test_learned_positions_reject_a_sequence_past_max_position_embeddings(head):
    model = _build(head, position_embedding_type="learned")  # max_position_embeddings=64
    extra = {"decoder_input_ids": random_ids(1, 3)} if head is VaswaniForConditionalGeneration else {}
    assert torch.isfinite(model(input_ids=random_ids(1, 64), **extra).logits).all()  # the table's last row is fine
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=random_ids(1, 65), **extra)


def test_learned_positions_reject_a_long_target():
    model = _build(VaswaniForConditionalGeneration, position_embedding_type="learned")
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=random_ids(1, 5), decoder_input_ids=random_ids(1, 65))


def test_learned_positions_reject_decoding_past_the_table():
    model = _build(VaswaniForCausalLM, position_embedding_type="learned")
    cache = model(input_ids=random_ids(1, 64), use_cache=True).past_key_values
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(input_ids=random_ids(1, 1), past_key_values=cache)


@pytest.mark.parametrize("head", [VaswaniForCausalLM, VaswaniForMaskedLM, VaswaniForConditionalGeneration])
def test_sinusoidal_positions_go_past_max_position_embeddings(head):
    model = _build(head)  # sinusoidal, max_position_embeddings=64
    extra = {"decoder_input_ids": random_ids(1, 100)} if head is VaswaniForConditionalGeneration else {}
    logits = model(input_ids=random_ids(1, 150), **extra).logits
    assert logits.shape[1] == (100 if extra else 150)
    assert torch.isfinite(logits).all()


def test_sinusoidal_extension_agrees_with_the_table_inside_it():
    # Causal: the first 64 positions of a 100-token text cannot see the rest, so they must match the 64-token prefix.
    model = _build(VaswaniForCausalLM)
    ids = random_ids(1, 100)
    with torch.no_grad():
        long = model(input_ids=ids).logits
        short = model(input_ids=ids[:, :64]).logits
    torch.testing.assert_close(long[:, :64], short, rtol=1e-4, atol=1e-5)


def _paper_positional_encoding(positions, d_model: int) -> torch.Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d)), in float64 with math."""
    table = torch.zeros(len(positions), d_model, dtype=torch.float64)
    for row, pos in enumerate(positions):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            table[row, 2 * i] = math.sin(angle)
            table[row, 2 * i + 1] = math.cos(angle)
    return table


@pytest.mark.parametrize("positions", [[0, 5, 100, 200], [0, 1, 31, 63], [64, 65, 1000]])
def test_positional_encoding_is_the_papers_formula(positions):
    model = _build(VaswaniForCausalLM)  # d_model=32, max_position_embeddings=64
    encoding = model.model.decoder.embeddings.position_encoding(torch.tensor([positions]))
    assert encoding.shape == (1, len(positions), 32)
    expected = _paper_positional_encoding(positions, 32).float()
    torch.testing.assert_close(encoding[0], expected, rtol=0, atol=2e-4)


def test_positional_encoding_of_the_encoder_is_the_same_formula():
    model = _build(VaswaniForConditionalGeneration)
    positions = [0, 7, 63, 64, 300]
    encoding = model.model.encoder.embeddings.position_encoding(torch.tensor([positions]))
    torch.testing.assert_close(encoding[0], _paper_positional_encoding(positions, 32).float(), rtol=0, atol=2e-4)


# -- attention_mask of the wrong shape -------------------------------------------------------------------------------
_BAD_MASK_SHAPES = {"too-short": (2, 6), "too-long": (2, 8), "wrong-batch": (3, 7), "batch-of-one": (1, 7)}


@pytest.mark.parametrize("shape", _BAD_MASK_SHAPES.values(), ids=_BAD_MASK_SHAPES.keys())
@pytest.mark.parametrize(
    "head", [VaswaniForCausalLM, VaswaniForConditionalGeneration, VaswaniForMaskedLM, VaswaniForSequenceClassification],
    ids=lambda h: h.__name__,
)
def test_attention_mask_must_match_input_ids(head, shape):
    model = _build(head)
    inputs = inputs_for(model)  # input_ids (2, 7)
    inputs["attention_mask"] = torch.ones(shape, dtype=torch.long)
    with pytest.raises(ValueError, match="attention_mask"):
        model(**inputs)


@pytest.mark.parametrize("shape", [(2, 4), (2, 6), (1, 5)])
def test_decoder_attention_mask_must_match_decoder_input_ids(shape):
    model = _build(VaswaniForConditionalGeneration)
    inputs = inputs_for(model)  # decoder_input_ids (2, 5)
    inputs["decoder_attention_mask"] = torch.ones(shape, dtype=torch.long)
    with pytest.raises(ValueError, match="attention_mask"):
        model(**inputs)


def test_cached_causal_decoding_needs_a_mask_over_past_and_new_tokens():
    model = _build(VaswaniForCausalLM)
    ids = random_ids(2, 7)
    with torch.no_grad():
        prefill = model(input_ids=ids, attention_mask=torch.ones(2, 7, dtype=torch.long), use_cache=True)
        next_ids = random_ids(2, 1)
        with pytest.raises(ValueError, match=r"attention_mask[\s\S]*7 cached"):
            model(input_ids=next_ids, past_key_values=prefill.past_key_values, attention_mask=torch.ones(2, 1))
        with pytest.raises(ValueError, match="attention_mask"):
            model(input_ids=next_ids, past_key_values=prefill.past_key_values, attention_mask=torch.ones(2, 9))
        # The right mask (past + new) works and agrees with running the whole text at once.
        step = model(input_ids=next_ids, past_key_values=prefill.past_key_values, attention_mask=torch.ones(2, 8))
        full = model(input_ids=torch.cat([ids, next_ids], dim=1)).logits
    torch.testing.assert_close(step.logits[:, -1], full[:, -1], rtol=1e-4, atol=1e-5)


def test_cached_seq2seq_decoding_needs_a_decoder_mask_over_past_and_new_tokens():
    model = _build(VaswaniForConditionalGeneration)
    inputs = inputs_for(model)
    with torch.no_grad():
        prefill = model(**inputs, use_cache=True)
        step = dict(
            encoder_outputs=(prefill.encoder_last_hidden_state,),
            attention_mask=inputs["attention_mask"],
            decoder_input_ids=random_ids(2, 1),
            past_key_values=prefill.past_key_values,
        )
        with pytest.raises(ValueError, match=r"attention_mask[\s\S]*5 cached"):
            model(**step, decoder_attention_mask=torch.ones(2, 1, dtype=torch.long))
        logits = model(**step, decoder_attention_mask=torch.ones(2, 6, dtype=torch.long)).logits
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("shape", [(2, 5), (2, 9), (3, 7)], ids=["too-short", "too-long", "wrong-batch"])
@pytest.mark.parametrize("head", GENERATIVE_HEADS, ids=lambda h: h.__name__)
def test_generate_rejects_an_attention_mask_that_does_not_match_the_prompt(head, shape):
    # generate() drops an all-ones mask after deriving positions from it: the mismatch must still be caught.
    model = _build(head)
    with pytest.raises(ValueError, match="attention_mask"):
        model.generate(
            random_ids(2, 7), attention_mask=torch.ones(shape, dtype=torch.long), max_new_tokens=3, do_sample=False
        )


@pytest.mark.parametrize("shape", [(2, 5), (2, 9), (3, 7)], ids=["too-short", "too-long", "wrong-batch"])
def test_position_ids_must_match_input_ids(shape):
    model = _build(VaswaniForCausalLM)
    ids = random_ids(2, 7)
    # One row for the whole batch broadcasts, as in every Hugging Face model.
    torch.testing.assert_close(
        model(input_ids=ids, position_ids=torch.arange(7)[None]).logits, model(input_ids=ids).logits
    )
    with pytest.raises(ValueError, match="position_ids"):
        model(input_ids=ids, position_ids=torch.arange(shape[1]).expand(shape[0], -1))


# -- token_type_ids --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_type", [2, 5, -1])
@pytest.mark.parametrize(
    "head", [VaswaniForMaskedLM, VaswaniForSequenceClassification, VaswaniForMultipleChoice, VaswaniModel],
    ids=lambda h: h.__name__,
)
def test_token_type_ids_outside_type_vocab_size(head, bad_type):
    config = tiny_config(stacks="encoder-only") if head is VaswaniModel else tiny_config()  # type_vocab_size=2
    model = head(config).eval()
    inputs = inputs_for(model)
    inputs["token_type_ids"] = _set(torch.zeros_like(inputs["input_ids"]), bad_type)
    with pytest.raises(ValueError, match="type_vocab_size"):
        model(**inputs)


def test_token_type_ids_for_a_model_without_segment_embeddings():
    model = _build(VaswaniForMaskedLM, type_vocab_size=0)
    ids = random_ids()
    with pytest.raises(ValueError, match="type_vocab_size"):
        model(input_ids=ids, token_type_ids=torch.ones_like(ids))
    # All-zero segment ids (what BERT tokenizers return for one segment) carry no information and are accepted.
    torch.testing.assert_close(
        model(input_ids=ids, token_type_ids=torch.zeros_like(ids)).logits, model(input_ids=ids).logits
    )


def test_token_type_ids_of_the_wrong_shape():
    model = _build(VaswaniForMaskedLM)
    ids = random_ids()
    with pytest.raises(ValueError, match="token_type_ids"):
        model(input_ids=ids, token_type_ids=torch.zeros(2, 6, dtype=torch.long))


@pytest.mark.parametrize("bad_type", [2, 7])
def test_token_type_ids_are_not_silently_ignored_by_the_causal_head(bad_type):
    # The decoder has no use for segment ids; out-of-range ones must not vanish without a word.
    model = _build(VaswaniForCausalLM)  # type_vocab_size=2
    ids = random_ids()
    with pytest.raises(ValueError, match="token_type_ids"):
        model(input_ids=ids, token_type_ids=torch.full_like(ids, bad_type))


# -- input_ids and inputs_embeds -------------------------------------------------------------------------------------
@pytest.mark.parametrize("head", HEAD_CLASSES, ids=lambda h: h.__name__)
def test_exactly_one_of_input_ids_and_inputs_embeds(head):
    model = _build(head)
    inputs = inputs_for(model)
    embeds = torch.randn(*inputs["input_ids"].shape, 32)
    with pytest.raises(ValueError, match="inputs_embeds"):
        model(**inputs, inputs_embeds=embeds)
    inputs.pop("input_ids")
    if head is VaswaniForMultipleChoice:
        with pytest.raises(ValueError, match="input_ids"):
            model(**inputs)
    else:
        with pytest.raises(ValueError, match="inputs_embeds"):
            model(**inputs)


def test_exactly_one_of_decoder_input_ids_and_decoder_inputs_embeds():
    model = _build(VaswaniForConditionalGeneration)
    inputs = inputs_for(model)
    with pytest.raises(ValueError, match="inputs_embeds"):
        model(**inputs, decoder_inputs_embeds=torch.randn(2, 5, 32))


# -- Encoder-decoder without a target --------------------------------------------------------------------------------
@pytest.mark.parametrize("head", [VaswaniForConditionalGeneration, VaswaniModel], ids=lambda h: h.__name__)
def test_encoder_decoder_without_decoder_input_ids_or_labels(head):
    model = _build(head)
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(input_ids=random_ids(), attention_mask=torch.ones(2, 7, dtype=torch.long))


# -- Multiple choice -------------------------------------------------------------------------------------------------
def test_multiple_choice_rejects_2d_input_ids():
    model = _build(VaswaniForMultipleChoice)
    ids = random_ids(2, 7)
    with pytest.raises(ValueError, match="num_choices"):
        model(input_ids=ids, attention_mask=torch.ones_like(ids))


def test_multiple_choice_rejects_inputs_embeds_without_a_choices_dimension():
    # inputs_embeds carry a hidden dimension, so (batch, length, d_model) is the 2-D-ids mistake in embedding form.
    model = _build(VaswaniForMultipleChoice)
    with pytest.raises(ValueError, match="num_choices"):
        model(inputs_embeds=torch.randn(2, 7, 32))


# == Nothing silent (issue 15) =========================================================================================
from vaswani import VaswaniForQuestionAnswering, VaswaniForTokenClassification  # noqa: E402

SINGLE_ROW_HEADS = [h for h in HEAD_CLASSES if h is not VaswaniForMultipleChoice]


def _head_id(head):
    return getattr(head, "__name__", head)


# -- Masks ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [2, -1, 0.5])
@pytest.mark.parametrize("head", SINGLE_ROW_HEADS, ids=_head_id)
def test_a_padding_mask_holds_only_ones_and_zeros(head, value):
    model = _build(head)
    inputs = inputs_for(model)
    mask = inputs["attention_mask"].to(torch.float if isinstance(value, float) else torch.long)
    mask[0, 2] = value
    with pytest.raises(ValueError, match=r"`attention_mask` holds .*only 1 \(a token\) and 0"):
        model(**{**inputs, "attention_mask": mask})


def test_a_bool_padding_mask_is_the_same_as_ones_and_zeros():
    model = _build(VaswaniForMaskedLM)
    inputs = inputs_for(model)
    inputs["attention_mask"][1, -2:] = 0
    with torch.no_grad():
        ones = model(**inputs).logits
        bools = model(**{**inputs, "attention_mask": inputs["attention_mask"].bool()}).logits
    torch.testing.assert_close(ones, bools)


@pytest.mark.parametrize("rank", [1, 3])
def test_a_mask_of_another_rank_is_refused(rank):
    model = _build(VaswaniForCausalLM)
    ids = random_ids(2, 5)
    mask = torch.ones((2, 5)[:rank] if rank == 1 else (2, 5, 5), dtype=torch.long)
    with pytest.raises(ValueError, match="`attention_mask` must be 2D"):
        model(input_ids=ids, attention_mask=mask)


def test_a_4d_mask_is_the_attention_pattern_and_must_fit():
    model = _build(VaswaniForMaskedLM)
    ids = random_ids(2, 5)
    padding = torch.ones(2, 5, dtype=torch.long)
    padding[1, -2:] = 0
    pattern = padding.bool()[:, None, None, :].expand(2, 1, 5, 5)  # every query sees the real tokens
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, attention_mask=pattern).logits[padding.bool()],
                                   model(input_ids=ids, attention_mask=padding).logits[padding.bool()])
    with pytest.raises(ValueError, match="A 4D `attention_mask` is the attention pattern"):
        model(input_ids=ids, attention_mask=pattern[:, :, :4])


def test_a_4d_mask_cannot_serve_as_the_cross_attention_mask():
    model = _build(VaswaniForConditionalGeneration)
    ids = random_ids(2, 5)
    pattern = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="decoder's attention over the source, which needs a 2D padding mask"):
        model(input_ids=ids, attention_mask=pattern, decoder_input_ids=random_ids(2, 3))


# -- Positions, segments, embeddings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_negative_positions_are_refused(positions):
    model = _build(VaswaniForCausalLM, position_embedding_type=positions)
    with pytest.raises(ValueError, match="`position_ids` holds -1: positions count from 0"):
        model(input_ids=random_ids(1, 4), position_ids=torch.tensor([[-1, 0, 1, 2]]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_positions_must_be_integers(dtype):
    model = _build(VaswaniForCausalLM)
    with pytest.raises(ValueError, match="`position_ids` must hold integer positions"):
        model(input_ids=random_ids(1, 4), position_ids=torch.arange(4)[None].to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_segment_ids_must_be_integers(dtype):
    model = _build(VaswaniForMaskedLM)
    ids = random_ids(2, 5)
    with pytest.raises(ValueError, match="`token_type_ids` must hold integer segment ids"):
        model(input_ids=ids, token_type_ids=torch.zeros(2, 5, dtype=dtype))


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.uint8])
@pytest.mark.parametrize("head", [VaswaniForCausalLM, VaswaniForMaskedLM], ids=_head_id)
def test_small_integer_ids_are_refused_with_the_dtype(head, dtype):
    with pytest.raises(ValueError, match=rf"`input_ids` must hold token ids as int64 .* got dtype {dtype}"):
        _build(head)(input_ids=random_ids(2, 5).to(dtype))


@pytest.mark.parametrize("width", [16, 33])
def test_inputs_embeds_of_the_wrong_width(width):
    with pytest.raises(ValueError, match=r"`inputs_embeds` must have shape \(batch_size, sequence_length, d_model=32\)"):
        _build(VaswaniForCausalLM)(inputs_embeds=torch.randn(2, 5, width))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_inputs_embeds_are_refused(bad):
    embeds = torch.randn(2, 5, 32)
    embeds[1, 2, 3] = bad
    with pytest.raises(ValueError, match="`inputs_embeds` holds NaN or infinite values"):
        _build(VaswaniForCausalLM)(inputs_embeds=embeds)


def test_non_finite_encoder_outputs_are_refused():
    model = _build(VaswaniForConditionalGeneration)
    states = torch.randn(2, 5, 32)
    states[0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="`encoder_hidden_states` holds NaN"):
        model(encoder_outputs=(states,), decoder_input_ids=random_ids(2, 3))


# -- Empty inputs and batch sizes -------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(0, 5), (2, 0)], ids=["batch-0", "length-0"])
@pytest.mark.parametrize("head", SINGLE_ROW_HEADS, ids=_head_id)
def test_empty_inputs_are_refused(head, shape):
    model = _build(head)
    extra = {"decoder_input_ids": random_ids(max(shape[0], 1), 3)} if model.config.is_encoder_decoder else {}
    with pytest.raises(ValueError, match=r"`input_ids` is empty"):
        model(input_ids=torch.zeros(shape, dtype=torch.long), **extra)


def test_decoder_inputs_of_another_batch_size_are_refused():
    model = _build(VaswaniForConditionalGeneration)
    with pytest.raises(ValueError, match="`decoder_input_ids` has batch size 3, but the source has 2"):
        model(input_ids=random_ids(2, 5), decoder_input_ids=random_ids(3, 4))


def test_labels_of_another_batch_size_are_refused_before_they_become_decoder_inputs():
    model = _build(VaswaniForConditionalGeneration)
    with pytest.raises(ValueError, match="`labels` has batch size 3, but the source has 2"):
        model(input_ids=random_ids(2, 5), labels=random_ids(3, 4))


# -- Labels -----------------------------------------------------------------------------------------------------------
def _bad_labels(model, kind):
    """Labels of the wrong shape, rank or dtype for `model`'s head."""
    inputs = inputs_for(model)
    batch, length = inputs["input_ids"].shape[:2]
    right = {
        VaswaniForCausalLM: (batch, length), VaswaniForMaskedLM: (batch, length),
        VaswaniForTokenClassification: (batch, length), VaswaniForConditionalGeneration: (batch, 5),
        VaswaniForSequenceClassification: (batch,), VaswaniForMultipleChoice: (batch,),
    }[type(model)]
    if kind == "float":
        return inputs, torch.zeros(right)
    if kind == "rank":
        return inputs, torch.zeros((*right, 2), dtype=torch.long)
    wrong = (right[0], right[1] + 2) if len(right) == 2 else (right[0] + 1,)
    if isinstance(model, VaswaniForConditionalGeneration):  # any target length is right: another batch is not
        wrong = (right[0] + 1, right[1])
    return inputs, torch.zeros(wrong, dtype=torch.long)


@pytest.mark.parametrize("kind", ["shape", "rank", "float"])
@pytest.mark.parametrize(
    "head",
    [VaswaniForCausalLM, VaswaniForMaskedLM, VaswaniForTokenClassification, VaswaniForConditionalGeneration,
     VaswaniForSequenceClassification, VaswaniForMultipleChoice],
    ids=_head_id,
)
def test_labels_of_the_wrong_shape_rank_or_dtype_are_named(head, kind):
    model = _build(head)
    inputs, labels = _bad_labels(model, kind)
    if head is VaswaniForConditionalGeneration:
        inputs.pop("decoder_input_ids")
    if head is VaswaniForSequenceClassification and kind == "float":
        return _assert_regression_shape_is_checked(model, inputs)
    with pytest.raises(ValueError, match="`labels`"):
        model(**inputs, labels=labels)


def _assert_regression_shape_is_checked(model, inputs):
    # Float labels mean multi-label classification (num_labels 2): they must be (batch, num_labels).
    with pytest.raises(ValueError, match=r"`labels` has shape \(2,\); multi_label_classification needs \(2, 2\)"):
        model(**inputs, labels=torch.zeros(2))


def test_question_answering_positions_must_be_indices():
    model = _build(VaswaniForQuestionAnswering)
    inputs = inputs_for(model)
    with pytest.raises(ValueError, match="`start_positions` must hold token indices"):
        model(**inputs, start_positions=torch.tensor([1.0, 2.0]), end_positions=torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="`end_positions` has shape"):
        model(**inputs, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([2, 3, 4]))


# -- Fully padded rows: one behaviour for every attention back-end ----------------------------------------------------
def test_a_fully_padded_source_row_gives_the_same_outputs_under_eager_and_sdpa():
    ids, target = random_ids(2, 6), random_ids(2, 4)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1] = 0
    outputs = {}
    for implementation in ("eager", "sdpa"):
        torch.manual_seed(0)
        model = VaswaniForConditionalGeneration(tiny_config(attn_implementation=implementation)).eval()
        with torch.no_grad():
            outputs[implementation] = model(input_ids=ids, attention_mask=mask, decoder_input_ids=target,
                                            output_attentions=implementation == "eager")
    eager, sdpa = outputs["eager"], outputs["sdpa"]
    torch.testing.assert_close(eager.logits, sdpa.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(eager.encoder_last_hidden_state, sdpa.encoder_last_hidden_state, atol=1e-5, rtol=0)
    assert torch.isfinite(eager.logits).all()
    assert (eager.cross_attentions[0][1] == 0).all()  # the padded row's queries attend to nothing
    assert torch.allclose(eager.cross_attentions[0][0].sum(-1), torch.ones(1))  # the real row's weights sum to 1


# -- Generation past learned positions fails before the first step ----------------------------------------------------
def test_generation_past_learned_positions_fails_before_the_first_step(monkeypatch):
    model = _build(VaswaniForCausalLM, position_embedding_type="learned", max_position_embeddings=16)
    steps = []
    monkeypatch.setattr(type(model), "forward", lambda *a, **k: steps.append(1))
    prompt = random_ids(1, 6)
    with pytest.raises(ValueError, match=r"ask for at most 11 new tokens \(`max_new_tokens=11`\)"):
        model.generate(input_ids=prompt, max_new_tokens=12, do_sample=False)
    assert not steps


def test_generation_up_to_the_last_learned_position_works():
    model = _build(VaswaniForCausalLM, position_embedding_type="learned", max_position_embeddings=16)
    out = model.generate(input_ids=random_ids(1, 6), max_new_tokens=11, do_sample=False, eos_token_id=None)
    assert out.shape == (1, 17)  # 17 tokens; the model read the first 16 (positions 0..15)


def test_a_prompt_longer_than_the_positions_gets_advice_to_shorten_it():
    model = _build(VaswaniForCausalLM, position_embedding_type="learned", max_position_embeddings=16)
    with pytest.raises(ValueError, match="shorten the prompt to at most 16 tokens"):
        model.generate(input_ids=random_ids(1, 20), max_new_tokens=2, do_sample=False)


# -- Value checks cost no host sync per decoding step -----------------------------------------------------------------
@pytest.mark.parametrize("head", GENERATIVE_HEADS, ids=_head_id)
def test_generate_checks_values_once_not_per_step(head, monkeypatch):
    model = _build(head)
    calls = []
    original = torch.aminmax
    monkeypatch.setattr(torch, "aminmax", lambda *a, **k: calls.append(1) or original(*a, **k))
    counts = []
    for new_tokens in (2, 10):
        calls.clear()
        model.generate(input_ids=random_ids(2, 5), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                       do_sample=False)
        counts.append(len(calls))
    assert counts[0] == counts[1] > 0, counts  # the prompt is checked; the model's own tokens are not


def test_a_manual_decoding_loop_is_still_checked():
    model = _build(VaswaniForCausalLM)
    cache = model(input_ids=random_ids(1, 4), use_cache=True).cache
    with pytest.raises(ValueError, match=OUT_OF_VOCABULARY):
        model(input_ids=torch.tensor([[VOCAB + 5]]), cache=cache)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 3.0], ids=["nan", "inf", "-inf", "finite"])
def test_the_one_pass_finiteness_check_agrees_with_isfinite(dtype, value):
    from vaswani.modeling.validation_vaswani import all_finite

    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        tensor = torch.randn(2, 3, 5, 7, generator=generator).to(dtype)
        tensor.view(-1)[int(torch.randint(0, tensor.numel(), (1,), generator=generator))] = value
        assert all_finite(tensor) == bool(torch.isfinite(tensor).all())
    assert all_finite(torch.empty(0, 4, dtype=dtype))
