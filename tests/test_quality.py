"""
The quality figures' `positions` entry (benchmarks/quality.py): its commands are valid `vaswani` command lines that
differ from the shakespeare entry's only in the positions, and at a toy size (a few steps, a slice of the text) they
train and score every window length, the block it trained on giving pretrain's own validation loss.
"""

import importlib.util
import json
import math
import shlex
from pathlib import Path

import pytest

from vaswani.cli import build_parser, validate_args
from vaswani.configuration.configuration_vaswani import POSITION_EMBEDDING_TYPES
from vaswani.training.data import SHAKESPEARE


BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def quality():
    spec = importlib.util.spec_from_file_location("quality", BENCHMARKS / "quality.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_the_shakespeare_command_is_the_one_its_figure_was_measured_with(quality):
    # The positions entry builds on the shakespeare entry's command: the refactor must not have changed it.
    recorded = json.loads((BENCHMARKS / "results" / "quality.json").read_text())["shakespeare"]["commands"]
    command = quality.shakespeare_pretrain(Path("outputs/quality"), Path("outputs/quality/shakespeare-char"), "learned")
    assert "vaswani " + shlex.join(command).replace(f"{quality.REPOSITORY}/", "") == recorded[-1]


def test_every_positions_command_parses_and_is_the_shakespeare_model_with_other_positions(quality, tmp_path):
    entries = list(quality.positions_commands(tmp_path))
    assert [kind for kind, _, _ in entries] == list(POSITION_EMBEDDING_TYPES)
    reference = quality.shakespeare_pretrain(tmp_path, tmp_path / "x", "learned")
    for kind, pretrain, evaluate in entries:
        for command in (pretrain, *evaluate.values()):
            validate_args(build_parser().parse_args(command))  # raises UsageError on a combination it refuses
        assert _option(pretrain, "--positions") == kind
        differing = {i for i, (a, b) in enumerate(zip(pretrain, reference)) if a != b}
        assert {pretrain[i - 1] for i in differing} <= {"--positions", "--output"}, kind
        extra = pretrain[len(reference):]
        # Learned positions get a table for the longest window's input (length + 1 tokens); the others none.
        assert extra == (["--max-positions", str(max(quality.CONTEXT_LENGTHS) + 1)] if kind == "learned" else [])
        assert sorted(evaluate) == sorted(quality.CONTEXT_LENGTHS)
        for length, command in evaluate.items():
            assert _option(command, "--block-size") == str(length)
            assert _option(command, "--validation-fraction") == _option(pretrain, "--validation-fraction")
            assert _option(command, "--model") == _option(pretrain, "--output")


def test_the_positions_entry_at_a_toy_size_measures_kinds_apart_and_merges_them(quality, tmp_path):
    data = tmp_path / "shakespeare.txt"
    with open(SHAKESPEARE, encoding="utf-8") as handle:
        data.write_text(handle.read(20_000), encoding="utf-8")
    results = tmp_path / "quality.json"
    results.write_text(json.dumps({"shakespeare": {"validation_loss": 1.9}}))
    toy = ["--only", "positions", "--positions-steps", "2", "--positions-data", str(data), "--results", str(results),
           "--work-dir", str(tmp_path / "work")]
    for kind in ("alibi", "learned"):  # two runs, one kind each: the second keeps the first's figures
        assert quality.main([*toy, "--positions-kinds", kind]) == 0
    written = json.loads(results.read_text())
    assert written["shakespeare"] == {"validation_loss": 1.9}  # the other entries are left as they were
    figures = written["positions"]
    for kind in ("learned", "alibi"):
        losses = figures[kind]["validation_loss"]
        assert sorted(losses, key=int) == [str(length) for length in quality.CONTEXT_LENGTHS]
        assert all(0 < loss < 2 * math.log(70) for loss in losses.values())  # about 65 characters: near uniform
        # The block it trained on, scored on the same held-out windows as pretrain's own evaluation: the same loss.
        assert losses["64"] == pytest.approx(figures[kind]["training_validation_loss"], abs=1e-4)
        commands = figures[kind]["commands"]  # the tokenizer, the pretrain, one evaluate per length
        assert [line.split()[1] for line in commands] == ["train-tokenizer", "pretrain"] + ["evaluate"] * len(losses)
        assert f"--positions {kind}" in commands[1]
    assert figures["learned_max_positions"] == max(quality.CONTEXT_LENGTHS) + 1
    assert figures["commands"] == list(dict.fromkeys(figures["learned"]["commands"] + figures["alibi"]["commands"]))
