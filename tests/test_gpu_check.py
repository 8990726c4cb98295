"""
The GPU check's CPU fallback (benchmarks/gpu_check.py --quick): every section runs, each check passed or skipped
with its reason (what needs CUDA says so), the ratios table has bench.py's columns, and a check that fails fails the
run. No GPU needed, none used; no timing assertions.
"""

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "gpu_check.py"
sys.path.insert(0, str(BENCHMARKS))
import bench  # noqa: E402
import gpu_check  # noqa: E402


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "gpu_check.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cpu", "--threads", "1", "--out",
                             str(out)], env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text()), out


def test_every_section_ran_and_each_check_passed_or_says_why_not(report):
    data, _ = report
    assert data["complete"] is True and data["mode"] == "quick"
    assert list(data["sections"]) == list(gpu_check.SECTIONS)
    for section, content in data["sections"].items():
        assert content["checks"], section
        for name, check in content["checks"].items():
            assert check["status"] in ("passed", "skipped"), (section, name, check)
            if check["status"] == "skipped":
                assert check["reason"], (section, name)
    checks = {(s, n): c for s, content in data["sections"].items() for n, c in content["checks"].items()}
    # Every shape (bench.py's seven pairs) in bf16 and fp16, and its attention implementations.
    for pair in bench.PAIRS:
        assert checks["precision", f"{pair}_bfloat16"]["status"] == "passed", pair
        assert checks["precision", f"{pair}_float16"]["status"] == "passed", pair
        attention = checks["attention", pair]["figures"]
        assert {"eager", "sdpa"} <= set(attention["max_abs_difference_to_fp32_eager"]), pair
        assert "CUDA" in attention["skipped"]["flash_attention_2"], pair
    assert any("flex_attention" in checks["attention", p]["figures"]["max_abs_difference_to_fp32_eager"]
               for p in bench.PAIRS)
    for pair in bench.GENERATIVE:
        assert checks["generation", pair]["status"] == "passed", pair
    # What needs CUDA is skipped with the reason; FSDP's sharding itself ran on gloo.
    assert "CUDA" in checks["compiled_generation", "cuda_graphs"]["reason"]
    assert "--fsdp" in checks["fsdp", "trainer_decoder"]["reason"]
    shard = checks["fsdp", "fully_shard_decoder"]
    assert shard["status"] == "passed" and shard["figures"]["backend"] == "gloo" and shard["figures"]["units"] > 0
    for layout in ("encoder", "decoder", "encoder-decoder"):
        trained = checks["trainer", layout]["figures"]
        assert trained["mixed_precision"] == "bf16" and trained["steps"] == 2, layout
    for pair in ("decoder", "encoder-decoder"):
        compiled = checks["compiled_generation", f"{pair}_b1"]["figures"]
        assert compiled["unique_graphs"] >= 1 and compiled["vs_reference"]["ratio"] > 0, pair


def test_machine_and_ratios_table_follow_the_cpu_benchmark(report):
    data, out = report
    machine = data["machine"]
    for key in ("cpu", "torch", "transformers", "date", "device", "ratios_dtype"):
        assert machine[key], key
    assert machine["device"] == "cpu" and machine["threads"] == 1
    pairs = data["ratios"]["shapes"]["toy"]["pairs"]
    assert set(pairs) == set(bench.PAIRS)
    for pair, result in pairs.items():
        assert (result["vaswani"], result["reference"]) == bench.PAIRS[pair]
        for name in ("inference_sdpa", "inference_eager", "training"):
            fig = result["figures"][name]
            assert fig["ratio"] == pytest.approx(fig["vaswani"]["median"] / fig["reference"]["median"]), (pair, name)
    text = out.with_suffix(".md").read_text()
    assert bench.ratio_table({})[2] in text  # the header row: bench.py's columns
    assert "| toy | decoder |" in text


def test_a_failing_check_fails_the_run(tmp_path, monkeypatch):
    """A mismatch injected into the precision check's comparison: the check fails with the reason, the run exits 1."""
    monkeypatch.setattr(gpu_check, "cosine", lambda a, b: 0.5)
    out = tmp_path / "failed.json"
    torch_threads = torch.get_num_threads()
    try:
        code = gpu_check.main(["--quick", "--device", "cpu", "--threads", "1", "--sections", "precision", "--pairs",
                               "decoder", "--out", str(out)])
    finally:
        torch.set_num_threads(torch_threads)
        gc.unfreeze()
    assert code == 1
    checks = json.loads(out.read_text())["sections"]["precision"]["checks"]
    assert checks["decoder_bfloat16"]["status"] == "failed"
    assert "far from fp32" in checks["decoder_bfloat16"]["reason"]
    assert checks["decoder_float16"]["status"] == "failed"  # the run went on after the first failure


def test_committed_results_come_from_a_gpu_run():
    with pytest.raises(SystemExit):
        gpu_check.parse(["--quick"])  # a quick run must be given --out
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            gpu_check.parse([])  # a CPU run too: gpu_check.json is a GPU's
        with pytest.raises(SystemExit):
            gpu_check.parse(["--device", "cuda", "--out", "x.json"])
    with pytest.raises(SystemExit):
        gpu_check.parse(["--quick", "--out", "x.json", "--sections", "speed"])
