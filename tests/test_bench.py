"""The speed benchmark's quick mode writes every figure for every pair, with sound numbers (no timing assertions)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest


BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench.py"
PAIRS = {
    "encoder": ("VaswaniForMaskedLM", "BertForMaskedLM"),
    "decoder": ("VaswaniForCausalLM", "GPT2LMHeadModel"),
    "encoder-decoder": ("VaswaniForConditionalGeneration", "MarianMTModel"),
    "vit": ("VaswaniForImageClassification", "ViTForImageClassification"),  # images: no generation
}
# Positions inside attention, each against the Hugging Face model it comes from; BLOOM has no sdpa back-end.
POSITION_PAIRS = {
    "rotary": ("VaswaniForCausalLM", "GPTNeoXForCausalLM", "sdpa"),
    "alibi": ("VaswaniForCausalLM", "BloomForCausalLM", "eager"),
    "relative": ("VaswaniForConditionalGeneration", "T5ForConditionalGeneration", "sdpa"),
}
EVERY_PAIR = ["inference_sdpa", "inference_eager", "training", "memory",
              "mfu_inference_sdpa", "mfu_inference_eager", "mfu_training"]
# At the toy shape (`--shapes toy`, batches 1 and 2): the same figures as the CPU shape's, in seconds, not minutes.
GENERATIVE = [
    *(f"generation_b{b}" for b in (1, 2)),
    *(f"mfu_generation_b{b}" for b in (1, 2)),
    *(f"gen_scaling_b{b}_{part}" for b in (1, 2) for part in ("short", "mid", "long", "growth")),
]
STATISTICS = ("median", "q1", "q3", "min", "max")


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--shapes", "toy", "--pairs", ",".join(PAIRS), "--out", str(out)], env=env,
        capture_output=True, text=True,
        timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text()), out


def test_machine_and_peak(report):
    data, _ = report
    machine = data["machine"]
    for key in ("cpu", "cores", "torch", "transformers", "threads", "date"):
        assert machine[key], key
    assert machine["threads"] == 2
    assert data["mode"] == "quick" and data["complete"] is True
    assert positive(data["peak_gflops"]["median"]) and positive(data["peak_gflops"]["end"]["median"])
    # The MFU denominator is the fastest kernel measured, so no model figure can read above 100% of it by kernel choice.
    kernels = data["peak_gflops"]["kernels"]
    assert "torch.mm" in kernels and data["peak_gflops"]["kernel"] in kernels
    assert data["peak_gflops"]["median"] == max(kernel["median"] for kernel in kernels.values())


def test_every_figure_for_every_pair(report):
    data, _ = report
    assert list(data["shapes"]) == ["toy"]
    pairs = data["shapes"]["toy"]["pairs"]
    assert set(pairs) == set(PAIRS)
    for pair, (vaswani, reference) in PAIRS.items():
        assert (pairs[pair]["vaswani"], pairs[pair]["reference"]) == (vaswani, reference)
        expected = EVERY_PAIR + {"encoder": ["training_sparse_mlm"], "vit": []}.get(pair, GENERATIVE)
        figures = pairs[pair]["figures"]
        assert set(figures) == set(expected), (pair, sorted(set(figures) ^ set(expected)))
        for name, fig in figures.items():
            where = f"{pair}/{name}"
            assert fig["unit"], where
            for side in ("vaswani", "reference"):
                for statistic in STATISTICS:
                    assert positive(fig[side][statistic]), (where, side, statistic, fig[side][statistic])
                assert fig[side]["min"] <= fig[side]["median"] <= fig[side]["max"], where
                assert all(positive(x) for x in fig[side]["values"]), where
            v, r = fig["vaswani"]["median"], fig["reference"]["median"]
            expected_ratio = v / r if fig["higher_is_better"] else r / v
            assert positive(fig["ratio"]), where
            assert fig["ratio"] == pytest.approx(expected_ratio, rel=1e-9), where
            assert fig["ratio_definition"] == ("vaswani/reference" if fig["higher_is_better"] else "reference/vaswani")
            assert positive(fig["paired_ratio_median"]), where
            if name != "memory":  # every timed figure records what other processes took meanwhile
                assert fig["contention"]["other_cores_max"] >= 0, where
        # Rates are better high; memory, per-token times and their growth are better low.
        assert figures["memory"]["higher_is_better"] is False and figures["memory"]["unit"] == "MiB"
        assert figures["inference_sdpa"]["attn_implementation"] == "sdpa"
        assert figures["inference_eager"]["attn_implementation"] == "eager"


def test_flops_and_lengths_are_consistent(report):
    data, _ = report
    for pair, info in data["shapes"]["toy"]["pairs"].items():
        flops = info["forward_flops_per_token"]
        # The analytic count is the matmul work torch runs (eager attention, counted by torch's FlopCounterMode).
        for side in ("vaswani", "reference"):
            assert flops[side] == pytest.approx(flops["analytic"], rel=0.02), (pair, side, flops)
        if pair in ("decoder", "encoder-decoder"):
            lengths = [info["figures"][f"gen_scaling_b1_{part}"]["new_tokens"] for part in ("short", "mid", "long")]
            assert lengths == sorted(lengths) and len(set(lengths)) == 3


def test_the_vit_pair_is_one_network_reading_the_same_images(report):
    data, out = report
    info, shape = data["shapes"]["toy"]["pairs"]["vit"], data["shapes"]["toy"]["shape"]
    # The Vaswani side is the ViT converted: the same parameters, and the bench compared their logits.
    assert info["parameters"]["vaswani"] == info["parameters"]["reference"] > 0
    assert 0 <= info["logits_max_abs_difference"] <= 1e-4
    for side in ("vaswani", "reference"):
        assert (info["config"][side]["image_size"], info["config"][side]["patch_size"]) == (shape["image_size"],
                                                                                              shape["patch_size"])
    # A sequence is [CLS] and the patches: the FLOPs torch counted are the analytic count at that length, exactly.
    for side in ("vaswani", "reference"):
        assert info["forward_flops_per_token"][side] == pytest.approx(info["forward_flops_per_token"]["analytic"],
                                                                      rel=1e-9)
    tokens = 1 + (shape["image_size"] // shape["patch_size"]) ** 2
    assert f"({tokens} tokens: [CLS] and the patches)" in out.with_suffix(".md").read_text()


def test_markdown_table(report):
    _, out = report
    table = out.with_suffix(".md").read_text()
    for vaswani, reference in PAIRS.values():
        assert f"{vaswani} vs {reference}" in table
    assert "| pair | figure | unit | Vaswani | reference | ratio |" in table


@pytest.fixture(scope="module")
def position_report(tmp_path_factory):
    """The three position pairs at the toy shape, one repeat of everything, one thread (seconds, not minutes)."""
    out = tmp_path_factory.mktemp("bench") / "positions.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--shapes", "toy", "--threads", "1", "--pairs",
         ",".join(POSITION_PAIRS), "--out", str(out)], env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout


@pytest.mark.slow  # about 45 s: `make bench` runs these pairs for real; `-m slow` runs this toy-size check
def test_position_pairs_build_the_same_network_and_measure_every_figure(position_report):
    data, stdout = position_report
    assert data["complete"] is True and data["machine"]["threads"] == 1
    shape = data["shapes"]["toy"]
    settings, pairs = shape["settings"], shape["pairs"]
    assert set(pairs) == set(POSITION_PAIRS)
    generation = [
        *(f"{prefix}generation_b{b}" for b in settings["gen_batches"] for prefix in ("", "mfu_")),
        *(f"gen_scaling_b{b}_{part}" for b in settings["scan_batches"] for part in ("short", "mid", "long", "growth")),
    ]
    for pair, (vaswani, reference, backend) in POSITION_PAIRS.items():
        info = pairs[pair]
        assert (info["vaswani"], info["reference"]) == (vaswani, reference)
        # The bench refuses a pair whose sides differ in size, and says the count.
        assert info["parameters"]["vaswani"] == info["parameters"]["reference"] > 0, info["parameters"]
        assert f"{info['parameters']['vaswani']:,} trainable parameters on both sides" in stdout
        assert set(info["figures"]) == set(EVERY_PAIR + generation), (pair, sorted(info["figures"]))
        for name, fig in info["figures"].items():
            for side in ("vaswani", "reference"):
                assert all(positive(x) for x in fig[side]["values"]), (pair, name, side)
        # Each timed figure says which back-end each side ran: the one asked for, or eager where there is no sdpa.
        assert info["figures"]["inference_sdpa"]["backends"] == {"vaswani": "sdpa", "reference": backend}
        assert info["figures"]["inference_eager"]["backends"] == {"vaswani": "eager", "reference": "eager"}
        assert info["figures"]["generation_b1"]["backends"] == {"vaswani": "sdpa", "reference": backend}
        for side in ("vaswani", "reference"):
            assert info["forward_flops_per_token"][side] == pytest.approx(info["forward_flops_per_token"]["analytic"],
                                                                          rel=0.02), (pair, side)


def test_bench_refuses_a_pair_it_does_not_know(tmp_path):
    result = subprocess.run([sys.executable, str(BENCH), "--quick", "--pairs", "rotary,nope", "--out",
                             str(tmp_path / "x.json")], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "unknown pair 'nope'" in result.stderr
    assert not (tmp_path / "x.json").exists()
