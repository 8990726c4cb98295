"""
The `vaswani` command line end to end, offline, on small slices of the shipped corpora and on synthetic data:
every subcommand writes what a user expects (Hub-ready folders, printed and recorded metrics), the printed metrics
are what an independent computation gives, bad input is one clear line with exit code 2 and leaves nothing behind,
and training learns.

Models are tiny (width 32, two layers) and trained for a few steps; the expensive runs are module-scoped fixtures
that several tests read.
"""

import contextlib
import copy
import inspect
import io
import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import sacrebleu
import torch
from huggingface_hub import HfApi, ModelCard
from safetensors.torch import load_file
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForPreTraining,
    AutoModelForQuestionAnswering,
    AutoModelForSeq2SeqLM,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
)

import vaswani  # noqa: F401  (registers the family with the Auto classes)
from vaswani.cli import DEFAULT_PRESET, _label_smoothing, _new_config, build_parser, cmd_evaluate, main
from vaswani.configuration.configuration_vaswani import (
    ACTIVATIONS,
    ATTENTION_SCORES,
    POSITION_EMBEDDING_TYPES,
    PRESETS,
)
from vaswani.training.data import BIBLE, ROTTEN_TOMATOES, SHAKESPEARE
from vaswani.training.recipe import LABEL_SMOOTHING
from vaswani.training.task_table import TASKS, pretraining_task


SCRIPT = Path(sys.executable).parent / "vaswani"  # the console script of this environment
TINY = ["--d-model", "32", "--num-heads", "4", "--layers", "2", "--quiet"]


def tiny(argv) -> list[str]:
    """TINY for a new model; a run from a saved --model keeps that model's shape (architecture options are refused)."""
    return ["--quiet"] if "--model" in argv else TINY
HUB_FILES = {"model.safetensors", "config.json", "README.md", "tokenizer.json", "tokenizer_config.json"}


# -- Running the command line ------------------------------------------------------------------------------------------
def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def summary(stdout: str) -> dict:
    """The `name: value` lines of the last `== title` block a command printed (the model folder line excluded)."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("== ")]
    if not starts:
        return {}
    metrics = {}
    for line in lines[starts[-1] + 1 :]:
        if not line.startswith("   ") or ": " not in line:
            break
        name, value = line.strip().split(": ", 1)
        if name == "model folder":
            break
        metrics[name] = _value(value.strip())
    return metrics


def cli(*argv) -> SimpleNamespace:
    """Run `vaswani ARGV` in this process: its exit code, stdout, stderr and printed metrics."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue(), metrics=summary(out.getvalue()))


def ok(*argv) -> SimpleNamespace:
    run = cli(*argv)
    assert run.code == 0, f"vaswani {' '.join(map(str, argv))} failed:\n{run.err[-3000:]}"
    return run


def script(*argv) -> subprocess.Popen:
    """Start the real console script (exit codes and stderr as a user sees them)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [str(SCRIPT), *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def finished(process: subprocess.Popen) -> SimpleNamespace:
    out, err = process.communicate(timeout=300)
    return SimpleNamespace(code=process.returncode, out=out, err=err, metrics=summary(out))


def card_results(folder: Path) -> dict:
    """metric -> value of the model card's model-index (README.md front matter)."""
    card = ModelCard.load(folder / "README.md")
    return {result.metric_type: result.metric_value for result in card.data.eval_results or []}


def recorded_results(folder: Path) -> dict:
    """metric -> value of config.json's model_card_data results."""
    config = json.loads((folder / "config.json").read_text())
    return {r["metric"]: r["value"] for r in config["model_card_data"]["results"]}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Width-32 models gain nothing from threads, and on a busy 2-core machine OpenMP threads wait on each other
    (a training step takes 100x longer): one thread while this module runs, then the previous setting again."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- Data: small slices of the shipped corpora, and synthetic task data ------------------------------------------------
def _write_jsonl(path: Path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _tagging_rows(rng, n, split):
    animals, colours = ["cat", "dog", "horse", "bird", "fish"], ["red", "blue", "green", "black", "white"]
    filler = ["the", "a", "saw", "near", "big", "small", "was", "and", "my", "old"]
    rows = []
    for _ in range(n):
        tokens, tags = [], []
        for _ in range(rng.randint(4, 9)):
            draw = rng.random()
            if draw < 0.25:
                tokens.append(rng.choice(animals)), tags.append("ANIMAL")
            elif draw < 0.45:
                tokens.append(rng.choice(colours)), tags.append("COLOR")
            else:
                tokens.append(rng.choice(filler)), tags.append("O")
        rows.append({"tokens": tokens, "tags": tags, "split": split})
    return rows


def _qa_rows(rng, n, split):
    animals, colours = ["cat", "dog", "horse", "bird", "fish"], ["red", "blue", "green", "black", "white"]
    rows = []
    for _ in range(n):
        first, second = rng.sample(animals, 2)
        c1, c2 = rng.choice(colours), rng.choice(colours)
        context = f"The {first} is {c1}. The {second} is {c2}."
        start = context.rindex(c2)
        assert context[start : start + len(c2)] == c2
        rows.append({"question": f"What color is the {second}?", "context": context,
                     "answers": {"text": [c2], "answer_start": [start]}, "split": split})
    return rows


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def data(work):
    import pandas as pd

    folder = work / "data"
    folder.mkdir()
    with open(SHAKESPEARE, encoding="utf-8") as handle:
        shakespeare = "".join(line for _, line in zip(range(300), handle))
    (folder / "shakespeare.txt").write_text(shakespeare, encoding="utf-8")
    # The tail of the same play: held-out text for `evaluate --task clm`.
    with open(SHAKESPEARE, encoding="utf-8") as handle:
        heldout = "".join(line for i, line in zip(range(400), handle) if i >= 300)
    (folder / "heldout.txt").write_text(heldout, encoding="utf-8")

    bible = pd.read_csv(BIBLE, sep="\t", keep_default_na=False)
    bible = pd.concat([bible[bible.split == "train"].head(160), bible[bible.split == "validation"].head(20),
                       bible[bible.split == "test"].head(20)])
    bible.to_csv(folder / "bible.tsv", sep="\t", index=False)

    reviews = pd.read_csv(ROTTEN_TOMATOES, keep_default_na=False)
    reviews = pd.concat([reviews[reviews.split == "train"].head(240), reviews[reviews.split == "test"].head(60)])
    reviews.to_csv(folder / "reviews.csv", index=False)
    named = reviews.assign(label=reviews.label.map({0: "negative", 1: "positive"}))
    named.to_csv(folder / "reviews-named.csv", index=False)
    # Only the positive test reviews: a data set that holds one of the model's two labels.
    named[(named.split == "test") & (named.label == "positive")].to_csv(folder / "positive.csv", index=False)

    rng = random.Random(0)
    _write_jsonl(folder / "tags.jsonl", _tagging_rows(rng, 120, "train") + _tagging_rows(rng, 30, "validation"))
    _write_jsonl(folder / "qa.jsonl", _qa_rows(rng, 120, "train") + _qa_rows(rng, 20, "validation"))
    return SimpleNamespace(
        folder=folder, shakespeare=folder / "shakespeare.txt", heldout=folder / "heldout.txt",
        bible=folder / "bible.tsv", reviews=folder / "reviews.csv", named=folder / "reviews-named.csv",
        positive=folder / "positive.csv", tags=folder / "tags.jsonl", qa=folder / "qa.jsonl",
    )


# -- Tokenizers and models, trained once -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizers(work, data):
    """kind -> (folder, run) for each --kind, from a .txt file or from a table's --columns."""
    out = work / "tokenizers"
    runs = {
        "char": ("--data", data.shakespeare, "--kind", "char"),
        "byte-bpe": ("--data", data.shakespeare, "--kind", "byte-bpe", "--vocab-size", "300"),
        "shared-bpe": ("--data", data.bible, "--kind", "shared-bpe", "--columns", "en", "es", "--split", "train",
                       "--vocab-size", "400"),
        "wordpiece": ("--data", data.reviews, "--kind", "wordpiece", "--columns", "text", "--vocab-size", "400"),
    }
    return {kind: (out / kind, ok("train-tokenizer", *argv, "--output", out / kind)) for kind, argv in runs.items()}


def _train(work, name, *argv):
    folder = work / "models" / name
    run = ok(*argv, "--output", folder, *tiny(argv))
    return SimpleNamespace(folder=folder, run=run, metrics=run.metrics)


@pytest.fixture(scope="module")
def clm(work, data, tokenizers):
    return _train(work, "clm", "pretrain", "--objective", "clm", "--tokenizer", tokenizers["char"][0],
                  "--data", data.shakespeare, "--validation-fraction", "0.2", "--block-size", "32", "--steps", "10")


@pytest.fixture(scope="module")
def mlm(work, data, tokenizers):
    return _train(work, "mlm", "pretrain", "--objective", "mlm", "--tokenizer", tokenizers["wordpiece"][0],
                  "--data", data.reviews, "--eval-split", "test", "--max-length", "64", "--steps", "8")


@pytest.fixture(scope="module")
def nsp(work, data, tokenizers):
    return _train(work, "nsp", "pretrain", "--objective", "mlm", "--nsp", "--tokenizer", tokenizers["wordpiece"][0],
                  "--data", data.reviews, "--eval-split", "test", "--max-length", "64", "--steps", "5")


@pytest.fixture(scope="module")
def seq2seq(work, data, tokenizers):
    return _train(work, "seq2seq", "pretrain", "--objective", "seq2seq", "--tokenizer", tokenizers["shared-bpe"][0],
                  "--data", data.bible, "--max-length", "48", "--paper-recipe", "--steps", "6", "--save-steps", "2",
                  "--average-last", "2", "--max-new-tokens", "8")


@pytest.fixture(scope="module")
def paper_clm(work, data, tokenizers):
    """The clm run of `clm` under the paper's recipe: its training steps are label-smoothed."""
    return _train(work, "paper-clm", "pretrain", "--objective", "clm", "--tokenizer", tokenizers["char"][0],
                  "--data", data.shakespeare, "--validation-fraction", "0.2", "--block-size", "32", "--steps", "10",
                  "--paper-recipe")


@pytest.fixture(scope="module")
def classifier(work, data, mlm):
    """Sentiment from the pre-trained MLM, integer labels 0/1."""
    return _train(work, "classifier", "finetune", "--task", "sequence-classification", "--model", mlm.folder,
                  "--data", data.reviews, "--eval-split", "test", "--max-length", "64", "--steps", "80", "--lr", "5e-3")


@pytest.fixture(scope="module")
def named_classifier(work, data, mlm):
    """Sentiment from the pre-trained MLM, string labels negative/positive."""
    return _train(work, "named-classifier", "finetune", "--task", "sequence-classification", "--model", mlm.folder,
                  "--data", data.named, "--eval-split", "test", "--max-length", "64", "--steps", "10", "--lr", "2e-3")


@pytest.fixture(scope="module")
def tagger(work, data, tokenizers):
    """A new token classifier (--tokenizer, no --model) on string tags."""
    return _train(work, "tagger", "finetune", "--task", "token-classification", "--tokenizer",
                  tokenizers["wordpiece"][0], "--data", data.tags, "--steps", "60", "--lr", "5e-3")


@pytest.fixture(scope="module")
def reader(work, data, mlm):
    return _train(work, "reader", "finetune", "--task", "question-answering", "--model", mlm.folder,
                  "--data", data.qa, "--max-length", "64", "--doc-stride", "16", "--steps", "10", "--lr", "2e-3")


@pytest.fixture(scope="module")
def translator(work, data, seq2seq):
    return _train(work, "translator", "finetune", "--task", "seq2seq", "--model", seq2seq.folder,
                  "--data", data.bible, "--max-length", "48", "--steps", "20", "--lr", "3e-3",
                  "--max-new-tokens", "10")


# -- train-tokenizer ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["char", "byte-bpe", "shared-bpe", "wordpiece"])
def test_train_tokenizer_saves_a_folder_autotokenizer_loads(kind, tokenizers, data):
    folder, run = tokenizers[kind]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert run.metrics == {"kind": kind, "vocabulary": len(tokenizer)}
    assert (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()
    if kind == "char":
        text = data.shakespeare.read_text(encoding="utf-8")
        assert len(tokenizer) == len(set(text)) + 4  # every character, newlines included, and 4 special tokens
        sample = text[:200]
        ids = tokenizer(sample)["input_ids"]
        assert len(ids) == len(sample) and tokenizer.decode(ids) == sample
    else:
        assert 100 < len(tokenizer) <= {"byte-bpe": 300}.get(kind, 400)
    if kind == "wordpiece":
        assert tokenizer.mask_token == "[MASK]" and tokenizer.cls_token == "[CLS]"
        assert tokenizer.decode(tokenizer("the film")["input_ids"], skip_special_tokens=True) == "the film"
    if kind == "shared-bpe":  # learned from both columns: English and Spanish words round-trip
        for text in ("the earth", "la tierra"):
            ids = tokenizer(text)["input_ids"]
            assert ids[-1] == tokenizer.eos_token_id
            assert tokenizer.decode(ids, skip_special_tokens=True) == text
    if kind == "byte-bpe":
        assert tokenizer.unk_token is None
        assert tokenizer.decode(tokenizer("Citizen: ¿ü?")["input_ids"], skip_special_tokens=True) == "Citizen: ¿ü?"


# -- pretrain ----------------------------------------------------------------------------------------------------------
def test_pretrain_clm_prints_and_records_loss_and_perplexity(clm):
    metrics = clm.metrics
    assert set(metrics) == {"loss", "perplexity"}
    assert 0 < metrics["loss"] < 2 * math.log(64)
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]), rel=1e-3)
    assert recorded_results(clm.folder) == metrics
    assert card_results(clm.folder) == metrics
    config = json.loads((clm.folder / "config.json").read_text())
    assert config["architectures"] == ["VaswaniForCausalLM"]
    assert config["model_card_data"]["results"][0]["split"] == "validation"


