"""
Training on several processes and resuming a killed run, through the real command line.

- `torchrun --nproc_per_node 2` (gloo on CPU) runs `vaswani pretrain` as two ranks (tests/ddp_worker.py records what
  each rank saw): both end on the same weights, which moved away from the initial ones, and rank 0 alone writes the
  model folder, which loads. DDP is told no parameter goes unused (the causal LM uses them all), so torch's
  find_unused_parameters warning is not printed.
- `--fsdp` under the same two processes either really shards (one FSDP unit per layer) or refuses clearly; a silent
  fall-back to plain data parallelism fails.
- A run killed with SIGKILL after a checkpoint and resumed with `--resume` ends on the same weights as a run that was
  never interrupted; the killed run leaves no --output folder behind; `--resume` without a checkpoint is a one-line
  usage error (exit code 2).

Models are tiny (d_model 32, 2 layers) on a character tokenizer trained on the first 500 lines of Tiny Shakespeare.
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("ddp_worker.py")
SHAKESPEARE = ROOT / "vaswani" / "data" / "tinyshakespeare.txt"
VASWANI = [sys.executable, "-m", "vaswani.cli"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]  # what the `torchrun` script runs
TINY = ["--d-model", "32", "--num-heads", "4", "--d-ff", "64", "--layers", "2", "--dropout", "0", "--quiet",
        "--logging-steps", "1000"]
USAGE_ERROR = 2
# What torch's DDP reducer prints when told to find unused parameters and there were none.
FIND_UNUSED_WARNING = "find_unused_parameters=True was specified in DDP constructor, but did not find any unused"
TIMEOUT = 300


# -- Helpers -----------------------------------------------------------------------------------------------------------
def _env() -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _run(command: list, timeout: int = TIMEOUT, check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, env=_env(),
                              cwd=ROOT)
    except subprocess.TimeoutExpired as error:
        stderr = error.stderr.decode() if isinstance(error.stderr, bytes) else error.stderr or ""
        pytest.fail(f"timed out after {timeout} s: {' '.join(map(str, command))}\nstderr:\n{_tail(stderr)}")
    if check and done.returncode != 0:
        pytest.fail(f"exit code {done.returncode}: {' '.join(map(str, command))}\n"
                    f"stdout:\n{_tail(done.stdout)}\nstderr:\n{_tail(done.stderr)}")
    return done


def _torchrun(port: int, *arguments) -> list:
    return [*TORCHRUN, "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", port,
            *arguments]


def _digest(state: dict) -> str:
    """Same digest as tests/ddp_worker.py: sha256 of the tensors' bytes in name order."""
    hasher = hashlib.sha256()
    for name in sorted(state):
        hasher.update(name.encode())
        hasher.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return hasher.hexdigest()


def _reports(folder: Path) -> dict[int, dict]:
    reports = {}
    for path in sorted(folder.glob("rank*.json")):
        record = json.loads(path.read_text())
        reports[record["dist_rank"] if record.get("dist_rank") is not None else record["env_rank"]] = record
    return reports


def _leftovers(output: Path) -> list[str]:
    """Staging folders `publish` leaves when it is interrupted: `.<name>.partial-*` next to the output."""
    return sorted(p.name for p in output.parent.glob(f".{output.name}.partial-*"))


def _complete_checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the checkpoints whose trainer_state.json (written last by Trainer) is there and parses."""
    steps = []
    for folder in run_dir.glob("checkpoint-*"):
        state = folder / "trainer_state.json"
        if not (folder.name.split("-")[-1].isdigit() and state.is_file() and (folder / "model.safetensors").is_file()):
            continue
        try:
            json.loads(state.read_text())
        except (OSError, ValueError):
            continue  # still being written
        steps.append(int(folder.name.split("-")[-1]))
    return sorted(steps)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(text file, char tokenizer folder): the first 500 lines of Tiny Shakespeare and a tokenizer trained on them."""
    folder = tmp_path_factory.mktemp("corpus")
    text = folder / "shakespeare.txt"
    lines = SHAKESPEARE.read_text(encoding="utf-8").splitlines(keepends=True)[:500]
    text.write_text("".join(lines), encoding="utf-8")
    tokenizer = folder / "tokenizer"
    _run([*VASWANI, "train-tokenizer", "--kind", "char", "--data", text, "--output", tokenizer])
    assert (tokenizer / "tokenizer.json").is_file()
    return text, tokenizer


def _pretrain(corpus, output: Path, *extra) -> list:
    text, tokenizer = corpus
    return ["pretrain", "--objective", "clm", "--tokenizer", tokenizer, "--data", text, "--output", output,
            "--batch-size", "4", "--block-size", "32", "--seed", "0", *TINY, *extra]


