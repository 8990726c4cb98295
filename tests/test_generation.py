"""
Generation tests for the two generative heads, in the style of Hugging Face's `GenerationTesterMixin`.

Every test runs a tiny model (width 32, 2 layers, no dropout) in eval mode with fixed seeds, and compares token ids
exactly (`torch.equal`) or logits to a tight tolerance. Random tiny models like to repeat one token, which would let
broken code pass by accident, so:

- the models here have untied output projections and `init_std=0.1` (see `GENERATION_OVERRIDES`): with the default
  tied, std-0.02 weights the output hardly depends on the prompt (the seq2seq model gives every source the same
  translation), and a padding or caching bug could go unseen;
- EOS is disabled (`eos_token_id=None`) so every sequence runs to full length, and the tests check that the new tokens
  are not all the same (and, where rows are compared, that not every row is the same).
"""

import pytest
import torch
from transformers.cache_utils import DynamicCache, DynamicLayer, EncoderDecoderCache, StaticCache

from helpers import GENERATIVE_HEADS, PAD, random_ids, tiny_config
from vaswani import VaswaniForCausalLM, VaswaniForConditionalGeneration
from vaswani.modeling import VaswaniCacheLayer, VaswaniDynamicCache

# Untied projection and larger weights: outputs that depend on the prompt and vary from step to step.
GENERATION_OVERRIDES = dict(tie_word_embeddings=False, init_std=0.1)
NEW_TOKENS = 10


