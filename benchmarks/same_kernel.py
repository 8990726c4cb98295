"""
Is the lead of `VaswaniLinear` the kernel or the model? The reference models once more with the same kernel choice:
their `nn.Linear` layers (and GPT-2's `Conv1D`) sent through oneDNN by the same rule as `VaswaniLinear`
(`onednn_linear_applies`), measured as `bench.py` measures (same models, inputs, settings; alternating repeats in
one process).

For each pair: inference forward (the shape's batch x sequence, sdpa) and, for the decoder and the encoder-decoder,
greedy generation (16-token prompt, 128 new tokens, batch 1 and 8). Vaswani against the reference as it ships, and
against the reference through oneDNN. Writes `benchmarks/results/same_kernel.json` (or `--out`).

    python benchmarks/same_kernel.py [--shape cpu|base] [--quick] [--out FILE]

Only meaningful where `VaswaniLinear` uses oneDNN (AMD x86 CPUs; `machine.vaswani_linear_onednn` in the JSON).
"""

import argparse
import contextlib
import json
import sys
from pathlib import Path

import torch
from transformers.pytorch_utils import Conv1D

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the harness: models, inputs, alternation, figures)
from vaswani.modeling import kernels_vaswani  # noqa: E402

_linear_forward, _conv1d_forward = torch.nn.Linear.forward, Conv1D.forward


def _onednn_linear(self, x):
    if kernels_vaswani.onednn_linear_applies(x, self.weight):
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
    return _linear_forward(self, x)


def _onednn_conv1d(self, x):
    # Conv1D keeps [in, out]; oneDNN's linear takes [out, in]: a transposed copy, made once (the weights are fixed here).
    if getattr(self, "_weight_out_in", None) is None:
        self._weight_out_in = self.weight.detach().t().contiguous()
    if kernels_vaswani.onednn_linear_applies(x, self._weight_out_in):
        return torch.ops.mkldnn._linear_pointwise(x, self._weight_out_in, self.bias, "none", [], "")
    return _conv1d_forward(self, x)


@contextlib.contextmanager
def references_through_onednn():
    """nn.Linear and Conv1D multiply as VaswaniLinear does, inside the block (VaswaniLinear itself is unchanged)."""
    torch.nn.Linear.forward, Conv1D.forward = _onednn_linear, _onednn_conv1d
    try:
        yield
    finally:
        torch.nn.Linear.forward, Conv1D.forward = _linear_forward, _conv1d_forward


def calls(pair: str, shape_name: str, batch: int | None, new_tokens: int):
    """The three runs of one figure (Vaswani, reference, reference through oneDNN) and the work of one call."""
    shape = bench.SHAPES[shape_name]
    positions = bench.max_positions(bench.FULL[shape_name], shape)
    vaswani = bench.build(pair, "vaswani", shape, positions).eval()
    reference = bench.build(pair, "reference", shape, positions).eval()
    if batch is None:  # inference forward
        inputs = bench.forward_inputs(pair, shape, labels=False)
        for model in (vaswani, reference):
            bench.set_attention(model, "sdpa")
        work = shape["batch"] * shape["seq"]

        def call(model):
            with torch.no_grad():
                return model(**inputs).logits

    else:
        inputs = bench.generation_inputs(pair, batch, 16, shape["vocab_size"])
        config = bench.generation_config(pair, new_tokens)
        work = batch * new_tokens

        def call(model):
            with torch.no_grad():
                return model.generate(**inputs, generation_config=config)

    def through_onednn():
        with references_through_onednn():
            return call(reference)

    plain, fast = call(reference), through_onednn()
    same = torch.equal(plain, fast) if batch is not None else bool(torch.allclose(plain, fast, rtol=1e-4, atol=1e-4))
    if not same:
        raise AssertionError(f"{pair}: the reference through oneDNN gave other outputs than as it ships")
    return (lambda: call(vaswani)), (lambda: call(reference)), through_onednn, work


def measure(pair: str, shape_name: str, batch: int | None, new_tokens: int, repeats: int) -> dict:
    run_vaswani, run_reference, run_reference_onednn, work = calls(pair, shape_name, batch, new_tokens)
    rate = lambda seconds: [work / s for s in seconds]  # noqa: E731
    unit = "tokens/s" if batch is None else "new tokens/s"
    v1, r1, info1 = bench.alternate(run_vaswani, run_reference, repeats, warmup=1)
    v2, r2, info2 = bench.alternate(run_vaswani, run_reference_onednn, repeats, warmup=1)
    return {
        "vs_reference": bench.figure(unit, True, rate(v1), rate(r1), contention=info1),
        "vs_reference_through_onednn": bench.figure(unit, True, rate(v2), rate(r2), contention=info2),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(bench.SHAPES), default="base")
    parser.add_argument("--quick", action="store_true", help="2 repeats, 16 new tokens, batch 1 only")
    parser.add_argument("--out", type=Path, default=bench.RESULTS / "same_kernel.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(bench.THREADS)
    bench.steady_allocator()
    repeats, new_tokens, batches = (2, 16, (1,)) if args.quick else (5, 128, (1, 8))
    report = {"machine": bench.machine(), "code": bench.code_version(), "shape": args.shape,
              "new_tokens": new_tokens, "results": {}}
    for pair in bench.PAIRS:
        for batch in (None, *(batches if pair != "encoder" else ())):
            key = f"{pair}_{'inference' if batch is None else f'generation_b{batch}'}"
            result = report["results"][key] = measure(pair, args.shape, batch, new_tokens, repeats)
            print(
                f"{key}: x{result['vs_reference']['ratio']:.2f} the reference as it ships, "
                f"x{result['vs_reference_through_onednn']['ratio']:.2f} the reference through oneDNN",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
