"""
The compatibility functions of paper 3.2.1 (`attention_scores`): additive attention v^T tanh(W_q q + W_k k) against a
direct implementation of the formula, in every head, with the cache, after save/load and through remote code; the
unscaled dot product; and the attention implementations each one takes or refuses, by name.
"""

import pytest
import torch
from torch.nn import functional as F
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

from helpers import HEAD_CLASSES, inputs_for, main_output, random_ids, tiny_config
from test_hub import run_without_vaswani
from vaswani import VaswaniConfig, VaswaniForCausalLM, VaswaniForConditionalGeneration
from vaswani.modeling.modeling_vaswani import VaswaniAttention

GENERATIVE = [VaswaniForCausalLM, VaswaniForConditionalGeneration]


def additive(**overrides):
    return tiny_config(attention_scores="additive", **overrides)


def build(head, **overrides):
    torch.manual_seed(0)
    return head(additive(**overrides)).eval()


def _heads(tensor, module):  # (B, T, d_model) -> (B, h, T, d_k)
    batch, length, _ = tensor.shape
    return tensor.view(batch, length, module.num_heads, module.head_dim).transpose(1, 2)


def reference_attention(module: VaswaniAttention, queries, keys, mask=None, scores="additive"):
    """The formulas written out, one score at a time: MultiHead = Concat(head_i) W^O, head_i = softmax(e) V_i."""
    q, k, v = _heads(module.q_proj(queries), module), _heads(module.k_proj(keys), module), _heads(module.v_proj(keys), module)
    batch, heads, length, _ = q.shape
    e = torch.empty(batch, heads, length, k.shape[2])
    for b in range(batch):
        for h in range(heads):
            for i in range(length):
                for j in range(k.shape[2]):
                    if scores == "additive":
                        e[b, h, i, j] = module.score_vector[h] @ torch.tanh(q[b, h, i] + k[b, h, j])
                    else:  # the unscaled dot product
                        e[b, h, i, j] = q[b, h, i] @ k[b, h, j]
    if mask is not None:
        e = e.masked_fill(~mask, float("-inf"))
    output = F.softmax(e, dim=-1) @ v  # (B, h, T, d_k)
    return module.o_proj(output.transpose(1, 2).reshape(batch, length, -1))


@pytest.mark.parametrize("scores", ["additive", "dot_product"])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_attention_equals_the_formula(scores, cross):
    config = tiny_config(attention_scores=scores)
    config._attn_implementation = "additive" if scores == "additive" else "eager"
    torch.manual_seed(0)
    module = VaswaniAttention(config, layer_idx=0).eval()
    torch.nn.init.normal_(module.score_vector, std=0.5) if scores == "additive" else None
    queries = torch.randn(2, 5, config.d_model)
    keys = torch.randn(2, 6, config.d_model) if cross else queries
    mask = torch.ones(2, 1, 5, keys.shape[1], dtype=torch.bool)
    mask[1, :, :, -2:] = False  # the second example's last two keys are padding
    with torch.no_grad():
        output, weights = module(queries, attention_mask=mask, key_value_states=keys if cross else None)
        expected = reference_attention(module, queries, keys, mask, scores)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    assert torch.all(weights[1, :, :, -2:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, config.num_heads, 5))


def test_dot_product_is_unscaled_and_sdpa_agrees_with_eager():
    scaled, unscaled = VaswaniAttention(tiny_config()), VaswaniAttention(tiny_config(attention_scores="dot_product"))
    assert scaled.scaling == pytest.approx(8**-0.5) and unscaled.scaling == 1.0  # d_k = 32 / 4
    model = VaswaniForCausalLM(tiny_config(attention_scores="dot_product")).eval()
    inputs = {"input_ids": random_ids(2, 7), "attention_mask": torch.tensor([[1] * 7, [1] * 4 + [0] * 3])}
    with torch.no_grad():
        model.set_attn_implementation("sdpa")
        sdpa = model(**inputs).logits
        model.set_attn_implementation("eager")
        eager = model(**inputs).logits
    real = inputs["attention_mask"].bool()
    torch.testing.assert_close(sdpa[real], eager[real], atol=1e-5, rtol=0)


@pytest.mark.parametrize("head", HEAD_CLASSES, ids=lambda h: h.__name__)
def test_every_head_runs_and_learns_with_additive_scores(head):
    model = build(head)
    assert model.config._attn_implementation == "additive"
    vectors = [module.score_vector for module in model.modules() if isinstance(module, VaswaniAttention)]
    assert vectors and all(vector.shape == (4, 8) for vector in vectors)
    model.train()
    output = main_output(model(**inputs_for(model)))
    assert torch.isfinite(output).all()
    output.float().pow(2).mean().backward()
    assert all(vector.grad is not None and vector.grad.abs().sum() > 0 for vector in vectors)


