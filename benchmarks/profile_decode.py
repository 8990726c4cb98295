"""
Where a decode step goes: torch.profiler over greedy generation of a Vaswani model and its Hugging Face reference
(bench.py's shapes and configs), reported per decode step.

Each model generates twice, `--short` and `--long` new tokens after a 16-token prompt (or source); the difference of
the two profiles divided by the difference of the lengths is the cost of one cached decode step, without the prompt,
the encoder and generate()'s set-up. Printed: aten ops per step, the profiled time per step, and the top ops by
count and by self CPU time.

    python benchmarks/profile_decode.py                       # decoder and encoder-decoder, batch 1, cpu shape
    python benchmarks/profile_decode.py --pairs decoder --batch 8 --top 25
    python benchmarks/profile_decode.py --out profile.json    # also write the per-step tables
"""

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402


def op_table(model, pair: str, batch: int, new_tokens: int, prompt: int, vocab: int) -> dict:
    """name -> [calls, self CPU microseconds] over one generate() call, aten ops only."""
    inputs = bench.generation_inputs(pair, batch, prompt, vocab)
    config = bench.generation_config(pair, new_tokens)
    with torch.no_grad():
        model.generate(**inputs, generation_config=config)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model.generate(**inputs, generation_config=config)
    table = defaultdict(lambda: [0, 0.0])
    for event in prof.key_averages():
        if event.key.startswith("aten::"):
            table[event.key][0] += event.count
            table[event.key][1] += event.self_cpu_time_total
    return dict(table)


def wall_seconds(model, pair: str, batch: int, new_tokens: int, prompt: int, vocab: int, repeats: int = 5) -> float:
    """Median unprofiled wall time of one generate() call."""
    inputs = bench.generation_inputs(pair, batch, prompt, vocab)
    config = bench.generation_config(pair, new_tokens)
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            model.generate(**inputs, generation_config=config)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_step(short: dict, long: dict, steps: int) -> dict:
    names = set(short) | set(long)
    return {
        name: [(long.get(name, [0, 0])[0] - short.get(name, [0, 0])[0]) / steps,
               (long.get(name, [0, 0])[1] - short.get(name, [0, 0])[1]) / steps / 1000]  # calls, ms
        for name in names
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="cpu", choices=sorted(bench.SHAPES))
    parser.add_argument("--pairs", default="decoder,encoder-decoder")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--short", type=int, default=16)
    parser.add_argument("--long", type=int, default=48)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(bench.THREADS)
    shape, prompt = bench.SHAPES[args.shape], 16
    steps = args.long - args.short
    report = {}
    for pair in args.pairs.split(","):
        tables, wall = {}, {}
        for side in ("vaswani", "reference"):
            model = bench.build(pair, side, shape, 1024).eval()
            bench.set_attention(model, "sdpa")
            short = op_table(model, pair, args.batch, args.short, prompt, shape["vocab_size"])
            long = op_table(model, pair, args.batch, args.long, prompt, shape["vocab_size"])
            tables[side] = per_step(short, long, steps)
            wall[side] = 1000 * (
                wall_seconds(model, pair, args.batch, args.long, prompt, shape["vocab_size"])
                - wall_seconds(model, pair, args.batch, args.short, prompt, shape["vocab_size"])
            ) / steps
        report[pair] = {"ops_per_step": tables, "wall_ms_per_step": wall}
        print(f"\n## {pair}: one decode step at batch {args.batch} (mean over {steps} steps, profiled)")
        for side, table in tables.items():
            calls = sum(c for c, _ in table.values())
            ms = sum(t for _, t in table.values())
            print(f"{side:9s} {bench.PAIRS[pair][side == 'reference']}: {wall[side]:.2f} ms wall (unprofiled), "
                  f"{calls:.0f} aten ops, {ms:.2f} ms self CPU in aten ops")
        for key, label in ((0, "calls"), (1, "self CPU ms")):
            print(f"\ntop ops by {label}   (vaswani | reference)")
            names = sorted(set(tables["vaswani"]) | set(tables["reference"]),
                           key=lambda n: -max(tables["vaswani"].get(n, [0, 0])[key], tables["reference"].get(n, [0, 0])[key]))
            for name in names[: args.top]:
                v = tables["vaswani"].get(name, [0, 0])
                r = tables["reference"].get(name, [0, 0])
                print(f"  {name:40s} {v[0]:7.1f} {v[1]:7.3f} ms | {r[0]:7.1f} {r[1]:7.3f} ms")
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