def _check_two_ranks(reports: dict, folder: Path, done: subprocess.CompletedProcess) -> None:
    context = f"\nreports: {json.dumps(reports, indent=1)}\nstderr:\n{_tail(done.stderr)}"
    assert sorted(reports) == [0, 1], f"expected one report per rank 0 and 1, got {sorted(reports)}{context}"
    for rank, record in reports.items():
        assert record["env_world_size"] == 2, context
        assert record["dist_world_size"] == 2 and record["dist_rank"] == rank, context
        assert record["trainer_world_size"] == 2 and record["trainer_process_index"] == rank, context
        assert record["parallel_mode"] == "ParallelMode.DISTRIBUTED", context
        assert record["dist_backend"] == "gloo", context
        assert record["exit_code"] == 0, context
        assert (folder / f"rank{rank}.txt").read_text().strip() == record["final_digest"], context


def _check_same_weights_and_one_folder(reports: dict, report_dir: Path, output: Path, steps: int) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    finals = {rank: (report_dir / f"rank{rank}.txt").read_text().strip() for rank in reports}
    assert finals[0] == finals[1], f"the ranks ended on different weights: {finals}"
    for rank, record in reports.items():
        assert record["global_step"] == steps
        assert record["final_digest"] != record["initial_digest"], f"rank {rank}: training did not change the weights"
    assert finals[0] not in {record["initial_digest"] for record in reports.values()}

    # Rank 0, and rank 0 alone, wrote the model folder; it is complete and holds the weights both ranks ended on.
    assert reports[0]["published"] is True and reports[1]["published"] is False, reports
    assert output.is_dir() and (output / "model.safetensors").is_file() and (output / "config.json").is_file()
    assert _leftovers(output) == [], f"staging folders left behind: {_leftovers(output)}"
    model = AutoModelForCausalLM.from_pretrained(str(output)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(output))
    assert _digest(model.state_dict()) == finals[0], "the saved model is not the one the ranks trained"
    ids = tokenizer("To be, or not", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids).logits).all()


# -- Two processes -----------------------------------------------------------------------------------------------------
def test_torchrun_two_ranks_train_the_same_model(corpus, tmp_path):
    report_dir, output = tmp_path / "reports", tmp_path / "ddp-model"
    done = _run(_torchrun(_free_port(), WORKER, report_dir,
                          *_pretrain(corpus, output, "--steps", "10", "--save-steps", "5")))
    reports = _reports(report_dir)
    _check_two_ranks(reports, report_dir, done)
    assert all(r["wrapped_type"] == "DistributedDataParallel" for r in reports.values()), reports
    # Every parameter of a causal LM gets a gradient: DDP is told so, and torch's warning (and its graph traversal
    # every step) is gone.
    assert all(r["ddp_find_unused_parameters"] is False and r["ddp_module_find_unused"] is False
               for r in reports.values()), reports
    assert FIND_UNUSED_WARNING not in done.stderr, _tail(done.stderr)
    _check_same_weights_and_one_folder(reports, report_dir, output, steps=10)
    # Trainer's own record of the two processes: one RNG state per process in each checkpoint.
    checkpoint = Path(str(output) + ".checkpoints") / "checkpoint-10"
    assert (checkpoint / "rng_state_0.pth").is_file() and (checkpoint / "rng_state_1.pth").is_file()
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 10


def test_torchrun_fsdp_shards_the_layers_or_refuses(corpus, tmp_path):
    """`--fsdp` must either really shard (an FSDP unit per layer) or refuse with a usage error: never silently DDP."""
    report_dir, output = tmp_path / "reports", tmp_path / "fsdp-model"
    done = _run(_torchrun(_free_port(), WORKER, report_dir, *_pretrain(corpus, output, "--steps", "10", "--fsdp")),
                check=False)
    stderr = done.stderr
    reports = _reports(report_dir)
    if any(r.get("exit_code") == USAGE_ERROR for r in reports.values()):
        # The package refuses FSDP where it cannot run: a one-line usage error on every rank, nothing written.
        errors = [line for line in stderr.splitlines() if line.startswith("vaswani pretrain: error:")]
        assert errors and all("fsdp" in line.lower() for line in errors), _tail(stderr)
        # torchrun prints its own traceback for a failed child; none may come from the package's code.
        assert not any('File "' in line and "/vaswani/" in line for line in stderr.splitlines()), _tail(stderr)
        assert not output.exists()
        return
    assert done.returncode == 0, f"exit code {done.returncode}\nstdout:\n{_tail(done.stdout)}\nstderr:\n{_tail(stderr)}"
    _check_two_ranks(reports, report_dir, done)
    for rank, record in reports.items():
        assert record["is_fsdp_enabled"] and record["fsdp_units"], (
            f"rank {rank}: --fsdp was silently ignored: Trainer.is_fsdp_enabled={record['is_fsdp_enabled']}, "
            f"accelerate distributed_type={record['distributed_type']}, accelerate fsdp_plugin set="
            f"{record['accelerator_fsdp_plugin']}, model wrapped in {record['wrapped_type']}, FSDP units "
            f"{record['fsdp_units']}, parameters sharded={record['sharded']}; TrainingArguments.fsdp="
            f"{record['args_fsdp']}, fsdp_plugin_args={record['fsdp_plugin_args']}"
        )
        layers = [unit for unit in record["fsdp_units"] if ".layers." in unit]
        assert len(layers) == 2, f"rank {rank}: expected one FSDP unit per decoder layer, got {record['fsdp_units']}"
        assert record["sharded"], f"rank {rank}: FSDP units but no sharded parameter"
    _check_same_weights_and_one_folder(reports, report_dir, output, steps=10)


