"""
Ctrl-C and kills at every phase of `vaswani pretrain ... --overwrite` over an existing model folder, through the
real command line (`python -m vaswani.cli` in a subprocess): the output folder is always the old model or the new
one, whole (it loads with AutoModelForCausalLM and its weights are exactly the old or the new ones), no partial
folder is visible under the output's name, and Ctrl-C exits with code 130 and one line on stderr. An interrupted run
keeps the checkpoints it wrote, and `--resume` continues from them.

The phases are reached deterministically through the package's test hook (`VASWANI_INTERRUPT_AT=PHASE:SIGNAL`, see
`vaswani.training.run`): the process sends itself the signal when it gets there. The runs are tiny (a character
tokenizer on 300 lines of Tiny Shakespeare, d_model 32, 2 steps) and run side by side.
"""

import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

import vaswani  # noqa: F401  (registers the family with the Auto classes)
from vaswani.cli import main
from vaswani.training.data import SHAKESPEARE
from vaswani.training.run import INTERRUPT_AT, PHASES


ROOT = Path(__file__).resolve().parents[1]
TINY = ["--block-size", "32", "--d-model", "32", "--num-heads", "4", "--layers", "2", "--dropout", "0", "--quiet",
        "--logging-steps", "1000"]
HUB_FILES = {"model.safetensors", "config.json", "README.md", "tokenizer.json", "tokenizer_config.json"}
SIGNALS = ("SIGINT", "SIGKILL")
# Where the output folder must end after a signal at each phase: the publish swaps the folders in one step, and
# holds Ctrl-C while it does, so Ctrl-C at the swap ends on the new model and a kill there on the old one.
EXPECTED = {
    ("before-training", "SIGINT"): "old", ("before-training", "SIGKILL"): "old",
    ("training", "SIGINT"): "old", ("training", "SIGKILL"): "old",
    ("saving", "SIGINT"): "old", ("saving", "SIGKILL"): "old",
    ("swap", "SIGINT"): "new", ("swap", "SIGKILL"): "old",
    ("published", "SIGINT"): "new", ("published", "SIGKILL"): "new",
}
WORKERS = 3  # subprocesses at a time: each spends most of its time importing torch and transformers


def _env(**extra) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop(INTERRUPT_AT, None)
    env.update(extra)
    return env


def _pretrain(corpus, output: Path, *extra) -> list[str]:
    return [sys.executable, "-m", "vaswani.cli", "pretrain", "--objective", "clm", "--tokenizer",
            str(corpus.tokenizer), "--data", str(corpus.text), "--steps", "2", "--seed", "1", "--output", str(output),
            "--overwrite", *TINY, *map(str, extra)]