def make_model(head, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = head(tiny_config(**{**GENERATION_OVERRIDES, **overrides}))
    return model.eval()


def make_prompt(batch: int = 3, length: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    ids = random_ids(batch, length, generator=torch.Generator().manual_seed(seed))
    return ids, torch.ones_like(ids)


def full_length(**kwargs) -> dict:
    """Generation arguments that always produce exactly `max_new_tokens` tokens (EOS disabled)."""
    return dict(eos_token_id=None, max_new_tokens=NEW_TOKENS, **kwargs)


def new_tokens(model, sequences: torch.Tensor, prompt_length: int) -> torch.Tensor:
    """The generated part of `generate`'s output (seq2seq returns the decoder sequence, start token first)."""
    start = 1 if model.config.is_encoder_decoder else prompt_length
    return sequences[:, start:]


def assert_full_and_varied(model, sequences: torch.Tensor, prompt_length: int, new: int = NEW_TOKENS):
    """Every row is full length and its new tokens are not one token repeated (else a comparison means little)."""
    generated = new_tokens(model, sequences, prompt_length)
    assert generated.shape[1] == new, f"expected {new} new tokens, got {generated.shape[1]}"
    for row in generated:
        assert row.unique().numel() > 1, f"degenerate generation (one token repeated): {row.tolist()}"


@torch.no_grad()
def greedy_reference(model, input_ids, attention_mask, steps: int) -> torch.Tensor:
    """Greedy decoding by hand: a full, uncached forward on the whole sequence so far, then argmax of the last logits."""
    if model.config.is_encoder_decoder:
        start = torch.full((input_ids.shape[0], 1), model.config.decoder_start_token_id, dtype=torch.long)
        sequence = start
        for _ in range(steps):
            logits = model(
                input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=sequence, use_cache=False
            ).logits
            sequence = torch.cat([sequence, logits[:, -1].argmax(-1, keepdim=True)], dim=-1)
        return sequence
    sequence, mask = input_ids, attention_mask
    for _ in range(steps):
        logits = model(input_ids=sequence, attention_mask=mask, use_cache=False).logits
        sequence = torch.cat([sequence, logits[:, -1].argmax(-1, keepdim=True)], dim=-1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
    return sequence


heads = pytest.mark.parametrize("head", GENERATIVE_HEADS, ids=lambda head: head.__name__)


# -- 1. greedy generate() equals a hand-written argmax loop --------------------------------------------------------------
@heads
def test_greedy_generate_matches_manual_argmax_loop(head):
    model = make_model(head)
    ids, mask = make_prompt()
    expected = greedy_reference(model, ids, mask, NEW_TOKENS)
    generated = model.generate(ids, attention_mask=mask, do_sample=False, **full_length())
    assert torch.equal(generated, expected), f"\ngenerate: {generated.tolist()}\nby hand:  {expected.tolist()}"
    assert_full_and_varied(model, generated, ids.shape[1])
    if model.config.is_encoder_decoder:
        assert (generated[:, 0] == model.config.decoder_start_token_id).all()
    else:
        assert torch.equal(generated[:, : ids.shape[1]], ids)
    # The prompts lead somewhere different, so a batch mix-up would show.
    assert len({tuple(row) for row in new_tokens(model, generated, ids.shape[1]).tolist()}) > 1


@heads
def test_greedy_generate_stops_at_eos_like_manual_loop(head):
    """Rows that reach EOS stop there and are padded with pad_token_id; up to EOS they equal the manual loop."""
    model = make_model(head)
    ids, mask = make_prompt(batch=4)
    steps = 12
    expected = greedy_reference(model, ids, mask, steps)
    start = 1 if model.config.is_encoder_decoder else ids.shape[1]
    expected_new = expected[:, start:]
    # A random tiny model rarely emits the real EOS, so make EOS a token it does emit: the first token generated
    # mid-sequence (not first, not last) that some other row never generates. Rows then stop at different steps, and
    # at least one row never stops, so the batch runs to max_new_tokens.
    candidates = [
        int(token)
        for token in expected_new[:, 1:-1].T.flatten()
        if not all((row == token).any() for row in expected_new)
    ]
    assert candidates, f"no usable EOS candidate in {expected_new.tolist()}"
    eos = candidates[0]
    finishes = [(row == eos).any().item() for row in expected_new]
    assert any(finishes) and not all(finishes)
    generated = model.generate(
        ids, attention_mask=mask, do_sample=False, max_new_tokens=steps, eos_token_id=eos, pad_token_id=PAD
    )
    assert generated.shape == expected.shape
    for row, reference, finished in zip(generated, expected, finishes):
        if finished:  # everything after the first EOS is padding
            cut = start + int((reference[start:] == eos).nonzero()[0]) + 1
            assert torch.equal(row[:cut], reference[:cut])
            assert (row[cut:] == PAD).all()
        else:
            assert torch.equal(row, reference)
    assert (generated[:, start:] == PAD).any(), "some row stopped early and was padded"


# -- 2. cached equals uncached: greedy, beam search, sampling -----------------------------------------------------------
@heads
def test_greedy_cached_equals_uncached(head):
    model = make_model(head)
    ids, mask = make_prompt()
    cached = model.generate(ids, attention_mask=mask, do_sample=False, use_cache=True, **full_length())
    uncached = model.generate(ids, attention_mask=mask, do_sample=False, use_cache=False, **full_length())
    assert torch.equal(cached, uncached), f"\ncached:   {cached.tolist()}\nuncached: {uncached.tolist()}"
    assert_full_and_varied(model, cached, ids.shape[1])


@heads
@pytest.mark.parametrize("num_return_sequences", [1, 2])
def test_beam_search_cached_equals_uncached(head, num_return_sequences):
    model = make_model(head)
    ids, mask = make_prompt(batch=2)
    kwargs = full_length(
        do_sample=False,
        num_beams=3,
        num_return_sequences=num_return_sequences,
        return_dict_in_generate=True,
        output_scores=True,
    )
    cached = model.generate(ids, attention_mask=mask, use_cache=True, **kwargs)
    uncached = model.generate(ids, attention_mask=mask, use_cache=False, **kwargs)
    assert cached.sequences.shape[0] == ids.shape[0] * num_return_sequences
    assert torch.equal(cached.sequences, uncached.sequences)
    torch.testing.assert_close(cached.sequences_scores, uncached.sequences_scores, atol=1e-5, rtol=0)
    assert_full_and_varied(model, cached.sequences, ids.shape[1])
    if num_return_sequences > 1:  # the returned beams of one prompt are different hypotheses
        per_prompt = cached.sequences.view(ids.shape[0], num_return_sequences, -1)
        for beams in per_prompt:
            assert not torch.equal(beams[0], beams[1])
        scores = cached.sequences_scores.view(ids.shape[0], num_return_sequences)
        assert (scores[:, 0] >= scores[:, 1]).all(), "beams are returned best first"


@heads
def test_beam_search_with_one_beam_is_greedy(head):
    model = make_model(head)
    ids, mask = make_prompt()
    beam = model.generate(ids, attention_mask=mask, do_sample=False, num_beams=1, **full_length())
    greedy = greedy_reference(model, ids, mask, NEW_TOKENS)
    assert torch.equal(beam, greedy)


@heads
def test_sampling_cached_equals_uncached(head):
    model = make_model(head)
    ids, mask = make_prompt()
    kwargs = full_length(do_sample=True, top_k=20, top_p=0.9, temperature=0.7, num_return_sequences=2)
    torch.manual_seed(123)
    cached = model.generate(ids, attention_mask=mask, use_cache=True, **kwargs)
    torch.manual_seed(123)
    uncached = model.generate(ids, attention_mask=mask, use_cache=False, **kwargs)
    assert cached.shape[0] == ids.shape[0] * 2
    assert torch.equal(cached, uncached), f"\ncached:   {cached.tolist()}\nuncached: {uncached.tolist()}"
    assert_full_and_varied(model, cached, ids.shape[1])
    # Sampling really sampled: another seed gives another output, and it is not the greedy output.
    torch.manual_seed(321)
    other = model.generate(ids, attention_mask=mask, use_cache=True, **kwargs)
    assert not torch.equal(cached, other)
    greedy = model.generate(ids, attention_mask=mask, do_sample=False, **full_length())
    assert not torch.equal(cached[::2], greedy)


def cache_of(output):
    """The cache an output returns, under the installed transformers' name (`cache` from 5.24)."""
    return output.cache


@torch.no_grad()
def test_the_cache_is_passed_under_one_name():
    model = make_model(VaswaniForCausalLM)
    ids, _ = make_prompt(batch=2, length=5)
    cache = cache_of(model(input_ids=ids, use_cache=True))
    with pytest.raises(ValueError, match="Both `past_key_values` and `cache` are set"):
        model(input_ids=ids[:, :1], cache=cache, past_key_values=cache)


@pytest.mark.parametrize("head_class", [VaswaniForCausalLM, VaswaniForConditionalGeneration])
def test_the_old_cache_name_warns_as_transformers_models_do(head_class):
    """`past_key_values` still works, through transformers' own deprecation helper (the warning Llama gives)."""
    model = make_model(head_class)
    ids, _ = make_prompt(batch=2, length=5)
    extra = {"decoder_input_ids": ids[:, :3]} if model.config.is_encoder_decoder else {}
    cache = cache_of(model(input_ids=ids, use_cache=True, **extra))
    step = {"decoder_input_ids": ids[:, 3:4]} if extra else {"input_ids": ids[:, :1]}
    inputs = {"input_ids": ids} if extra else {}
    with pytest.warns(FutureWarning, match="`past_key_values` is deprecated .* Use `cache` instead"):
        old = model(**inputs, **step, past_key_values=cache)
    assert old.logits.shape[1] == 1


# -- 3. a manual cached decode loop ------------------------------------------------------------------------------------
@pytest.mark.parametrize("argument", ["cache", "past_key_values"])  # the name from transformers 5.24, and before
@pytest.mark.parametrize("pass_mask", [True, False], ids=["with_mask", "without_mask"])
@torch.no_grad()
def test_manual_cached_loop_causal(pass_mask, argument):
    model = make_model(VaswaniForCausalLM)
    ids, mask = make_prompt(batch=2, length=5)
    out = model(input_ids=ids, attention_mask=mask if pass_mask else None, use_cache=True)
    cache = cache_of(out)
    assert isinstance(cache, DynamicCache)
    assert cache.get_seq_length() == ids.shape[1]
    torch.testing.assert_close(out.logits, model(input_ids=ids, use_cache=False).logits, atol=1e-5, rtol=0)

    sequence = ids
    chosen = []
    for step in range(8):
        next_token = out.logits[:, -1].argmax(-1, keepdim=True)
        chosen.append(next_token)
        sequence = torch.cat([sequence, next_token], dim=-1)
        full = model(input_ids=sequence, attention_mask=torch.ones_like(sequence), use_cache=False).logits[:, -1]
        out = model(
            input_ids=next_token,
            attention_mask=torch.ones_like(sequence) if pass_mask else None,
            use_cache=True,
            **{argument: cache},
        )
        assert cache_of(out) is cache, "the cache is updated in place and returned"
        assert cache.get_seq_length() == sequence.shape[1] == ids.shape[1] + step + 1
        for layer in cache.layers:
            assert layer.keys.shape[-2] == layer.values.shape[-2] == sequence.shape[1]
        assert out.logits.shape[1] == 1
        torch.testing.assert_close(out.logits[:, -1], full, atol=1e-5, rtol=0, msg=f"step {step}")
    assert torch.cat(chosen, dim=-1).unique().numel() > 1


@torch.no_grad()
def test_manual_cached_loop_seq2seq_computes_cross_attention_once():
    model = make_model(VaswaniForConditionalGeneration)
    source, source_mask = make_prompt(batch=2, length=7)
    source_mask[1, -2:] = 0  # some padding in the source too
    source[1, -2:] = PAD
    start = torch.full((2, 1), model.config.decoder_start_token_id)

    # Count the cross-attention key/value projections: they must run on the first step only.
    projections = []
    hooks = [
        module.register_forward_hook(lambda *args: projections.append(1))
        for layer in model.model.decoder.layers
        for module in (layer.encoder_attn.k_proj, layer.encoder_attn.v_proj)
    ]
    try:
        encoder_outputs = model.get_encoder()(input_ids=source, attention_mask=source_mask)
        out = model(
            encoder_outputs=encoder_outputs, attention_mask=source_mask, decoder_input_ids=start, use_cache=True
        )
        cache = cache_of(out)
        assert isinstance(cache, EncoderDecoderCache)
        assert isinstance(cache.self_attention_cache, DynamicCache)
        assert cache.self_attention_cache.get_seq_length() == 1
        assert cache.cross_attention_cache.get_seq_length() == source.shape[1]
        first_calls = len(projections)
        assert first_calls == 2 * model.config.num_decoder_layers
        cross = cache.cross_attention_cache.layers
        keys = [layer.keys for layer in cross]
        values = [layer.values for layer in cross]
        keys_copy = [k.clone() for k in keys]
        values_copy = [v.clone() for v in values]

        sequence = start
        chosen = []
        for step in range(8):
            next_token = out.logits[:, -1].argmax(-1, keepdim=True)
            chosen.append(next_token)
            sequence = torch.cat([sequence, next_token], dim=-1)
            full = model(
                input_ids=source, attention_mask=source_mask, decoder_input_ids=sequence, use_cache=False
            ).logits[:, -1]
            projections.clear()
            out = model(
                encoder_outputs=encoder_outputs,
                attention_mask=source_mask,
                decoder_input_ids=next_token,
                cache=cache,
                use_cache=True,
            )
            assert not projections, "cross-attention keys/values were projected again"
            assert cache_of(out) is cache
            assert isinstance(cache, EncoderDecoderCache)
            assert cache.self_attention_cache.get_seq_length() == sequence.shape[1] == step + 2
            assert cache.get_seq_length() == sequence.shape[1]
            assert cache.cross_attention_cache.get_seq_length() == source.shape[1]
            for i, layer in enumerate(cache.cross_attention_cache.layers):
                assert layer.keys is keys[i] and layer.values is values[i]
                assert torch.equal(layer.keys, keys_copy[i]) and torch.equal(layer.values, values_copy[i])
            torch.testing.assert_close(out.logits[:, -1], full, atol=1e-5, rtol=0, msg=f"step {step}")
    finally:
        for hook in hooks:
            hook.remove()
    assert torch.cat(chosen, dim=-1).unique().numel() > 1


@heads
def test_generate_returns_expected_cache_type(head):
    model = make_model(head)
    ids, mask = make_prompt()
    out = model.generate(ids, attention_mask=mask, do_sample=False, return_dict_in_generate=True, **full_length())
    cache = cache_of(out)
    if model.config.is_encoder_decoder:
        assert isinstance(cache, EncoderDecoderCache)
        # the last generated token is never fed back: start token + NEW_TOKENS - 1 fed tokens
        assert cache.self_attention_cache.get_seq_length() == NEW_TOKENS
        assert cache.cross_attention_cache.get_seq_length() == ids.shape[1]
    else:
        assert isinstance(cache, DynamicCache)
        assert cache.get_seq_length() == ids.shape[1] + NEW_TOKENS - 1
    self_cache = cache.self_attention_cache if model.config.is_encoder_decoder else cache
    assert type(self_cache) is VaswaniDynamicCache  # the in-place cache, sized once by generate()
    assert self_cache.layers[0]._key_buffer.shape[-2] == self_cache.layers[0].capacity


# -- 3b. the in-place cache (VaswaniDynamicCache) against transformers' DynamicCache --------------------------------------
def _plain_cache(model):
    plain = DynamicCache(config=model.config)
    return EncoderDecoderCache(plain, DynamicCache(config=model.config)) if model.config.is_encoder_decoder else plain


@heads
@pytest.mark.parametrize(
    "settings",
    [
        dict(do_sample=False),
        dict(do_sample=True, top_k=0, temperature=1.0),
        dict(do_sample=False, num_beams=3, num_return_sequences=2),  # reorders the cache every step
        dict(do_sample=True, num_return_sequences=2),  # repeats the prompt's cache per sequence
    ],
    ids=["greedy", "sampling", "beam", "return_sequences"],
)
def test_in_place_cache_generates_what_dynamic_cache_does(head, settings):
    model = make_model(head)
    ids, mask, _ = _lengths_batch([6, 2, 4], "right" if model.config.is_encoder_decoder else "left")
    outputs = {}
    for name, extra in (("ours", {}), ("dynamic", {"cache": _plain_cache(model)})):
        torch.manual_seed(3)
        out = model.generate(
            ids, attention_mask=mask, return_dict_in_generate=True, output_scores=True, **extra, **full_length(**settings)
        )
        self_cache = cache_of(out).self_attention_cache if model.config.is_encoder_decoder else cache_of(out)
        assert (type(self_cache) is VaswaniDynamicCache) == (name == "ours"), type(self_cache).__name__
        outputs[name] = out
    assert torch.equal(outputs["ours"].sequences, outputs["dynamic"].sequences)
    for ours, dynamic in zip(outputs["ours"].scores, outputs["dynamic"].scores):
        assert torch.equal(ours, dynamic)
    assert_full_and_varied(model, outputs["ours"].sequences, ids.shape[1])


def test_in_place_cache_layer_holds_what_dynamic_layer_holds():
    """Appends of 1 and more tokens, growth past the capacity, and the operations that replace the tensors."""
    ours, plain = VaswaniCacheLayer(capacity=5), DynamicLayer()
    generator = torch.Generator().manual_seed(0)

    def step(length, batch=2):
        keys = torch.randn(batch, 3, length, 4, generator=generator)
        values = torch.randn(batch, 3, length, 4, generator=generator)
        got, expected = ours.update(keys, values), plain.update(keys, values)
        for a, b in zip(got, expected):
            assert torch.equal(a, b)
        return got

    step(3)
    buffer = ours._key_buffer
    for _ in range(2):
        step(1)
    assert ours._key_buffer is buffer and buffer.shape[-2] == 5  # written in place while it fits
    step(4)  # 9 > 5: grows (to twice the buffer at least)
    assert ours._key_buffer.shape[-2] >= 10 and ours.get_seq_length() == plain.get_seq_length() == 9
    for layer in (ours, plain):
        layer.crop(-2)
        layer.reorder_cache(torch.tensor([1, 0]))
    step(1)
    for layer in (ours, plain):
        layer.batch_repeat_interleave(2)
    keys, _ = step(2, batch=4)
    assert keys.shape == (4, 3, 10, 4)
    for layer in (ours, plain):
        layer.batch_select_indices(torch.tensor([0, 3]))
    step(1)
    ours.reset()
    assert ours.get_seq_length() == 0
    plain = DynamicLayer()
    step(2)


# -- 4. padded batches equal each prompt alone --------------------------------------------------------------------------
def _lengths_batch(lengths, side: str, seed: int = 5):
    """Prompts of the given lengths, padded with PAD on `side`, their mask, and each prompt alone."""
    generator = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    prompts = [random_ids(1, n, generator=generator) for n in lengths]
    ids = torch.full((len(lengths), longest), PAD, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        n = prompt.shape[1]
        span = slice(longest - n, longest) if side == "left" else slice(0, n)
        ids[row, span] = prompt[0]
        mask[row, span] = 1
    return ids, mask, prompts


def _generate_with_logits(model, ids, mask, use_cache):
    out = model.generate(
        ids,
        attention_mask=mask,
        do_sample=False,
        use_cache=use_cache,
        return_dict_in_generate=True,
        output_logits=True,
        **full_length(),
    )
    return out.sequences, torch.stack(out.logits, dim=1)  # (batch, new tokens, vocab)


@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "uncached"])
def test_causal_left_padded_batch_equals_each_prompt_alone(use_cache):
    model = make_model(VaswaniForCausalLM)
    lengths = [7, 3, 5, 1]
    ids, mask, prompts = _lengths_batch(lengths, "left")
    batched, batched_logits = _generate_with_logits(model, ids, mask, use_cache)
    batched_new = batched[:, ids.shape[1] :]
    assert torch.equal(batched[:, : ids.shape[1]], ids)
    assert torch.isfinite(batched_logits).all()
    for row, prompt in enumerate(prompts):
        alone, alone_logits = _generate_with_logits(model, prompt, torch.ones_like(prompt), use_cache)
        alone_new = alone[:, prompt.shape[1] :]
        assert torch.equal(batched_new[row], alone_new[0]), (
            f"row {row} (prompt length {lengths[row]}):\nbatched: {batched_new[row].tolist()}\n"
            f"alone:   {alone_new[0].tolist()}"
        )
        # Not only the same argmax: the same logits at every step (padding has no influence at all).
        torch.testing.assert_close(batched_logits[row], alone_logits[0], atol=1e-5, rtol=0, msg=f"row {row}")
        assert alone_new.unique().numel() > 1
    assert len({tuple(row) for row in batched_new.tolist()}) > 1


@torch.no_grad()
def test_causal_left_padded_logits_equal_each_prompt_alone():
    """The forward itself: real positions of a left-padded row have the logits of the prompt alone."""
    model = make_model(VaswaniForCausalLM)
    lengths = [6, 2, 4]
    ids, mask, prompts = _lengths_batch(lengths, "left")
    logits = model(input_ids=ids, attention_mask=mask).logits
    assert torch.isfinite(logits).all(), "padding made NaN/inf logits"
    for row, prompt in enumerate(prompts):
        alone = model(input_ids=prompt).logits[0]
        torch.testing.assert_close(logits[row, ids.shape[1] - prompt.shape[1] :], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "uncached"])
def test_seq2seq_padded_source_equals_each_source_alone(side, use_cache):
    model = make_model(VaswaniForConditionalGeneration)
    lengths = [8, 3, 5, 6]
    ids, mask, sources = _lengths_batch(lengths, side, seed=7)
    batched, batched_logits = _generate_with_logits(model, ids, mask, use_cache)
    assert_full_and_varied(model, batched, ids.shape[1])
    assert torch.isfinite(batched_logits).all()
    for row, source in enumerate(sources):
        alone, alone_logits = _generate_with_logits(model, source, torch.ones_like(source), use_cache)
        assert torch.equal(batched[row], alone[0]), (
            f"row {row} (source length {lengths[row]}, {side}-padded):\nbatched: {batched[row].tolist()}\n"
            f"alone:   {alone[0].tolist()}"
        )
        torch.testing.assert_close(batched_logits[row], alone_logits[0], atol=1e-5, rtol=0, msg=f"row {row}")
    # The translations depend on the source (so a row mixed up with another could be caught).
    assert len({tuple(row) for row in batched.tolist()}) > 1


# -- 5. StaticCache ---------------------------------------------------------------------------------------------------
@heads
def test_static_cache_equals_dynamic_cache(head):
    model = make_model(head)
    ids, mask = make_prompt()
    dynamic = model.generate(ids, attention_mask=mask, do_sample=False, **full_length())
    static = model.generate(
        ids,
        attention_mask=mask,
        do_sample=False,
        cache_implementation="static",
        return_dict_in_generate=True,
        **full_length(),
    )
    cache = cache_of(static)
    self_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
    assert isinstance(self_cache, StaticCache), f"got {type(cache).__name__}"
    assert torch.equal(static.sequences, dynamic), f"\nstatic:  {static.sequences.tolist()}\ndynamic: {dynamic.tolist()}"
    assert_full_and_varied(model, dynamic, ids.shape[1])


@heads
def test_static_cache_padded_batch_equals_dynamic(head):
    """Padding with a static cache: left-padded prompts (causal) and a right-padded source (seq2seq)."""
    model = make_model(head)
    ids, mask, _ = _lengths_batch([6, 2, 4], "right" if model.config.is_encoder_decoder else "left")
    dynamic = model.generate(ids, attention_mask=mask, do_sample=False, **full_length())
    static = model.generate(ids, attention_mask=mask, do_sample=False, cache_implementation="static", **full_length())
    assert torch.equal(static, dynamic), f"\nstatic:  {static.tolist()}\ndynamic: {dynamic.tolist()}"
    assert_full_and_varied(model, dynamic, ids.shape[1])


# -- 6. eager attention equals sdpa --------------------------------------------------------------------------------------
@torch.no_grad()
def _teacher_forced_logits(model, ids, mask, sequences):
    """Logits of one uncached forward over the prompt and the generated tokens, and which positions are real."""
    if model.config.is_encoder_decoder:
        logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=sequences).logits
        return logits, torch.ones(sequences.shape, dtype=torch.bool)
    full_mask = torch.cat([mask, mask.new_ones(mask.shape[0], sequences.shape[1] - mask.shape[1])], dim=-1)
    return model(input_ids=sequences, attention_mask=full_mask).logits, full_mask.bool()


