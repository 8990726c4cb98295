"""
Property-based tests (hypothesis) of what users hand the model: generated configs, inputs for every head (dtypes,
shapes including empty ones, masks of every rank, dtype and value, positions, embeddings, labels) and `generate()`
arguments. Each case either gives the reference path's result (eager == sdpa; cached == uncached generation) or a
`ValueError` / `TypeError` that names the argument; never an error from inside torch, a NaN from finite input, or a
bad input silently accepted.

`make test` runs a fixed seed and a small budget; `pytest -m slow tests/test_fuzz.py` runs the long profile.
"""

import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import HEAD_CLASSES, VOCAB, main_output, tiny_config
from vaswani import (
    VaswaniConfig,
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMultipleChoice,
    VaswaniForQuestionAnswering,
    VaswaniForSequenceClassification,
    VaswaniModel,
)

QUICK = settings(max_examples=40, derandomize=True, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = settings(max_examples=1500, derandomize=False, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
NAMED = re.compile(r"`[a-z_]+")  # an error names the argument or field, in backticks

SINGLE_ROW_HEADS = [head for head in HEAD_CLASSES if head is not VaswaniForMultipleChoice]
_MODELS = {}


def _pair(head):
    """The tiny model of `head` under eager and under sdpa attention, with the same weights (built once)."""
    if head not in _MODELS:
        torch.manual_seed(0)
        eager = head(tiny_config(attn_implementation="eager")).eval()
        sdpa = head(tiny_config(attn_implementation="sdpa")).eval()
        sdpa.load_state_dict(eager.state_dict())
        _MODELS[head] = eager, sdpa
    return _MODELS[head]


def _expect_named_error(call, why: list[str]):
    with pytest.raises((ValueError, TypeError)) as caught:
        call()
    assert NAMED.search(str(caught.value)), f"{why}: the error names no argument: {caught.value}"


# -- Inputs for every head --------------------------------------------------------------------------------------------
@st.composite
def head_inputs(draw):
    """(head, inputs, reasons the inputs are bad; empty when they are good)."""
    head = draw(st.sampled_from(SINGLE_ROW_HEADS))
    model, _ = _pair(head)
    bad = []
    batch = draw(st.sampled_from([2, 2, 2, 1, 3, 0]))
    length = draw(st.sampled_from([5, 5, 3, 1, 0]))
    if batch == 0 or length == 0:
        bad.append("empty")
    inputs = {}
    if draw(st.integers(0, 9)) == 0:  # embeddings instead of ids
        width = draw(st.sampled_from([32, 32, 16]))
        embeds = torch.randn(batch, length, width)
        if width != 32:
            bad.append("embeds width")
        if batch and length and draw(st.booleans()):
            embeds[0, 0, 0] = draw(st.sampled_from([math.nan, math.inf]))
            bad.append("embeds not finite")
        inputs["inputs_embeds"] = embeds
    else:
        dtype = draw(st.sampled_from([torch.long] * 6 + [torch.int32, torch.int16, torch.uint8, torch.float32, torch.bool]))
        ids = torch.randint(3, VOCAB, (batch, length))
        if batch and length and draw(st.integers(0, 4)) == 0:
            ids[-1, -1] = draw(st.sampled_from([-1, VOCAB, VOCAB + 7]))
            bad.append("id outside the vocabulary")
        if dtype not in (torch.long, torch.int32):
            bad.append("ids dtype")
        inputs["input_ids"] = ids.to(dtype) if dtype != torch.uint8 else ids.clamp(0, 255).to(dtype)
    mask_kind = draw(st.sampled_from(["ones", "padded", "none", "bool", "two", "half", "short", "1d", "4d", "4d-short"]))
    if mask_kind != "none":
        mask = torch.ones(batch, length, dtype=torch.long)
        if mask_kind == "padded" and length > 1:
            mask[:, -1] = 0
        if mask_kind == "bool":
            mask = mask.bool()
        elif mask_kind in ("two", "half") and batch and length:
            mask = mask.float() if mask_kind == "half" else mask
            mask[0, 0] = 2 if mask_kind == "two" else 0.5
            bad.append("mask value")
        elif mask_kind == "short":
            mask = mask[:, : max(length - 1, 0)] if length else torch.ones(batch, 1, dtype=torch.long)
            bad.append("mask shape")
        elif mask_kind == "1d":
            mask = mask.reshape(-1)
            bad.append("mask rank")
        elif mask_kind.startswith("4d"):
            mask = mask.bool()[:, None, None, :].expand(batch, 1, length, length)
            if mask_kind == "4d-short":
                mask = mask[..., : max(length - 1, 0)]
                bad.append("4D mask shape")
            elif model.config.is_encoder_decoder:
                bad.append("4D mask as cross-attention mask")
        inputs["attention_mask"] = mask
    position_kind = draw(st.sampled_from(["none"] * 4 + ["arange", "negative", "float", "wide"]))
    if position_kind != "none":
        positions = torch.arange(length).unsqueeze(0).expand(batch, -1).clone()
        if position_kind == "negative" and batch and length:
            positions[0, 0] = -3
            bad.append("negative position")
        elif position_kind == "float":
            positions = positions.float()
            bad.append("float positions")
        elif position_kind == "wide":
            positions = torch.arange(length + 1).unsqueeze(0)
            bad.append("positions shape")
        inputs["position_ids"] = positions
    if model.config.stacks == "encoder-only":
        segment_kind = draw(st.sampled_from(["none", "zeros", "ones", "two", "float"]))
        if segment_kind != "none":
            segments = torch.zeros(batch, length, dtype=torch.long) + (segment_kind == "ones")
            if segment_kind == "two":
                segments = segments + 2
                bad.append("segment outside type_vocab_size") if batch and length else None
            if segment_kind == "float":
                segments = segments.float()
                bad.append("float segments")
            inputs["token_type_ids"] = segments
    if model.config.is_encoder_decoder:
        target_batch = draw(st.sampled_from([batch, batch, batch + 1]))
        if target_batch != batch:
            bad.append("decoder batch")
        inputs["decoder_input_ids"] = torch.randint(3, VOCAB, (target_batch, 3))
    return head, inputs, bad


def _check_inputs(head, inputs, bad):
    eager, sdpa = _pair(head)
    if bad:
        _expect_named_error(lambda: eager(**inputs), bad)
        return
    with torch.no_grad():
        reference, other = main_output(eager(**inputs)), main_output(sdpa(**inputs))
    assert torch.isfinite(reference).all(), "NaN or inf from finite input"
    torch.testing.assert_close(other, reference, atol=1e-4, rtol=1e-4)


@QUICK
@given(head_inputs())
def test_inputs_for_every_head(case):
    _check_inputs(*case)


@pytest.mark.slow
@LONG
@given(head_inputs())
def test_inputs_for_every_head_long(case):
    _check_inputs(*case)


# -- Labels -----------------------------------------------------------------------------------------------------------
LABELLED = [h for h in SINGLE_ROW_HEADS if h not in (VaswaniModel, VaswaniForQuestionAnswering)]


@st.composite
def labelled_inputs(draw):
    head = draw(st.sampled_from(LABELLED))
    model, _ = _pair(head)
    batch, length = 2, 5
    inputs = {"input_ids": torch.randint(3, VOCAB, (batch, length))}
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = torch.randint(3, VOCAB, (batch, 4))
    per_token = head not in (VaswaniForSequenceClassification,) and "NextSentence" not in head.__name__
    classes = VOCAB if head.__name__.endswith(("LM", "Generation", "PreTraining")) else model.config.num_labels
    shape = (batch, 4 if model.config.is_encoder_decoder else length) if per_token else (batch,)
    labels = torch.randint(0, classes, shape)
    bad = []
    kind = draw(st.sampled_from(["good", "good", "ignored", "all-ignored", "outside", "shape", "rank", "float"]))
    if kind == "ignored":
        labels.view(-1)[0] = -100
    elif kind == "all-ignored":
        labels.fill_(-100)
    elif kind == "outside":
        labels.view(-1)[-1] = classes + 3
        bad.append("label outside")
    elif kind == "shape":
        labels = torch.zeros((batch + 1,) + shape[1:], dtype=torch.long)
        bad.append("label shape")
    elif kind == "rank":
        labels = labels.unsqueeze(-1).expand(*shape, 3)
        bad.append("label rank")
    elif kind == "float":
        labels = labels.float()
        if head is not VaswaniForSequenceClassification:  # float labels are its multi-label targets
            bad.append("float labels")
        else:
            labels = torch.zeros(batch, model.config.num_labels)
    if head.__name__ == "VaswaniForPreTraining":
        inputs["next_sentence_label"] = torch.tensor([0, 1])
    return head, inputs, labels, bad


@QUICK
@given(labelled_inputs())
def test_labels_for_every_head(case):
    _check_labels(*case)


@pytest.mark.slow
@LONG
@given(labelled_inputs())
def test_labels_for_every_head_long(case):
    _check_labels(*case)


def _check_labels(head, inputs, labels, bad):
    eager, sdpa = _pair(head)
    if bad:
        _expect_named_error(lambda: eager(**inputs, labels=labels), bad)
        return
    with torch.no_grad():
        loss, other = eager(**inputs, labels=labels).loss, sdpa(**inputs, labels=labels).loss
    assert torch.isfinite(loss), "a NaN loss from finite input"
    torch.testing.assert_close(other, loss, atol=1e-4, rtol=1e-4)


# -- Configs ----------------------------------------------------------------------------------------------------------
FIELD_VALUES = {
    "d_model": [32, 32, 48, 0, -8, 33.0, "32"],
    "num_heads": [4, 2, 3, 0],
    "d_ff": [64, 1, 0],
    "num_hidden_layers": [1, 2],
    "dropout": [0.0, 0.1, 1.0, -0.1, math.nan, "0.1"],
    "layer_norm_eps": [1e-5, 0.0, math.nan, math.inf],
    "activation_function": ["relu", "gelu_new", "swish", "tanh"],
    "position_embedding_type": ["sinusoidal", "learned", "rotary", "alibi", "relative", "rotary-ish"],
    "rope_parameters": [None, {"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.5},
                        {"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}, {"rope_type": "spiral"}],
    "relative_attention_num_buckets": [8, 32, 2],
    "relative_attention_max_distance": [20, 3],
    "attention_scores": ["scaled_dot_product", "dot_product", "additive", "cosine"],
    "rms_norm": [False, True, "yes"],
    "projection_bias": [True, False],
    "parallel_residual": [False, True],
    "add_cross_attention": [False, True, 1],
    "memory_length": [0, 0, 8, -1, 2.5, True],
    "encoder_overrides": [None, {"layer_norm_eps": 1e-6}, {"activation_function": "gelu"}, {"d_model": 64}, {},
                          {"layer_norm_eps": -1.0}],
    "norm_first": [False, True, "yes", 1],
    "pad_token_id": [0, None, 1.0, VOCAB],
    "vocab_size": [VOCAB, 5, 0],
}


def _config_is_valid(kwargs) -> bool:
    d_model, heads = kwargs.get("d_model", 32), kwargs.get("num_heads", 4)

    def positive_int(v):
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    checks = [
        positive_int(d_model), positive_int(heads), positive_int(kwargs.get("d_ff", 64)),
        positive_int(kwargs.get("vocab_size", VOCAB)),
        not positive_int(d_model) or not positive_int(heads) or d_model % heads == 0,
        isinstance(kwargs.get("dropout", 0.0), float) and 0 <= kwargs.get("dropout", 0.0) < 1,
        isinstance(kwargs.get("layer_norm_eps", 1e-5), float) and math.isfinite(kwargs.get("layer_norm_eps", 1e-5))
        and kwargs.get("layer_norm_eps", 1e-5) > 0,
        kwargs.get("activation_function", "relu") != "tanh",
        kwargs.get("position_embedding_type", "sinusoidal") != "rotary-ish",
        _rope_is_valid(kwargs),
        kwargs.get("attention_scores", "scaled_dot_product") != "cosine",
        kwargs.get("attention_scores") != "additive" or kwargs.get("position_embedding_type") != "rotary",
        kwargs.get("position_embedding_type") != "relative"
        or (kwargs.get("relative_attention_num_buckets", 32) >= 4
            and kwargs.get("relative_attention_max_distance", 128) > kwargs.get("relative_attention_num_buckets", 32) // 2),
        isinstance(kwargs.get("rms_norm", False), bool),
        isinstance(kwargs.get("add_cross_attention", False), bool),
        kwargs.get("memory_length", 0) in (0, 8) and not isinstance(kwargs.get("memory_length", 0), bool)
        and (kwargs.get("memory_length", 0) == 0 or kwargs.get("position_embedding_type") in ("rotary", "alibi", "relative")),
        kwargs.get("encoder_overrides") in (None, {"layer_norm_eps": 1e-6}, {"activation_function": "gelu"}),
        isinstance(kwargs.get("norm_first", False), bool),
        kwargs.get("pad_token_id", 0) is None or (isinstance(kwargs.get("pad_token_id", 0), int)
                                                 and kwargs.get("pad_token_id", 0) < kwargs.get("vocab_size", VOCAB)),
    ]
    return all(checks)


def _rope_is_valid(kwargs) -> bool:
    rope = kwargs.get("rope_parameters")
    if kwargs.get("position_embedding_type", "sinusoidal") != "rotary":
        return rope is None
    if rope is None:
        return True  # the defaults: rope_type "default", theta 10000, the whole head
    d_model, heads = kwargs.get("d_model", 32), kwargs.get("num_heads", 4)
    rotated = int(d_model // heads * rope.get("partial_rotary_factor", 1.0)) if isinstance(d_model, int) else 2
    return rope["rope_type"] != "spiral" and rotated >= 2 and rotated % 2 == 0


@st.composite
def config_kwargs(draw):
    chosen = draw(st.lists(st.sampled_from(sorted(FIELD_VALUES)), max_size=4, unique=True))
    kwargs = {name: draw(st.sampled_from(FIELD_VALUES[name])) for name in chosen}
    base = dict(vocab_size=VOCAB, d_model=32, num_heads=4, d_ff=64, num_hidden_layers=1, dropout=0.0,
                pad_token_id=0, bos_token_id=1, eos_token_id=2, max_position_embeddings=64)
    base.update(kwargs)
    if base["vocab_size"] <= 2 if isinstance(base["vocab_size"], int) else False:
        base.update(bos_token_id=None, eos_token_id=None, pad_token_id=None)
    return base, draw(st.sampled_from(SINGLE_ROW_HEADS))


@QUICK
@given(config_kwargs())
def test_generated_configs_build_and_run_or_are_refused_by_name(case):
    _check_config(*case)


@pytest.mark.slow
@LONG
@given(config_kwargs())
def test_generated_configs_long(case):
    _check_config(*case)


def _check_config(kwargs, head):
    checked = {k: v for k, v in kwargs.items() if k in FIELD_VALUES}
    if not _config_is_valid({**checked, "vocab_size": kwargs["vocab_size"], "pad_token_id": kwargs["pad_token_id"]}):
        _expect_named_error(lambda: VaswaniConfig(**kwargs), [f"config {checked}"])
        return
    config = VaswaniConfig(**kwargs)
    torch.manual_seed(0)
    stacks = getattr(head, "stacks", config.stacks)
    cross = stacks == "encoder-decoder" or config.add_cross_attention and stacks == "decoder-only"
    if config.parallel_residual and (not config.norm_first or cross):
        _expect_named_error(lambda: head(config), [f"parallel_residual with {head.__name__}, {checked}"])
        return
    if config.memory_length and (stacks != "decoder-only" or config.add_cross_attention):
        _expect_named_error(lambda: head(config), [f"memory_length with {head.__name__}, {checked}"])
        return
    model = head(config).eval()
    ids = torch.randint(0, config.vocab_size, (2, 4))
    extra = {"decoder_input_ids": torch.randint(0, config.vocab_size, (2, 3))} if model.config.is_encoder_decoder else {}
    with torch.no_grad():
        assert torch.isfinite(main_output(model(input_ids=ids, **extra))).all()


# -- generate() arguments ---------------------------------------------------------------------------------------------
@st.composite
def generate_arguments(draw):
    head = draw(st.sampled_from([VaswaniForCausalLM, VaswaniForConditionalGeneration]))
    arguments = {
        "max_new_tokens": draw(st.sampled_from([1, 4, 6, 0, -2])),
        "num_beams": draw(st.sampled_from([1, 1, 2, 3, 0])),
        "do_sample": draw(st.booleans()),
    }
    if draw(st.booleans()):
        arguments["top_k"] = draw(st.sampled_from([5, 1]))
    if draw(st.booleans()):
        arguments["num_return_sequences"] = draw(st.sampled_from([1, 2, 4]))
    return head, arguments


@QUICK
@given(generate_arguments())
def test_generate_arguments_give_consistent_output_or_a_named_error(case):
    _check_generate(*case)


@pytest.mark.slow
@LONG
@given(generate_arguments())
def test_generate_arguments_long(case):
    _check_generate(*case)


def _check_generate(head, arguments):
    model, _ = _pair(head)
    prompt = torch.randint(3, VOCAB, (2, 4))
    bad = []
    if arguments["max_new_tokens"] < 1:
        bad.append("max_new_tokens")
    if arguments["num_beams"] < 1:
        bad.append("num_beams")
    returned, beams = arguments.get("num_return_sequences", 1), arguments["num_beams"]
    if beams >= 1 and returned > beams and (beams > 1 or not arguments["do_sample"]):
        bad.append("num_return_sequences")  # beams return at most their width; greedy search one sequence
    call = lambda **extra: model.generate(input_ids=prompt, eos_token_id=None, **arguments, **extra)  # noqa: E731
    if bad:
        with pytest.raises((ValueError, TypeError)) as caught:
            call()
        assert any(name in str(caught.value) for name in bad), (bad, str(caught.value))
        return
    torch.manual_seed(1)
    cached = call()
    rows = 2 * arguments.get("num_return_sequences", 1)
    assert cached.shape[0] == rows
    assert ((cached >= 0) & (cached < VOCAB)).all()
    if not arguments["do_sample"]:  # deterministic: the cache must not change the tokens
        torch.testing.assert_close(call(use_cache=False), cached)
