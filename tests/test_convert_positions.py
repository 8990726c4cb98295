"""
`vaswani.convert` for the models whose positions act inside attention: GPT-NeoX (rotary, parallel residual), BLOOM
(ALiBi) and T5 (relative bias, RMS norm) become Vaswani models that compute the same numbers.

As in tests/test_convert.py: tiny randomly initialised sources (width 32 to 36, two layers, a vocabulary of 99),
seeded, in eval mode and float32, their norms and biases randomised too, compared with the converted model to 1e-5
on real (unpadded) positions, both attention implementations on the Vaswani side; greedy and beam `generate()` token
for token on a padded batch; the command line end to end; and the variants a converter must refuse.
"""

import pytest
import torch
from test_convert import (
    IMPLEMENTATIONS,
    VOCAB,
    _one_thread,  # noqa: F401  (module fixtures: one thread, quiet transformers)
    _quiet_transformers,  # noqa: F401
    _refused,
    assert_close,
    cli,
    ids,
    left_padded,
    right_padded,
)
from transformers import (
    AutoModelForSeq2SeqLM,
    BloomConfig,
    BloomForCausalLM,
    BloomModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    GPTNeoXModel,
    T5Config,
    T5EncoderModel,
    T5ForConditionalGeneration,
    T5Model,
)

from vaswani import VaswaniForCausalLM, VaswaniForConditionalGeneration, VaswaniModel
from vaswani.convert import ARCHITECTURES, convert


EOS, PAD = 98, 0  # the causal sources: the last id ends a text, 0 pads (T5's own: pad 0, eos 1)
GREEDY = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False)  # eos cannot stop one of them early
BEAM = dict(max_new_tokens=10, num_beams=3, do_sample=False, return_dict_in_generate=True, output_scores=True)