@heads
def test_eager_equals_sdpa(head):
    model = make_model(head)
    # padded batches, so both back-ends also have to apply the padding mask
    ids, mask, _ = _lengths_batch([7, 4, 5], "right" if model.config.is_encoder_decoder else "left")
    model.set_attn_implementation("sdpa")
    assert model.config._attn_implementation == "sdpa"
    sdpa = model.generate(ids, attention_mask=mask, do_sample=False, **full_length())
    sdpa_logits, real = _teacher_forced_logits(model, ids, mask, sdpa)

    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    assert model.model.decoder.config._attn_implementation == "eager"
    eager = model.generate(ids, attention_mask=mask, do_sample=False, **full_length())
    eager_logits, _ = _teacher_forced_logits(model, ids, mask, sdpa)

    assert torch.equal(eager, sdpa), f"\neager: {eager.tolist()}\nsdpa:  {sdpa.tolist()}"
    assert_full_and_varied(model, eager, ids.shape[1])
    torch.testing.assert_close(eager_logits[real], sdpa_logits[real], atol=1e-5, rtol=0)


# -- 7. positions past max_position_embeddings ---------------------------------------------------------------------------
LONG_NEW = 20


@heads
def test_sinusoidal_generation_runs_past_max_position_embeddings(head):
    model = make_model(head, max_position_embeddings=16)
    ids, mask = make_prompt(batch=2, length=10)
    kwargs = dict(do_sample=False, eos_token_id=None, max_new_tokens=LONG_NEW)
    cached = model.generate(
        ids, attention_mask=mask, use_cache=True, return_dict_in_generate=True, output_logits=True, **kwargs
    )
    total = (1 if model.config.is_encoder_decoder else ids.shape[1]) + LONG_NEW
    assert total > model.config.max_position_embeddings
    assert cached.sequences.shape == (2, total)
    assert all(torch.isfinite(step).all() for step in cached.logits)
    assert_full_and_varied(model, cached.sequences, ids.shape[1], new=LONG_NEW)
    uncached = model.generate(ids, attention_mask=mask, use_cache=False, **kwargs)
    assert torch.equal(cached.sequences, uncached)
    assert torch.equal(cached.sequences, greedy_reference(model, ids, mask, LONG_NEW))

    # The positions computed past the table are the paper's sinusoids: a model whose table is long enough (same
    # weights; the table is not a parameter) generates the same tokens.
    long_table = make_model(head, max_position_embeddings=64)
    long_table.load_state_dict(model.state_dict())
    assert torch.equal(long_table.generate(ids, attention_mask=mask, use_cache=True, **kwargs), cached.sequences)


