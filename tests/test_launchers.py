"""
Launchers as users start them, and DDP's `find_unused_parameters` (vaswani/training/launchers.py).

- `accelerate launch --num_processes 2 -m vaswani.cli pretrain ...` on a machine without GPUs starts one process
  (accelerate's rule: several only with --multi_gpu, a config asking for it, or several GPUs). Run for real here: the
  command stops before any work with a one-line usage error (exit code 2 from the CLI, which accelerate reports as its
  child's) naming torchrun and `accelerate launch --multi_gpu`; the same from the environment accelerate sets, when
  the number asked for is not on the launcher's command line (a config file). What does start several processes
  (torchrun, accelerate's --multi_gpu, MPI) is let through.
- `find_unused_parameters`: nothing probed for one process; False when every trainable parameter gets a gradient;
  True, with the names said, for a model whose loss leaves some unused (VaswaniForPreTraining's pooler and
  next-sentence head under an MLM-only batch); the probe changes no random state, gradient or mode; a LoRA model
  probes its adapters only. The torchrun run of tests/test_distributed.py checks that torch's warning is gone.

Tiny models (d_model 32). About 15 s, most of it the accelerate launch.
"""

import os
import subprocess
import sys
from pathlib import Path

import datasets
import pytest
import torch
from transformers import default_data_collator

from helpers import tiny_config
from vaswani import VaswaniForCausalLM, VaswaniForMaskedLM, VaswaniForPreTraining, cli
from vaswani.training import launchers
from vaswani.training.launchers import find_unused_parameters, launch_mismatch, unused_parameters


ROOT = Path(__file__).resolve().parents[1]
USAGE_ERROR = 2
ACCELERATE_ENV = {"ACCELERATE_MIXED_PRECISION": "no", "ACCELERATE_DYNAMO_BACKEND": "NO", "ACCELERATE_USE_CPU": "False"}
ACCELERATE = ["python", "-m", "accelerate.commands.accelerate_cli", "launch"]


# -- The launcher check ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "environ, command_line, expected",
    [
        # accelerate's simple launcher, asked for several: MASTER_ADDR set, no WORLD_SIZE.
        ({**ACCELERATE_ENV, "MASTER_ADDR": "127.0.0.1"}, [*ACCELERATE, "--num_processes", "2", "-m", "x"], 2),
        ({**ACCELERATE_ENV, "MASTER_ADDR": "127.0.0.1"}, [*ACCELERATE, "--cpu", "--num-processes=3", "x.py"], 3),
        ({**ACCELERATE_ENV, "MASTER_ADDR": "127.0.0.1"}, None, 0),  # asked in a config file: how many unknown
        # One process asked for, and one started.
        (ACCELERATE_ENV, [*ACCELERATE, "x.py"], None),
        (ACCELERATE_ENV, [*ACCELERATE, "--num_processes", "1", "x.py"], None),
        # Several started: accelerate --multi_gpu (torchrun inside), MPI.
        ({**ACCELERATE_ENV, "MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2", "RANK": "1"},
         [*ACCELERATE, "--multi_gpu", "--num_processes", "2", "x.py"], None),
        ({**ACCELERATE_ENV, "MASTER_ADDR": "127.0.0.1", "OMPI_COMM_WORLD_SIZE": "2"}, None, None),
        # Not accelerate: torchrun, or a shell that exports MASTER_ADDR.
        ({"MASTER_ADDR": "127.0.0.1", "WORLD_SIZE": "2", "RANK": "0"}, ["torchrun", "--nproc_per_node", "2"], None),
        ({"MASTER_ADDR": "127.0.0.1"}, ["bash"], None),
    ],
)
def test_launch_mismatch(environ, command_line, expected):
    assert launch_mismatch(environ, command_line or ["bash"]) == expected


def _tokenizer(tmp_path) -> Path:
    text, tokenizer = tmp_path / "text.txt", tmp_path / "tokenizer"
    text.write_text("To be, or not to be, that is the question.\n" * 20, encoding="utf-8")
    assert cli.main(["train-tokenizer", "--kind", "char", "--data", str(text), "--output", str(tokenizer)]) == 0
    return text, tokenizer


def _pretrain(text, tokenizer, output) -> list[str]:
    return ["pretrain", "--objective", "clm", "--tokenizer", str(tokenizer), "--data", str(text), "--output",
            str(output), "--d-model", "32", "--num-heads", "4", "--d-ff", "64", "--layers", "2", "--steps", "2",
            "--batch-size", "2", "--block-size", "16", "--quiet"]