def test_pretrain_clm_holds_out_the_validation_fraction(clm, data):
    """--validation-fraction 0.2: the printed loss is the model's loss on the last 20% of the text."""
    text = data.shakespeare.read_text(encoding="utf-8")
    tail = data.folder / "tail.txt"
    tail.write_text(text[int(len(text) * 0.8) :], encoding="utf-8")
    run = ok("evaluate", "--model", clm.folder, "--task", "clm", "--data", tail, "--block-size", "32")
    assert run.metrics["loss"] == pytest.approx(clm.metrics["loss"], abs=2e-4)


def test_pretrain_mlm_prints_and_records_loss_and_perplexity(mlm):
    assert set(mlm.metrics) == {"loss", "perplexity"}
    assert mlm.metrics["perplexity"] == pytest.approx(math.exp(mlm.metrics["loss"]), rel=1e-3)
    assert recorded_results(mlm.folder) == card_results(mlm.folder) == mlm.metrics
    assert json.loads((mlm.folder / "config.json").read_text())["architectures"] == ["VaswaniForMaskedLM"]


def test_pretrain_mlm_nsp_saves_a_pretraining_model(nsp):
    config = json.loads((nsp.folder / "config.json").read_text())
    assert config["architectures"] == ["VaswaniForPreTraining"]
    model = AutoModelForPreTraining.from_pretrained(nsp.folder)
    assert type(model).__name__ == "VaswaniForPreTraining"
    assert nsp.metrics and all(isinstance(v, float) and v > 0 for v in nsp.metrics.values())
    assert recorded_results(nsp.folder) == card_results(nsp.folder) == nsp.metrics


def test_pretrain_seq2seq_with_the_paper_recipe(seq2seq):
    metrics = seq2seq.metrics
    assert {"loss", "bleu", "chrf"} <= set(metrics)
    assert 0 <= metrics["bleu"] <= 100 and 0 <= metrics["chrf"] <= 100
    assert recorded_results(seq2seq.folder) == card_results(seq2seq.folder) == metrics
    model = AutoModelForSeq2SeqLM.from_pretrained(seq2seq.folder)
    assert type(model).__name__ == "VaswaniForConditionalGeneration"
    # The paper's epsilon_ls was a setting of the training steps: the card says so, the saved config carries none.
    assert "label_smoothing" not in json.loads((seq2seq.folder / "config.json").read_text())
    procedure = model.config.model_card_data["training_procedure"]
    assert "paper's recipe" in procedure and f"label smoothing {LABEL_SMOOTHING}" in procedure
    assert "source:" in seq2seq.run.out and "reference:" in seq2seq.run.out  # examples of translations


def test_pretrain_seq2seq_ends_on_the_average_of_the_last_checkpoints(seq2seq):
    """--save-steps 2 --average-last 2 over 6 steps: the saved weights are the mean of checkpoints 4 and 6."""
    checkpoints = Path(str(seq2seq.folder) + ".checkpoints")
    last = [checkpoints / "checkpoint-4", checkpoints / "checkpoint-6"]
    assert all((c / "model.safetensors").is_file() for c in last), sorted(p.name for p in checkpoints.iterdir())
    states = [load_file(str(c / "model.safetensors")) for c in last]
    saved = load_file(str(seq2seq.folder / "model.safetensors"))
    assert set(saved) == set(states[0])
    differs = 0
    for name, tensor in saved.items():
        torch.testing.assert_close(tensor, (states[0][name] + states[1][name]) / 2, rtol=1e-5, atol=1e-6)
        differs += not torch.equal(states[0][name], states[1][name])
    assert differs > 0  # the two checkpoints differ, so the average is not either of them


# -- finetune ----------------------------------------------------------------------------------------------------------
def test_finetune_sequence_classification_from_a_pretrained_mlm(classifier, mlm):
    metrics = classifier.metrics
    assert set(metrics) == {"loss", "accuracy", "f1"}
    assert 0 <= metrics["accuracy"] <= 1 and 0 <= metrics["f1"] <= 1
    model = AutoModelForSequenceClassification.from_pretrained(classifier.folder)
    assert model.config.id2label == {0: "0", 1: "1"}
    # Started from the MLM: its encoder weights, moved by fine-tuning but still aligned with them (a fresh
    # initialisation would be orthogonal to them, cosine ~0.01); its LM head dropped, a classifier head added.
    pretrained = load_file(str(mlm.folder / "model.safetensors"))
    tuned = load_file(str(classifier.folder / "model.safetensors"))
    assert not any(k.startswith("lm_head") for k in tuned) and any(k.startswith("classifier") for k in tuned)
    matrices = [k for k in tuned if k in pretrained and tuned[k].dim() == 2 and tuned[k].numel() >= 1024]
    assert len(matrices) >= 10
    for key in matrices:
        cosine = torch.nn.functional.cosine_similarity(tuned[key].flatten(), pretrained[key].flatten(), dim=0)
        assert cosine > 0.2, (key, float(cosine))
    procedure = AutoConfig.from_pretrained(classifier.folder).model_card_data["training_procedure"]
    assert "pretrain mlm" in procedure and "finetune sequence-classification" in procedure


def test_finetune_sequence_classification_with_string_labels(named_classifier):
    config = AutoConfig.from_pretrained(named_classifier.folder)
    assert config.id2label == {0: "negative", 1: "positive"}
    assert config.label2id == {"negative": 0, "positive": 1}
    assert {"accuracy", "f1"} <= set(named_classifier.metrics)


