"""
Positions inside attention (rotary, partial rotary, ALiBi, T5's relative bias) in every head: cache, padding,
attention back-ends, save/load and remote code, the flash guard, gradient checkpointing; and each piece of
`positions_vaswani.py` against transformers' own implementation (T5, BLOOM, Llama, GPT-NeoX), imported, never copied.
"""

import copy

import pytest
import safetensors.torch
import torch
from transformers import AttentionInterface, GPTNeoXConfig, LlamaConfig
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.models.bloom.modeling_bloom import build_alibi_tensor
from transformers.models.gpt_neox.modeling_gpt_neox import GPTNeoXRotaryEmbedding
from transformers.models.gpt_neox.modeling_gpt_neox import apply_rotary_pos_emb as neox_apply_rotary_pos_emb
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.models.t5.modeling_t5 import T5Attention

from helpers import HEAD_CLASSES, HEADS, PAD, inputs_for, main_output, random_ids, tiny_config
from test_hub import run_without_vaswani
from vaswani import (
    VaswaniConfig,
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMaskedLM,
)
from vaswani.modeling.modeling_vaswani import VaswaniDecoder, VaswaniEncoder
from vaswani.modeling.positions_vaswani import (
    VaswaniAlibi,
    VaswaniRelativePositionBias,
    VaswaniRotaryEmbedding,
    alibi_slopes,
    apply_rotary,
    relative_position_bucket,
)

ROPE = {"rope_type": "default", "rope_theta": 10000.0}
# 8 buckets up to distance 20: the decoder's distances are exact below 4, the encoder's below 2 (each direction
# has half the buckets), so texts of a dozen tokens reach the logarithmic buckets, and those past 20 the last one.
KINDS = {
    "rotary": dict(position_embedding_type="rotary", rope_parameters=ROPE),
    "rotary-partial": dict(position_embedding_type="rotary", rope_parameters={**ROPE, "partial_rotary_factor": 0.5}),
    "alibi": dict(position_embedding_type="alibi"),
    "relative": dict(
        position_embedding_type="relative", relative_attention_num_buckets=8, relative_attention_max_distance=20
    ),
}
MODULES = {
    "rotary": VaswaniRotaryEmbedding,
    "rotary-partial": VaswaniRotaryEmbedding,
    "alibi": VaswaniAlibi,
    "relative": VaswaniRelativePositionBias,
}
AUTO_CLASS = dict(HEADS)
# The heads that matter for positions: one per stack layout (decoder-only, encoder-decoder, encoder-only).
LAYOUTS = [VaswaniForCausalLM, VaswaniForConditionalGeneration, VaswaniForMaskedLM]
GENERATIVE = [VaswaniForCausalLM, VaswaniForConditionalGeneration]


def build(head, kind: str):
    """
    A tiny `head` with positions `kind`, in eval mode. Weights drawn with std 0.2, not 0.02: at 0.02 attention is
    nearly uniform and T5's table nearly zero, so a wrong position would move the logits less than the tests' 1e-5.
    """
    return head(tiny_config(**copy.deepcopy(KINDS[kind]), init_std=0.2)).eval()  # a config may fill in its dict


def stacks(model) -> list:
    return [module for module in model.modules() if isinstance(module, (VaswaniEncoder, VaswaniDecoder))]


def generate(model, input_ids, attention_mask, **kwargs):
    # min_new_tokens: an early end-of-sequence would leave most steps untested.
    return model.generate(
        input_ids, attention_mask=attention_mask, max_new_tokens=5, min_new_tokens=5, do_sample=False, **kwargs
    )


