"""
Defaults that work: the first calls a new user makes, with no argument beyond the model folder, on models the
`vaswani` commands write (tiny ones, one training step each): `pipeline("text-generation")("ROMEO:")`, `fill-mask`,
`text-classification` and `vaswani-text2text`, run in a fresh process as a user runs them. Also: the generation
length a saved folder carries and where generate() stops a default length, the advice when a length runs past
learned positions, no warning about `clean_up_tokenization_spaces`, and `--max-train-samples` /
`--max-eval-samples`.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging as hf_logging

import vaswani
from test_cli import TINY, cli, ok
from vaswani.cli import DEFAULT_NEW_TOKENS, build_parser
from vaswani.training.data import BIBLE, ROTTEN_TOMATOES, SHAKESPEARE


PROMPT = "ROMEO:"
MASKED = "the movie was [MASK] ."
REVIEW = "a gorgeous , witty film ."
SOURCE = "In the beginning God created the heaven and the earth."
CLEAN_UP_WARNING = "Ignoring clean_up_tokenization_spaces"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import pandas as pd

    folder = tmp_path_factory.mktemp("defaults-data")
    with open(SHAKESPEARE, encoding="utf-8") as handle:
        (folder / "shakespeare.txt").write_text("".join(line for _, line in zip(range(300), handle)), encoding="utf-8")
    reviews = pd.read_csv(ROTTEN_TOMATOES, keep_default_na=False)
    reviews = pd.concat([reviews[reviews.split == "train"].head(40), reviews[reviews.split == "test"].head(20)])
    reviews.to_csv(folder / "reviews.csv", index=False)
    bible = pd.read_csv(BIBLE, sep="\t", keep_default_na=False)
    bible = pd.concat([bible[bible.split == "train"].head(40), bible[bible.split == "validation"].head(4)])
    bible.to_csv(folder / "bible.tsv", sep="\t", index=False)
    return SimpleNamespace(folder=folder, shakespeare=folder / "shakespeare.txt", reviews=folder / "reviews.csv",
                           bible=folder / "bible.tsv")


@pytest.fixture(scope="module")
def models(data, tmp_path_factory):
    """Folders as the commands write them: name -> path. `clm` is `vaswani pretrain --objective clm` with defaults."""
    root = tmp_path_factory.mktemp("defaults-models")
    tok = {kind: root / f"tok-{kind}" for kind in ("char", "wordpiece", "shared-bpe")}
    ok("train-tokenizer", "--kind", "char", "--data", data.shakespeare, "--output", tok["char"])
    ok("train-tokenizer", "--kind", "wordpiece", "--data", data.reviews, "--columns", "text", "--vocab-size", "300",
       "--output", tok["wordpiece"])
    ok("train-tokenizer", "--kind", "shared-bpe", "--data", data.bible, "--columns", "en", "es", "--vocab-size",
       "300", "--output", tok["shared-bpe"])
    folders = {name: root / name for name in ("clm", "clm-learned", "mlm", "classifier", "seq2seq")}
    one_step = ("--steps", "1", "--quiet")
    ok("pretrain", "--objective", "clm", "--tokenizer", tok["char"], "--data", data.shakespeare, *one_step,
       "--output", folders["clm"])
    ok("pretrain", "--objective", "clm", "--tokenizer", tok["char"], "--data", data.shakespeare, "--block-size", "32",
       "--positions", "learned", *TINY, *one_step, "--output", folders["clm-learned"])
    ok("pretrain", "--objective", "mlm", "--tokenizer", tok["wordpiece"], "--data", data.reviews, "--max-length", "32",
       "--positions", "learned", *TINY, *one_step, "--output", folders["mlm"])
    ok("finetune", "--task", "sequence-classification", "--model", folders["mlm"], "--data", data.reviews,
       *one_step, "--output", folders["classifier"])
    ok("pretrain", "--objective", "seq2seq", "--tokenizer", tok["shared-bpe"], "--data", data.bible, "--max-length",
       "32", "--positions", "learned", *TINY, *one_step, "--max-new-tokens", "4", "--output", folders["seq2seq"])
    return folders


# -- The first calls, in a fresh process ------------------------------------------------------------------------------
FIRST_CALLS = textwrap.dedent(
    """
    import json, sys
    import vaswani
    from transformers import pipeline

    calls = json.loads(sys.argv[1])
    print("RESULTS " + json.dumps([pipeline(task, model=folder)(text) for task, folder, text in calls]))
    """
)


def first_calls(calls: list[tuple[str, Path, str]], tmp_path) -> tuple[list, str]:
    """
    `pipeline(task, model=folder)(text)` for each call, in a new interpreter that imports the package from this
    checkout first, with nothing cached: the results, and what it wrote to stderr.
    """
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_MODULES_CACHE=str(tmp_path / "modules"), PYTHONPATH=str(Path(vaswani.__file__).parents[1]))
    argument = json.dumps([[task, str(folder), text] for task, folder, text in calls])
    done = subprocess.run([sys.executable, "-c", FIRST_CALLS, argument], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULTS "))
    return json.loads(line[len("RESULTS "):]), done.stderr


def check_generated_text(result, prompt: str = PROMPT):
    assert isinstance(result, list) and len(result) == 1, result
    text = result[0]["generated_text"]
    assert text.startswith(prompt) and len(text) > len(prompt), result


def test_the_first_calls_of_a_new_user_answer_with_no_other_argument(models, tmp_path):
    (clm, learned, candidates, [answer], [translation]), stderr = first_calls([
        ("text-generation", models["clm"], PROMPT), ("text-generation", models["clm-learned"], PROMPT),
        ("fill-mask", models["mlm"], MASKED), ("text-classification", models["classifier"], REVIEW),
        ("vaswani-text2text", models["seq2seq"], SOURCE),
    ], tmp_path)
    check_generated_text(clm)
    check_generated_text(learned)
    # Learned positions: the continuation stops at the last of them (a prompt of one token per character).
    positions = AutoModelForCausalLM.from_pretrained(models["clm-learned"]).config.max_position_embeddings
    assert len(learned[0]["generated_text"]) <= positions + 1
    assert len(candidates) == 5 and all("[MASK]" not in c["sequence"] and 0 <= c["score"] <= 1 for c in candidates)
    labels = json.loads((models["classifier"] / "config.json").read_text())["id2label"].values()
    assert answer["label"] in labels and 0 <= answer["score"] <= 1
    assert isinstance(translation["generated_text"], str)
    for warning in (CLEAN_UP_WARNING, "`max_length`", "`max_new_tokens`"):
        assert warning not in stderr, stderr[-3000:]


# -- Generation lengths that fit the positions ------------------------------------------------------------------------
def test_a_saved_folder_with_learned_positions_names_lengths_that_fit(models):
    for name in ("clm-learned", "seq2seq"):
        generation = json.loads((models[name] / "generation_config.json").read_text())
        positions = json.loads((models[name] / "config.json").read_text())["max_position_embeddings"]
        assert generation["max_new_tokens"] == min(DEFAULT_NEW_TOKENS, positions) and "max_length" not in generation
        assert AutoTokenizer.from_pretrained(models[name]).model_max_length <= positions  # inputs fit too
    # Sinusoidal positions have no end: the pipelines' own default applies.
    generation = json.loads((models["clm"] / "generation_config.json").read_text())
    assert "max_new_tokens" not in generation and "max_length" not in generation


def test_a_default_length_stops_at_the_last_learned_position(models):
    model = AutoModelForCausalLM.from_pretrained(models["clm-learned"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(models["clm-learned"])
    positions = model.config.max_position_embeddings
    prompt = tokenizer("ROMEO: " * (positions // 7), return_tensors="pt")  # most of the positions
    room = positions + 1 - prompt["input_ids"].shape[1]
    assert 0 < room < model.generation_config.max_new_tokens
    out = model.generate(**prompt, eos_token_id=None, do_sample=False)
    assert out.shape[1] == positions + 1  # every position read, none beyond
    with pytest.raises(ValueError, match=rf"ask for at most {room} new tokens \(`max_new_tokens={room}`\)"):
        model.generate(**prompt, max_new_tokens=room + 1)  # a length asked for is never cut short: refused


def test_the_advice_for_the_pipelines_default_length_is_fewer_new_tokens(models):
    """A folder without a saved length (an older one, or a user's) gets the pipeline's 256 new tokens: the refusal
    says how many fit, and does not ask to shorten a 6-character prompt."""
    model = AutoModelForCausalLM.from_pretrained(models["clm-learned"])
    tokenizer = AutoTokenizer.from_pretrained(models["clm-learned"])
    model.generation_config.max_new_tokens = None
    room = model.config.max_position_embeddings + 1 - len(tokenizer(PROMPT)["input_ids"])
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match=rf"ask for at most {room} new tokens") as refusal:
        generator(PROMPT)
    assert "shorten" not in str(refusal.value)


# -- No warning about clean_up_tokenization_spaces --------------------------------------------------------------------
def test_text2text_does_not_warn_about_clean_up_tokenization_spaces(models):
    translator = pipeline("vaswani-text2text", model=models["seq2seq"])
    logger = hf_logging.get_logger("transformers.tokenization_utils_tokenizers")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    try:
        type(logger).warning_once.cache_clear()  # said once per process: forget earlier tests' calls
        with CaptureLogger(logger) as captured:
            translator(SOURCE)
        assert CLEAN_UP_WARNING not in captured.out, captured.out
        with CaptureLogger(logger) as control:  # the capture sees the warning where it is due
            translator.tokenizer.decode([5, 6], clean_up_tokenization_spaces=True)
        assert CLEAN_UP_WARNING in control.out
    finally:
        type(logger).warning_once.cache_clear()
        hf_logging.set_verbosity(verbosity)


# -- The first N rows -------------------------------------------------------------------------------------------------
def card_training_data(folder: Path) -> str:
    return json.loads((folder / "config.json").read_text())["model_card_data"]["training_data"]


def test_max_train_and_eval_samples_take_the_first_rows(models, data, tmp_path):
    run = ok("finetune", "--task", "sequence-classification", "--model", models["mlm"], "--data", data.reviews,
             "--eval-split", "test", "--max-train-samples", "7", "--max-eval-samples", "5", "--steps", "1", "--quiet",
             "--output", tmp_path / "seven")
    assert "on 7 examples, 5 evaluation examples." in run.out, run.out
    assert card_training_data(tmp_path / "seven").endswith("the first 7 rows of split 'train'.")
    run = ok("pretrain", "--objective", "mlm", "--tokenizer", models["mlm"], "--data", data.reviews, "--max-length",
             "32", *TINY, "--eval-split", "test", "--max-train-samples", "9", "--eval-samples", "3", "--steps", "1",
             "--output", tmp_path / "nine")  # --eval-samples: the former spelling of --max-eval-samples
    assert "9 training examples, 3 evaluation examples." in run.out, run.out
    run = ok("evaluate", "--model", models["classifier"], "--task", "sequence-classification", "--data",
             data.reviews, "--max-eval-samples", "4")
    assert "(test, 4 rows)" in run.out, run.out


def test_more_samples_than_rows_uses_every_row_and_says_so(models, data, tmp_path):
    run = ok("evaluate", "--model", models["classifier"], "--task", "sequence-classification", "--data",
             data.reviews, "--max-eval-samples", "1000")
    assert "--max-eval-samples 1000: the data has 20 rows" in run.out and "(test, 20 rows)" in run.out, run.out


@pytest.mark.parametrize("command", ["pretrain", "finetune", "evaluate"])
def test_the_former_spellings_set_the_same_option(command):
    base = {
        "pretrain": ["pretrain", "--objective", "mlm", "--tokenizer", "t", "--data", "d", "--output", "o"],
        "finetune": ["finetune", "--task", "seq2seq", "--tokenizer", "t", "--data", "d", "--output", "o"],
        "evaluate": ["evaluate", "--model", "m", "--task", "seq2seq", "--data", "d"],
    }[command]
    former = "--samples" if command == "evaluate" else "--eval-samples"
    parser = build_parser()
    assert parser.parse_args([*base, former, "6"]).max_eval_samples == 6
    assert parser.parse_args([*base, "--max-eval-samples", "6"]).max_eval_samples == 6
    if command != "evaluate":
        assert parser.parse_args([*base, "--max-train-samples", "8"]).max_train_samples == 8


@pytest.mark.parametrize("value", ["0", "-2"])
@pytest.mark.parametrize("option", ["--max-train-samples", "--max-eval-samples"])
def test_no_rows_or_a_negative_count_is_refused_in_one_line(option, value, tmp_path):
    run = cli("finetune", "--task", "seq2seq", "--tokenizer", "t", "--data", "d", "--output", tmp_path / "o",
              option, value)
    assert run.code == 2 and run.out == "", run
    [line] = run.err.strip().splitlines()
    assert line.startswith("vaswani finetune: error: argument ") and option in line and repr(value) in line, line
    assert not (tmp_path / "o").exists()
