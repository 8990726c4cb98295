"""
Int8 quantisation of the Vaswani models on this CPU, against the float model (issue 16): for each model of
`bench.py`'s pairs at its `cpu` shape and each method of `vaswani.integrations.quantization`:

    agreement        the quantised model's logits against the float model's on the inference batch: max abs diff,
                     relative error ||q - f|| / ||f||, top-1 agreement (share of positions with the same argmax)
    size             bytes of the serialised state dict (`torch.save(model.state_dict())`: tied tensors once,
                     packed int8 weights included, which parameters() alone would miss)
    inference        forward tokens/s, eval, no_grad, batch 8 x 128 (bench.py's workload), float and quantised
                     alternating (see bench.alternate), median of the repeats; ratio quantised/float
    generation_b1    greedy new tokens/s with the cache at batch 1 (16-token prompt, bench.py's generation config),
                     alternating likewise; ratio quantised/float (> 1 = the quantised model is faster)

    python benchmarks/quantization.py                              # writes benchmarks/results/quantization.{json,md}
    python benchmarks/quantization.py --quick --out /tmp/q.json    # the same figures on a small workload (tests)
"""

import argparse
import copy
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench.py, beside this file
import bench  # noqa: E402
from bench import CONTENTION, SHAPES, alternate, build, forward_inputs, generation_config, generation_inputs, log, stats  # noqa: E402

from vaswani.integrations.quantization import METHODS, quantize  # noqa: E402


RESULTS = Path(__file__).resolve().parent / "results"
PAIRS = {"encoder": "VaswaniForMaskedLM", "decoder": "VaswaniForCausalLM",
         "encoder-decoder": "VaswaniForConditionalGeneration"}
# No waiting for quiet (bench.Contention): float and quantised alternate, so drift hits both, and each figure records
# the load it saw; on a machine shared with other jobs quiet may not come within a run.
FULL = dict(warmup=1, inf_repeats=5, inf_iters=1, gen_prompt=16, gen_new=32, gen_repeats=4, max_wait=0.0, budget=0.0,
            threads=bench.THREADS)
# Quick mode: the same models and figures on a small workload, two repeats, one thread (on a busy machine two OpenMP
# threads wait on each other, and a quick run's timings mean nothing anyway); the test suite runs it.
QUICK = dict(warmup=1, inf_repeats=2, inf_iters=1, gen_prompt=8, gen_new=4, gen_repeats=2, max_wait=0.0, budget=0.0,
             threads=1, batch=2, seq=16)


def state_dict_bytes(model) -> int:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def agreement(quantised: torch.Tensor, reference: torch.Tensor) -> dict:
    return {
        "max_abs_diff": (quantised - reference).abs().max().item(),
        "relative_error": ((quantised - reference).norm() / reference.norm()).item(),
        "top1_agreement": (quantised.argmax(-1) == reference.argmax(-1)).float().mean().item(),
        "reference_max_abs": reference.abs().max().item(),
    }


def compared(unit: str, float_values: list[float], quantised_values: list[float], load: dict, **extra) -> dict:
    """Medians and spreads of a rate, float and quantised, and the ratio of the medians quantised/float."""
    f, q = stats(float_values), stats(quantised_values)
    return {"unit": unit, "float": f, "quantised": q, "ratio": q["median"] / f["median"],
            "ratio_definition": "quantised/float (> 1 = quantised faster)",
            "paired_ratio_median": statistics.median(b / a for a, b in zip(float_values, quantised_values)),
            "contention": load, **extra}


def bench_pair(pair: str, shape: dict, settings: dict) -> dict:
    positions = max(512, settings["gen_prompt"] + settings["gen_new"])
    model = build(pair, "vaswani", shape, positions).eval()
    inputs = forward_inputs(pair, shape, labels=False)
    with torch.no_grad():
        reference = model(**inputs).logits
    b, t = shape["batch"], shape["seq"]
    result = {"model": PAIRS[pair], "float_state_dict_bytes": state_dict_bytes(model), "methods": {}}
    log(f"  {pair}: {PAIRS[pair]}, float state dict {result['float_state_dict_bytes'] / 2**20:.1f} MiB")

    def forward(m):
        def run():
            with torch.no_grad():
                for _ in range(settings["inf_iters"]):
                    m(**inputs)
        return run

    def generate(m):
        gen_inputs = generation_inputs(pair, 1, settings["gen_prompt"], shape["vocab_size"])
        config = generation_config(pair, settings["gen_new"])

        def run():
            with torch.no_grad():
                out = m.generate(**gen_inputs, generation_config=config)
            expected = (settings["gen_prompt"] if pair == "decoder" else 1) + settings["gen_new"]
            if out.shape != (1, expected):
                raise RuntimeError(f"{pair} generated {tuple(out.shape)}, expected {(1, expected)}")
        return run

    for method in METHODS:
        started = time.perf_counter()
        quantised = quantize(copy.deepcopy(model), method)
        quantise_seconds = time.perf_counter() - started
        with torch.no_grad():
            output = quantised(**inputs).logits
        figures = {"agreement": agreement(output, reference), "quantise_seconds": quantise_seconds}
        size = state_dict_bytes(quantised)
        figures["size"] = {"unit": "bytes", "float": result["float_state_dict_bytes"], "quantised": size,
                           "ratio": result["float_state_dict_bytes"] / size,
                           "ratio_definition": "float/quantised (> 1 = quantised smaller)"}
        tf, tq, load = alternate(forward(model), forward(quantised), settings["inf_repeats"], settings["warmup"])
        work = b * t * settings["inf_iters"]
        figures["inference"] = compared("tokens/s", [work / x for x in tf], [work / x for x in tq], load,
                                        batch=b, seq=t)
        if pair != "encoder":
            tf, tq, load = alternate(generate(model), generate(quantised), settings["gen_repeats"], settings["warmup"])
            new = settings["gen_new"]
            figures["generation_b1"] = compared("new tokens/s", [new / x for x in tf], [new / x for x in tq], load,
                                                batch=1, prompt_tokens=settings["gen_prompt"], new_tokens=new)
        result["methods"][method] = figures
        log(f"  {pair:16s} {method:17s} rel. error {figures['agreement']['relative_error']:.4f}, top-1 "
            f"{figures['agreement']['top1_agreement']:.3f}, size x{figures['size']['ratio']:.2f}, inference "
            f"x{figures['inference']['ratio']:.2f}"
            + (f", generate b1 x{figures['generation_b1']['ratio']:.2f}" if "generation_b1" in figures else ""))
        del quantised
    return result


