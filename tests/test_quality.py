"""
The quality figures' `positions` entry (benchmarks/quality.py): its commands are valid `vaswani` command lines that
differ from the shakespeare entry's only in the positions, and at a toy size (a few steps, a slice of the text) they
train and score every window length, the block it trained on giving pretrain's own validation loss. The `scores`
entry (paper 3.2.1) at a toy size trains every run from one set of weights and writes its table. The other entries'
commands are the ones their figures were measured with, run at a toy size, and the README's figures the recorded ones.
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


@pytest.fixture
def toy(tmp_path):
    """A slice of Tiny Shakespeare, and a results file that already holds another entry."""
    data = tmp_path / "shakespeare.txt"
    with open(SHAKESPEARE, encoding="utf-8") as handle:
        data.write_text(handle.read(20_000), encoding="utf-8")
    results = tmp_path / "quality.json"
    results.write_text(json.dumps({"shakespeare": {"validation_loss": 1.9}}))
    return data, results


def test_the_positions_entry_at_a_toy_size_measures_kinds_apart_and_merges_them(quality, toy, tmp_path):
    data, results = toy
    argv = ["--only", "positions", "--positions-steps", "2", "--positions-data", str(data), "--results", str(results),
            "--work-dir", str(tmp_path / "work")]
    for kind in ("alibi", "learned"):  # two runs, one kind each: the second keeps the first's figures
        assert quality.main([*argv, "--positions-kinds", kind]) == 0
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


@pytest.mark.slow  # twelve small models, two steps each: about 15 s on 2 idle cores
def test_the_scores_entry_at_a_toy_size_trains_every_run_and_writes_its_table(quality, toy, tmp_path):
    data, results = toy
    assert quality.main(["--only", "scores", "--scores-steps", "2", "--scores-data", str(data), "--results",
                         str(results), "--work-dir", str(tmp_path / "work")]) == 0
    written = json.loads(results.read_text())
    assert written["shakespeare"] == {"validation_loss": 1.9}  # the other entries are left as they were
    figures = written["scores"]
    assert [line.split()[1] for line in figures["commands"]] == ["train-tokenizer"]
    d_model = figures["shape"]["d_model"]
    for init in quality.SCORE_INITS:
        assert sorted(figures[init]) == sorted(f"d_k={d_model // heads}" for heads in quality.SCORE_HEADS)
        for d_k, runs in figures[init].items():
            assert tuple(runs) == quality.SCORE_KINDS
            for run in runs.values():
                assert 0 < run["validation_loss"] < 2 * math.log(70)  # about 65 characters: near uniform
                assert sorted(run["validation_curve"], key=int) == ["0", "1", "2"]
                assert run["seconds_per_step"] > 0 and run["qk_gradient_at_init"] > 0
            # One set of weights for every run: unscaled scores are the scaled ones times sqrt(d_k) (exactly in the
            # first layer; the second sees the first's output, which the scaling moves: a little at the package's
            # init, more where unscaled scores of unit-variance q, k make the first layer's softmax nearly one-hot).
            scaled, unscaled = (runs[kind]["at_init"]["score_std"] for kind in ("scaled_dot_product", "dot_product"))
            close = 1e-2 if init == "init_std" else 0.1
            assert unscaled == pytest.approx(scaled * int(d_k.split("=")[1]) ** 0.5, rel=close)
            # Additive attention keeps a (queries, keys, d_k) tensor per head for the backward pass; dot products
            # a (queries, keys) one.
            assert runs["additive"]["activation_mib"] > runs["dot_product"]["activation_mib"]
            assert runs["dot_product"]["activation_mib"] == runs["scaled_dot_product"]["activation_mib"]
        # Unit-variance q and k give scaled scores of unit spread at init (footnote 4); the package's 0.02 far less.
        spread = figures[init][f"d_k={d_model}"]["scaled_dot_product"]["at_init"]["score_std"]
        assert (0.7 < spread < 1.3) if init == "unit_qk" else spread < 0.2
    table = (tmp_path / "quality_scores.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(quality.SCORE_INITS) * len(quality.SCORE_HEADS) * len(quality.SCORE_KINDS)
    assert {row.split(" | ")[2] for row in rows} == set(quality.SCORE_KINDS)


@pytest.mark.parametrize("entry, build, model", [("digits", "digits_finetune", "vit"),
                                                  ("captions", "captions_pretrain", "captioner")])
def test_the_image_commands_are_the_ones_their_figures_were_measured_with(quality, entry, build, model):
    recorded = json.loads((BENCHMARKS / "results" / "quality.json").read_text())[entry]
    command = getattr(quality, build)(Path("outputs/quality"), recorded[model]["epochs"])
    assert "vaswani " + shlex.join(command).replace(f"{quality.REPOSITORY}/", "") == recorded["commands"][-1]


def _toy_entry(quality, results: Path, work: Path, entry: str, *options) -> dict:
    """The figures of one entry run at a toy size into `results`, whose other entry is left as it was."""
    assert quality.main(["--only", entry, *options, "--results", str(results), "--work-dir", str(work)]) == 0
    written = json.loads(results.read_text())
    assert written["shakespeare"] == {"validation_loss": 1.9}
    return written[entry]


def test_the_digits_entry_at_a_toy_size_measures_the_vit_beside_logistic_regression(quality, toy, tmp_path):
    figures = _toy_entry(quality, toy[1], tmp_path / "work", "digits", "--digits-epochs", "0.05")
    assert 0 <= figures["vit"]["accuracy"] <= 1 and figures["vit"]["epochs"] == 0.05
    baseline = figures["logistic_regression"]
    assert (baseline["train_images"], baseline["test_images"]) == (1438, 359)
    assert 0.9 < baseline["accuracy"] <= 1  # pixels alone separate these digits well: the bar a ViT must clear
    assert figures["commands"][-1].startswith("vaswani finetune --task image-classification --data digits")


def test_the_readmes_digits_figures_are_the_measured_ones():
    recorded = json.loads((BENCHMARKS / "results" / "quality.json").read_text())["digits"]
    readme = (BENCHMARKS.parent / "README.md").read_text(encoding="utf-8")
    assert f"**{100 * recorded['vit']['accuracy']:.1f}%** (F1 {recorded['vit']['f1']})" in readme
    baseline = recorded["logistic_regression"]["accuracy"]
    assert f"| logistic regression on the 64 pixels | {100 * baseline:.1f}% |" in readme
    assert f"{recorded['vit']['parameters']:,} parameters, {recorded['vit']['epochs']} epochs" in readme


def test_the_captions_entry_at_a_toy_size_measures_the_captioner_on_held_out_strips(quality, toy, tmp_path):
    figures = _toy_entry(quality, toy[1], tmp_path / "work", "captions", "--captions-epochs", "0.01")
    captioner = figures["captioner"]
    assert 0 <= captioner["exact_match"] <= captioner["word_accuracy"] <= 1 and captioner["epochs"] == 0.01
    assert captioner["test_loss"] > 0 and captioner["parameters"] > 0
    assert figures["chance"] == {"exact_match": 0.001, "word_accuracy": 0.1}  # ten words, three to a strip
    assert figures["commands"][-1].startswith("vaswani pretrain --objective captioning --data digit-strips")


def test_the_readmes_caption_figures_are_the_measured_ones():
    recorded = json.loads((BENCHMARKS / "results" / "quality.json").read_text())["captions"]
    readme = (BENCHMARKS.parent / "README.md").read_text(encoding="utf-8")
    joined = " ".join(readme.replace("\\\n", " ").split())  # the README's lines (and a command's) joined
    captioner = recorded["captioner"]
    assert (f"**{100 * captioner['exact_match']:.1f}%** of the {recorded['strips']['test']} held-out strips "
            f"captioned exactly, {100 * captioner['word_accuracy']:.1f}% of the words") in joined
    assert f"{captioner['parameters']:,} parameters, {captioner['epochs']:g} epochs" in joined
    # The recorded command up to the benchmark's own flags (logging, output folder) is the README's.
    assert recorded["commands"][-1].split(" --logging-steps")[0] in joined


def test_the_memory_commands_are_the_shakespeare_model_with_alibi_and_a_memory_or_none(quality, tmp_path):
    reference = quality.shakespeare_pretrain(tmp_path, tmp_path / "x", quality.MEMORY_POSITIONS)
    entries = list(quality.memory_commands(tmp_path))
    assert [length for length, _, _ in entries] == [0, 64]
    for length, pretrain, evaluate in entries:
        for command in (pretrain, evaluate):
            validate_args(build_parser().parse_args(command))
        assert pretrain[len(reference):] == ["--memory-length", str(length)]
        differing = {pretrain[i - 1] for i, (a, b) in enumerate(zip(pretrain, reference)) if a != b}
        assert differing <= {"--output"}
        # Scored in order over the whole held-out text, one stream, with the memory it was trained with (or none).
        assert _option(evaluate, "--memory-length") == str(length) and _option(evaluate, "--batch-size") == "1"
        assert _option(evaluate, "--block-size") == _option(pretrain, "--block-size") == "64"
        assert _option(evaluate, "--model") == _option(pretrain, "--output")


def test_the_memory_entry_at_a_toy_size_scores_both_models_in_order(quality, toy, tmp_path):
    data, results = toy
    figures = _toy_entry(quality, results, tmp_path / "work", "memory", "--memory-steps", "2", "--memory-data",
                         str(data))
    for length in (0, 64):
        run = figures[f"memory_{length}"]
        assert 0 < run["validation_loss"] < 2 * math.log(70)  # about 65 characters: near uniform after 2 steps
    assert [line.split()[1] for line in figures["commands"]] == ["train-tokenizer"] + ["pretrain", "evaluate"] * 2


def test_the_readmes_memory_figures_are_the_measured_ones():
    recorded = json.loads((BENCHMARKS / "results" / "quality.json").read_text())["memory"]
    readme = (BENCHMARKS.parent / "README.md").read_text(encoding="utf-8")
    assert f"| without memory (`--memory-length 0`) | {recorded['memory_0']['validation_loss']:.3f} |" in readme
    assert f"| with a 64-token memory (`--memory-length 64`) | **{recorded['memory_64']['validation_loss']:.3f}** |" in readme
    assert (f"held-out loss **{recorded['memory_64']['validation_loss']:.3f}** with the memory, "
            f"{recorded['memory_0']['validation_loss']:.3f} without") in readme


def test_the_permutation_entry_pretrains_plm_as_the_sentiment_entry_pretrains_mlm(quality, tmp_path, monkeypatch):
    log = []
    plm = quality.plm_pretrain(tmp_path, 2000)
    validate_args(build_parser().parse_args(plm))
    # The MLM command the sentiment entry runs, recorded: the PLM one differs only in the objective and the output.
    monkeypatch.setattr(quality, "run", lambda command, log: log.append(command))  # record, do not train
    quality.sentiment_mlm(tmp_path, log, 2000)
    mlm = log[-1]
    assert _option(plm, "--objective") == "plm" and _option(mlm, "--objective") == "mlm"
    differing = {plm[i - 1] for i, (a, b) in enumerate(zip(plm, mlm)) if a != b}
    assert differing <= {"--objective", "--output"} and len(plm) == len(mlm)


def test_the_readmes_permutation_figures_are_the_measured_ones():
    recorded = json.loads((BENCHMARKS / "results" / "quality.json").read_text())["permutation"]["finetuned_from"]
    readme = (BENCHMARKS.parent / "README.md").read_text(encoding="utf-8")
    for start, row in (("plm", "a PLM-pretrained encoder (`--objective plm`)"),
                       ("mlm", "an MLM-pretrained encoder (`--objective mlm`)"), ("scratch", "scratch")):
        scores = recorded[start]
        assert f"| {row} | {100 * scores['accuracy']:.1f}% | {scores['f1']} |" in readme


def test_the_streaming_commands_are_the_shakespeare_model_read_as_a_stream_of_shards(quality, toy, tmp_path):
    data, _ = toy
    folder, held_out = quality.streaming_corpus(tmp_path, data)
    shards = sorted(folder.glob("*.txt"))
    text = data.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)  # what --validation-fraction 0.1 holds out
    assert len(shards) == quality.STREAMING_SHARDS
    assert "".join(shard.read_text(encoding="utf-8") for shard in shards) == text[:cut]
    assert held_out.read_text(encoding="utf-8") == text[cut:]
    (name, in_memory), (streamed_name, streamed) = quality.streaming_commands(tmp_path, 2000, data)
    assert (name, streamed_name) == ("in_memory", "streaming")
    assert in_memory == quality.shakespeare_pretrain(tmp_path, tmp_path / "in-memory", "learned", 2000, data)
    for command in (in_memory, streamed):
        validate_args(build_parser().parse_args(command))
    assert _option(streamed, "--data") == str(folder) and _option(streamed, "--eval-data") == str(held_out)
    assert "--streaming" in streamed and "--validation-fraction" not in streamed

    def without(command, flags, valued):  # the command less some flags and some options with their values
        kept, words = [], iter(command)
        for word in words:
            if word in valued:
                next(words)
            elif word not in flags:
                kept.append(word)
        return kept

    # The same model and training otherwise: only the data, the evaluation text and the output differ.
    assert without(in_memory, (), ("--validation-fraction", "--data", "--output")) == without(
        streamed, ("--streaming",), ("--eval-data", "--data", "--output"))


def test_the_streaming_entry_at_a_toy_size_trains_both_models(quality, toy, tmp_path):
    data, results = toy
    figures = _toy_entry(quality, results, tmp_path / "work", "streaming", "--streaming-steps", "2",
                         "--streaming-data", str(data))
    for name in ("in_memory", "streaming"):
        assert 0 < figures[name]["validation_loss"] < 2 * math.log(70)
    assert figures["commands"][-1].split()[1:4] == ["pretrain", "--objective", "clm"]
    assert "--streaming" in figures["commands"][-1]


def test_the_readmes_streaming_figures_are_the_measured_ones():
    recorded = json.loads((BENCHMARKS / "results" / "quality.json").read_text())["streaming"]
    readme = (BENCHMARKS.parent / "README.md").read_text(encoding="utf-8")
    streamed, in_memory = recorded["streaming"], recorded["in_memory"]
    assert (f"validation loss **{streamed['validation_loss']:.3f}** streamed, {in_memory['validation_loss']:.3f} in "
            f"memory (nats/char; {streamed['minutes']} and {in_memory['minutes']} minutes)") in readme
    assert f"first 90% as {recorded['shards']} .txt shards" in readme