def tiny(model_class, config, seed=0):
    """A random source in eval mode with eager attention, its norms and biases moved off their 1s and 0s so that a
    norm or bias copied to the wrong place shows."""
    torch.manual_seed(seed)
    model = model_class(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias") or name == "ln_f.weight":
                parameter.add_(torch.randn_like(parameter) * 0.1)
    model.set_attn_implementation("eager")
    return model.eval()


def assert_same_generation(source, converted, prompts, mask):
    expected = source.generate(prompts, attention_mask=mask, **GREEDY)
    actual = converted.generate(prompts, attention_mask=mask, **GREEDY)
    assert expected.shape[1] > prompts.shape[1]
    assert actual.tolist() == expected.tolist()
    expected = source.generate(prompts, attention_mask=mask, **BEAM)
    actual = converted.generate(prompts, attention_mask=mask, **BEAM)
    assert actual.sequences.tolist() == expected.sequences.tolist()
    assert_close(actual.sequences_scores, expected.sequences_scores)


def assert_same_causal_logits(source, converted, impl):
    """Left-padded prompts: positions count real tokens on both sides (GPT-NeoX is given them, as its generate()
    does; BLOOM makes its ALiBi from the mask)."""
    converted.set_attn_implementation(impl)
    input_ids, mask = left_padded([13, 8, 3], pad=PAD)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    extra = {"position_ids": positions} if isinstance(source, GPTNeoXForCausalLM) else {}
    with torch.no_grad():
        expected = source(input_ids=input_ids, attention_mask=mask, **extra).logits
        actual = converted(input_ids=input_ids, attention_mask=mask).logits
    real = mask.bool()
    assert_close(actual[real], expected[real])


# -- GPT-NeoX and BLOOM ------------------------------------------------------------------------------------------------
def neox_config(**overrides) -> GPTNeoXConfig:
    settings = dict(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD, initializer_range=0.2,
    )
    return GPTNeoXConfig(**{**settings, **overrides})


def bloom_config(**overrides) -> BloomConfig:
    settings = dict(
        vocab_size=VOCAB, hidden_size=32, n_layer=2, n_head=4, bos_token_id=EOS, eos_token_id=EOS,
        pad_token_id=PAD, initializer_range=0.2,
    )
    return BloomConfig(**{**settings, **overrides})


def rope(partial, rope_type="default", **extra):
    return {"rope_type": rope_type, "rope_theta": 10000.0, "partial_rotary_factor": partial, **extra}


CAUSAL_VARIANTS = {
    "gpt-neox-parallel-quarter": neox_config(use_parallel_residual=True, rope_parameters=rope(0.25)),
    "gpt-neox-parallel-full": neox_config(use_parallel_residual=True, rope_parameters=rope(1.0)),
    "gpt-neox-sequential-quarter": neox_config(use_parallel_residual=False, rope_parameters=rope(0.25)),
    "gpt-neox-sequential-full-no-attention-bias": neox_config(
        use_parallel_residual=False, rope_parameters=rope(1.0), attention_bias=False
    ),
    "gpt-neox-linear-scaled": neox_config(rope_parameters=rope(0.5, "linear", factor=2.0)),
    "gpt-neox-tied": neox_config(tie_word_embeddings=True),
    "bloom-4-heads": bloom_config(),
    "bloom-6-heads": bloom_config(hidden_size=36, n_head=6),  # not a power of two: ALiBi's interleaved extra slopes
    "bloom-untied": bloom_config(tie_word_embeddings=False),
}


@pytest.fixture(scope="module", params=list(CAUSAL_VARIANTS))
def causal_pair(request):
    config = CAUSAL_VARIANTS[request.param]
    source = tiny(GPTNeoXForCausalLM if isinstance(config, GPTNeoXConfig) else BloomForCausalLM, config)
    return source, convert(source)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_causal_lms_give_the_same_logits(causal_pair, impl):
    source, vas = causal_pair
    assert type(vas) is VaswaniForCausalLM and vas.config.norm_first and vas.config.final_layer_norm
    if isinstance(source, GPTNeoXForCausalLM):
        assert vas.config.position_embedding_type == "rotary"
        assert vas.config.parallel_residual == source.config.use_parallel_residual
        assert vas.config.rope_parameters == source.config.rope_parameters
    else:
        assert vas.config.position_embedding_type == "alibi"
        assert vas.config.embedding_layer_norm and vas.config.activation_function == "gelu_pytorch_tanh"
    assert vas.config.tie_word_embeddings == source.config.tie_word_embeddings
    tied = vas.lm_head.weight.data_ptr() == vas.get_input_embeddings().weight.data_ptr()
    assert tied == source.config.tie_word_embeddings
    assert_same_causal_logits(source, vas, impl)


def test_causal_lm_generation_is_identical(causal_pair):
    source, vas = causal_pair
    prompts, mask = left_padded([7, 3], pad=PAD, seed=4)
    assert_same_generation(source, vas, prompts, mask)


def test_gpt_neox_fused_qkv_is_unfused_head_by_head():
    """Head h of the fused projection holds q_h, k_h, v_h side by side: a layout read as q, k, v stacked (GPT-2's)
    gives other weights, and other logits."""
    neox = tiny(GPTNeoXForCausalLM, neox_config())
    vas = convert(neox)
    fused = neox.gpt_neox.layers[0].attention.query_key_value.weight
    attention = vas.model.decoder.layers[0].self_attn
    head_dim = 32 // 4
    assert torch.equal(attention.k_proj.weight[:head_dim], fused[head_dim : 2 * head_dim])
    assert torch.equal(attention.q_proj.weight[head_dim : 2 * head_dim], fused[3 * head_dim : 4 * head_dim])
    assert not torch.equal(attention.k_proj.weight, fused[32:64])


# -- T5 -----------------------------------------------------------------------------------------------------------------
def t5_config(**overrides) -> T5Config:
    settings = dict(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=16, decoder_start_token_id=0,
        initializer_factor=0.5,  # T5 draws embeddings with std 1.0 x this; logits stay near 10
    )
    return T5Config(**{**settings, **overrides})


def t5_source(lengths=(11, 6, 3)):
    """Right-padded sources (T5's tokenizer pads right), each ending in eos (1)."""
    batch, mask = right_padded(lengths, pad=0, seed=5, low=2)
    for row, length in enumerate(lengths):
        batch[row, length - 1] = 1
    return batch, mask


def _untie(t5):
    """A T5 whose lm_head is its own matrix (transformers 5 always ties T5's; a checkpoint may not)."""
    with torch.no_grad():
        t5.lm_head.weight = torch.nn.Parameter(t5.shared.weight.clone() + torch.randn_like(t5.shared.weight))
    return t5


T5_VARIANTS = {
    "tied": lambda: tiny(T5ForConditionalGeneration, t5_config()),  # decoder output scaled by d_model^-0.5
    "unscaled": lambda: tiny(T5ForConditionalGeneration, t5_config(tie_word_embeddings=False)),  # T5 v1.1's config
    "separate-lm-head": lambda: _untie(tiny(T5ForConditionalGeneration, t5_config(tie_word_embeddings=False))),
}


@pytest.fixture(scope="module", params=list(T5_VARIANTS))
def t5_pair(request):
    t5 = T5_VARIANTS[request.param]()
    return t5, convert(t5)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_t5_gives_the_same_logits(t5_pair, impl):
    t5, vas = t5_pair
    vas.set_attn_implementation(impl)
    assert type(vas) is VaswaniForConditionalGeneration
    assert vas.config.position_embedding_type == "relative" and vas.config.rms_norm
    assert not vas.config.projection_bias and not vas.config.scale_embedding
    separate = t5.lm_head.weight.data_ptr() != t5.shared.weight.data_ptr()
    assert vas.config.tie_word_embeddings is not separate
    assert (vas.lm_head.weight.data_ptr() == vas.get_input_embeddings().weight.data_ptr()) is not separate
    source, mask = t5_source()
    decoder_input_ids = torch.cat([torch.zeros(3, 1, dtype=torch.long), ids(3, 6, seed=6, low=2)], dim=1)
    with torch.no_grad():
        expected = t5(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids)
        actual = vas(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids)
    assert expected.logits.abs().max() > 1  # a missing or doubled scaling would show
    assert_close(actual.logits, expected.logits)
    real = mask.bool()
    assert_close(actual.encoder_last_hidden_state[real], expected.encoder_last_hidden_state[real])


def test_t5_generation_is_identical(t5_pair):
    t5, vas = t5_pair
    source, mask = t5_source((9, 4))
    assert vas.generation_config.decoder_start_token_id == 0 and vas.config.eos_token_id == 1
    assert_same_generation(t5, vas, source, mask)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_t5_encoder_gives_the_same_hidden_states(impl):
    t5 = tiny(T5EncoderModel, t5_config())
    vas = convert(t5)
    vas.set_attn_implementation(impl)
    assert type(vas) is VaswaniModel and vas.config.stacks == "encoder-only"
    right = t5_source()
    # Left padding too: T5 counts the pads, Vaswani does not, but a relative bias sees distances only.
    left = (right[0].flip(-1), right[1].flip(-1))
    for source, mask in (right, left):
        with torch.no_grad():
            expected = t5(input_ids=source, attention_mask=mask).last_hidden_state
            actual = vas(input_ids=source, attention_mask=mask).last_hidden_state
        real = mask.bool()
        assert_close(actual[real], expected[real])


BARE = {
    "GPTNeoXModel": lambda: tiny(GPTNeoXModel, neox_config()),
    "BloomModel": lambda: tiny(BloomModel, CAUSAL_VARIANTS["bloom-6-heads"]),
    "T5Model": lambda: tiny(T5Model, t5_config()),  # no output scaling: that is T5ForConditionalGeneration's
}


@pytest.mark.parametrize("name", list(BARE))
def test_bare_bodies_give_the_same_hidden_states(name):
    source = BARE[name]()
    vas = convert(source)
    assert type(vas) is VaswaniModel
    if name == "T5Model":
        inputs, real = dict(zip(("input_ids", "attention_mask"), t5_source())), slice(None)
        inputs["decoder_input_ids"] = ids(3, 6, seed=6, low=2)
    else:
        input_ids, mask = left_padded([13, 8, 3], pad=PAD)
        inputs, real = {"input_ids": input_ids, "attention_mask": mask}, mask.bool()
    extra = {"position_ids": (mask.cumsum(-1) - 1).clamp(min=0)} if name == "GPTNeoXModel" else {}
    with torch.no_grad():
        expected = source(**inputs, **extra).last_hidden_state
        actual = vas(**inputs).last_hidden_state
    assert_close(actual[real], expected[real])


# -- Command line -------------------------------------------------------------------------------------------------------
def test_cli_converts_a_t5_folder_that_loads_with_the_same_logits(tmp_path):
    t5 = tiny(T5ForConditionalGeneration, t5_config())
    t5.save_pretrained(tmp_path / "t5")
    out = tmp_path / "vaswani-t5"
    run = cli("convert", "--source", tmp_path / "t5", "--output", out)
    assert run.code == 0, run.err[-3000:]
    assert "VaswaniForConditionalGeneration" in run.out
    model = AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    assert type(model) is VaswaniForConditionalGeneration
    source, mask = t5_source()
    decoder_input_ids = torch.cat([torch.zeros(3, 1, dtype=torch.long), ids(3, 5, seed=7, low=2)], dim=1)
    with torch.no_grad():
        expected = t5(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
        actual = model(input_ids=source, attention_mask=mask, decoder_input_ids=decoder_input_ids).logits
    assert_close(actual, expected)
    greedy = dict(max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert model.generate(source, attention_mask=mask, **greedy).tolist() == \
        t5.generate(source, attention_mask=mask, **greedy).tolist()


# -- Refused variants ---------------------------------------------------------------------------------------------------
def test_unsupported_variants_are_refused_by_name():
    assert {"GPTNeoXForCausalLM", "BloomForCausalLM", "T5ForConditionalGeneration", "T5EncoderModel"} <= set(ARCHITECTURES)
    _refused(BloomForCausalLM(bloom_config(apply_residual_connection_post_layernorm=True)),
             "apply_residual_connection_post_layernorm")
    _refused(T5ForConditionalGeneration(t5_config(feed_forward_proj="gated-gelu")), "feed_forward_proj", "gated")
    _refused(T5EncoderModel(t5_config(d_kv=4)), "d_kv", "d_model")
    _refused(GPTNeoXForCausalLM(neox_config(hidden_act="quick_gelu")), "quick_gelu")
    # A rotated width that is odd (a fifth of 8 features) has no pairs to turn.
    _refused(GPTNeoXForCausalLM(neox_config(rope_parameters=rope(0.2))), "partial_rotary_factor")