def test_accelerate_launch_of_two_processes_that_starts_one_is_refused(tmp_path):
    """Run for real: `accelerate launch --num_processes 2` (and with --cpu) starts one process on this machine."""
    text, tokenizer = _tokenizer(tmp_path)
    output = tmp_path / "model"
    env = {key: value for key, value in os.environ.items() if key not in ("WORLD_SIZE", "RANK", "MASTER_ADDR")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    command = [sys.executable, *ACCELERATE[1:], "--cpu", "--num_processes", "2", "-m", "vaswani.cli",
               *_pretrain(text, tokenizer, output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    errors = [line for line in done.stderr.splitlines() if line.startswith("vaswani pretrain: error:")]
    assert len(errors) == 1, f"exit code {done.returncode}\nstderr:\n{done.stderr[-3000:]}"
    assert errors[0].startswith("vaswani pretrain: error: accelerate launch was asked for --num_processes 2 and "
                                "started only this one"), errors[0]
    assert "`torchrun --nproc_per_node 2 -m vaswani.cli pretrain ...`" in errors[0], errors[0]
    assert "`accelerate launch --multi_gpu --num_processes 2 -m vaswani.cli pretrain ...`" in errors[0], errors[0]
    # The CLI exited 2 (accelerate then exits 1 itself, saying its child's exit status); nothing was written.
    assert done.returncode != 0 and "returned non-zero exit status 2" in done.stderr, done.stderr[-3000:]
    assert not any('File "' in line and "/vaswani/" in line for line in done.stderr.splitlines()), done.stderr
    assert not output.exists() and not Path(str(output) + ".checkpoints").exists()


def test_accelerate_environment_without_the_number_is_a_usage_error(tmp_path, monkeypatch, capsys):
    """accelerate's environment for several processes (MASTER_ADDR, no WORLD_SIZE), the number not on a command line."""
    text, tokenizer = _tokenizer(tmp_path)
    capsys.readouterr()
    for key, value in {**ACCELERATE_ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(launchers, "_parent_command_line", lambda: None)
    output = tmp_path / "model"
    assert cli.main(_pretrain(text, tokenizer, output)) == USAGE_ERROR
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("vaswani pretrain: error: accelerate launch was asked for several processes and "
                               "started only this one"), lines[0]
    assert "`torchrun --nproc_per_node N -m vaswani.cli pretrain ...`" in lines[0], lines[0]
    assert not output.exists()


# -- find_unused_parameters --------------------------------------------------------------------------------------------
def _rows(count: int = 4, length: int = 8) -> datasets.Dataset:
    """Token rows with labels, and a column no forward takes (Trainer drops it; so must the probe)."""
    ids = torch.randint(3, 99, (count, length), generator=torch.Generator().manual_seed(0)).tolist()
    return datasets.Dataset.from_dict({"input_ids": ids, "labels": ids, "text": ["x"] * count})


@pytest.fixture
def two_processes(monkeypatch):
    """WORLD_SIZE=2 in the environment (torch.distributed is not set up: every rank would probe the same rows)."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")


def test_every_parameter_used_is_false(two_processes, capsys):
    model = VaswaniForCausalLM(tiny_config(dropout=0.1))
    assert find_unused_parameters(model, _rows(), default_data_collator, batch_size=2) is False
    assert capsys.readouterr().err == ""


def test_a_pooler_the_mlm_loss_never_reaches_is_true(two_processes, capsys):
    """VaswaniForPreTraining on MLM rows alone (no next_sentence_label): the pooler and NSP head get no gradient."""
    model = VaswaniForPreTraining(tiny_config())
    unused = unused_parameters(model, _rows(), default_data_collator, batch_size=2)
    assert unused and all(name.startswith(("pooler.", "nsp_head.")) for name in unused), unused
    assert {name.split(".")[0] for name in unused} == {"pooler", "nsp_head"}, unused
    assert find_unused_parameters(model, _rows(), default_data_collator, batch_size=2) is True
    said = capsys.readouterr().err
    assert "get no gradient" in said and all(name in said for name in unused), said


def test_the_probe_leaves_no_trace(two_processes):
    model = VaswaniForMaskedLM(tiny_config(dropout=0.1)).eval()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    rng = torch.random.get_rng_state()
    assert unused_parameters(model, _rows(), default_data_collator, batch_size=2) == []
    assert torch.equal(torch.random.get_rng_state(), rng), "the probe consumed the run's random numbers"
    assert not model.training, "the probe left the model in training mode"
    for name, parameter in model.named_parameters():
        assert parameter.grad is None, f"{name} kept the probe's gradient"
        assert torch.equal(parameter, before[name]), f"{name} changed"


def test_one_process_fsdp_or_checkpointing_do_not_probe(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(launchers, "unused_parameters", lambda *a, **k: pytest.fail("probed a single process"))
    model = VaswaniForCausalLM(tiny_config())
    assert find_unused_parameters(model, _rows(), default_data_collator, batch_size=2) is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert find_unused_parameters(model, _rows(), default_data_collator, batch_size=2, fsdp=True) is None
    model.activation_checkpointing_enable()  # Trainer's own choice then: False
    assert find_unused_parameters(model, _rows(), default_data_collator, batch_size=2) is None


def test_a_lora_model_probes_its_adapters(two_processes):
    pytest.importorskip("peft")
    from vaswani.integrations.adapters import lora_model

    model = lora_model(VaswaniForCausalLM(tiny_config()), rank=2)
    assert unused_parameters(model, _rows(), default_data_collator, batch_size=2) == []
    assert find_unused_parameters(model, _rows(), default_data_collator, batch_size=2) is False


def test_a_batch_without_a_loss_keeps_trainers_default(two_processes):
    """No labels, no loss: nothing to tell from, so True (Trainer's default), on every process alike."""
    model = VaswaniForCausalLM(tiny_config())
    rows = _rows().remove_columns("labels")
    assert unused_parameters(model, rows, default_data_collator, batch_size=2) is None
    assert find_unused_parameters(model, rows, default_data_collator, batch_size=2) is True