def test_sinusoidal_seq2seq_source_longer_than_max_position_embeddings():
    """The encoder extends its sinusoids too: a 20-token source with a 16-row table."""
    model = make_model(VaswaniForConditionalGeneration, max_position_embeddings=16)
    ids, mask = make_prompt(batch=2, length=20)
    kwargs = dict(do_sample=False, eos_token_id=None, max_new_tokens=LONG_NEW)
    cached = model.generate(ids, attention_mask=mask, use_cache=True, **kwargs)
    assert cached.shape == (2, 1 + LONG_NEW)
    assert_full_and_varied(model, cached, ids.shape[1], new=LONG_NEW)
    assert torch.equal(cached, model.generate(ids, attention_mask=mask, use_cache=False, **kwargs))
    long_table = make_model(VaswaniForConditionalGeneration, max_position_embeddings=64)
    long_table.load_state_dict(model.state_dict())
    assert torch.equal(long_table.generate(ids, attention_mask=mask, **kwargs), cached)


@heads
def test_learned_positions_stop_at_max_position_embeddings(head):
    model = make_model(head, max_position_embeddings=16, position_embedding_type="learned")
    ids, mask = make_prompt(batch=2, length=10)
    # Tokens fed to the decoder: prompt (or start token) plus every new token but the last.
    fed_before = 1 if model.config.is_encoder_decoder else ids.shape[1]
    fits = model.config.max_position_embeddings - fed_before + 1
    for use_cache in (True, False):
        out = model.generate(
            ids, attention_mask=mask, do_sample=False, eos_token_id=None, max_new_tokens=fits, use_cache=use_cache
        )
        assert out.shape[1] == fed_before + fits
        with pytest.raises(ValueError, match="max_position_embeddings"):
            model.generate(
                ids, attention_mask=mask, do_sample=False, eos_token_id=None, max_new_tokens=LONG_NEW,
                use_cache=use_cache,
            )
        with pytest.raises(ValueError, match="max_position_embeddings"):
            model.generate(
                ids, attention_mask=mask, do_sample=False, eos_token_id=None, max_new_tokens=fits + 1,
                use_cache=use_cache,
            )


