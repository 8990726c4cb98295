"""The quantisation benchmark's quick mode writes every figure for every model and method, with sound arithmetic
(no timing assertions)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vaswani.integrations.quantization import METHODS

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "quantization.py"
MODELS = {"encoder": "VaswaniForMaskedLM", "decoder": "VaswaniForCausalLM",
          "encoder-decoder": "VaswaniForConditionalGeneration"}


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("quantization") / "q.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)], env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text()), out


def test_every_model_and_method_has_every_figure(report):
    data, _ = report
    assert data["mode"] == "quick" and list(data["methods"]) == list(METHODS)
    assert {pair: r["model"] for pair, r in data["pairs"].items()} == MODELS
    for pair, result in data["pairs"].items():
        assert list(result["methods"]) == list(METHODS)
        for figures in result["methods"].values():
            expected = {"agreement", "size", "inference", "quantise_seconds"} | (
                {"generation_b1"} if pair != "encoder" else set())
            assert set(figures) == expected, (pair, set(figures))


def test_the_arithmetic(report):
    data, _ = report
    settings, shape = data["settings"], data["shape"]
    for pair, result in data["pairs"].items():
        for method, figures in result["methods"].items():
            a = figures["agreement"]
            assert 0 <= a["relative_error"] < 0.1 and 0.5 < a["top1_agreement"] <= 1, (pair, method, a)
            assert 0 < a["max_abs_diff"] < a["reference_max_abs"]
            size = figures["size"]
            assert size["float"] == result["float_state_dict_bytes"] and size["quantised"] < size["float"]
            assert size["ratio"] == pytest.approx(size["float"] / size["quantised"])
            for name in ("inference", "generation_b1"):
                if name not in figures:
                    continue
                fig = figures[name]
                repeats = settings["inf_repeats"] if name == "inference" else settings["gen_repeats"]
                for side in ("float", "quantised"):
                    s = fig[side]
                    assert len(s["values"]) == repeats and all(positive(x) for x in s["values"])
                    assert s["min"] <= s["q1"] <= s["median"] <= s["q3"] <= s["max"]
                assert fig["ratio"] == pytest.approx(fig["quantised"]["median"] / fig["float"]["median"])
            assert figures["inference"]["batch"] * figures["inference"]["seq"] == shape["batch"] * shape["seq"]


def test_the_markdown_table_has_a_row_per_model_and_method(report):
    data, out = report
    table = out.with_suffix(".md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| Vaswani")]
    assert len(rows) == len(MODELS) * len(METHODS)
    for pair, result in data["pairs"].items():
        for method, figures in result["methods"].items():
            row = next(r for r in rows if r.startswith(f"| {result['model']} | {method} |"))
            assert f"**{figures['inference']['ratio']:.2f}**" in row


def test_quick_mode_needs_an_out_path():
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "--quick needs --out" in result.stderr
