"""
`VaswaniLinear`: `nn.Linear` that multiplies through oneDNN in inference where oneDNN outruns MKL (AMD x86 CPUs).

The machine decides whether the oneDNN path is on (`_ONEDNN_LINEAR`) and the product's size whether it pays. To test
the path on any x86 CPU with oneDNN, `onednn_always` switches it on for every product; a profiler tells which kernel
ran, so a test cannot pass by silently taking the plain path.
"""

import pytest
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from helpers import GENERATIVE_HEADS, HEAD_CLASSES, inputs_for, random_ids, tiny_config
from vaswani import VaswaniLinear
from vaswani.modeling import kernels_vaswani

pytestmark = pytest.mark.filterwarnings("ignore:TF32 acceleration on top of oneDNN")

ONEDNN_OP = "mkldnn::_linear_pointwise"

needs_onednn = pytest.mark.skipif(
    not (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    ),
    reason="needs an x86 CPU with AVX2 and a torch built with oneDNN",
)


@pytest.fixture
def onednn_on(monkeypatch):
    """The oneDNN path on, with the real size thresholds."""
    monkeypatch.setattr(kernels_vaswani, "_ONEDNN_LINEAR", True)


@pytest.fixture
def onednn_always(onednn_on, monkeypatch):
    """The oneDNN path on for every product, however small (tiny test models)."""
    monkeypatch.setattr(kernels_vaswani, "_ONEDNN_MIN_WEIGHT", 0)
    monkeypatch.setattr(kernels_vaswani, "_ONEDNN_MIN_WORK", 0)


