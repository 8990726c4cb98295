"""
`torch.compile` of the models' training step (forward with labels and backward) and inference forward: one graph
(`fullgraph=True`, no graph breaks), the same numbers as eager.

Tolerance: fp32 throughout; inductor fuses elementwise work and may reorder reductions (softmax, LayerNorm, the
loss), so results agree to float rounding accumulated over a few layers, not bit for bit: 1e-5 absolute and 1e-4
relative on logits, loss and every gradient (the values are of order 1). Inductor compiles C++ kernels, tens of
seconds to minutes on two shared cores, so the inductor tests are `slow`; the always-run ones compile a one-layer
causal LM with AOT autograd's eager backend, which captures the same forward and backward graphs as inductor
(dynamo, functionalisation, the joint graph) without generating code.
"""

import pytest
import torch

from helpers import inputs_for, tiny_config
from vaswani import VaswaniForCausalLM, VaswaniForConditionalGeneration


TOLERANCE = dict(rtol=1e-4, atol=1e-5)


def model_and_inputs(head, layers: int):
    torch.manual_seed(0)
    model = head(tiny_config(num_hidden_layers=layers, init_std=0.1))
    inputs = inputs_for(model)
    labels = inputs.get("decoder_input_ids", inputs["input_ids"]).clone()
    labels[:, 0] = -100  # an ignored position, as padding would be
    return model, inputs, labels


def check_inference(head, layers: int, backend: str):
    model, inputs, _ = model_and_inputs(head, layers)
    model.eval()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=True, dynamic=False)
    with torch.no_grad():
        eager = model(**inputs).logits
        first = compiled(**inputs).logits
        again = compiled(**inputs).logits  # the compiled graph reused
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the forward really was compiled
    torch.testing.assert_close(first, eager, **TOLERANCE)
    torch.testing.assert_close(again, eager, **TOLERANCE)


def check_training(head, layers: int, backend: str):
    """Loss and every gradient of a training step (train mode; tiny_config's dropout is 0, so both are deterministic)."""
    model, inputs, labels = model_and_inputs(head, layers)
    model.train()
    eager_loss = model(**inputs, labels=labels).loss
    eager_loss.backward()
    eager_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    torch._dynamo.reset()
    compiled = torch.compile(model, backend=backend, fullgraph=True, dynamic=False)
    loss = compiled(**inputs, labels=labels).loss
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
    torch.testing.assert_close(loss, eager_loss, **TOLERANCE)
    assert grads.keys() == eager_grads.keys() and len(grads) == len(list(model.parameters()))
    for name, grad in grads.items():
        torch.testing.assert_close(grad, eager_grads[name], **TOLERANCE, msg=name)
    assert any(grad.abs().max() > 0 for grad in grads.values())


HEADS = [VaswaniForCausalLM, VaswaniForConditionalGeneration]


def test_compiled_inference_forward_traces_to_eager_logits():
    check_inference(VaswaniForCausalLM, layers=1, backend="aot_eager")


def test_compiled_training_step_traces_to_eager_loss_and_gradients():
    check_training(VaswaniForCausalLM, layers=1, backend="aot_eager")


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS, ids=lambda h: h.__name__)
def test_inductor_inference_forward_gives_eager_logits(head):
    check_inference(head, layers=2, backend="inductor")


@pytest.mark.slow
@pytest.mark.parametrize("head", HEADS, ids=lambda h: h.__name__)
def test_inductor_training_step_gives_eager_loss_and_gradients(head):
    check_training(head, layers=2, backend="inductor")