def test_finetune_sequence_classification_accuracy_is_the_saved_models(classifier, data):
    """The printed accuracy and F1 are what the saved model scores on the test rows, recomputed here."""
    import pandas as pd

    rows = pd.read_csv(data.reviews, keep_default_na=False)
    rows = rows[rows.split == "test"]
    tokenizer = AutoTokenizer.from_pretrained(classifier.folder)
    model = AutoModelForSequenceClassification.from_pretrained(classifier.folder).eval()
    predictions = []
    with torch.no_grad():
        for text in rows.text:
            inputs = tokenizer(text, truncation=True, max_length=64, return_tensors="pt")
            predictions.append(int(model(**inputs).logits.argmax(-1)))
    labels = rows.label.tolist()
    assert set(predictions) == {0, 1}, "a classifier that predicts one class makes this comparison weak"
    accuracy = sum(p == y for p, y in zip(predictions, labels)) / len(labels)
    true_positive = sum(p == y == 1 for p, y in zip(predictions, labels))
    f1 = 2 * true_positive / (predictions.count(1) + labels.count(1))
    assert classifier.metrics["accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert classifier.metrics["f1"] == pytest.approx(f1, abs=1e-4)


def test_finetune_token_classification_names_the_tags(tagger):
    config = AutoConfig.from_pretrained(tagger.folder)
    assert config.id2label == {0: "ANIMAL", 1: "COLOR", 2: "O"}
    assert config.label2id == {"ANIMAL": 0, "COLOR": 1, "O": 2}
    assert config.architectures == ["VaswaniForTokenClassification"]
    assert set(tagger.metrics) == {"loss", "accuracy", "f1"}
    assert recorded_results(tagger.folder) == card_results(tagger.folder) == tagger.metrics


def test_finetune_token_classification_scores_are_the_saved_models(tagger, data):
    """Accuracy and macro F1 over words (each word's first sub-word), recomputed from the saved model's tags."""
    rows = [json.loads(line) for line in data.tags.read_text().splitlines()]
    rows = [row for row in rows if row["split"] == "validation"]
    tokenizer = AutoTokenizer.from_pretrained(tagger.folder)
    model = AutoModelForTokenClassification.from_pretrained(tagger.folder).eval()
    predicted, gold = [], []
    with torch.no_grad():
        for row in rows:
            encoded = tokenizer(row["tokens"], is_split_into_words=True, truncation=True, max_length=128,
                                return_tensors="pt")
            tags = model(**encoded).logits[0].argmax(-1).tolist()
            seen = set()
            for position, word in enumerate(encoded.word_ids(0)):
                if word is not None and word not in seen:
                    seen.add(word)
                    predicted.append(model.config.id2label[tags[position]])
                    gold.append(row["tags"][word])
    assert len(gold) == sum(len(row["tokens"]) for row in rows)
    assert len(set(predicted)) > 1, "a tagger that predicts one tag makes this comparison weak"
    accuracy = sum(p == g for p, g in zip(predicted, gold)) / len(gold)
    f1s = []
    for tag in sorted(set(predicted) | set(gold)):
        tp = sum(p == g == tag for p, g in zip(predicted, gold))
        f1s.append(2 * tp / (predicted.count(tag) + gold.count(tag)))
    assert tagger.metrics["accuracy"] == pytest.approx(accuracy, abs=1e-4)
    assert tagger.metrics["f1"] == pytest.approx(sum(f1s) / len(f1s), abs=1e-4)


def test_finetune_question_answering(reader):
    assert set(reader.metrics) == {"loss", "exact_match", "f1"}
    assert 0 <= reader.metrics["exact_match"] <= reader.metrics["f1"] <= 100
    model = AutoModelForQuestionAnswering.from_pretrained(reader.folder)
    assert type(model).__name__ == "VaswaniForQuestionAnswering"
    assert recorded_results(reader.folder) == card_results(reader.folder) == reader.metrics


def test_finetune_seq2seq_from_the_pretrained_translator(translator, seq2seq):
    assert set(translator.metrics) == {"loss", "bleu", "chrf"}
    # Fine-tuning went on from the pre-trained model: a lower held-out loss than where it started.
    assert translator.metrics["loss"] < seq2seq.metrics["loss"]
    assert AutoConfig.from_pretrained(translator.folder).architectures == ["VaswaniForConditionalGeneration"]
    procedure = AutoConfig.from_pretrained(translator.folder).model_card_data["training_procedure"]
    assert "pretrain seq2seq" in procedure and "finetune seq2seq" in procedure  # the card keeps the history


# -- Hub-ready output folders ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, auto, head",
    [
        ("clm", AutoModelForCausalLM, "VaswaniForCausalLM"),
        ("mlm", AutoModelForMaskedLM, "VaswaniForMaskedLM"),
        ("nsp", AutoModelForPreTraining, "VaswaniForPreTraining"),
        ("seq2seq", AutoModelForSeq2SeqLM, "VaswaniForConditionalGeneration"),
        ("classifier", AutoModelForSequenceClassification, "VaswaniForSequenceClassification"),
        ("tagger", AutoModelForTokenClassification, "VaswaniForTokenClassification"),
        ("reader", AutoModelForQuestionAnswering, "VaswaniForQuestionAnswering"),
        ("translator", AutoModelForSeq2SeqLM, "VaswaniForConditionalGeneration"),
    ],
)
def test_output_folder_is_hub_ready(name, auto, head, request):
    trained = request.getfixturevalue(name)
    folder = trained.folder
    files = {p.name for p in folder.iterdir()}
    assert HUB_FILES <= files, files
    assert not any(n.startswith(".") or "partial" in n for n in os.listdir(folder.parent))
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoConfig"] == "configuration_vaswani.VaswaniConfig"
    assert config["auto_map"][auto.__name__].endswith("." + head)
    for module in {v.split(".")[0] for v in config["auto_map"].values()}:
        assert f"{module}.py" in files  # the remote code the auto_map names travels with the folder
    model = auto.from_pretrained(folder)
    assert type(model).__name__ == head
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert len(tokenizer) == model.config.vocab_size
    assert tokenizer.pad_token_id == model.config.pad_token_id
    # The model card carries the metrics the run printed.
    assert trained.metrics
    assert card_results(folder) == trained.metrics
    card = (folder / "README.md").read_text()
    for metric, value in trained.metrics.items():
        assert f"| {metric} | {value} |" in card


# -- evaluate ----------------------------------------------------------------------------------------------------------
def test_evaluate_clm_loss_is_the_models_cross_entropy(clm, data):
    before = sorted(os.listdir(clm.folder.parent))
    run = ok("evaluate", "--model", clm.folder, "--task", "clm", "--data", data.heldout, "--block-size", "32")
    assert set(run.metrics) == {"loss", "perplexity"}
    assert sorted(os.listdir(clm.folder.parent)) == before  # evaluating writes nothing next to the model
    # Recompute: blocks of 33 characters, 32 next-character predictions each, mean cross-entropy over all of them.
    tokenizer = AutoTokenizer.from_pretrained(clm.folder)
    model = AutoModelForCausalLM.from_pretrained(clm.folder).eval()
    ids = tokenizer(data.heldout.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    blocks = torch.tensor([ids[i : i + 33] for i in range(0, len(ids) - 32, 33)])
    with torch.no_grad():
        logits = model(input_ids=blocks).logits
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), blocks[:, 1:].reshape(-1))
    assert run.metrics["loss"] == pytest.approx(loss.item(), abs=2e-4)
    assert run.metrics["perplexity"] == pytest.approx(math.exp(loss.item()), rel=1e-3)


def test_evaluate_sequence_classification_writes_the_printed_metrics_as_json(classifier, data, tmp_path):
    target = tmp_path / "metrics.json"
    run = ok("evaluate", "--model", classifier.folder, "--task", "sequence-classification", "--data", data.reviews,
             "--split", "test", "--max-length", "64", "--json", target)
    assert json.loads(target.read_text()) == run.metrics
    assert set(run.metrics) == {"accuracy", "f1"}
    # The same model on the same rows as finetune's evaluation: the same scores.
    assert run.metrics == {k: classifier.metrics[k] for k in ("accuracy", "f1")}


def test_evaluate_sequence_classification_on_rows_with_one_of_the_labels(named_classifier, data):
    """Data holding only 'positive' reviews is scored against the model's own label ids, not renumbered."""
    import pandas as pd

    run = ok("evaluate", "--model", named_classifier.folder, "--task", "sequence-classification",
             "--data", data.positive, "--split", "test", "--max-length", "64")
    rows = pd.read_csv(data.positive, keep_default_na=False)
    tokenizer = AutoTokenizer.from_pretrained(named_classifier.folder)
    model = AutoModelForSequenceClassification.from_pretrained(named_classifier.folder).eval()
    with torch.no_grad():
        predicted = [model.config.id2label[int(model(**tokenizer(t, truncation=True, max_length=64,
                                                                  return_tensors="pt")).logits.argmax(-1))]
                     for t in rows.text]
    accuracy = sum(p == "positive" for p in predicted) / len(predicted)
    assert run.metrics["accuracy"] == pytest.approx(accuracy, abs=1e-4)


def test_evaluate_seq2seq_bleu_is_sacrebleu_of_the_models_translations(translator, data):
    import pandas as pd

    run = ok("evaluate", "--model", translator.folder, "--task", "seq2seq", "--data", data.bible,
             "--split", "validation", "--max-length", "48", "--max-new-tokens", "10", "--num-beams", "2")
    assert set(run.metrics) == {"bleu", "chrf"}
    rows = pd.read_csv(data.bible, sep="\t", keep_default_na=False)
    rows = rows[rows.split == "validation"]
    tokenizer = AutoTokenizer.from_pretrained(translator.folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(translator.folder).eval()
    inputs = tokenizer(rows.en.tolist(), return_tensors="pt", padding=True, truncation=True, max_length=48)
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=10, num_beams=2)
    predictions = tokenizer.batch_decode(generated, skip_special_tokens=True)
    assert any(p.strip() for p in predictions), "the fine-tuned translator writes nothing"
    references = [rows.es.tolist()]
    assert run.metrics["bleu"] == pytest.approx(round(sacrebleu.corpus_bleu(predictions, references).score, 2))
    assert run.metrics["chrf"] == pytest.approx(round(sacrebleu.corpus_chrf(predictions, references).score, 2))
    assert run.metrics["chrf"] > 0


def test_evaluate_question_answering_matches_finetune(reader, data):
    run = ok("evaluate", "--model", reader.folder, "--task", "question-answering", "--data", data.qa,
             "--split", "validation", "--max-length", "64", "--doc-stride", "16")
    assert run.metrics == {k: reader.metrics[k] for k in ("exact_match", "f1")}


def test_evaluate_leaves_its_arguments_and_the_model_folder_unchanged(classifier, data, tmp_path):
    model = tmp_path / "classifier"
    shutil.copytree(classifier.folder, model)
    args = build_parser().parse_args(["evaluate", "--model", str(model), "--task", "sequence-classification",
                                      "--data", str(data.reviews), "--split", "test", "--max-length", "64"])
    before = copy.deepcopy(vars(args))
    with contextlib.redirect_stdout(io.StringIO()):
        metrics = cmd_evaluate(args)
    assert metrics == {k: classifier.metrics[k] for k in ("accuracy", "f1")}
    assert vars(args) == before
    assert os.listdir(tmp_path) == ["classifier"]  # nothing written beside the model (Trainer's output_dir)


