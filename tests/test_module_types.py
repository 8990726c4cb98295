"""
Every learned projection is exactly `torch.nn.Linear` (type, not subclass), so that quantisers, PEFT and anything else
that matches module types finds it, and every projection runs through its module call, so that module hooks
(accelerate's offloading, transformers' output recording, a user's own) see each one, in a forward and in generate().
"""

from collections import Counter

import pytest
import torch
from torch import nn

from helpers import GENERATIVE_HEADS, HEAD_CLASSES, inputs_for, random_ids, tiny_config


ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
FEED_FORWARD = ("fc1", "fc2")
# The projections a head adds to its stacks, by module name (the paper's and BERT's heads).
HEAD_PROJECTIONS = {
    "VaswaniModel": set(),
    "VaswaniForConditionalGeneration": {"lm_head"},
    "VaswaniForCausalLM": {"lm_head"},
    "VaswaniForMaskedLM": {"lm_head.dense", "lm_head.decoder"},
    "VaswaniForPreTraining": {"lm_head.dense", "lm_head.decoder", "pooler.dense", "nsp_head"},
    "VaswaniForNextSentencePrediction": {"pooler.dense", "nsp_head"},
    "VaswaniForSequenceClassification": {"pooler.dense", "classifier"},
    "VaswaniForTokenClassification": {"classifier"},
    "VaswaniForQuestionAnswering": {"qa_outputs"},
    "VaswaniForMultipleChoice": {"pooler.dense", "classifier"},
}


def linears(model) -> dict[str, nn.Module]:
    return {name: module for name, module in model.named_modules() if isinstance(module, nn.Linear)}


def expected_count(model) -> int:
    """Projections from the config: 6 an encoder or decoder-only layer, 10 a decoder layer that cross-attends."""
    config = model.config
    encoder = config.num_encoder_layers if config.stacks in ("encoder-decoder", "encoder-only") else 0
    decoder = config.num_decoder_layers if config.stacks in ("encoder-decoder", "decoder-only") else 0
    per_decoder_layer = 10 if config.stacks == "encoder-decoder" else 6
    return 6 * encoder + per_decoder_layer * decoder + len(HEAD_PROJECTIONS[type(model).__name__])


def record_calls(model) -> tuple[Counter, list]:
    """A forward hook on every projection, counting its calls by name."""
    calls = Counter()
    handles = [
        module.register_forward_hook(lambda module, args, output, name=name: calls.update([name]))
        for name, module in linears(model).items()
    ]
    return calls, handles


@pytest.mark.parametrize("head", HEAD_CLASSES, ids=lambda head: head.__name__)
def test_every_projection_is_exactly_nn_linear(head):
    model = head(tiny_config())
    found = linears(model)
    assert {type(module) for module in found.values()} == {nn.Linear}, {n: type(m) for n, m in found.items()}
    assert len(found) == expected_count(model)
    assert {name for name in found if ".layers." not in name} == HEAD_PROJECTIONS[head.__name__]
    assert all(name.rsplit(".", 1)[-1] in ATTENTION + FEED_FORWARD for name in found if ".layers." in name)


@pytest.mark.parametrize("stacks", ["encoder-only", "decoder-only"])
def test_the_bare_model_of_one_stack_counts_its_projections(stacks):
    from vaswani import VaswaniModel

    model = VaswaniModel(tiny_config(stacks=stacks, num_encoder_layers=3, num_decoder_layers=3))
    found = linears(model)
    assert {type(module) for module in found.values()} == {nn.Linear}
    assert len(found) == expected_count(model) == 18


@pytest.mark.parametrize("head", HEAD_CLASSES, ids=lambda head: head.__name__)
def test_a_forward_hook_on_every_projection_fires_once_in_inference(head):
    torch.manual_seed(0)
    model = head(tiny_config()).eval()
    calls, handles = record_calls(model)
    with torch.no_grad():
        model(**inputs_for(model))
    for handle in handles:
        handle.remove()
    assert calls == Counter(dict.fromkeys(linears(model), 1))


@pytest.mark.parametrize("head", GENERATIVE_HEADS, ids=lambda head: head.__name__)
def test_a_forward_hook_on_every_projection_fires_in_generate(head):
    """Decoder-side projections run at every step; encoder ones once; cross-attention keys and values once (cached)."""
    torch.manual_seed(0)
    model = head(tiny_config()).eval()
    new_tokens = 6
    ids = random_ids(2, 5)
    calls, handles = record_calls(model)
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
        do_sample=False, eos_token_id=None,
    )
    for handle in handles:
        handle.remove()
    assert out.shape[-1] - (0 if model.config.is_encoder_decoder else ids.shape[-1]) >= new_tokens
    steps = new_tokens  # one forward per new token: the prompt's, then one for each token but the last

    def expected(name: str) -> int:
        if name.startswith("model.encoder."):
            return 1
        if ".encoder_attn." in name and name.rsplit(".", 1)[-1] in ("k_proj", "v_proj"):
            return 1
        return steps

    assert calls == Counter({name: expected(name) for name in linears(model)})
