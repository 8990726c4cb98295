"""
Which `torch.compile` settings make the models' inference forward and training step fastest on this CPU, against
eager, at `bench.py`'s `cpu` shape (d_model 256, 4 heads, d_ff 1024, 4 layers a stack, vocabulary 8000, batch
8 x 128) and with its models and inputs (Vaswani side of the decoder and encoder-decoder pairs).

Settings: `mode` default or "max-autotune-no-cudagraphs" (inductor also tries its C++ GEMM templates and keeps the
fastest kernel per product), `dynamic=False` (shapes specialised) or None (specialised first, generalised on a new
shape), `fullgraph=True` where the graph is whole (it is: tests/test_compile.py). Inference: eval, `torch.no_grad()`;
training: train mode, forward with labels and backward compiled, the fused AdamW step eager, as `bench.py` times it.
Every variant is warmed up (the first call compiles, timed on its own), then each repeat times every variant once,
in an order that rotates from repeat to repeat so that drift of the shared machine falls on all alike; the figure is
the median over repeats and its ratio eager / compiled (> 1: compiled is faster). Writes
`benchmarks/results/compiled_forward.json` (or `--out`).

    python benchmarks/compiled_forward.py [--quick] [--pairs decoder encoder-decoder] [--threads N] [--out FILE]
"""

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the harness: models, inputs, statistics, contention)


SETTINGS = {
    "default, dynamic=False, fullgraph": dict(mode="default", dynamic=False, fullgraph=True),
    "default, dynamic=None": dict(mode="default", dynamic=None, fullgraph=False),
    "max-autotune-no-cudagraphs, dynamic=False, fullgraph": dict(
        mode="max-autotune-no-cudagraphs", dynamic=False, fullgraph=True
    ),
}


def runners(pair: str, task: str, shape: dict) -> dict:
    """One call of each variant: eager and every compile setting, each on its own copy of the same weights."""
    inputs = bench.forward_inputs(pair, shape, labels=task == "training")
    calls = {}
    for name in ("eager", *SETTINGS):
        model = bench.build(pair, "vaswani", shape, 1024)
        forward = model if name == "eager" else torch.compile(model, **SETTINGS[name])
        if task == "inference":
            model.eval()

            def call(forward=forward):
                with torch.no_grad():
                    forward(**inputs)
        else:
            model.train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

            def call(forward=forward, optimizer=optimizer):
                forward(**inputs).loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        calls[name] = call
    return calls


def measure(pair: str, task: str, shape: dict, repeats: int) -> dict:
    torch._dynamo.reset()  # each figure compiles afresh
    calls = runners(pair, task, shape)
    first_call_s = {}
    for name, call in calls.items():
        start = time.perf_counter()
        call()  # compiles
        first_call_s[name] = time.perf_counter() - start
        call()
    names, times, loads = list(calls), {name: [] for name in calls}, []
    for repeat in range(repeats):
        start_sample = bench.CONTENTION.sample()
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            gc.collect()
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
        loads.append(bench.CONTENTION.others(start_sample, bench.CONTENTION.sample()))
    eager = statistics.median(times["eager"])
    return {
        "seconds": {name: bench.stats(values) for name, values in times.items()},
        "speedup_vs_eager": {name: eager / statistics.median(times[name]) for name in SETTINGS},
        "first_call_s": first_call_s,
        "contention": {"other_cores_median": statistics.median(loads), "other_cores_max": max(loads)},
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats")
    parser.add_argument("--pairs", nargs="+", default=["decoder", "encoder-decoder"],
                        choices=["decoder", "encoder-decoder"])
    parser.add_argument("--threads", type=int, default=bench.THREADS,
                        help="torch threads (1 on a shared machine: a preempted OpenMP thread stalls every product)")
    parser.add_argument("--out", type=Path, default=bench.RESULTS / "compiled_forward.json")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 7
    shape = bench.SHAPES["cpu"]
    report = {"machine": bench.machine(), "code": bench.code_version(), "shape": "cpu", "repeats": repeats,
              "settings": SETTINGS, "results": {}}
    for pair in args.pairs:
        for task in ("inference", "training"):
            key = f"{pair}_{task}"
            result = measure(pair, task, shape, repeats)
            report["results"][key] = result
            speedups = ", ".join(f"{name}: x{ratio:.2f}" for name, ratio in result["speedup_vs_eager"].items())
            print(f"{key}: eager {result['seconds']['eager']['median'] * 1e3:.0f} ms; {speedups}; "
                  f"first calls {', '.join(f'{s:.0f} s' for s in result['first_call_s'].values())}; "
                  f"others took up to {result['contention']['other_cores_max']:.1f} cores", flush=True)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(report, indent=1) + "\n")  # after every figure: a partial run keeps it
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