# -- Resuming a killed run ---------------------------------------------------------------------------------------------
def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def _assert_same_weights(expected: dict, actual: dict, why: str) -> None:
    assert sorted(expected) == sorted(actual), why
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], atol=1e-6, rtol=0,
                                   msg=lambda message, name=name: f"{why}\n{name}: {message}")


def test_same_seed_same_model(corpus, tmp_path):
    """Resuming can only match an uninterrupted run if one command always trains the same model."""
    first, second = tmp_path / "first", tmp_path / "second"
    _run([*VASWANI, *_pretrain(corpus, first, "--steps", "2")])
    _run([*VASWANI, *_pretrain(corpus, second, "--steps", "2")])
    _assert_same_weights(_weights(first), _weights(second),
                         "the same command with the same --seed trained two different models")


RESUME_STEPS, SAVE_STEPS = 60, 10


def test_killed_run_resumes_to_the_uninterrupted_weights(corpus, tmp_path):
    steps = ["--steps", str(RESUME_STEPS), "--save-steps", str(SAVE_STEPS)]
    reference, killed = tmp_path / "uninterrupted", tmp_path / "killed"

    # 1. The uninterrupted run.
    _run([*VASWANI, *_pretrain(corpus, reference, *steps)])
    assert (reference / "model.safetensors").is_file()

    # 2. The same command, killed with SIGKILL once a checkpoint is complete.
    checkpoints = Path(str(killed) + ".checkpoints")
    log = tmp_path / "killed.log"
    with open(log, "w") as sink:
        process = subprocess.Popen([str(c) for c in [*VASWANI, *_pretrain(corpus, killed, *steps)]], stdout=sink,
                                   stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
        deadline = time.monotonic() + TIMEOUT
        try:
            while not _complete_checkpoint_steps(checkpoints):
                if process.poll() is not None:
                    pytest.fail(f"the run ended (exit code {process.returncode}) before its first checkpoint:\n"
                                f"{_tail(log.read_text())}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no complete checkpoint after {TIMEOUT} s:\n{_tail(log.read_text())}")
                time.sleep(0.005)
            finished_first = process.poll() is not None
            os.kill(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=60)
    seen = _complete_checkpoint_steps(checkpoints)
    assert not finished_first and process.returncode == -signal.SIGKILL, (
        f"the run finished (exit code {process.returncode}) before it could be killed: make it longer\n"
        f"{_tail(log.read_text())}"
    )
    assert seen and seen[-1] < RESUME_STEPS, f"the kill landed too late: checkpoints {seen}"
    # Nothing half-written: no output folder, no staging folder.
    assert not killed.exists(), f"a killed run left {killed}: {sorted(p.name for p in killed.iterdir())}"
    assert _leftovers(killed) == []

    # 3. Resumed from the last complete checkpoint, it ends where the uninterrupted run ended.
    _run([*VASWANI, *_pretrain(corpus, killed, *steps, "--resume")])
    state = json.loads((checkpoints / f"checkpoint-{RESUME_STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == RESUME_STEPS
    _assert_same_weights(
        _weights(reference), _weights(killed),
        f"killed at checkpoint {seen[-1]} and resumed, the run did not end on the uninterrupted run's weights "
        "(if test_same_seed_same_model fails as well, the runs differed from their initialisation on)",
    )


def test_resume_without_a_checkpoint_is_a_usage_error(corpus, tmp_path):
    output = tmp_path / "never-trained"
    done = _run([*VASWANI, *_pretrain(corpus, output, "--steps", "5", "--save-steps", "5", "--resume")], check=False)
    assert done.returncode == USAGE_ERROR, f"exit code {done.returncode}\nstderr:\n{_tail(done.stderr)}"
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{done.stderr}"
    assert lines[0].startswith("vaswani pretrain: error: --resume: no complete checkpoint in"), lines[0]
    assert "Traceback" not in done.stderr
    assert not output.exists()