@pytest.mark.parametrize("head", GENERATIVE, ids=lambda h: h.__name__)
@pytest.mark.parametrize("positions", ["sinusoidal", "alibi", "relative"])
def test_cached_generation_equals_uncached(head, positions):
    extra = {"relative_attention_num_buckets": 8, "relative_attention_max_distance": 20} if positions == "relative" else {}
    model = build(head, position_embedding_type=positions, **extra)
    ids = random_ids(2, 6)
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding, as generate() expects for a decoder-only model
    if model.config.is_encoder_decoder:
        mask = mask.flip(-1)
    arguments = dict(attention_mask=mask, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    cached = model.generate(ids, use_cache=True, **arguments)
    uncached = model.generate(ids, use_cache=False, **arguments)
    assert torch.equal(cached, uncached)


def test_step_by_step_logits_equal_one_forward():
    model = build(VaswaniForCausalLM)
    ids = random_ids(2, 8)
    with torch.no_grad():
        full = model(ids).logits
        first = model(ids[:, :5], use_cache=True)
        cache, steps = first.cache, [first.logits]
        for position in range(5, 8):
            step = model(ids[:, position : position + 1], cache=cache, use_cache=True)
            cache = step.cache
            steps.append(step.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head,auto", [(VaswaniForCausalLM, AutoModelForCausalLM),
                                       (VaswaniForConditionalGeneration, AutoModelForSeq2SeqLM)],
                         ids=["causal", "seq2seq"])
def test_save_and_load_are_exact(head, auto, tmp_path):
    model = build(head)
    model.save_pretrained(tmp_path)
    loaded = auto.from_pretrained(tmp_path).eval()
    assert loaded.config.attention_scores == "additive" and loaded.config._attn_implementation == "additive"
    state, reloaded = model.state_dict(), loaded.state_dict()
    assert state.keys() == reloaded.keys() and all(torch.equal(state[k], reloaded[k]) for k in state)
    inputs = inputs_for(model)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, loaded(**inputs).logits)


def test_remote_code_loads_additive_scores_without_the_package(tmp_path):
    model = build(VaswaniForConditionalGeneration)
    model.save_pretrained(tmp_path / "model")
    inputs = inputs_for(model)
    with torch.no_grad():
        logits = model(**inputs).logits
    generated = model.generate(inputs["input_ids"], max_new_tokens=5, min_new_tokens=5, do_sample=False)
    torch.save({"inputs": inputs, "logits": logits, "generated": generated}, tmp_path / "case.pt")
    result = run_without_vaswani(
        f"""
        folder = {str(tmp_path)!r}
        model = transformers.AutoModelForSeq2SeqLM.from_pretrained(folder + "/model", trust_remote_code=True).eval()
        case = torch.load(folder + "/case.pt")
        with torch.no_grad():
            logits = model(**case["inputs"]).logits
        generated = model.generate(case["inputs"]["input_ids"], max_new_tokens=5, min_new_tokens=5, do_sample=False)
        print(json.dumps({{"module": type(model).__module__, "implementation": model.config._attn_implementation,
                          "logits": torch.equal(logits, case["logits"]),
                          "generated": torch.equal(generated, case["generated"])}}))
        """,
        tmp_path,
    )
    assert result == {"module": result["module"], "implementation": "additive", "logits": True, "generated": True}
    assert result["module"].startswith("transformers_modules.")


def test_a_fully_padded_source_attends_to_nothing():
    model = build(VaswaniForConditionalGeneration)
    ids = random_ids(2, 5)
    mask = torch.ones_like(ids)
    mask[1] = 0
    with torch.no_grad():
        output = model(input_ids=ids, attention_mask=mask, decoder_input_ids=random_ids(2, 3), output_attentions=True)
    assert torch.isfinite(output.logits).all()
    assert torch.all(output.cross_attentions[0][1] == 0) and torch.all(output.encoder_attentions[0][1] == 0)


# -- Named refusals ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("implementation", ["sdpa", "flex_attention", "flash_attention_2"])
def test_additive_scores_refuse_dot_product_kernels_by_name(implementation):
    model = build(VaswaniForCausalLM)
    with pytest.raises(ValueError, match="attention_scores='additive'.*attn_implementation='additive'"):
        model.set_attn_implementation(implementation)
    assert model.config._attn_implementation == "additive"
    with pytest.raises(ValueError, match="attention_scores='additive'"):
        VaswaniForCausalLM._from_config(additive(), attn_implementation=implementation)


def test_eager_on_an_additive_model_stays_additive():
    model = build(VaswaniForCausalLM)
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "additive"
    assert VaswaniForCausalLM._from_config(additive(), attn_implementation="eager").config._attn_implementation == (
        "additive"
    )


def test_the_additive_implementation_needs_additive_scores():
    model = VaswaniForCausalLM(tiny_config())
    with pytest.raises(ValueError, match="attn_implementation='additive' needs additive scores.*attention_scores="):
        model.set_attn_implementation("additive")
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"attention_scores": "cosine"}, "`attention_scores` must be one of"),
        ({"attention_scores": "additive", "position_embedding_type": "rotary"}, "additive scores.*lose that"),
    ],
)
def test_bad_scores_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        VaswaniConfig(**overrides)


def test_old_configs_default_to_the_papers_scores():
    config = VaswaniConfig.from_dict({k: v for k, v in tiny_config().to_dict().items() if k != "attention_scores"})
    assert config.attention_scores == "scaled_dot_product"
    assert not any(name.endswith("score_vector") for name, _ in VaswaniForCausalLM(config).named_parameters())