def _run(command: list[str], **env) -> SimpleNamespace:
    done = subprocess.run(command, capture_output=True, text=True, env=_env(**env), cwd=ROOT, timeout=300)
    return SimpleNamespace(code=done.returncode, out=done.stdout, err=done.stderr)


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def _same(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


def _copy_old_model(corpus, output: Path) -> None:
    shutil.copytree(corpus.old, output)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The text, its character tokenizer, the old model (seed 0) and the new one (the command's uninterrupted run)."""
    folder = tmp_path_factory.mktemp("interrupts")
    text = folder / "shakespeare.txt"
    with open(SHAKESPEARE, encoding="utf-8") as handle:
        text.write_text("".join(line for _, line in zip(range(300), handle)), encoding="utf-8")
    tokenizer, old = folder / "tokenizer", folder / "old"
    assert main(["train-tokenizer", "--kind", "char", "--data", str(text), "--output", str(tokenizer)]) == 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["pretrain", "--objective", "clm", "--tokenizer", str(tokenizer), "--data", str(text), "--steps",
                     "2", "--seed", "0", "--output", str(old), *TINY]) == 0
    finally:
        torch.set_num_threads(threads)
    return SimpleNamespace(folder=folder, text=text, tokenizer=tokenizer, old=old)


@pytest.fixture(scope="module")
def outcomes(corpus):
    """Every (phase, signal) run over a copy of the old model, and the uninterrupted run ("new"), side by side."""
    jobs = {"new": (corpus.folder / "runs" / "new" / "model", None)}
    for phase, sent in EXPECTED:
        jobs[(phase, sent)] = (corpus.folder / "runs" / f"{phase}-{sent}" / "model", f"{phase}:{sent}")
    for output, _ in jobs.values():
        output.parent.mkdir(parents=True)
        _copy_old_model(corpus, output)

    def run(job):
        output, hook = jobs[job]
        return job, _run(_pretrain(corpus, output), **({INTERRUPT_AT: hook} if hook else {}))

    with ThreadPoolExecutor(WORKERS) as pool:
        done = dict(pool.map(run, jobs))
    new = jobs["new"][0]
    assert done["new"].code == 0, done["new"].err[-3000:]
    assert not _same(_weights(new), _weights(corpus.old)), "the new run should train other weights than the old"
    return SimpleNamespace(runs=done, outputs={job: output for job, (output, _) in jobs.items()},
                           new=_weights(new), old=_weights(corpus.old))


def test_every_phase_of_a_run_has_a_case():
    assert {phase for phase, _ in EXPECTED} == set(PHASES) - {"checkpoint"}  # checkpoints: their own test below
    assert {sent for _, sent in EXPECTED} == set(SIGNALS)


@pytest.mark.parametrize("phase, sent", list(EXPECTED), ids=[f"{p}-{s}" for p, s in EXPECTED])
def test_the_output_is_the_old_model_or_the_new_one_whole(outcomes, phase, sent):
    run, output = outcomes.runs[(phase, sent)], outcomes.outputs[(phase, sent)]
    # How the process ended: Ctrl-C is one line and exit code 130; a kill is a kill.
    if sent == "SIGINT":
        assert run.code == 130, (run.code, run.err[-3000:])
        assert run.err.strip().splitlines() == ["vaswani pretrain: interrupted"], run.err[-3000:]
    else:
        assert run.code == -signal.SIGKILL, (run.code, run.err[-3000:])
        assert "Traceback" not in run.err
    # The folder is whole: every file of a Hub folder, loadable, and exactly the old weights or the new ones.
    assert HUB_FILES <= {path.name for path in output.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(str(output))
    AutoTokenizer.from_pretrained(str(output))
    weights = {name: tensor for name, tensor in model.state_dict().items() if name in outcomes.new}
    assert weights.keys() == outcomes.new.keys()
    is_old, is_new = _same(weights, outcomes.old), _same(weights, outcomes.new)
    assert is_old or is_new, "the output folder holds neither the old model nor the new one"
    assert ("old" if is_old else "new") == EXPECTED[(phase, sent)]
    assert _same(_weights(output), weights)
    # Nothing else under the output's name: no partial or old folder, no empty checkpoint folder. A kill cannot
    # clean up, so it may leave a hidden staging folder beside it, never under the output's own name.
    names = sorted(os.listdir(output.parent))
    visible = [name for name in names if not name.startswith(".")]
    hidden = [name for name in names if name.startswith(".")]
    assert visible == ["model"], names
    if sent == "SIGINT":
        assert hidden == [], names
    else:
        assert all(name.startswith(".model.partial-") for name in hidden), names


def test_an_interrupted_run_keeps_its_checkpoints_and_resumes(corpus, tmp_path):
    output = tmp_path / "model"
    _copy_old_model(corpus, output)
    checkpoints = Path(f"{output}.checkpoints")
    command = _pretrain(corpus, output, "--steps", "3", "--save-steps", "1")
    run = _run(command, **{INTERRUPT_AT: "checkpoint:SIGINT"})
    assert run.code == 130, run.err[-3000:]
    assert run.err.strip().splitlines() == ["vaswani pretrain: interrupted"]
    assert sorted(path.name for path in checkpoints.iterdir()) == ["checkpoint-1"]
    assert (checkpoints / "checkpoint-1" / "trainer_state.json").is_file()
    assert _same(_weights(output), _weights(corpus.old)), "the interrupted run changed the output folder"
    # --resume continues from them to the end.
    resumed = _run([*command, "--resume"])
    assert resumed.code == 0, resumed.err[-3000:]
    assert sorted(path.name for path in checkpoints.iterdir())[-1] == "checkpoint-3"
    assert not _same(_weights(output), _weights(corpus.old))
