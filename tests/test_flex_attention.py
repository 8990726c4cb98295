"""Flex attention (torch's compiled kernel) agrees with eager. Slow on CPU (compilation), so marked `slow`."""

import pytest
import torch

from helpers import inputs_for, tiny_config
from vaswani import VaswaniForCausalLM, VaswaniForConditionalGeneration, VaswaniForMaskedLM


@pytest.mark.slow
@pytest.mark.parametrize("head", [VaswaniForCausalLM, VaswaniForConditionalGeneration, VaswaniForMaskedLM])
def test_flex_attention_matches_eager(head):
    model = head(tiny_config()).eval()
    inputs = inputs_for(model, length=8)
    inputs["attention_mask"][1, 6:] = 0  # right padding in the second row
    with torch.no_grad():  # flex attention has no CPU backward
        model.set_attn_implementation("eager")
        eager = model(**inputs).logits
        model.set_attn_implementation("flex_attention")
        flex = model(**inputs).logits
    real = inputs["attention_mask"].bool() if not model.config.is_encoder_decoder else slice(None)
    torch.testing.assert_close(flex[real], eager[real], atol=1e-5, rtol=1e-5)
