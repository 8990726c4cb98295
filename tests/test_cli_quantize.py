"""
`vaswani generate --quantize` and `vaswani evaluate --quantize` (issue 16): the command quantises the loaded model
with `vaswani.integrations.quantization.quantize` before use, says so, and prints what that quantised model gives;
an unknown method is refused in one line naming the choices.

The model folders are tiny untrained models (width 32, two layers) with a character tokenizer, made once here.
"""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from test_cli import _block_losses, cli, ok
from vaswani import VaswaniForCausalLM, VaswaniForConditionalGeneration, config_from_tokenizer
from vaswani.integrations.quantization import METHODS, quantize
from vaswani.training.data import SHAKESPEARE

NEW = 12


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # width-32 models gain nothing from threads on a shared 2-core machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A causal and a seq2seq model folder (character tokenizer, init_std 0.1 so outputs depend on the input), and
    held-out text."""
    work = tmp_path_factory.mktemp("quantize")
    with open(SHAKESPEARE, encoding="utf-8") as handle:
        lines = [line for _, line in zip(range(400), handle)]
    (work / "train.txt").write_text("".join(lines[:300]), encoding="utf-8")
    (work / "heldout.txt").write_text("".join(lines[300:]), encoding="utf-8")
    ok("train-tokenizer", "--data", work / "train.txt", "--kind", "char", "--max-length", "128",
       "--output", work / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(work / "tokenizer")
    made = {}
    for name, head in (("clm", VaswaniForCausalLM), ("seq2seq", VaswaniForConditionalGeneration)):
        torch.manual_seed(0)
        config = config_from_tokenizer(tokenizer, d_model=32, num_heads=4, d_ff=64, num_hidden_layers=2, dropout=0.0,
                                       init_std=0.1)
        head(config).save_pretrained(work / name)
        tokenizer.save_pretrained(work / name)
        made[name] = work / name
    made["heldout"] = work / "heldout.txt"
    return made


def _quantized(folder, auto, method):
    return quantize(auto.from_pretrained(folder), method), AutoTokenizer.from_pretrained(folder)


@pytest.mark.parametrize("method", METHODS)
def test_generate_continues_a_prompt_with_the_quantised_model(folders, method):
    run = ok("generate", "--model", folders["clm"], "--prompt", "ROMEO:", "--max-new-tokens", NEW, "--quantize", method)
    model, tokenizer = _quantized(folders["clm"], AutoModelForCausalLM, method)
    inputs = tokenizer(["ROMEO:"], return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=NEW, do_sample=False)
    continuation = tokenizer.decode(generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert continuation.strip()
    assert run.out == f"--quantize {method}: the model's 13 projections are int8.\n>>> ROMEO:\nROMEO:{continuation}\n\n"


def test_generate_translates_with_the_quantised_seq2seq_model(folders):
    prompts = ["Before we proceed any further, hear me speak.", "Speak, speak."]
    argv = ["generate", "--model", folders["seq2seq"], "--prompt", prompts[0], "--prompt", prompts[1],
            "--max-new-tokens", NEW]
    run = ok(*argv, "--quantize", "int8-dynamic")
    model, tokenizer = _quantized(folders["seq2seq"], AutoModelForSeq2SeqLM, "int8-dynamic")
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        texts = tokenizer.batch_decode(model.generate(**inputs, max_new_tokens=NEW), skip_special_tokens=True)
    projections = 2 * 6 + 2 * 10 + 1  # encoder layers, decoder layers (self- and cross-attention), lm_head
    assert run.out == f"--quantize int8-dynamic: the model's {projections} projections are int8.\n" + "".join(
        f">>> {p}\n{t}\n\n" for p, t in zip(prompts, texts))


def test_evaluate_clm_loss_is_the_quantised_models_cross_entropy(folders):
    argv = ["evaluate", "--model", folders["clm"], "--task", "clm", "--data", folders["heldout"], "--block-size", "32"]
    run = ok(*argv, "--quantize", "int8-weight-only")
    assert run.out.startswith("--quantize int8-weight-only: the model's 13 projections are int8.\n")
    # By hand: blocks of 33 characters, 32 next-character predictions each, through the quantised model.
    model, tokenizer = _quantized(folders["clm"], AutoModelForCausalLM, "int8-weight-only")
    loss, _ = _block_losses(model, tokenizer, folders["heldout"].read_text(encoding="utf-8"), 32)
    assert run.metrics["loss"] == pytest.approx(loss, abs=2e-4)
    assert run.metrics["perplexity"] == pytest.approx(math.exp(loss), rel=1e-3)
    # The float model's loss is another number: the option changed the model that was measured.
    assert ok(*argv).metrics["loss"] != run.metrics["loss"]


@pytest.mark.parametrize("command", ["generate", "evaluate"])
def test_an_unknown_method_is_refused_in_one_line(folders, command):
    task = ["--prompt", "ROMEO:"] if command == "generate" else ["--task", "clm", "--data", folders["heldout"]]
    run = cli(command, "--model", folders["clm"], *task, "--quantize", "int4")
    assert run.code == 2 and run.out == ""
    assert len(run.err.strip().splitlines()) == 1, run.err
    assert "--quantize" in run.err and all(method in run.err for method in METHODS), run.err