def markdown(report: dict) -> str:
    m, s = report["machine"], report["shape"]
    lines = [
        f"Machine: {m['cpu']}, {m['usable_cores']} cores, torch {m['torch']}, torchao {m['torchao']}, "
        f"{m['threads']} threads, {m['date']}, {report['mode']} run, {report['wall_seconds'] / 60:.1f} min; load "
        f"average {m['load_average_start'][0]:.1f} at the start, {m['load_average_end'][0]:.1f} at the end. Shape: "
        f"d_model {s['d_model']}, {s['num_heads']} heads, d_ff {s['d_ff']}, {s['layers']} layers a stack, "
        f"vocabulary {s['vocab_size']}, inference batch {s['batch']} x {s['seq']}, generation batch 1, "
        f"{report['settings']['gen_prompt']}-token prompt, {report['settings']['gen_new']} new tokens.",
        "",
        "Speed ratios are quantised/float (> 1 = quantised faster), medians of alternating repeats with the "
        "quantised model's [min-max]; size is the serialised state dict, float/quantised. Load: the most CPU (cores) "
        "other processes took during one repeat pair.",
        "",
        "| model | method | max abs diff | rel. error | top-1 | size MiB (float -> int8) | inference tokens/s "
        "(float -> int8) | ratio | generate b1 tokens/s (float -> int8) | ratio | load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for pair, result in report["pairs"].items():
        for method, f in result["methods"].items():
            a, size, inf = f["agreement"], f["size"], f["inference"]
            gen = f.get("generation_b1")
            loads = [inf["contention"]["other_cores_max"]] + ([gen["contention"]["other_cores_max"]] if gen else [])
            lines.append(
                f"| {result['model']} | {method} | {a['max_abs_diff']:.3g} | {a['relative_error']:.4f} | "
                f"{a['top1_agreement']:.3f} | {size['float'] / 2**20:.1f} -> {size['quantised'] / 2**20:.1f} "
                f"(x{size['ratio']:.2f}) | {_rate(inf)} | **{inf['ratio']:.2f}** | "
                + (f"{_rate(gen)} | **{gen['ratio']:.2f}** | " if gen else "- | - | ")
                + f"{max(loads):.2f} |"
            )
    return "\n".join(lines) + "\n"


def _rate(fig: dict) -> str:
    q = fig["quantised"]
    return f"{fig['float']['median']:,.0f} -> {q['median']:,.0f} [{q['min']:,.0f}-{q['max']:,.0f}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default=",".join(PAIRS), help="comma-separated: " + ", ".join(PAIRS))
    parser.add_argument("--quick", action="store_true", help="a small workload, two repeats (tests)")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/quantization.json; the "
                        "Markdown table goes beside it with the suffix .md)")
    args = parser.parse_args(argv)
    if args.out is None:
        if args.quick:
            parser.error("--quick needs --out: the committed results are the full run's")
        args.out = RESULTS / "quantization.json"
    pairs = [p for p in args.pairs.split(",") if p]
    for name in pairs:
        if name not in PAIRS:
            parser.error(f"unknown pair {name!r}; choose from {', '.join(PAIRS)}")
    settings = QUICK if args.quick else FULL
    shape = {**SHAPES["cpu"], **{k: settings[k] for k in ("batch", "seq") if k in settings}}
    CONTENTION.max_wait, CONTENTION.budget = settings["max_wait"], settings["budget"]

    started = time.perf_counter()
    torch.set_num_threads(settings["threads"])
    transformers.logging.set_verbosity_error()
    import torchao

    report = {"machine": {**bench.machine(), "torchao": torchao.__version__,
                          "quantized_engine": torch.backends.quantized.engine},
              "code": bench.code_version(), "mode": "quick" if args.quick else "full", "shape": shape,
              "settings": settings, "methods": METHODS, "pairs": {}}
    report["machine"]["allocator"] = bench.steady_allocator()
    log(f"{report['machine']['cpu']}, torch {torch.__version__}, torchao {torchao.__version__}, threads "
        f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.2f}")
    for pair in pairs:
        report["pairs"][pair] = bench_pair(pair, shape, settings)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["wall_seconds"] = time.perf_counter() - started
    report["contention"] = {"busy_threshold_cores": CONTENTION.threshold, "max_wait_per_figure_s": CONTENTION.max_wait,
                            "waited_total_s": CONTENTION.waited_total}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print("\n" + markdown(report))
    log(f"wrote {args.out} and {args.out.with_suffix('.md')} in {report['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