# -- 8. scores ------------------------------------------------------------------------------------------------------------
@heads
def test_output_scores_match_chosen_tokens(head):
    model = make_model(head)
    ids, mask = make_prompt()
    out = model.generate(
        ids,
        attention_mask=mask,
        do_sample=False,
        output_scores=True,
        output_logits=True,
        return_dict_in_generate=True,
        **full_length(),
    )
    generated = new_tokens(model, out.sequences, ids.shape[1])
    assert len(out.scores) == len(out.logits) == NEW_TOKENS == generated.shape[1]
    for step, (scores, logits) in enumerate(zip(out.scores, out.logits)):
        assert scores.shape == (ids.shape[0], model.config.vocab_size)
        assert torch.equal(scores.argmax(-1), generated[:, step])
        assert torch.equal(logits.argmax(-1), generated[:, step])
    assert_full_and_varied(model, out.sequences, ids.shape[1])

    # The raw logits of each step are those of an uncached forward on the sequence so far.
    with torch.no_grad():
        if model.config.is_encoder_decoder:
            full = model(input_ids=ids, attention_mask=mask, decoder_input_ids=out.sequences[:, :-1]).logits
        else:
            full = model(input_ids=out.sequences[:, :-1]).logits[:, ids.shape[1] - 1 :]
    torch.testing.assert_close(torch.stack(out.logits, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", GENERATIVE_HEADS, ids=lambda h: h.__name__)
def test_compiled_generation_with_a_static_cache_gives_the_same_tokens(head, tmp_path):
    """`compile_generation()`: a static cache and a torch.compile'd forward, on CPU too; a runtime choice, not saved."""
    torch.manual_seed(0)
    model = head(tiny_config()).eval()
    ids = random_ids(2, 6)
    kwargs = dict(attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=10, min_new_tokens=10)
    expected = model.generate(ids, **kwargs)
    model.compile_generation()
    assert model.generation_config.cache_implementation == "static"
    assert model.generation_config.compile_config is not None
    torch._dynamo.reset()
    compiled = model.generate(ids, **kwargs, return_dict_in_generate=True)
    cache = cache_of(compiled)
    assert isinstance(getattr(cache, "self_attention_cache", cache), StaticCache)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the forward really was compiled
    assert torch.equal(compiled.sequences, expected)
    assert torch.equal(model.generate(ids, **kwargs), expected)  # the second call reuses the compiled forward
    model.save_pretrained(tmp_path)
    assert type(model).from_pretrained(tmp_path).generation_config.cache_implementation is None
    assert model.generation_config.cache_implementation == "static"  # saving left this process's choice alone
    model.compile_generation(False)
    assert model.generation_config.compile_config is None and model.generation_config.cache_implementation is None


@pytest.mark.slow  # about 25 s each (compiling)
@pytest.mark.parametrize("kind", ["rotary", "alibi", "relative"])
@pytest.mark.parametrize("head", GENERATIVE_HEADS, ids=lambda h: h.__name__)
def test_compiled_generation_with_positions_inside_attention_gives_the_same_tokens(head, kind):
    """A static cache's unfilled slots and traced lengths reach the rotary angles and the biases too."""
    torch.manual_seed(0)
    model = head(tiny_config(position_embedding_type=kind)).eval()
    ids = random_ids(2, 6)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding: positions come from the mask
    kwargs = dict(attention_mask=mask, do_sample=False, max_new_tokens=8, min_new_tokens=8)
    expected = model.generate(ids, **kwargs)
    assert torch.equal(model.generate(ids, **kwargs, cache_implementation="static"), expected)
    model.compile_generation()
    torch._dynamo.reset()
    assert torch.equal(model.generate(ids, **kwargs), expected)