def left_padded(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of different lengths as one left-padded batch and its mask."""
    width = max(len(row) for row in rows)
    ids = torch.full((len(rows), width), PAD)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = row
        mask[i, width - len(row):] = 1
    return ids, mask


# -- Every head, every kind ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("head", HEAD_CLASSES, ids=lambda h: h.__name__)
def test_every_head_runs_with_every_position_kind(head, kind):
    model = build(head, kind)
    for stack in stacks(model):  # positions inside each stack's attention, none added to the embeddings
        assert not stack.embeddings.adds_positions
        assert not hasattr(stack.embeddings, "position_embeddings")
        assert "sinusoidal_table" not in dict(stack.embeddings.named_buffers())
        module = stack.rotary_embedding if kind.startswith("rotary") else stack.position_bias
        assert isinstance(module, MODULES[kind])
        if kind.startswith("rotary"):  # the features of a head that turn: all, or half
            factor = KINDS[kind]["rope_parameters"].get("partial_rotary_factor", 1)
            assert module.inv_freq.numel() * 2 == model.config.d_model // model.config.num_heads * factor
    with torch.no_grad():
        output = main_output(model(**inputs_for(model)))
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("kind", KINDS)
def test_positions_make_the_encoder_see_order(kind):
    """Without positions, self-attention is permutation-equivariant: rolling the input rolls the output. A shift
    (not a reversal, which keeps every |i - j|) must change what each token reads."""
    model = build(VaswaniForMaskedLM, kind)
    ids = random_ids(1, 10)
    with torch.no_grad():
        output = model(input_ids=ids).logits
        rolled = model(input_ids=ids.roll(3, dims=1)).logits
    assert not torch.allclose(rolled, output.roll(3, dims=1), atol=1e-3)


# -- Cache -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("head", GENERATIVE, ids=lambda h: h.__name__)
def test_generate_with_and_without_cache_is_identical(head, kind):
    model = build(head, kind)
    ids, mask = left_padded([random_ids(1, 6)[0], random_ids(1, 3)[0]])  # cached keys' positions skip the padding
    for num_beams in (1, 3):
        cached = generate(model, ids, mask, num_beams=num_beams, use_cache=True)
        uncached = generate(model, ids, mask, num_beams=num_beams, use_cache=False)
        assert torch.equal(cached, uncached), f"num_beams={num_beams}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("head", GENERATIVE, ids=lambda h: h.__name__)
def test_step_by_step_with_a_cache_equals_the_full_forward(head, kind):
    """
    24 tokens, past relative_attention_max_distance (20): the last bucket is reached through the cache. The second
    row is left-padded (the seq2seq source too), so cached keys must be numbered from the mask.
    """
    model = build(head, kind)
    length, prefix = 24, 18
    ids = random_ids(2, length)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    real = mask.bool()  # a padded query's output is never read
    if model.config.is_encoder_decoder:
        source = {"input_ids": random_ids(2, 6), "attention_mask": mask[:, -6:]}
        names = ("decoder_input_ids", "decoder_attention_mask")
    else:
        source, names = {}, ("input_ids", "attention_mask")

    def upto(start, end):
        return {**source, names[0]: ids[:, start:end], names[1]: mask[:, :end]}

    with torch.no_grad():
        full = model(**upto(0, length)).logits
        if source:
            source["encoder_outputs"] = model.get_encoder()(**source)
        output = model(**upto(0, prefix), use_cache=True)
        torch.testing.assert_close(output.logits[real[:, :prefix]], full[:, :prefix][real[:, :prefix]], atol=1e-5, rtol=0)
        for step in range(prefix, length):
            output = model(**upto(step, step + 1), cache=output.past_key_values, use_cache=True)
            torch.testing.assert_close(output.logits[:, -1], full[:, step], atol=1e-5, rtol=0, msg=f"step {step}")


# -- Left padding ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("head", LAYOUTS, ids=lambda h: h.__name__)
def test_a_left_padded_prompt_reads_as_the_prompt_alone(head, kind):
    model = build(head, kind)
    prompts = [random_ids(1, 9)[0], random_ids(1, 4)[0]]
    ids, mask = left_padded(prompts)
    decoder = {"decoder_input_ids": random_ids(2, 5)} if model.config.is_encoder_decoder else {}
    with torch.no_grad():
        batch = model(input_ids=ids, attention_mask=mask, **decoder).logits
        for i, prompt in enumerate(prompts):
            alone_decoder = {k: v[i:i + 1] for k, v in decoder.items()}
            alone = model(input_ids=prompt[None], **alone_decoder).logits[0]
            # The decoder's positions are all real; the prompt's are the unpadded ones.
            real = batch[i] if decoder else batch[i, mask[i].bool()]
            torch.testing.assert_close(real, alone, atol=1e-5, rtol=0, msg=f"row {i}")
    if model.can_generate():  # each step's logits too: greedy tokens alone would hide a small shift
        batch = generate(model, ids, mask, output_logits=True, return_dict_in_generate=True)
        # A decoder-only model returns the prompt and then the new tokens; a seq2seq one, the new tokens only.
        tokens = batch.sequences[:, 0 if decoder else ids.shape[1]:]
        for i, prompt in enumerate(prompts):
            alone = generate(model, prompt[None], torch.ones(1, len(prompt), dtype=torch.long),
                             output_logits=True, return_dict_in_generate=True)
            assert torch.equal(tokens[i], alone.sequences[0, 0 if decoder else len(prompt):]), f"row {i}"
            for step, (logits, alone_logits) in enumerate(zip(batch.logits, alone.logits)):
                torch.testing.assert_close(logits[i], alone_logits[0], atol=1e-5, rtol=0, msg=f"row {i}, step {step}")


# -- Attention back-ends ---------------------------------------------------------------------------------------------
def _padded_inputs(model):
    inputs = inputs_for(model, length=8)
    inputs["attention_mask"][1, :3] = 0  # left padding in the second row
    return inputs


def _real(model, inputs, logits):
    return logits if model.config.is_encoder_decoder else logits[inputs["attention_mask"].bool()]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("head", LAYOUTS, ids=lambda h: h.__name__)
def test_sdpa_matches_eager(head, kind):
    model = build(head, kind)
    inputs = _padded_inputs(model)
    with torch.no_grad():
        model.set_attn_implementation("eager")
        eager = model(**inputs).logits
        model.set_attn_implementation("sdpa")
        sdpa = model(**inputs).logits
    torch.testing.assert_close(_real(model, inputs, sdpa), _real(model, inputs, eager), atol=1e-5, rtol=0)


@pytest.mark.slow  # flex compiles each model on CPU: 10 to 20 s apiece
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("head", LAYOUTS, ids=lambda h: h.__name__)
def test_flex_attention_matches_eager(head, kind):
    model = build(head, kind)
    inputs = _padded_inputs(model)
    with torch.no_grad():  # flex attention has no CPU backward
        model.set_attn_implementation("eager")
        eager = model(**inputs).logits
        model.set_attn_implementation("flex_attention")
        flex = model(**inputs).logits
    torch.testing.assert_close(_real(model, inputs, flex), _real(model, inputs, eager), atol=1e-5, rtol=0)


def _sdpa_under_another_name(module, query, key, value, attention_mask, **kwargs):
    # A back-end that, like flash, takes no additive bias: what it would compute is sdpa's.
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


AttentionInterface.register("test_positions_no_bias", _sdpa_under_another_name)
AttentionMaskInterface.register("test_positions_no_bias", sdpa_mask)  # without one, transformers makes no mask


@pytest.mark.parametrize("kind", ["alibi", "relative"])
@pytest.mark.parametrize("head", LAYOUTS, ids=lambda h: h.__name__)
def test_a_back_end_without_a_bias_refuses_alibi_and_relative(head, kind):
    """flash-attn cannot be installed here: the guard is tested by setting the config's back-end name after
    construction (what `attn_implementation='flash_attention_2'` sets), and through a registered back-end."""
    model = build(head, kind)
    inputs = inputs_for(model)
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match=f"position_embedding_type='{kind}'.*'flash_attention_2'"):
        model(**inputs)
    model.set_attn_implementation("test_positions_no_bias")
    with pytest.raises(ValueError, match=f"position_embedding_type='{kind}'.*'test_positions_no_bias'"):
        model(**inputs)


def test_rotary_runs_on_a_back_end_without_a_bias():
    """The guard is the bias's alone: rotary positions rotate q and k before any back-end sees them."""
    model = build(VaswaniForCausalLM, "rotary")
    inputs = _padded_inputs(model)
    with torch.no_grad():
        sdpa = model(**inputs).logits
        model.set_attn_implementation("test_positions_no_bias")
        other = model(**inputs).logits
    assert torch.equal(other, sdpa)


# -- Saving, loading, remote code ------------------------------------------------------------------------------------
def _fields(config) -> dict:
    # Less what saving and loading add: the folder's path, and the remote code's classes.
    return {k: v for k, v in config.to_dict().items() if k not in ("_name_or_path", "auto_map")}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("head", LAYOUTS, ids=lambda h: h.__name__)
def test_save_and_load_round_trip_exactly(head, kind, tmp_path):
    """Non-persistent buffers (rotary inv_freq, ALiBi slopes) are not in the checkpoint: from_pretrained builds the
    model on the meta device and `_init_weights` must rebuild them, to the bit."""
    model = build(head, kind)
    model.save_pretrained(tmp_path)
    stored = safetensors.torch.load_file(tmp_path / "model.safetensors").keys()
    assert not [name for name in stored if name.endswith(("inv_freq", "slopes"))]
    inputs = _padded_inputs(model)
    with torch.no_grad():
        expected = model(**inputs).logits
    buffers = dict(model.named_buffers())
    assert [name for name in buffers if name.endswith(("inv_freq", "slopes"))] or kind == "relative"
    for loader in (head, AUTO_CLASS[head]):
        loaded = loader.from_pretrained(tmp_path).eval()
        assert type(loaded) is head
        assert _fields(loaded.config) == _fields(model.config)
        loaded_buffers = dict(loaded.named_buffers())
        assert loaded_buffers.keys() == buffers.keys()
        for name, buffer in buffers.items():
            assert torch.equal(loaded_buffers[name], buffer), f"{loader.__name__}: buffer {name}"
        with torch.no_grad():
            assert torch.equal(loaded(**inputs).logits, expected), loader.__name__


def test_remote_code_loads_every_position_kind_without_the_package(tmp_path):
    """One fresh process for all kinds (processes are slow): the folders load with trust_remote_code where
    `vaswani` cannot be imported, with the same buffers and logits and the same greedy tokens."""
    cases = []
    for kind in KINDS:  # the encoder-decoder: both stacks' position modules, both directions of T5's buckets
        model = build(VaswaniForConditionalGeneration, kind)
        inputs = _padded_inputs(model)
        folder = tmp_path / kind
        model.save_pretrained(folder)
        with torch.no_grad():
            logits = model(**inputs).logits
        generated = generate(model, inputs["input_ids"], inputs["attention_mask"])
        buffers = dict(model.named_buffers())
        torch.save({"inputs": inputs, "logits": logits, "generated": generated, "buffers": buffers}, folder / "case.pt")
        cases.append(str(folder))
    results = run_without_vaswani(
        f"""
        out = {{}}
        for folder in {cases!r}:
            model = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder, trust_remote_code=True).eval()
            case = torch.load(folder + "/case.pt")
            buffers = dict(model.named_buffers())
            with torch.no_grad():
                logits = model(**case["inputs"]).logits
            generated = model.generate(case["inputs"]["input_ids"], attention_mask=case["inputs"]["attention_mask"],
                                       max_new_tokens=5, min_new_tokens=5, do_sample=False)
            out[folder] = {{
                "module": type(model).__module__,
                "buffers": buffers.keys() == case["buffers"].keys()
                and all(torch.equal(buffers[k], b) for k, b in case["buffers"].items()),
                "logits": torch.equal(logits, case["logits"]),
                "difference": (logits - case["logits"]).abs().max().item(),
                "generated": torch.equal(generated, case["generated"]),
            }}
        print(json.dumps(out))
        """,
        tmp_path,
    )
    assert results.keys() == set(cases)
    for folder, result in results.items():
        assert result["module"].startswith("transformers_modules."), f"{folder}: not remote code"
        assert result["buffers"], f"{folder}: buffers differ"
        assert result["logits"], f"{folder}: logits differ by {result['difference']}"
        assert result["generated"], f"{folder}: greedy tokens differ"


# -- Gradient checkpointing ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_reentrant", [False, True])
@pytest.mark.parametrize("head", GENERATIVE + [VaswaniForMaskedLM], ids=lambda h: h.__name__)
def test_gradient_checkpointing_gives_the_same_gradients_with_relative_positions(head, use_reentrant):
    """The bias is made once per stack, outside the checkpointed layers: its table must still get its gradient."""
    model = build(head, "relative").train()  # dropout 0: the two passes are the same computation
    inputs = inputs_for(model)
    inputs["labels"] = inputs["decoder_input_ids"] if model.config.is_encoder_decoder else inputs["input_ids"]

    def gradients() -> dict:
        model.zero_grad()
        model(**inputs).loss.backward()
        return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    plain = gradients()
    model.activation_checkpointing_enable({"use_reentrant": use_reentrant})
    assert all(layer.gradient_checkpointing for stack in stacks(model) for layer in stack.layers)
    checkpointed = gradients()
    tables = [name for name in plain if name.endswith("relative_attention_bias.weight")]
    assert len(tables) == len(stacks(model))
    assert all(plain[name].abs().sum() > 0 for name in tables)
    assert checkpointed.keys() == plain.keys()
    for name, gradient in plain.items():
        torch.testing.assert_close(checkpointed[name], gradient, atol=1e-6, rtol=1e-5, msg=name)


# -- Parity with transformers' implementations -----------------------------------------------------------------------
@pytest.mark.parametrize("num_buckets, max_distance", [(4, 8), (8, 20), (16, 50), (32, 128)])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_position_bucket_matches_t5(bidirectional, num_buckets, max_distance):
    relative = torch.arange(-3 * max_distance, 3 * max_distance + 1)  # key minus query, both signs, past max_distance
    ours = relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
    t5 = T5Attention._relative_position_bucket(relative, bidirectional, num_buckets, max_distance)
    assert torch.equal(ours, t5)
    # Every bucket is reached, the last one too; both directions sharing distance 0, T5 never uses the upper half's
    # first bucket.
    expected = [b for b in range(num_buckets) if not bidirectional or b != num_buckets // 2]
    assert ours.unique().tolist() == expected


@pytest.mark.parametrize("num_heads", range(1, 17))
def test_alibi_matches_bloom(num_heads):
    bloom_slopes = build_alibi_tensor(torch.ones(1, 2), num_heads, torch.float32).view(num_heads, 2)[:, 1]
    torch.testing.assert_close(alibi_slopes(num_heads), bloom_slopes, atol=0, rtol=1e-6)  # BLOOM's pow: 1 ulp

    # BLOOM adds m_h * j (causal, by softmax's shift invariance); ALiBi's -m_h |i - j| differs from it by a
    # constant per query row over the keys a causal query sees, padding included.
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :4] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    config = VaswaniConfig(d_model=8 * num_heads, num_heads=num_heads, position_embedding_type="alibi")
    ours = VaswaniAlibi(config)(positions, positions)  # (B, h, T, S)
    bloom = build_alibi_tensor(mask, num_heads, torch.float32).view(2, num_heads, 1, 9)
    seen = (mask[:, None, None, :].bool() & torch.ones(9, 9).tril().bool())  # (B, 1, T, S): real keys j <= i
    difference = ours - bloom
    row_constant = difference.diagonal(dim1=-2, dim2=-1)[..., None]  # the key j = i, always seen
    assert ((difference - row_constant).abs() * seen).max() <= 1e-5


def _llama_and_ours(rope_parameters: dict, max_positions: int = 32):
    shape = dict(max_position_embeddings=max_positions)
    llama = LlamaConfig(hidden_size=64, num_attention_heads=2, num_key_value_heads=2,
                        rope_parameters=dict(rope_parameters), **shape)
    ours = VaswaniConfig(d_model=64, num_heads=2, position_embedding_type="rotary",
                         rope_parameters=dict(rope_parameters), **shape)
    return LlamaRotaryEmbedding(llama), VaswaniRotaryEmbedding(ours)


ROPE_TYPES = {
    "default": ROPE,
    "linear": {**ROPE, "rope_type": "linear", "factor": 2.0},
    "dynamic": {**ROPE, "rope_type": "dynamic", "factor": 2.0},
    "yarn": {**ROPE, "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16},
    "llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
}


@pytest.mark.parametrize("rope_type", ROPE_TYPES)
def test_rotary_matches_llama(rope_type):
    theirs, ours = _llama_and_ours(ROPE_TYPES[rope_type])
    x = torch.randn(2, 2, 48, 32)  # (B, h, T, d_k)
    q, k = torch.randn_like(x), torch.randn_like(x)
    # Positions past max_position_embeddings (32), where "dynamic" rescales its frequencies, after a first call
    # inside it, where it must not.
    for positions in (torch.arange(20).expand(2, -1), torch.arange(48).expand(2, -1)):
        length = positions.shape[-1]
        cos, sin = ours(x, positions)
        their_cos, their_sin = theirs(x, positions)
        torch.testing.assert_close(cos, their_cos, atol=1e-6, rtol=0)
        torch.testing.assert_close(sin, their_sin, atol=1e-6, rtol=0)
        their_q, their_k = apply_rotary_pos_emb(q[:, :, :length], k[:, :, :length], their_cos, their_sin)
        torch.testing.assert_close(apply_rotary(q[:, :, :length], cos, sin), their_q, atol=1e-6, rtol=0)
        torch.testing.assert_close(apply_rotary(k[:, :, :length], cos, sin), their_k, atol=1e-6, rtol=0)
    assert torch.equal(ours.inv_freq, theirs.inv_freq)
    assert ours.attention_scaling == theirs.attention_scaling


def test_partial_rotary_matches_gpt_neox():
    rope = {**ROPE, "partial_rotary_factor": 0.25}
    theirs = GPTNeoXRotaryEmbedding(GPTNeoXConfig(hidden_size=64, num_attention_heads=2, rope_parameters=dict(rope)))
    ours = VaswaniRotaryEmbedding(VaswaniConfig(d_model=64, num_heads=2, position_embedding_type="rotary",
                                                rope_parameters=dict(rope)))
    assert ours.inv_freq.numel() * 2 == 32 * 0.25  # a quarter of each head's 32 features rotates
    x = torch.randn(2, 2, 12, 32)
    q, k = torch.randn_like(x), torch.randn_like(x)
    positions = torch.arange(12).expand(2, -1)
    cos, sin = ours(x, positions)
    their_cos, their_sin = theirs(x, positions)
    torch.testing.assert_close(cos, their_cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(sin, their_sin, atol=1e-6, rtol=0)
    their_q, their_k = neox_apply_rotary_pos_emb(q, k, their_cos, their_sin)
    torch.testing.assert_close(apply_rotary(q, cos, sin), their_q, atol=1e-6, rtol=0)
    torch.testing.assert_close(apply_rotary(k, cos, sin), their_k, atol=1e-6, rtol=0)
    assert torch.equal(apply_rotary(q, cos, sin)[..., 8:], q[..., 8:])  # the other three quarters pass unchanged


@pytest.mark.parametrize("kind", ["alibi", "relative"])
def test_a_query_that_sees_nothing_attends_to_nothing_with_a_bias_under_every_backend(kind):
    """A fully padded source row: eager and sdpa agree everywhere (the bias never turns "nothing" into "uniform"),
    and a training step through sdpa keeps every gradient finite."""
    torch.manual_seed(0)
    model = VaswaniForConditionalGeneration(tiny_config(**KINDS[kind], init_std=0.2))
    ids, decoder_ids = random_ids(2, 6), random_ids(2, 4)
    mask = torch.ones_like(ids)
    mask[1] = 0
    states = {}
    for implementation in ("eager", "sdpa"):
        model.set_attn_implementation(implementation)
        model.eval()
        with torch.no_grad():
            states[implementation] = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids)
    torch.testing.assert_close(states["sdpa"].encoder_last_hidden_state, states["eager"].encoder_last_hidden_state,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(states["sdpa"].logits, states["eager"].logits, atol=1e-5, rtol=1e-5)
    model.train()
    model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids, labels=decoder_ids).loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
