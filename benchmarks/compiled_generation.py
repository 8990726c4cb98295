"""
What `compile_generation()` (a static cache and a `torch.compile`d forward) gains for greedy generation, measured as
`bench.py` measures: the same models, inputs and generation settings, alternating repeats in one process.

For the decoder (vs GPT-2) and encoder-decoder (vs Marian) pairs at the CPU shape, batch 1 and 8, 128 new tokens:
Vaswani compiled against the reference (its default `DynamicCache`, eager forward) and against Vaswani itself
uncompiled. The compile time (first call) is reported on its own. Writes `benchmarks/results/compiled_generation.json`
(or `--out`).

    python benchmarks/compiled_generation.py [--quick] [--out FILE]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the harness: models, inputs, alternation, figures)


def measure(pair: str, batch: int, new_tokens: int, repeats: int) -> dict:
    shape = bench.SHAPES["cpu"]
    positions = 1024
    vaswani = bench.build(pair, "vaswani", shape, positions).eval()
    plain = bench.build(pair, "vaswani", shape, positions).eval()  # the same weights (same seed), not compiled
    reference = bench.build(pair, "reference", shape, positions).eval()
    inputs = bench.generation_inputs(pair, batch, 16, shape["vocab_size"])
    config = bench.generation_config(pair, new_tokens)

    def run(model):
        def call():
            with torch.no_grad():
                out = model.generate(**inputs, generation_config=config)
            assert out.shape[-1] >= new_tokens
            return out

        return call

    expected = run(plain)()
    vaswani.compile_generation()
    torch._dynamo.reset()
    start = time.perf_counter()
    first = run(vaswani)()
    compile_s = time.perf_counter() - start
    if not torch.equal(first, expected):
        raise AssertionError(f"{pair} b{batch}: compiled generation gave other tokens than uncompiled")
    rate = lambda seconds: [batch * new_tokens / s for s in seconds]  # noqa: E731
    compiled_t, reference_t, info = bench.alternate(run(vaswani), run(reference), repeats, warmup=1)
    compiled_t2, plain_t, info2 = bench.alternate(run(vaswani), run(plain), repeats, warmup=1)
    return {
        "compile_and_first_call_s": compile_s,
        "vs_reference": bench.figure("new tokens/s", True, rate(compiled_t), rate(reference_t), contention=info),
        "vs_uncompiled_vaswani": bench.figure("new tokens/s", True, rate(compiled_t2), rate(plain_t), contention=info2),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats, 16 new tokens, batch 1 only")
    parser.add_argument("--out", type=Path, default=bench.RESULTS / "compiled_generation.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(bench.THREADS)
    repeats, new_tokens, batches = (2, 16, (1,)) if args.quick else (5, 128, (1, 8))
    report = {"machine": bench.machine(), "code": bench.code_version(), "new_tokens": new_tokens, "results": {}}
    for pair in ("decoder", "encoder-decoder"):
        for batch in batches:
            key = f"{pair}_b{batch}"
            result = measure(pair, batch, new_tokens, repeats)
            report["results"][key] = result
            print(
                f"{key}: compiled {result['vs_reference']['vaswani']['median']:,.0f} new tokens/s; "
                f"x{result['vs_reference']['ratio']:.2f} the reference, x{result['vs_uncompiled_vaswani']['ratio']:.2f} "
                f"uncompiled Vaswani; compile + first call {result['compile_and_first_call_s']:.1f} s",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
