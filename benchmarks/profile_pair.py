"""
One bench pair, one figure, profiled: the median of 8 alternating runs of each side, then torch.profiler's top
operations of 3 more (cpu shape unless `--shape`, fp32, 2 threads).

    python benchmarks/profile_pair.py relative sdpa training [--flush-denormal] [--times-only]
    python benchmarks/profile_pair.py vit sdpa training --shape base
"""

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

import bench


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pair", choices=list(bench.PAIRS))
    parser.add_argument("attention", choices=["sdpa", "eager"])
    parser.add_argument("figure", choices=["inference", "training"])
    parser.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True) for both sides")
    parser.add_argument("--times-only", action="store_true", help="no profile, only the timings")
    parser.add_argument("--shape", choices=list(bench.FULL), default="cpu", help="bench.py's shape (default cpu)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.flush_denormal:
        torch.set_flush_denormal(True)
    shape = bench.SHAPES[args.shape]
    models = {side: bench.build(args.pair, side, shape, 512) for side in ("vaswani", "reference")}
    inputs = bench.forward_inputs(args.pair, shape, labels=args.figure == "training")
    for model in models.values():
        bench.set_attention(model, args.attention)
        model.train(args.figure == "training")

    def run(model):
        if args.figure == "inference":
            with torch.no_grad():
                model(**inputs)
        else:
            model.zero_grad()
            model(**inputs).loss.backward()

    for model in models.values():
        for _ in range(3):
            run(model)
    times = {side: [] for side in models}
    for _ in range(8):
        for side, model in models.items():
            start = time.perf_counter()
            run(model)
            times[side].append(time.perf_counter() - start)
    medians = {side: sorted(values)[len(values) // 2] for side, values in times.items()}
    print(f"{args.pair} {args.attention} {args.figure}: vaswani {medians['vaswani']:.3f} s, reference "
          f"{medians['reference']:.3f} s, ratio {medians['reference'] / medians['vaswani']:.2f}")
    if args.times_only:
        return
    for side, model in models.items():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                run(model)
        print(f"===== {side}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))


if __name__ == "__main__":
    main()
