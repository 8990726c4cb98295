"""
What it would cost to reach the old oneDNN inference kernel (finding 10) through a `TorchFunctionMode` instead of an
`nn.Linear` subclass: such a mode keeps every projection exactly `nn.Linear` and its hooks, but Python sees every
torch call made while it is active, not only the products.

On this machine the kernel's rule never applies (it was measured to pay only on AMD CPUs), so the mode below, which
looks at `F.linear` and otherwise passes each call through, measures the dispatch cost alone: the floor of any such
mode. Per pair and shape of `bench.py` (Vaswani side): torch calls the mode sees per decode step (counted, exact),
and the CPU time of a decode step with and without the mode (alternating repeats, one thread; CPU time, not wall time,
because other processes share these cores: it counts only what this process ran. The overhead is Python's, the same
in absolute terms at any thread count). And the mode's cost a call on its own: the fastest of several loops of a
cheap torch call with and without it (the fastest, so that other processes add least), which times the calls a step
give the cost a step would have on a quiet machine. Writes `results/function_mode_overhead.json`.

    python benchmarks/function_mode_overhead.py [--quick] [--out FILE]
"""

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode


sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the harness: models, inputs, alternation)


class PassThroughLinearMode(TorchFunctionMode):
    """The candidate's shape: look at each `F.linear` (where the oneDNN rule would be asked), run every call as is."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.linear:
            pass  # the rule and the oneDNN call would go here; on this CPU the rule is false
        return func(*args, **(kwargs or {}))


class CountingMode(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def generation(model, pair: str, batch: int, new_tokens: int):
    inputs = bench.generation_inputs(pair, batch, 16, model.config.vocab_size)
    config = bench.generation_config(pair, new_tokens)

    def run():
        with torch.no_grad():
            return model.generate(**inputs, generation_config=config)

    return run


def calls_per_step(model, pair: str, batch: int) -> float:
    """Torch calls a mode sees per decode step: generate 33 tokens and 1, the difference over 32 steps."""
    counts = []
    for new_tokens in (33, 1):
        with CountingMode() as counter:
            generation(model, pair, batch, new_tokens)()
        counts.append(counter.calls)
    return (counts[0] - counts[1]) / 32


def cpu_seconds(run_a, run_b, repeats: int) -> tuple[list[float], list[float]]:
    """CPU seconds of this process per call of A and of B, alternating A-B, B-A, ... after one warm-up call each."""
    run_a(), run_b()
    times_a, times_b = [], []
    for i in range(repeats):
        order = [(run_a, times_a), (run_b, times_b)]
        for run, times in order if i % 2 == 0 else order[::-1]:
            gc.collect()
            start = time.process_time()
            run()
            times.append(time.process_time() - start)
    return times_a, times_b


def cost_a_call(loops: int = 20, calls: int = 5000) -> dict:
    """Microseconds a cheap torch call (a view) takes, plain and in the mode: the fastest of `loops` loops each."""
    x = torch.randn(8, 16)

    def loop():
        start = time.process_time()
        for _ in range(calls):
            x.view(16, 8)
        return (time.process_time() - start) / calls * 1e6

    plain, in_mode = [], []
    for _ in range(loops):
        plain.append(loop())
        with PassThroughLinearMode():
            in_mode.append(loop())
    return {"plain_us": min(plain), "in_mode_us": min(in_mode), "overhead_us": min(in_mode) - min(plain)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the cpu shape, 3 repeats of 16 new tokens")
    parser.add_argument("--out", type=Path, default=bench.RESULTS / "function_mode_overhead.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    shapes, repeats, new_tokens = (["cpu"], 3, 16) if args.quick else (["cpu", "base"], 7, 64)
    report = {"machine": bench.machine(), "code": bench.code_version(), "threads": 1, "new_tokens": new_tokens,
              "results": {}}

    report["cost_a_call"] = a_call = cost_a_call()
    print(f"the mode adds {a_call['overhead_us']:.2f} us to a torch call ({a_call['plain_us']:.2f} us plain)")
    for shape_name in shapes:
        shape = bench.SHAPES[shape_name]
        for pair in ("decoder", "encoder-decoder"):
            model = bench.build(pair, "vaswani", shape, 1024).eval()
            for batch in (1, 8):
                run = generation(model, pair, batch, new_tokens)

                def in_mode(run=run):
                    with PassThroughLinearMode():
                        return run()

                calls = calls_per_step(model, pair, batch)
                plain_t, mode_t = cpu_seconds(run, in_mode, repeats)
                plain_ms = min(plain_t) / new_tokens * 1e3  # the fastest: what other processes slowed least
                mode_ms = min(mode_t) / new_tokens * 1e3
                overhead_ms = mode_ms - plain_ms
                key = f"{shape_name}_{pair}_b{batch}"
                report["results"][key] = {
                    "torch_calls_per_step": calls,
                    "step_ms": {"plain": plain_ms, "in_mode": mode_ms},
                    "overhead_ms_per_step": overhead_ms,
                    "overhead_us_per_call": overhead_ms * 1e3 / calls,
                    "overhead_vs_this_step": overhead_ms / plain_ms,
                    "quiet_estimate_ms_per_step": calls * a_call["overhead_us"] / 1e3,
                    "load_average": os.getloadavg(),
                }
                print(f"{key}: {calls:.0f} torch calls a step; {plain_ms:.2f} -> {mode_ms:.2f} ms a step "
                      f"(+{overhead_ms / plain_ms:.0%}, {overhead_ms * 1e3 / calls:.2f} us a call); at the quiet cost "
                      f"a call, +{calls * a_call['overhead_us'] / 1e3:.2f} ms a step", flush=True)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