# -- Label smoothing: a setting of the training steps ------------------------------------------------------------------
def _block_losses(model, tokenizer, text: str, block_size: int) -> tuple[float, float]:
    """The mean next-token cross-entropy of the text's blocks, plain and label-smoothed by the paper's epsilon_ls."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    span = block_size + 1
    blocks = torch.tensor([ids[i : i + span] for i in range(0, len(ids) - span + 1, span)])
    with torch.no_grad():
        logits = model.eval()(input_ids=blocks).logits
    logits, targets = logits[:, :-1].reshape(-1, logits.shape[-1]), blocks[:, 1:].reshape(-1)
    plain = torch.nn.functional.cross_entropy(logits, targets).item()
    smoothed = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=LABEL_SMOOTHING).item()
    return plain, smoothed


def test_a_paper_recipe_model_is_evaluated_without_smoothing(paper_clm, data):
    """pretrain and evaluate both report the plain cross-entropy of a model trained with label smoothing."""
    config = json.loads((paper_clm.folder / "config.json").read_text())
    assert "label_smoothing" not in config
    assert f"label smoothing {LABEL_SMOOTHING}" in config["model_card_data"]["training_procedure"]
    text = data.shakespeare.read_text(encoding="utf-8")
    tail = text[int(len(text) * 0.8) :]  # the validation text pretrain held out
    model = AutoModelForCausalLM.from_pretrained(paper_clm.folder)
    plain, smoothed = _block_losses(model, AutoTokenizer.from_pretrained(paper_clm.folder), tail, 32)
    tolerance = 2e-4
    assert abs(smoothed - plain) > 100 * tolerance  # the two are told apart
    assert paper_clm.metrics["loss"] == pytest.approx(plain, abs=tolerance)
    run = ok("evaluate", "--model", paper_clm.folder, "--task", "clm", "--data", data.shakespeare,
             "--validation-fraction", "0.2", "--block-size", "32")
    assert run.metrics["loss"] == pytest.approx(plain, abs=tolerance)
    assert run.metrics["perplexity"] == pytest.approx(math.exp(plain), rel=1e-3)


def _peaked_lm():
    """A tiny causal LM with confident predictions (large initial weights), and text it predicts: its own greedy
    continuations, so that the smoothed and the plain loss differ clearly."""
    from vaswani import VaswaniConfig, VaswaniForCausalLM

    torch.manual_seed(0)
    config = VaswaniConfig(vocab_size=40, d_model=16, num_heads=2, d_ff=32, num_hidden_layers=1, dropout=0.0,
                           init_std=0.5, pad_token_id=None, bos_token_id=None, eos_token_id=None)
    model = VaswaniForCausalLM(config).eval()
    with torch.no_grad():
        ids = model.generate(input_ids=torch.arange(8)[:, None], max_new_tokens=16, do_sample=False)
        logits = model(input_ids=ids).logits
    logits, targets = logits[:, :-1].reshape(-1, config.vocab_size), ids[:, 1:].reshape(-1)
    plain = torch.nn.functional.cross_entropy(logits, targets).item()
    smoothed = torch.nn.functional.cross_entropy(logits, targets, label_smoothing=LABEL_SMOOTHING).item()
    assert smoothed - plain > 0.05, (plain, smoothed)
    return model, ids, plain, smoothed


def test_the_trainer_smooths_training_steps_only(tmp_path):
    from transformers import Trainer, TrainingArguments

    from vaswani.training.run import VaswaniTrainer, with_label_smoothing

    model, ids, plain, smoothed = _peaked_lm()
    arguments = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = VaswaniTrainer(model=model, args=arguments, label_smoothing=LABEL_SMOOTHING)
    batch = {"input_ids": ids, "labels": ids}
    assert trainer.compute_loss(model.train(), dict(batch)).item() == pytest.approx(smoothed, abs=1e-5)
    assert trainer.compute_loss(model.eval(), dict(batch)).item() == pytest.approx(plain, abs=1e-5)
    loss, _, _ = trainer.prediction_step(model, dict(batch), prediction_loss_only=True)
    assert loss.item() == pytest.approx(plain, abs=1e-5)  # the evaluation loop's step
    unsmoothed = VaswaniTrainer(model=model, args=arguments)
    assert unsmoothed.compute_loss(model.train(), dict(batch)).item() == pytest.approx(plain, abs=1e-5)
    assert with_label_smoothing(Trainer) is VaswaniTrainer


def test_a_training_run_logs_the_smoothed_loss_and_evaluates_the_plain_one(tmp_path):
    """run.train with label smoothing and a zero learning rate (the weights stay): the one training step's logged
    loss is the smoothed cross-entropy, the returned evaluation loss on the same batch is the plain one."""
    import datasets
    from transformers import default_data_collator

    from vaswani.training.run import RunSettings, train
    from vaswani.training.tasks import Prepared

    model, ids, plain, smoothed = _peaked_lm()
    blocks = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})
    settings = RunSettings(output=tmp_path / "model", steps=1, batch_size=len(blocks), learning_rate=0.0,
                           warmup_ratio=0, weight_decay=0.0, logging_steps=1, quiet=True,
                           label_smoothing=LABEL_SMOOTHING)
    trainer, eval_loss = train(model, None, Prepared(blocks, blocks, default_data_collator), settings)
    (logged,) = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert logged == pytest.approx(smoothed, abs=1e-4)
    assert eval_loss == pytest.approx(plain, abs=1e-5)


@pytest.mark.parametrize("paper_recipe, given, expected", [(True, None, LABEL_SMOOTHING), (False, None, 0.0),
                                                         (True, 0.0, 0.0)])
def test_the_api_paper_recipe_smooths_a_token_head_by_default(tmp_path, paper_recipe, given, expected):
    """`RunSettings(paper_recipe=True)` from Python (the notebooks' way) trains with the paper's epsilon_ls."""
    import datasets
    from transformers import default_data_collator

    from vaswani.training.run import RunSettings, train
    from vaswani.training.tasks import Prepared

    model, ids, plain, smoothed = _peaked_lm()
    blocks = datasets.Dataset.from_dict({"input_ids": ids.tolist(), "labels": ids.tolist()})
    settings = RunSettings(output=tmp_path / "model", steps=1, batch_size=len(blocks), quiet=True,
                           paper_recipe=paper_recipe, label_smoothing=given, lr_scale=0.0, logging_steps=1)
    trainer, _ = train(model, None, Prepared(blocks, None, default_data_collator), settings)
    assert trainer.label_smoothing == expected
    (logged,) = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert logged == pytest.approx(smoothed if expected else plain, abs=1e-4)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (("pretrain", "--objective", "clm", "--paper-recipe"), LABEL_SMOOTHING),
        (("finetune", "--task", "seq2seq", "--paper-recipe"), LABEL_SMOOTHING),
        (("pretrain", "--objective", "clm", "--paper-recipe", "--label-smoothing", "0"), 0.0),
        (("pretrain", "--objective", "mlm", "--label-smoothing", str(LABEL_SMOOTHING / 2)), LABEL_SMOOTHING / 2),
        (("pretrain", "--objective", "seq2seq"), 0.0),
        # The paper smooths token predictions: its recipe leaves a classifier's loss as it is.
        (("finetune", "--task", "sequence-classification", "--paper-recipe"), 0.0),
    ],
)
def test_the_label_smoothing_a_run_uses(argv, expected):
    args = build_parser().parse_args([*argv, "--tokenizer", "t", "--data", "d", "--output", "o"])
    task = pretraining_task(args.objective, args.nsp) if args.command == "pretrain" else TASKS[args.task]
    assert _label_smoothing(args, task) == expected


@pytest.mark.parametrize("case", ["out of range", "negative", "classifier"])
def test_bad_label_smoothing_is_refused(case, data, mlm, tokenizers, runs):
    output = runs / "model"
    argv = {
        "out of range": ("pretrain", "--objective", "clm", "--tokenizer", tokenizers["char"][0], "--data",
                         data.shakespeare, "--label-smoothing", "1"),
        "negative": ("pretrain", "--objective", "seq2seq", "--tokenizer", tokenizers["shared-bpe"][0], "--data",
                     data.bible, "--label-smoothing", "-0.1"),
        "classifier": ("finetune", "--task", "sequence-classification", "--model", mlm.folder, "--data",
                       data.reviews, "--label-smoothing", str(LABEL_SMOOTHING)),
    }[case]
    run = cli(*argv, "--output", output, *tiny(argv))
    assert_refused(run, argv[0], "--label-smoothing", output=output)


def test_the_task_table_knows_which_heads_take_label_smoothing():
    for task in TASKS.values():
        head = task.head_class()
        assert ("smoothing" in inspect.signature(head.forward).parameters) == task.label_smoothing, task.name


# -- The command line's choices and defaults are the config's ----------------------------------------------------------
def _options(command: str) -> dict:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    return {action.dest: action for action in commands.choices[command]._actions}


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_architecture_choices_are_the_configs(command):
    options = _options(command)
    assert tuple(options["activation"].choices) == ACTIVATIONS
    assert tuple(options["positions"].choices) == POSITION_EMBEDDING_TYPES
    assert tuple(options["attention_scores"].choices) == ATTENTION_SCORES
    assert list(options["preset"].choices) == list(PRESETS)
    small = PRESETS[DEFAULT_PRESET]
    assert f"(default {small['d_model']})" in options["d_model"].help
    assert f"(default {small['num_heads']})" in options["num_heads"].help
    assert DEFAULT_PRESET in options["preset"].help


def test_task_choices_and_column_options_come_from_the_task_table():
    offered = {command: _options(command) for command in ("pretrain", "finetune", "evaluate")}
    assert offered["pretrain"]["objective"].choices == [n for n, t in TASKS.items() if "pretrain" in t.commands]
    for command in ("finetune", "evaluate"):
        assert offered[command]["task"].choices == [n for n, t in TASKS.items() if command in t.commands]
    for command, options in offered.items():
        names = options["objective" if command == "pretrain" else "task"].choices
        needed = {option for name in names for option in TASKS[name].options}
        assert needed <= set(options), (command, needed - set(options))
    # Each command offers the columns of its own tasks only: finetune trains no causal LM, pretrain no tagger.
    assert "block_size" not in offered["finetune"] and "tags_column" not in offered["pretrain"]


def test_a_new_model_has_the_default_presets_shape(tokenizers):
    tokenizer = AutoTokenizer.from_pretrained(tokenizers["char"][0])
    small = PRESETS[DEFAULT_PRESET]
    base = ["pretrain", "--objective", "clm", "--tokenizer", "t", "--data", "d", "--output", "o"]
    config = _new_config(build_parser().parse_args(base), tokenizer, max_position_embeddings=64)
    for field, value in small.items():
        assert getattr(config, field) == value, field
    assert config.vocab_size == len(tokenizer)
    # --d-model without --d-ff: d_ff = 4 x d_model, as before the preset; --layers sets both stacks.
    width, depth = small["d_model"] // 2, small["num_encoder_layers"] + 1
    config = _new_config(build_parser().parse_args([*base, "--d-model", str(width), "--layers", str(depth)]),
                         tokenizer, max_position_embeddings=64)
    assert (config.d_model, config.d_ff, config.num_encoder_layers, config.num_decoder_layers) == (
        width, 4 * width, depth, depth)


# -- Position kinds: each trains a new model, with its own options -----------------------------------------------------
# Each kind's options and the config fields they set.
POSITION_SETTINGS = {
    "sinusoidal": ([], {}),
    "learned": (["--max-positions", "80"], {"max_position_embeddings": 80}),
    "rotary": (["--rope-theta", "500", "--partial-rotary-factor", "0.5"],
               {"rope_parameters": {"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.5}}),
    "alibi": ([], {}),
    "relative": (["--relative-buckets", "8", "--relative-max-distance", "40"],
                 {"relative_attention_num_buckets": 8, "relative_attention_max_distance": 40}),
}


def _assert_fields(config, fields):
    for field, value in fields.items():
        got = getattr(config, field)
        if isinstance(value, dict):  # transformers may add keys of its own to the RoPE dict
            got = {key: got.get(key) for key in value}
        assert got == value, (field, got)


@pytest.mark.parametrize("kind", POSITION_EMBEDDING_TYPES)
def test_every_position_kind_pretrains_and_evaluates_past_its_training_block(kind, data, tokenizers, tmp_path):
    extra, fields = POSITION_SETTINGS[kind]
    folder = tmp_path / kind
    trained = ok("pretrain", "--objective", "clm", "--tokenizer", tokenizers["char"][0], "--data", data.shakespeare,
                 "--validation-fraction", "0.2", "--block-size", "16", "--steps", "2", "--positions", kind, *extra,
                 "--output", folder, *TINY)
    config = AutoConfig.from_pretrained(folder)
    assert config.position_embedding_type == kind
    _assert_fields(config, fields)
    # Scored on its own held-out text at its block, evaluate gives pretrain's loss; a block four times longer runs too
    # (learned positions: inside the table --max-positions made).
    again = ok("evaluate", "--task", "clm", "--model", folder, "--data", data.shakespeare, "--validation-fraction",
               "0.2", "--block-size", "16")
    assert again.metrics["loss"] == pytest.approx(trained.metrics["loss"], abs=1e-4)
    longer = ok("evaluate", "--task", "clm", "--model", folder, "--data", data.heldout, "--block-size", "64")
    assert 0 < longer.metrics["loss"] < 2 * math.log(config.vocab_size)


@pytest.mark.parametrize("kind", POSITION_EMBEDDING_TYPES)
def test_every_position_kind_finetunes_a_new_classifier(kind, data, tokenizers, tmp_path):
    extra, fields = POSITION_SETTINGS[kind]
    if kind == "learned":
        extra = ["--max-positions", "40"]  # at least --max-length 32
        fields = {"max_position_embeddings": 40}
    folder = tmp_path / kind
    ok("finetune", "--task", "sequence-classification", "--tokenizer", tokenizers["wordpiece"][0], "--data",
       data.reviews, "--eval-split", "test", "--max-length", "32", "--max-train-samples", "16", "--steps", "1",
       "--positions", kind, *extra, "--output", folder, *TINY)
    config = AutoConfig.from_pretrained(folder)
    assert config.position_embedding_type == kind
    _assert_fields(config, fields)


def test_position_options_over_the_new_presets(tokenizers):
    tokenizer = AutoTokenizer.from_pretrained(tokenizers["char"][0])
    base = ["pretrain", "--objective", "clm", "--tokenizer", "t", "--data", "d", "--output", "o"]
    assert {"t5-small", "pythia-160m"} <= set(_options("pretrain")["preset"].choices)

    def config(*extra):
        return _new_config(build_parser().parse_args([*base, *extra]), tokenizer, max_position_embeddings=64)

    # A rotary preset keeps its RoPE dict under a new theta, and drops it with other positions.
    pythia = PRESETS["pythia-160m"]["rope_parameters"]
    assert config("--preset", "pythia-160m", "--rope-theta", "500").rope_parameters["partial_rotary_factor"] == (
        pythia["partial_rotary_factor"])
    assert config("--preset", "pythia-160m", "--rope-theta", "500").rope_parameters["rope_theta"] == 500
    assert config("--preset", "pythia-160m", "--positions", "learned").rope_parameters is None
    t5 = config("--preset", "t5-small", "--relative-buckets", "16")
    assert (t5.position_embedding_type, t5.relative_attention_num_buckets) == ("relative", 16)
    assert t5.relative_attention_max_distance == PRESETS["t5-small"]["relative_attention_max_distance"]


# -- Attention scores (paper 3.2.1): a new model's compatibility function ----------------------------------------------
def test_attention_scores_reach_a_new_models_config(tokenizers):
    tokenizer = AutoTokenizer.from_pretrained(tokenizers["char"][0])
    base = ["pretrain", "--objective", "clm", "--tokenizer", "t", "--data", "d", "--output", "o"]
    default = _new_config(build_parser().parse_args(base), tokenizer, max_position_embeddings=64)
    assert default.attention_scores == vaswani.VaswaniConfig().attention_scores == "scaled_dot_product"
    for scores in ATTENTION_SCORES:
        args = build_parser().parse_args([*base, "--attention-scores", scores])
        assert _new_config(args, tokenizer, max_position_embeddings=64).attention_scores == scores


@pytest.mark.parametrize("scores", ["dot_product", "additive"])
def test_a_model_with_other_attention_scores_pretrains_saves_and_evaluates(scores, data, tokenizers, tmp_path):
    folder = tmp_path / scores
    trained = ok("pretrain", "--objective", "clm", "--tokenizer", tokenizers["char"][0], "--data", data.shakespeare,
                 "--validation-fraction", "0.2", "--block-size", "16", "--steps", "2", "--attention-scores", scores,
                 "--output", folder, *TINY)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.attention_scores == scores
    assert (model.config._attn_implementation == "additive") == (scores == "additive")
    assert all((attention.score_vector is not None) == (scores == "additive")
               for attention in model.modules() if type(attention).__name__ == "VaswaniAttention")
    # The saved folder scores its held-out text as pretrain did: the scores were saved and loaded with the model.
    again = ok("evaluate", "--task", "clm", "--model", folder, "--data", data.shakespeare, "--validation-fraction",
               "0.2", "--block-size", "16")
    assert again.metrics["loss"] == pytest.approx(trained.metrics["loss"], abs=1e-4)


# -- generate ----------------------------------------------------------------------------------------------------------
def test_generate_continues_a_prompt_with_a_causal_model(clm):
    run = ok("generate", "--model", clm.folder, "--prompt", "ROMEO:", "--max-new-tokens", "20")
    tokenizer = AutoTokenizer.from_pretrained(clm.folder)
    model = AutoModelForCausalLM.from_pretrained(clm.folder).eval()
    inputs = tokenizer(["ROMEO:"], return_tensors="pt")
    with torch.no_grad():
        generated = model.generate(**inputs, max_new_tokens=20)
    continuation = tokenizer.decode(generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert len(continuation) > 0
    assert run.out.startswith(">>> ROMEO:\n")
    assert run.out == f">>> ROMEO:\nROMEO:{continuation}\n\n"


def test_generate_translates_each_prompt_with_a_seq2seq_model(translator):
    prompts = ["In the beginning, God created the heavens and the earth.", "God saw the light."]
    run = ok("generate", "--model", translator.folder, "--prompt", prompts[0], "--prompt", prompts[1],
             "--max-new-tokens", "10")
    tokenizer = AutoTokenizer.from_pretrained(translator.folder)
    model = AutoModelForSeq2SeqLM.from_pretrained(translator.folder).eval()
    inputs = tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        translations = tokenizer.batch_decode(model.generate(**inputs, max_new_tokens=10), skip_special_tokens=True)
    assert run.out == "".join(f">>> {p}\n{t}\n\n" for p, t in zip(prompts, translations))


# -- push --------------------------------------------------------------------------------------------------------------
class InterceptedHub(HfApi):
    """The real HfApi's upload_folder, with the two calls that would reach the network recorded instead."""

    def __init__(self):
        super().__init__(token="hf_test")
        self.repos, self.commits = [], []

    def create_repo(self, repo_id, **kwargs):
        self.repos.append((repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id if "/" in repo_id else f"user/{repo_id}")

    def _validate_yaml(self, content, **kwargs):  # the Hub checks the card's metadata; here, huggingface_hub does
        self.validated = ModelCard(content).data.to_dict()

    def create_commit(self, repo_id, operations, **kwargs):
        files = {}
        for operation in operations:
            source = operation.path_or_fileobj
            files[operation.path_in_repo] = Path(source).read_bytes() if isinstance(source, (str, Path)) else (
                source if isinstance(source, bytes) else source.read())
        self.commits.append({"repo_id": repo_id, "files": files, **kwargs})
        return SimpleNamespace(commit_url="https://huggingface.co/commit", oid="0" * 40)


def test_push_uploads_exactly_the_folder(classifier, monkeypatch):
    hub = InterceptedHub()
    monkeypatch.setattr("transformers.utils.hub.hf_api", lambda: hub)
    monkeypatch.setattr("huggingface_hub.hf_api.is_xet_available", lambda: False)  # one create_commit, no pipeline
    run = ok("push", "--model", classifier.folder, "--repo-id", "someone/sentiment", "--private",
             "--commit-message", "tiny sentiment model")
    assert [repo for repo, _ in hub.repos] == ["someone/sentiment"] and hub.repos[0][1]["private"] is True
    (commit,) = hub.commits
    assert commit["repo_id"] == "someone/sentiment"
    assert commit["commit_message"] == "tiny sentiment model"
    on_disk = {str(p.relative_to(classifier.folder)): p.read_bytes() for p in classifier.folder.rglob("*")
               if p.is_file()}
    assert set(commit["files"]) == set(on_disk)
    assert commit["files"] == on_disk
    assert "someone/sentiment" in run.out
    assert hub.validated["model-index"][0]["results"]  # the card's metadata, with its results, was sent


def test_push_refuses_a_folder_without_a_model(tmp_path, monkeypatch):
    hub = InterceptedHub()
    monkeypatch.setattr("transformers.utils.hub.hf_api", lambda: hub)
    (tmp_path / "notes.txt").write_text("not a model")
    run = cli("push", "--model", tmp_path, "--repo-id", "someone/nothing")
    assert run.code == 2
    assert run.err.startswith("vaswani push: error:") and str(tmp_path) in run.err
    assert hub.repos == [] and hub.commits == []


# -- --help ------------------------------------------------------------------------------------------------------------
HELP = {
    None: ["train-tokenizer", "pretrain", "finetune", "evaluate", "generate", "push", "masked LM", "seq2seq",
           "question-answering", "Hub"],
    "train-tokenizer": ["tokenizer", "AutoTokenizer", "wordpiece", "byte-bpe", "shared-bpe", "char", "--vocab-size"],
    "pretrain": ["clm", "mlm", "NSP", "seq2seq", "--objective", "--paper-recipe", "--average-last"],
    "finetune": ["Fine-tune", "sequence-classification", "token-classification", "question-answering", "seq2seq"],
    "evaluate": ["Evaluate", "perplexity", "accuracy", "exact match", "BLEU", "chrF", "--json"],
    "generate": ["causal LM", "seq2seq", "translation", "--prompt", "--num-beams"],
    "push": ["Hub", "--repo-id", "--private"],
}


@pytest.mark.parametrize("command", list(HELP), ids=lambda c: c or "vaswani")
def test_help_says_what_each_command_is_for(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(([command] if command else []) + ["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in HELP[command]:
        assert phrase in text, phrase


def test_help_of_the_installed_script(script_runs):
    run = script_runs["help"]
    assert run.code == 0 and run.out.startswith("usage: vaswani")
    assert all(command in run.out for command in HELP if command) and run.err == ""


# -- Bad input: one line, exit code 2, nothing written -----------------------------------------------------------------
def assert_refused(run, command: str, *names, output: Path):
    assert run.code == 2, (run.code, run.err[-2000:])
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith(f"vaswani {command}: error:"), lines[0]
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    assert "Traceback" not in run.err
    assert not output.exists()
    assert not [n for n in os.listdir(output.parent) if n.startswith(output.name) or n.startswith(f".{output.name}")]


@pytest.fixture
def runs(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    return folder


SCRIPT_RUNS = Path("script-runs")


@pytest.fixture(scope="module")
def script_runs(work, data, tokenizers):
    """The installed script, side by side (each run pays the interpreter's start-up): --help, and two bad commands."""
    out = work / SCRIPT_RUNS
    out.mkdir()
    common = ("pretrain", "--objective", "clm", *TINY)
    processes = {
        "help": script("--help"),
        "missing data": script(*common, "--tokenizer", tokenizers["char"][0], "--data", data.folder / "nowhere.txt",
                               "--output", out / "missing-data"),
        "unknown tokenizer": script(*common, "--tokenizer", work / "no-such-tokenizer", "--data", data.shakespeare,
                                    "--output", out / "unknown-tokenizer"),
    }
    return {name: finished(process) for name, process in processes.items()}


def test_script_missing_data_file(script_runs, data, work):
    run = script_runs["missing data"]
    assert_refused(run, "pretrain", data.folder / "nowhere.txt", output=work / SCRIPT_RUNS / "missing-data")
    assert run.out == ""


def test_script_unknown_tokenizer_folder(script_runs, work):
    run = script_runs["unknown tokenizer"]
    assert_refused(run, "pretrain", work / "no-such-tokenizer", output=work / SCRIPT_RUNS / "unknown-tokenizer")


def test_missing_data_file_for_finetune(data, mlm, runs):
    output = runs / "model"
    run = cli("finetune", "--task", "sequence-classification", "--model", mlm.folder,
              "--data", data.folder / "nowhere.csv", "--output", output, "--quiet")
    assert_refused(run, "finetune", "nowhere.csv", output=output)


@pytest.mark.parametrize("case", ["finetune --text-column", "pretrain --source-column", "train-tokenizer --columns"])
def test_missing_column(case, data, mlm, tokenizers, runs):
    output = runs / "model"
    argv = {
        "finetune --text-column": ("finetune", "--task", "sequence-classification", "--model", mlm.folder,
                                   "--data", data.reviews, "--text-column", "nope", "--quiet"),
        "pretrain --source-column": ("pretrain", "--objective", "seq2seq", "--tokenizer", tokenizers["shared-bpe"][0],
                                     "--data", data.bible, "--source-column", "nope", *TINY),
        "train-tokenizer --columns": ("train-tokenizer", "--data", data.reviews, "--columns", "text", "nope"),
    }[case]
    run = cli(*argv, "--output", output)
    assert_refused(run, argv[0], "'nope'", output=output)


@pytest.mark.parametrize("case", ["header only", "empty split", "empty text"])
def test_empty_dataset(case, data, mlm, tokenizers, tmp_path, runs):
    output = runs / "model"
    if case == "header only":
        empty = tmp_path / "empty.csv"
        empty.write_text("text,label,split\n")
        argv = ("finetune", "--task", "sequence-classification", "--model", mlm.folder, "--data", empty)
        names = ["empty.csv"]
    elif case == "empty split":
        argv = ("pretrain", "--objective", "mlm", "--tokenizer", tokenizers["wordpiece"][0], "--data", data.reviews,
                "--split", "dev")
        names = ["reviews.csv", "'dev'"]
    else:
        empty = tmp_path / "blank.txt"
        empty.write_text("\n\n  \n")
        argv = ("pretrain", "--objective", "clm", "--tokenizer", tokenizers["char"][0], "--data", empty)
        names = ["blank.txt"]
    run = cli(*argv, "--output", output, *tiny(argv))
    assert_refused(run, argv[0], *names, output=output)


@pytest.fixture(scope="module")
def misfits(work, data, tokenizers):
    """Tokenizers that do not fit the MLM: a larger vocabulary; the same vocabulary with another pad token."""
    bigger = work / "tokenizers" / "wordpiece-bigger"
    ok("train-tokenizer", "--data", data.reviews, "--kind", "wordpiece", "--columns", "text", "--vocab-size", "600",
       "--output", bigger)
    other_pad = work / "tokenizers" / "wordpiece-other-pad"
    tokenizer = AutoTokenizer.from_pretrained(tokenizers["wordpiece"][0])
    tokenizer.pad_token = "[MASK]"
    tokenizer.save_pretrained(other_pad)
    return {"vocabulary": bigger, "pad id": other_pad}


@pytest.mark.parametrize("case", ["vocabulary", "pad id"])
def test_tokenizer_that_does_not_fit_the_model(case, misfits, mlm, data, runs):
    output = runs / "model"
    run = cli("finetune", "--task", "sequence-classification", "--model", mlm.folder, "--tokenizer", misfits[case],
              "--data", data.reviews, "--eval-split", "test", "--output", output, "--quiet")
    model_vocab = AutoConfig.from_pretrained(mlm.folder).vocab_size
    tokenizer = AutoTokenizer.from_pretrained(misfits[case])
    names = ([str(len(tokenizer)), str(model_vocab), "vocab_size"] if case == "vocabulary"
             else ["pad_token_id", str(tokenizer.pad_token_id)])
    assert len(tokenizer) != model_vocab if case == "vocabulary" else tokenizer.pad_token_id != 0
    assert_refused(run, "finetune", *names, output=output)


def test_unknown_tokenizer_folder_in_process(data, runs, tmp_path):
    not_a_tokenizer = tmp_path / "empty-folder"
    not_a_tokenizer.mkdir()
    output = runs / "model"
    run = cli("pretrain", "--objective", "clm", "--tokenizer", not_a_tokenizer, "--data", data.shakespeare,
              "--output", output, *TINY)
    assert_refused(run, "pretrain", not_a_tokenizer, output=output)


def test_evaluate_a_folder_without_a_model(data, tmp_path):
    run = cli("evaluate", "--model", tmp_path / "nothing", "--task", "clm", "--data", data.heldout)
    assert run.code == 2 and run.err.startswith("vaswani evaluate: error:") and "nothing" in run.err
    assert len(run.err.strip().splitlines()) == 1


# -- An existing --output folder ---------------------------------------------------------------------------------------
def _clm_argv(output, data, tokenizers, text=None) -> list:
    return ["pretrain", "--objective", "clm", "--tokenizer", tokenizers["char"][0], "--data", text or data.shakespeare,
            "--block-size", "32", "--steps", "2", "--output", output, *TINY]


def _clm_into(output, data, tokenizers, *extra):
    return cli(*_clm_argv(output, data, tokenizers), *extra)


def test_existing_output_is_refused_without_overwrite(data, tokenizers, runs):
    output = runs / "model"
    output.mkdir()
    (output / "keep.txt").write_text("earlier work")
    run = _clm_into(output, data, tokenizers)
    assert run.code == 2
    (line,) = run.err.strip().splitlines()
    assert line.startswith("vaswani pretrain: error:") and str(output) in line and "--overwrite" in line
    assert os.listdir(output) == ["keep.txt"] and (output / "keep.txt").read_text() == "earlier work"
    assert sorted(os.listdir(runs)) == ["model"]  # no staging or checkpoint folder either


def test_existing_output_is_replaced_with_overwrite(data, tokenizers, runs):
    output = runs / "model"
    output.mkdir()
    (output / "keep.txt").write_text("earlier work")
    run = _clm_into(output, data, tokenizers, "--overwrite")
    assert run.code == 0, run.err
    files = set(os.listdir(output))
    assert "keep.txt" not in files and HUB_FILES <= files
    assert not [n for n in os.listdir(runs) if n.startswith(".")]


def test_existing_empty_output_folder_is_used(data, tokenizers, runs):
    """An empty folder is free (only a non-empty one needs --overwrite): the model is written into it."""
    output = runs / "model"
    output.mkdir()
    run = _clm_into(output, data, tokenizers)
    assert run.code == 0, run.err
    assert HUB_FILES <= set(os.listdir(output))


# -- Training learns ---------------------------------------------------------------------------------------------------
def test_clm_pretraining_learns_repetitive_text(tmp_path):
    sentence = "the quick brown fox jumps over the lazy dog.\n"
    text = tmp_path / "repeat.txt"
    text.write_text(sentence * 200, encoding="utf-8")
    held_out = tmp_path / "held-out.txt"
    held_out.write_text(sentence * 20, encoding="utf-8")
    ok("train-tokenizer", "--data", text, "--kind", "char", "--output", tmp_path / "tok")
    vocabulary = len(AutoTokenizer.from_pretrained(tmp_path / "tok"))
    common = ("pretrain", "--objective", "clm", "--tokenizer", tmp_path / "tok", "--data", text,
              "--validation-fraction", "0.1", "--block-size", "32", "--dropout", "0", "--logging-steps", "1000", *TINY)
    untrained = ok(*common, "--steps", "1", "--lr", "0", "--output", tmp_path / "untrained")
    trained = ok(*common, "--steps", "60", "--lr", "1e-2", "--output", tmp_path / "trained")
    # An untrained model knows nothing: about ln(V) nats per character.
    assert untrained.metrics["loss"] == pytest.approx(math.log(vocabulary), rel=0.25)
    assert trained.metrics["loss"] < 0.3 * untrained.metrics["loss"], (trained.metrics, untrained.metrics)
    assert trained.metrics["perplexity"] < 0.2 * untrained.metrics["perplexity"]
    # `vaswani evaluate` on more of the same text agrees: the trained model predicts it, the untrained one does not.
    scores = {name: ok("evaluate", "--model", tmp_path / name, "--task", "clm", "--data", held_out,
                       "--block-size", "32").metrics["loss"] for name in ("untrained", "trained")}
    assert scores["trained"] < 0.3 * scores["untrained"], scores
    assert scores["trained"] == pytest.approx(trained.metrics["loss"], rel=0.2)


# -- Nonsense values: refused while parsing, one line naming the option, exit code 2, nothing written -----------------
def _base_argv(command: str, output: Path) -> list:
    """The least each command needs to parse (the paths are never read: the refusal comes first)."""
    return {
        "train-tokenizer": ["train-tokenizer", "--data", "d.txt", "--output", output],
        "pretrain": ["pretrain", "--objective", "clm", "--tokenizer", "t", "--data", "d.txt", "--output", output],
        "finetune": ["finetune", "--task", "question-answering", "--tokenizer", "t", "--data", "d.jsonl",
                     "--output", output],
        "evaluate": ["evaluate", "--model", "m", "--task", "clm", "--data", "d.txt"],
        "generate": ["generate", "--model", "m", "--prompt", "To be"],
    }[command]


BAD_VALUES = [
    ("pretrain", "--block-size", "0"), ("pretrain", "--steps", "0"), ("pretrain", "--steps", "-1"),
    ("pretrain", "--steps", "2.5"), ("pretrain", "--epochs", "0"), ("pretrain", "--epochs", "-1"),
    ("pretrain", "--validation-fraction", "1"), ("pretrain", "--validation-fraction", "-0.1"),
    ("evaluate", "--validation-fraction", "1.5"), ("pretrain", "--warmup", "-1"), ("pretrain", "--warmup", "2.5"),
    ("pretrain", "--save-steps", "0"), ("pretrain", "--eval-steps", "-2"), ("pretrain", "--logging-steps", "0"),
    ("pretrain", "--gradient-accumulation", "0"), ("pretrain", "--batch-size", "0"), ("evaluate", "--batch-size", "0"),
    ("generate", "--num-beams", "0"), ("generate", "--max-new-tokens", "0"), ("generate", "--max-new-tokens", "-5"),
    ("train-tokenizer", "--vocab-size", "0"), ("train-tokenizer", "--vocab-size", "-1"),
    ("train-tokenizer", "--max-length", "0"), ("finetune", "--max-length", "0"), ("pretrain", "--average-last", "-1"),
    ("pretrain", "--lr", "-1e-3"), ("pretrain", "--lr", "nan"), ("pretrain", "--lr-scale", "inf"),
    ("finetune", "--doc-stride", "-1"), ("pretrain", "--max-eval-samples", "0"),
    ("evaluate", "--max-eval-samples", "0"), ("pretrain", "--max-train-samples", "0"),
    ("finetune", "--max-train-samples", "-3"), ("pretrain", "--rope-theta", "0"),
    ("pretrain", "--partial-rotary-factor", "1.5"), ("finetune", "--relative-buckets", "0"),
    ("pretrain", "--max-positions", "0"),
    ("pretrain", "--seed", "-1"), ("generate", "--seed", str(2**40)), ("generate", "--top-p", "0"),
    ("generate", "--temperature", "0"), ("generate", "--top-k", "0"), ("generate", "--length-penalty", "nan"),
    ("pretrain", "--dropout", "1"), ("pretrain", "--d-model", "0"), ("pretrain", "--num-heads", "-4"),
    ("pretrain", "--adam-beta2", "1"), ("pretrain", "--weight-decay", "-0.1"),
    ("pretrain", "--label-smoothing", "nan"), ("pretrain", "--lr-scheduler", "sometimes"),
]


@pytest.mark.parametrize("command, option, value", BAD_VALUES, ids=[" ".join(case) for case in BAD_VALUES])
def test_a_nonsense_value_is_refused_naming_the_option(command, option, value, runs):
    output = runs / "model"
    run = cli(*_base_argv(command, output), option, value)
    # "argument --max-eval-samples/--eval-samples:": an option with a former spelling names both
    assert_refused(run, command, f"argument {option}", repr(value), output=output)
    assert run.out == ""


BAD_COMBINATIONS = {
    "steps and epochs": ("pretrain", ["--steps", "2", "--epochs", "1"], ["--steps", "--epochs"]),
    "paper recipe and --lr": ("pretrain", ["--paper-recipe", "--lr", "1e-3"], ["--lr", "--paper-recipe"]),
    "paper recipe and --warmup": ("pretrain", ["--paper-recipe", "--warmup", "10"], ["--warmup", "--paper-recipe"]),
    "--lr-scale without the paper recipe": ("pretrain", ["--lr-scale", "2"], ["--lr-scale", "--paper-recipe"]),
    "--average-last without checkpoints": ("pretrain", ["--average-last", "3"], ["--average-last", "--save-steps"]),
    "--average-last beyond the checkpoints": ("pretrain", ["--average-last", "3", "--save-steps", "2", "--steps", "4"],
                                              ["--average-last 3", "writes 2"]),
    "--save-steps beyond --steps": ("pretrain", ["--save-steps", "10", "--steps", "5"], ["--save-steps", "--steps"]),
    "--nsp with clm": ("pretrain", ["--nsp"], ["--nsp", "--objective mlm"]),
    "--validation-fraction with mlm": ("pretrain", ["--objective", "mlm", "--validation-fraction", "0.2"],
                                       ["--validation-fraction", "mlm"]),
    "--validation-fraction with a classifier": ("evaluate", ["--task", "sequence-classification",
                                                             "--validation-fraction", "0.2"],
                                                ["--validation-fraction"]),
    "architecture with --model": ("finetune", ["--model", "m", "--d-model", "64"], ["--d-model", "--model"]),
    "beams for clm": ("pretrain", ["--num-beams", "4"], ["--num-beams", "clm"]),
    "sampling without --do-sample": ("generate", ["--top-k", "5"], ["--top-k", "--do-sample"]),
    "temperature without --do-sample": ("pretrain", ["--objective", "seq2seq", "--temperature", "0.7"],
                                        ["--temperature", "--do-sample"]),
    "length penalty without beams": ("generate", ["--length-penalty", "0.6"], ["--length-penalty", "--num-beams"]),
    "heads that do not divide the width": ("pretrain", ["--d-model", "30", "--num-heads", "4"],
                                           ["--d-model 30", "--num-heads 4"]),
    "--doc-stride not below --max-length": ("finetune", ["--max-length", "32", "--doc-stride", "32"],
                                            ["--doc-stride 32", "--max-length 32"]),
    "empty prompt": ("generate", ["--prompt", ""], ["--prompt", "empty"]),
    "--rope-theta without rotary": ("pretrain", ["--positions", "alibi", "--rope-theta", "500"],
                                    ["--rope-theta", "alibi", "--positions rotary"]),
    "--partial-rotary-factor with the default positions": ("pretrain", ["--partial-rotary-factor", "0.5"],
                                                            ["--partial-rotary-factor", "--positions rotary"]),
    "--relative-buckets without relative": ("finetune", ["--positions", "rotary", "--relative-buckets", "16"],
                                            ["--relative-buckets", "rotary", "--positions relative"]),
    "--relative-max-distance with a rotary preset": ("pretrain", ["--preset", "pythia-160m",
                                                                  "--relative-max-distance", "64"],
                                                     ["--relative-max-distance", "--positions relative"]),
    "relative buckets past the distance": ("pretrain", ["--positions", "relative", "--relative-buckets", "64",
                                                        "--relative-max-distance", "20"],
                                           ["--relative-buckets 64", "--relative-max-distance 20"]),
    "a rotated share that is not whole": ("pretrain", ["--positions", "rotary", "--d-model", "32", "--num-heads",
                                                       "4", "--partial-rotary-factor", "0.1"],
                                          ["--partial-rotary-factor 0.1", "partial_rotary_factor"]),
    "additive scores with rotary positions": ("pretrain", ["--positions", "rotary", "--attention-scores", "additive"],
                                              ["--positions rotary", "--attention-scores additive", "sinusoidal"]),
    "additive scores with a rotary preset": ("finetune", ["--preset", "pythia-160m", "--attention-scores", "additive"],
                                             ["--attention-scores additive", "Rotary"]),
    "--attention-scores with --model": ("finetune", ["--model", "m", "--attention-scores", "dot_product"],
                                        ["--attention-scores", "--model"]),
    "position options with --model": ("finetune", ["--model", "m", "--rope-theta", "500"], ["--rope-theta", "--model"]),
    "--max-positions short of the block": ("pretrain", ["--positions", "learned", "--block-size", "64",
                                                        "--max-positions", "32"],
                                           ["--max-positions 32", "65", "--block-size 64"]),
}


@pytest.mark.parametrize("case", list(BAD_COMBINATIONS))
def test_settings_that_do_not_fit_together_are_refused_before_any_work(case, runs):
    command, extra, names = BAD_COMBINATIONS[case]
    output = runs / "model"
    argv = _base_argv(command, output)
    for option in ("--objective", "--task"):  # an --objective or --task in `extra` replaces the base one
        if option in extra and option in argv:
            index = argv.index(option)
            del argv[index : index + 2]
    run = cli(*argv, *extra)
    assert_refused(run, command, *names, output=output)


# -- Outputs: checked before any work; replaced whole or not at all ---------------------------------------------------
def _files(folder: Path) -> dict:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_train_tokenizer_refuses_an_existing_folder_without_overwrite(clm, data, runs):
    output = runs / "model"
    shutil.copytree(clm.folder, output)  # a model folder: what a wrong --output would destroy
    before = _files(output)
    run = cli("train-tokenizer", "--kind", "char", "--data", data.shakespeare, "--output", output)
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1, run.err
    assert run.err.startswith("vaswani train-tokenizer: error:") and str(output) in run.err and "--overwrite" in run.err
    assert _files(output) == before and sorted(os.listdir(runs)) == ["model"]
    # With --overwrite the folder is the tokenizer, whole, and nothing of the model is left in it.
    ok("train-tokenizer", "--kind", "char", "--data", data.shakespeare, "--output", output, "--overwrite")
    assert "model.safetensors" not in os.listdir(output) and (output / "tokenizer.json").is_file()
    AutoTokenizer.from_pretrained(output)
    assert sorted(os.listdir(runs)) == ["model"]


def test_an_interrupted_tokenizer_save_leaves_the_old_folder(tokenizers, data, runs, monkeypatch):
    from transformers import PreTrainedTokenizerFast

    output = runs / "tok"
    shutil.copytree(tokenizers["char"][0], output)
    before = _files(output)
    save = PreTrainedTokenizerFast.save_pretrained

    def save_then_interrupt(self, folder, *args, **kwargs):
        save(self, folder, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", save_then_interrupt)
    run = cli("train-tokenizer", "--kind", "char", "--data", data.heldout, "--output", output, "--overwrite")
    assert run.code == 130 and run.err.strip().splitlines() == ["vaswani train-tokenizer: interrupted"], run.err
    assert _files(output) == before and sorted(os.listdir(runs)) == ["tok"]


def test_convert_replaces_an_output_in_one_step_and_an_interrupt_keeps_the_old(runs, monkeypatch):
    import vaswani.convert
    from helpers import tiny_config
    from vaswani import VaswaniForCausalLM

    output = runs / "converted"
    output.mkdir()
    (output / "earlier.txt").write_text("an earlier conversion")
    model = VaswaniForCausalLM(tiny_config(num_encoder_layers=0))
    model.config.model_card_data = {}  # what `convert` gives a converted model
    monkeypatch.setattr(vaswani.convert, "convert", lambda source, architecture=None: model)
    ok("convert", "--source", runs / "no-source", "--output", output, "--overwrite")
    converted = _files(output)
    assert "earlier.txt" not in converted and "model.safetensors" in converted
    assert sorted(os.listdir(runs)) == ["converted"]

    save = type(model).save_pretrained

    def save_then_interrupt(self, folder, *args, **kwargs):
        save(self, folder, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(type(model), "save_pretrained", save_then_interrupt)
    run = cli("convert", "--source", runs / "no-source", "--output", output, "--overwrite")
    assert run.code == 130 and run.err.strip().splitlines() == ["vaswani convert: interrupted"], run.err
    assert _files(output) == converted and sorted(os.listdir(runs)) == ["converted"]


@pytest.mark.parametrize("case", ["a file", "below a file"])
def test_an_output_that_cannot_be_a_folder_is_refused_before_training(case, data, tokenizers, runs):
    blocker = runs / "blocker"
    blocker.write_text("not a folder")
    output = blocker if case == "a file" else blocker / "model"
    run = _clm_into(output, data, tokenizers)
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1, run.err
    assert run.err.startswith("vaswani pretrain: error: --output") and "is a file" in run.err
    assert run.out == ""  # refused before the data was read or a model built
    assert sorted(os.listdir(runs)) == ["blocker"] and blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: permissions cannot make a folder unwritable")
def test_an_unwritable_output_is_refused_before_training(data, tokenizers, runs):
    locked = runs / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        run = _clm_into(locked / "model", data, tokenizers)
    finally:
        locked.chmod(0o700)
    assert run.code == 2 and "cannot write" in run.err and str(locked) in run.err and run.out == ""


def test_an_output_holding_the_data_is_refused_even_with_overwrite(data, tokenizers, runs):
    folder = runs / "work"
    folder.mkdir()
    text = folder / "text.txt"
    shutil.copy(data.shakespeare, text)
    run = cli("pretrain", "--objective", "clm", "--tokenizer", tokenizers["char"][0], "--data", text,
              "--block-size", "32", "--steps", "1", "--output", folder, "--overwrite", *TINY)
    assert run.code == 2 and "--data" in run.err and str(folder) in run.err, run.err
    assert text.read_bytes() == data.shakespeare.read_bytes() and os.listdir(folder) == ["text.txt"]


def test_an_earlier_runs_checkpoints_are_not_mixed_in(data, tokenizers, runs):
    checkpoints = runs / "model.checkpoints"
    (checkpoints / "checkpoint-3").mkdir(parents=True)
    run = _clm_into(runs / "model", data, tokenizers)
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1
    assert str(checkpoints) in run.err and "--resume" in run.err and "--overwrite" in run.err
    assert sorted(os.listdir(runs)) == ["model.checkpoints"] and os.listdir(checkpoints) == ["checkpoint-3"]
    # --overwrite starts afresh: the earlier checkpoints go, the run writes its own.
    ok(*_clm_argv(runs / "model", data, tokenizers), "--overwrite", "--save-steps", "1")
    assert sorted(os.listdir(checkpoints)) == ["checkpoint-1", "checkpoint-2"]


def test_resume_without_a_checkpoint_is_refused_before_any_work(data, tokenizers, runs):
    run = _clm_into(runs / "model", data, tokenizers, "--resume")
    assert run.code == 2 and run.err.startswith("vaswani pretrain: error: --resume: no complete checkpoint")
    assert run.out == "" and os.listdir(runs) == []


@pytest.mark.parametrize("case", ["a folder", "below a file", "an existing file"])
def test_an_unwritable_json_is_refused_before_evaluating(case, clm, data, runs):
    target = {"a folder": runs, "below a file": runs / "blocker" / "m.json", "an existing file": runs / "m.json"}[case]
    (runs / "blocker").write_text("not a folder")
    (runs / "m.json").write_text("{}")
    run = cli("evaluate", "--model", clm.folder, "--task", "clm", "--data", data.heldout, "--block-size", "32",
              "--json", target)
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1, run.err
    assert run.err.startswith("vaswani evaluate: error: --json") and run.out == ""  # nothing was evaluated
    assert (runs / "m.json").read_text() == "{}"
    if case == "an existing file":
        assert "--overwrite" in run.err
        written = ok("evaluate", "--model", clm.folder, "--task", "clm", "--data", data.heldout, "--block-size",
                     "32", "--json", target, "--overwrite")
        assert json.loads(target.read_text()) == written.metrics
        assert sorted(os.listdir(runs)) == ["blocker", "m.json"]  # no temporary file left


# -- Interrupts and failures inside a run ----------------------------------------------------------------------------
@pytest.mark.parametrize("raised, code, line", [(KeyboardInterrupt, 130, "vaswani pretrain: interrupted"),
                                                (ValueError("bad step"), 2, "vaswani pretrain: error: bad step")])
def test_a_run_stopped_in_training_leaves_nothing_behind(raised, code, line, data, tokenizers, runs, monkeypatch):
    from transformers import Trainer

    def stop(self, *args, **kwargs):
        assert not Path(self.args.output_dir).exists()  # made only when a checkpoint is due
        raise raised

    monkeypatch.setattr(Trainer, "train", stop)
    run = _clm_into(runs / "model", data, tokenizers, "--save-steps", "1")
    assert run.code == code and run.err.strip().splitlines() == [line], run.err
    assert os.listdir(runs) == []  # no output, no staging folder, no empty checkpoint folder


def test_a_run_without_checkpoints_leaves_no_checkpoint_folder(clm, seq2seq):
    assert not Path(f"{clm.folder}.checkpoints").exists()
    assert sorted(os.listdir(f"{seq2seq.folder}.checkpoints")) == ["checkpoint-4", "checkpoint-6"]  # --save-steps 2


def test_eval_steps_without_evaluation_data_is_refused(data, tokenizers, runs):
    run = _clm_into(runs / "model", data, tokenizers, "--validation-fraction", "0", "--eval-steps", "1")
    assert_refused(run, "pretrain", "--eval-steps", output=runs / "model")


# -- Data: gzipped text, folders, JSON ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gzipped(data):
    import gzip

    folder = data.folder / "gzipped"
    folder.mkdir()
    for name in ("shakespeare", "heldout"):
        with gzip.open(folder / f"{name}.txt.gz", "wt", encoding="utf-8") as handle:
            handle.write(getattr(data, name).read_text(encoding="utf-8"))
    return SimpleNamespace(shakespeare=folder / "shakespeare.txt.gz", heldout=folder / "heldout.txt.gz")


def test_gzipped_text_reads_as_the_text(data, gzipped):
    from vaswani.training.data import load_table, read_text

    assert read_text(gzipped.shakespeare) == read_text(data.shakespeare)
    assert load_table(gzipped.shakespeare)["text"] == load_table(data.shakespeare)["text"]


def test_train_tokenizer_on_gzipped_text(data, gzipped, tokenizers, runs):
    ok("train-tokenizer", "--kind", "char", "--data", gzipped.shakespeare, "--output", runs / "tok")
    assert AutoTokenizer.from_pretrained(runs / "tok").get_vocab() == \
        AutoTokenizer.from_pretrained(tokenizers["char"][0]).get_vocab()


def test_pretrain_and_evaluate_clm_on_gzipped_running_text(data, gzipped, tokenizers, runs):
    plain = ok(*_clm_argv(runs / "plain", data, tokenizers, text=data.shakespeare), "--validation-fraction", "0.2")
    packed = ok(*_clm_argv(runs / "packed", data, tokenizers, text=gzipped.shakespeare), "--validation-fraction", "0.2")
    announce = [line for line in plain.out.splitlines() if line.startswith("Training")]
    assert announce and announce == [line for line in packed.out.splitlines() if line.startswith("Training")]
    assert packed.metrics == plain.metrics
    assert "first 80% of the text" in json.loads((runs / "packed" / "config.json").read_text())[
        "model_card_data"]["training_data"]
    scores = [ok("evaluate", "--model", runs / "packed", "--task", "clm", "--data", text, "--block-size", "32").metrics
              for text in (data.heldout, gzipped.heldout)]
    assert scores[0] == scores[1]


def test_pretrain_clm_evaluates_on_eval_data(data, tokenizers, clm, runs):
    """--eval-data with running text: training on all of --data, the printed loss is the model's on --eval-data."""
    run = ok(*_clm_argv(runs / "model", data, tokenizers), "--eval-data", data.heldout)
    evaluated = ok("evaluate", "--model", runs / "model", "--task", "clm", "--data", data.heldout,
                   "--block-size", "32")
    assert run.metrics["loss"] == pytest.approx(evaluated.metrics["loss"], abs=1e-3)
    card = json.loads((runs / "model" / "config.json").read_text())["model_card_data"]
    assert card["training_data"] == "`shakespeare.txt`, the whole text."


def test_a_folder_that_is_not_a_dataset_is_refused(mlm, tokenizers, runs):
    not_data = tokenizers["wordpiece"][0]
    run = cli("finetune", "--task", "sequence-classification", "--model", mlm.folder, "--data", not_data,
              "--output", runs / "model", "--quiet")
    assert_refused(run, "finetune", not_data, "save_to_disk", output=runs / "model")


@pytest.mark.parametrize("case", ["mixed types", "not JSON", "not an object"])
def test_json_lines_that_disagree_are_refused_naming_the_place(case, mlm, tmp_path, runs):
    rows = {"mixed types": '{"text": "good", "label": 1}\n{"text": "bad", "label": "negative"}\n',
            "not JSON": '{"text": "good", "label": 1}\n{text: bad}\n',
            "not an object": '{"text": "good", "label": 1}\n[1, 2]\n'}[case]
    names = {"mixed types": ["'label'", "row 1", "row 2"], "not JSON": ["Line 2"], "not an object": ["Line 2"]}[case]
    path = tmp_path / "rows.jsonl"
    path.write_text(rows)
    run = cli("finetune", "--task", "sequence-classification", "--model", mlm.folder, "--data", path,
              "--output", runs / "model", "--quiet")
    assert_refused(run, "finetune", path, *names, output=runs / "model")


# -- Learned positions: no input may run past them ---------------------------------------------------------------------
def test_check_tokenizer_fits_refuses_a_tokenizer_longer_than_the_learned_positions(tokenizers):
    from vaswani import check_tokenizer_fits, config_from_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizers["char"][0])
    assert tokenizer.model_max_length == 512
    learned = config_from_tokenizer(tokenizer, position_embedding_type="learned", max_position_embeddings=64)
    with pytest.raises(ValueError, match="model_max_length") as error:
        check_tokenizer_fits(learned, tokenizer)
    assert "512" in str(error.value) and "64 learned positions" in str(error.value)
    check_tokenizer_fits(config_from_tokenizer(tokenizer, max_position_embeddings=64), tokenizer)  # sinusoidal
    tokenizer.model_max_length = 64
    check_tokenizer_fits(learned, tokenizer)


@pytest.fixture(scope="module")
def learned(work, data, tokenizers):
    """A clm with 64 learned positions (blocks of 32), from a tokenizer whose model_max_length is 512."""
    return _train(work, "learned", "pretrain", "--objective", "clm", "--tokenizer", tokenizers["char"][0],
                  "--data", data.shakespeare, "--block-size", "32", "--steps", "2", "--positions", "learned")


def test_a_new_model_with_learned_positions_saves_a_tokenizer_that_fits(learned):
    config = AutoConfig.from_pretrained(learned.folder)
    assert config.position_embedding_type == "learned" and config.max_position_embeddings == 64
    assert AutoTokenizer.from_pretrained(learned.folder).model_max_length == 64
    assert "model_max_length 512 is lowered to 64" in learned.run.out


def test_evaluate_fits_the_block_size_to_learned_positions(learned, data):
    run = cli("evaluate", "--model", learned.folder, "--task", "clm", "--data", data.heldout, "--block-size", "100")
    assert run.code == 2 and "--block-size 100" in run.err and "--block-size 63" in run.err, run.err
    run = ok("evaluate", "--model", learned.folder, "--task", "clm", "--data", data.heldout)  # default 128: lowered
    assert "--block-size is 63" in run.out and math.isfinite(run.metrics["loss"])


def test_generate_refuses_a_prompt_it_would_truncate(learned):
    run = cli("generate", "--model", learned.folder, "--prompt", "To be", "--prompt", "x" * 70)
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1 and run.out == ""
    assert "--prompt number 2 has 70 tokens" in run.err and "model_max_length" in run.err, run.err


@pytest.mark.parametrize("option, value", [("--split", "train"), ("--eval-split", "test"),
                                           ("--max-eval-samples", "5"), ("--max-train-samples", "5")])
def test_row_options_for_running_text_are_refused(option, value, data, tokenizers, runs):
    run = _clm_into(runs / "model", data, tokenizers, option, value)
    assert_refused(run, "pretrain", option, "running text", output=runs / "model")


def test_evaluate_refuses_row_options_for_running_text(clm, data):
    for option, value in (("--max-eval-samples", "5"), ("--split", "validation")):
        run = cli("evaluate", "--model", clm.folder, "--task", "clm", "--data", data.heldout, option, value)
        assert run.code == 2 and option in run.err and "running text" in run.err and run.out == "", run.err


def test_generate_fits_the_new_tokens_to_learned_positions(learned):
    run = cli("generate", "--model", learned.folder, "--prompt", "ROMEO:", "--max-new-tokens", "100")
    assert run.code == 2 and len(run.err.strip().splitlines()) == 1
    assert "--max-new-tokens 100" in run.err and "--max-new-tokens 58" in run.err, run.err
    run = ok("generate", "--model", learned.folder, "--prompt", "ROMEO:")  # the default 64 is lowered to fit
    assert "--max-new-tokens is 58" in run.out and ">>> ROMEO:" in run.out


def test_ctrl_c_during_the_swap_is_held_until_the_new_folder_is_in_place(tmp_path, monkeypatch):
    """What train-tokenizer and convert write through: Ctrl-C while the finished folder replaces the old one waits
    for the swap, then stops the command; the folder is the new one, whole."""
    import signal

    import vaswani.training.run as run

    target = tmp_path / "folder"
    target.mkdir()
    (target / "old.txt").write_text("old")
    swap = run.replace_folder

    def interrupted_swap(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the folders are exchanged
        swap(*args, **kwargs)

    monkeypatch.setattr(run, "replace_folder", interrupted_swap)
    with pytest.raises(KeyboardInterrupt):
        with run.folder_written_whole(target, overwrite=True) as staging:
            (staging / "new.txt").write_text("new")
    assert os.listdir(target) == ["new.txt"] and os.listdir(tmp_path) == ["folder"]
    with pytest.raises(KeyboardInterrupt):  # before the swap, Ctrl-C stops at once: the old folder stays
        with run.folder_written_whole(target, overwrite=True) as staging:
            (staging / "newer.txt").write_text("newer")
            raise KeyboardInterrupt
    assert os.listdir(target) == ["new.txt"] and os.listdir(tmp_path) == ["folder"]
