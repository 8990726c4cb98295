"""
How often each model of the position pairs (bench.py's rotary, alibi and relative) builds its positions: calls in one
generate() of the code that makes rotary cos/sin, an ALiBi or T5 bias, and the bias merged with the mask, counted by
wrapping those functions during greedy generation (one forward for the prompt, then one per new token).

    python benchmarks/position_calls.py                    # toy shape, sdpa where the reference has it
    python benchmarks/position_calls.py --shape cpu --new-tokens 8

Counts, not timings, so the machine's load does not matter. A generate() of N tokens runs N decoder forwards (and
one encoder forward for the encoder-decoder): N (N + 1) calls mean made once per stack forward for all layers; a
multiple of the layers means rebuilt in every layer.
"""

import argparse
import sys
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import torch
import transformers
from transformers.integrations import sdpa_attention
from transformers.models.bloom import modeling_bloom
from transformers.models.gpt_neox import modeling_gpt_neox
from transformers.models.t5 import modeling_t5

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402

from vaswani.modeling import modeling_vaswani, positions_vaswani  # noqa: E402


# (owner, attribute, label) of each position builder, per side of a pair.
TARGETS = {
    "vaswani": [
        (positions_vaswani.VaswaniRotaryEmbedding, "forward", "rotary cos/sin"),
        (positions_vaswani.VaswaniAlibi, "forward", "ALiBi bias"),
        (positions_vaswani.VaswaniRelativePositionBias, "forward", "relative bias"),
        (modeling_vaswani, "merge_position_bias", "bias merged with the mask"),
    ],
    "rotary": [(modeling_gpt_neox.GPTNeoXRotaryEmbedding, "forward", "rotary cos/sin")],
    "alibi": [(modeling_bloom, "build_alibi_tensor", "ALiBi bias"),
              (modeling_bloom, "_get_alibi_slopes", "ALiBi bias (mask-free path)")],
    "relative": [
        (modeling_t5.T5Attention, "compute_bias", "relative bias"),
        (sdpa_attention, "create_position_bias_mask", "bias merged with the mask"),
    ],
}


def counted(new_tokens: int, model, pair: str, side: str, shape: dict) -> Counter:
    """Calls of each builder during one greedy generate() of `new_tokens` tokens (= forwards) after a warm-up."""
    calls = Counter()
    inputs = bench.generation_inputs(pair, 1, 8, shape["vocab_size"])
    config = bench.generation_config(pair, new_tokens)
    with torch.no_grad():
        model.generate(**inputs, generation_config=config)
        with ExitStack() as stack:
            for owner, name, label in TARGETS["vaswani" if side == "vaswani" else pair]:
                # A plain function: on a class it becomes the method (self comes first), on a module the function.
                def wrapper(*args, _original=getattr(owner, name), _label=label, **kwargs):
                    calls[_label] += 1
                    return _original(*args, **kwargs)

                stack.enter_context(mock.patch.object(owner, name, wrapper))
            model.generate(**inputs, generation_config=config)
    return calls


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="toy", choices=sorted(bench.SHAPES))
    parser.add_argument("--new-tokens", type=int, default=4)
    args = parser.parse_args(argv)
    transformers.logging.set_verbosity_error()
    shape = bench.SHAPES[args.shape]
    print(f"calls in one greedy generate() of {args.new_tokens} tokens: {args.new_tokens} decoder forwards (+1 encoder "
          f"forward for relative), {shape['layers']} layers a stack")
    print("| pair | model | back-end | what | calls |\n| --- | --- | --- | --- | --- |")
    for pair in ("rotary", "alibi", "relative"):
        for side, name in zip(("vaswani", "reference"), bench.PAIRS[pair]):
            model = bench.build(pair, side, shape, 512).eval()
            backend = bench.set_attention(model, "sdpa")
            for label, n in sorted(counted(args.new_tokens, model, pair, side, shape).items()):
                print(f"| {pair} | {name} | {backend} | {label} | {n} |")


if __name__ == "__main__":
    main()