def run_and_see(fn):
    """`fn()`'s result and whether oneDNN's linear ran inside it."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        result = fn()
    return result, any(event.name == ONEDNN_OP for event in profile.events())


def make_layer(in_features=48, out_features=80, bias=True):
    torch.manual_seed(0)
    return VaswaniLinear(in_features, out_features, bias=bias)


@needs_onednn
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_onednn_gives_nn_linears_product(onednn_always, bias):
    layer = make_layer(bias=bias)
    inputs = [torch.randn(5, 48), torch.randn(2, 7, 48), torch.randn(2, 7, 96)[..., ::2]]  # the last not contiguous
    for x in inputs:
        with torch.no_grad():
            out, used = run_and_see(lambda: layer(x))
        assert used, "the oneDNN path did not run"
        assert out.shape == (*x.shape[:-1], 80)
        torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_with_gradients_or_switched_off_it_is_nn_linear_exactly(onednn_always):
    layer = make_layer()
    x = torch.randn(3, 48, requires_grad=True)
    out, used = run_and_see(lambda: layer(x))
    assert not used
    assert torch.equal(out, F.linear(x, layer.weight, layer.bias))
    out.square().sum().backward()
    assert layer.weight.grad is not None and x.grad is not None

    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        out, used = run_and_see(lambda: layer(x))
    assert not used
    assert torch.equal(out, F.linear(x, layer.weight, layer.bias))


@needs_onednn
def test_only_products_that_repay_the_call_go_to_onednn(onednn_on):
    small, wide = make_layer(64, 64), make_layer(512, 512)  # 2^12 and 2^18 weight entries
    with torch.no_grad():
        assert not run_and_see(lambda: small(torch.randn(1, 64)))[1]  # 2^12 multiply-adds
        assert not run_and_see(lambda: small(torch.randn(1023, 64)))[1]  # just under 2^22
        assert run_and_see(lambda: small(torch.randn(1024, 64)))[1]  # 2^22
        assert run_and_see(lambda: wide(torch.randn(1, 512)))[1]  # one row, but a 2^18 weight


@needs_onednn
def test_bf16_and_autocast_keep_nn_linear(onednn_always):
    layer = make_layer()
    x = torch.randn(3, 48)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out, used = run_and_see(lambda: layer(x))
    assert not used and out.dtype == torch.bfloat16
    layer = layer.to(torch.bfloat16)
    with torch.no_grad():
        out, used = run_and_see(lambda: layer(x.bfloat16()))
    assert not used and out.dtype == torch.bfloat16


@needs_onednn
def test_flop_counter_counts_the_product(onednn_always):
    layer = make_layer()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer(torch.randn(5, 48))
    assert counter.get_total_flops() == 2 * 5 * 48 * 80


@needs_onednn
@pytest.mark.parametrize("head", HEAD_CLASSES, ids=lambda head: head.__name__)
def test_every_head_gives_the_same_outputs_through_onednn(onednn_always, head):
    torch.manual_seed(0)
    model = head(tiny_config(init_std=0.1)).eval()
    assert isinstance(model.get_input_embeddings(), torch.nn.Embedding)
    inputs = inputs_for(model)
    with torch.no_grad():
        fast, used = run_and_see(lambda: model(**inputs))
        with torch.backends.mkldnn.flags(enabled=False):
            plain, used_plain = run_and_see(lambda: model(**inputs))
    assert used and not used_plain
    for name, value in plain.items():
        if torch.is_tensor(value) and value.is_floating_point():
            torch.testing.assert_close(fast[name], value, rtol=1e-4, atol=1e-5, msg=name)


@needs_onednn
@pytest.mark.parametrize("head", GENERATIVE_HEADS, ids=lambda head: head.__name__)
def test_greedy_generation_is_the_same_through_onednn(onednn_always, head):
    torch.manual_seed(0)
    model = head(tiny_config(tie_word_embeddings=False, init_std=0.1)).eval()
    ids = random_ids(3, 6, generator=torch.Generator().manual_seed(1))
    settings = dict(attention_mask=torch.ones_like(ids), max_new_tokens=10, eos_token_id=None, do_sample=False)
    (fast, used) = run_and_see(lambda: model.generate(ids, output_scores=True, return_dict_in_generate=True, **settings))
    with torch.backends.mkldnn.flags(enabled=False):
        plain, used_plain = run_and_see(
            lambda: model.generate(ids, output_scores=True, return_dict_in_generate=True, **settings)
        )
    assert used and not used_plain
    assert torch.equal(fast.sequences, plain.sequences)
    assert all(row.unique().numel() > 1 for row in fast.sequences[:, -10:]), "degenerate generation"
    torch.testing.assert_close(torch.stack(fast.scores), torch.stack(plain.scores), rtol=1e-4, atol=1e-5)


def test_a_loaded_model_is_made_of_vaswani_linears(tmp_path):
    """Saving and loading keep the layer type and lose nothing (the state dict is nn.Linear's)."""
    from vaswani import VaswaniForCausalLM

    model = VaswaniForCausalLM(tiny_config())
    model.save_pretrained(tmp_path)
    loaded = VaswaniForCausalLM.from_pretrained(tmp_path)
    linears = [module for module in loaded.modules() if isinstance(module, torch.nn.Linear)]
    assert linears and all(type(module) is VaswaniLinear for module in linears)
    for (name, value), (_, other) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(value, other), name


@pytest.mark.parametrize("on", [True, False], ids=["onednn", "mkl"])
def test_compile_generation_warns_where_uncompiled_is_faster(monkeypatch, on):
    from transformers.testing_utils import CaptureLogger

    from vaswani import VaswaniForCausalLM
    from vaswani.modeling import modeling_vaswani_heads

    monkeypatch.setattr(kernels_vaswani, "_ONEDNN_LINEAR", on)
    model = VaswaniForCausalLM(tiny_config())
    modeling_vaswani_heads.logger.warning_once.cache_clear()
    with CaptureLogger(modeling_vaswani_heads.logger) as captured:
        model.compile_generation()
    assert ("multiplies through oneDNN" in captured.out) == on
    assert model.generation_config.cache_implementation == "static"
