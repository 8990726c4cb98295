"""The offline metrics of `vaswani.metrics`: local `evaluate` modules loaded with no network and no Hub cache.

Every metric is loaded through `vaswani.metrics.load_metric` with the Hub switched off, the Hugging Face caches
in a temporary folder and sockets refused, then checked against hand computations (accuracy, F1, SQuAD) or
against sacreBLEU called directly on the same inputs (BLEU, chrF).
"""

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sacrebleu

import vaswani
import vaswani.metrics
from vaswani.metrics import METRICS_DIR, available_metrics, load_metric, metric_path

NAMES = ["accuracy", "chrf", "f1", "sacrebleu", "squad"]

# Two tiny translation "corpora", each prediction with two references.
MT_PREDICTIONS = [
    "The cat sat on the mat.",
    "It is raining heavily today in Berlin.",
    "He read the book in two days",
    "Nobody came to the party",
]
MT_REFERENCES = [
    ["The cat sat on the mat.", "A cat was sitting on the mat."],
    ["Today it is raining hard in Berlin.", "It rains heavily in Berlin today."],
    ["He read the book in two days.", "He finished reading the book within two days."],
    ["No one came to the party.", "Nobody showed up at the party."],
]


def _streams(references):
    """Per-prediction references -> sacreBLEU reference streams, written out here independently of the modules."""
    return [[refs[0] for refs in references], [refs[1] for refs in references]]


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    """Hub off, caches in a temporary HF_HOME, sockets refused; the metrics are then loaded once per module."""
    import evaluate.config

    home = tmp_path_factory.mktemp("hf_home")
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("HF_DATASETS_OFFLINE", "1")
    mp.setenv("HF_EVALUATE_OFFLINE", "1")
    mp.setenv("HF_HOME", str(home))
    mp.setenv("HF_MODULES_CACHE", str(home / "modules"))
    # evaluate reads those variables once, when it is imported: point its resolved settings at the folder too.
    mp.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    mp.setattr(evaluate.config, "HF_MODULES_CACHE", home / "modules")
    mp.setattr(evaluate.config, "HF_METRICS_CACHE", home / "metrics")
    mp.setattr(evaluate.config, "HF_EVALUATE_CACHE", home / "evaluate")
    # evaluate imports the copied scripts as `evaluate_modules.*` from the modules cache on sys.path: put this
    # cache first, so that a fresh `evaluate_modules` package comes from `home` even where another cache is on
    # sys.path already, and put sys.path and sys.modules back afterwards.
    (home / "modules").mkdir()
    mp.setattr(sys, "path", [str(home / "modules"), *sys.path])
    saved_modules = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] == "evaluate_modules"}

    def no_network(*args, **kwargs):
        raise OSError("network access attempted in an offline metrics test")

    mp.setattr(socket.socket, "connect", no_network)
    mp.setattr(socket.socket, "connect_ex", no_network)
    try:
        yield home
    finally:
        mp.undo()
        for k in [k for k in sys.modules if k.split(".")[0] == "evaluate_modules"]:
            del sys.modules[k]
        sys.modules.update(saved_modules)


@pytest.fixture(scope="module")
def metrics(hf_home):
    """Each metric, loaded once (loading copies the script into the temporary modules cache)."""
    return {name: load_metric(name) for name in NAMES}


# --- the package: names, paths, laziness -------------------------------------------------------------------


def test_available_metrics_and_paths():
    assert available_metrics() == NAMES
    assert isinstance(METRICS_DIR, Path) and METRICS_DIR == Path(vaswani.metrics.__file__).resolve().parent
    for name in NAMES:
        path = metric_path(name)
        assert isinstance(path, str)
        assert (METRICS_DIR / name / f"{name}.py").is_file() and path == str(METRICS_DIR / name)


@pytest.mark.parametrize("bad", ["bleu", "Accuracy", "", "accuracy/../f1", "__pycache__"])
def test_unknown_metric_raises_listing_available(bad):
    with pytest.raises(ValueError, match="available metrics") as err:
        metric_path(bad)
    for name in NAMES:
        assert name in str(err.value)
    with pytest.raises(ValueError, match="accuracy, chrf, f1, sacrebleu, squad"):
        load_metric(bad)


def test_import_is_lazy():
    """Running `vaswani/metrics/__init__.py` imports neither evaluate nor datasets (a bare interpreter, ~0.1 s)."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('vaswani_metrics', {str(METRICS_DIR / '__init__.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert module.available_metrics() == " + repr(NAMES) + "\n"
        "heavy = [m for m in ('evaluate', 'datasets', 'sacrebleu', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- loading offline ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_loads_offline_into_tmp_cache(metrics, hf_home, name):
    import evaluate

    metric = metrics[name]
    assert isinstance(metric, evaluate.Metric)
    assert metric.name == name
    assert metric.description.strip() and metric.citation.strip() and metric.inputs_description.strip()
    # The script was copied into the temporary modules cache, not ~/.cache.
    assert (hf_home / "modules" / "evaluate_modules" / "metrics" / name).is_dir()
    assert type(metric).__module__.startswith(f"evaluate_modules.metrics.{name}.")
    # The test really is offline.
    with socket.socket() as sock, pytest.raises(OSError, match="network access"):
        sock.connect(("127.0.0.1", 443))


def test_load_metric_forwards_kwargs(hf_home):
    accuracy = load_metric("accuracy", keep_in_memory=True, experiment_id="vaswani-test")
    assert accuracy.keep_in_memory and accuracy.experiment_id == "vaswani-test"
    assert accuracy.compute(predictions=[1, 0], references=[1, 1]) == {"accuracy": 0.5}


def test_the_readmes_offline_metrics_snippet_runs(hf_home):
    """The README's doctest block on loading the shipped metrics, run as written, offline."""
    import doctest
    import re

    readme = (Path(vaswani.__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    blocks = [block for block in blocks if ">>> import evaluate, vaswani.metrics" in block]
    assert len(blocks) == 1, "the README has no (or more than one) offline metrics snippet"
    test = doctest.DocTestParser().get_doctest(blocks[0], {}, "README offline metrics", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.tries >= 2 and runner.failures == 0


# --- accuracy ----------------------------------------------------------------------------------------------


def test_accuracy_by_hand(metrics):
    accuracy = metrics["accuracy"]
    assert accuracy.compute(predictions=[0, 1, 2, 2, 1], references=[0, 1, 1, 2, 0]) == {"accuracy": 3 / 5}
    assert accuracy.compute(predictions=[1, 1, 1], references=[1, 1, 1]) == {"accuracy": 1.0}
    assert accuracy.compute(predictions=[0, 0], references=[1, 1]) == {"accuracy": 0.0}
    assert isinstance(accuracy.compute(predictions=[0], references=[0])["accuracy"], float)


# --- F1 ----------------------------------------------------------------------------------------------------


def test_f1_binary_by_hand(metrics):
    f1 = metrics["f1"]
    preds, refs = [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]
    # Class 1: TP 1, FP 2, FN 0 -> P 1/3, R 1 -> F1 = 2 * 1 / (2 * 1 + 2 + 0) = 1/2.
    assert f1.compute(predictions=preds, references=refs) == pytest.approx({"f1": 0.5}, abs=1e-12)
    # Class 0: TP 2, FP 0, FN 2 -> P 1, R 1/2 -> F1 = 4 / 6 = 2/3.
    assert f1.compute(predictions=preds, references=refs, pos_label=0)["f1"] == pytest.approx(2 / 3, abs=1e-12)
    # Class 1 with TP 2, FP 1, FN 1 -> 4 / 6.
    assert f1.compute(predictions=[1, 1, 0, 1, 0, 0], references=[1, 0, 0, 1, 1, 0])["f1"] == pytest.approx(2 / 3)


def test_f1_multiclass_by_hand(metrics):
    f1 = metrics["f1"]
    preds, refs = [0, 0, 1, 1, 2], [0, 0, 0, 1, 2]
    # Per class: 0 -> TP 2, FP 0, FN 1 -> 4/5 (support 3); 1 -> TP 1, FP 1, FN 0 -> 2/3 (support 1);
    # 2 -> TP 1, FP 0, FN 0 -> 1 (support 1).
    per_class, support = [4 / 5, 2 / 3, 1.0], [3, 1, 1]
    macro = sum(per_class) / 3
    weighted = sum(f * s for f, s in zip(per_class, support)) / sum(support)
    micro = 4 / 5  # summed TP 4, FP 1, FN 1 -> 8 / 10 (= the accuracy)
    for average, expected in [("macro", macro), ("weighted", weighted), ("micro", micro)]:
        result = f1.compute(predictions=preds, references=refs, average=average)
        assert result["f1"] == pytest.approx(expected, abs=1e-12), average
    assert macro != pytest.approx(weighted)

    # scikit-learn's documented example: macro 0.267, micro 0.333, weighted 0.267.
    preds, refs = [0, 2, 1, 0, 0, 1], [0, 1, 2, 0, 1, 2]
    assert f1.compute(predictions=preds, references=refs, average="macro")["f1"] == pytest.approx(0.8 / 3)
    assert f1.compute(predictions=preds, references=refs, average="micro")["f1"] == pytest.approx(1 / 3)
    assert f1.compute(predictions=preds, references=refs, average="weighted")["f1"] == pytest.approx(0.8 / 3)


def test_f1_zero_division_is_zero(metrics):
    f1 = metrics["f1"]
    # No positive anywhere: TP = FP = FN = 0 for class 1, so F1 is 0/0 -> 0.0.
    assert f1.compute(predictions=[0, 0, 0], references=[0, 0, 0]) == {"f1": 0.0}
    # Never predicted positive, though there are positives: precision 0/0 -> F1 0.0.
    assert f1.compute(predictions=[0, 0, 0], references=[1, 0, 1]) == {"f1": 0.0}
    # A requested label seen nowhere counts 0 in the macro mean: (1 + 1 + 0) / 3.
    result = f1.compute(predictions=[0, 1], references=[0, 1], average="macro", labels=[0, 1, 2])
    assert result["f1"] == pytest.approx(2 / 3)


def test_f1_rejects_bad_arguments(hf_home):
    f1 = load_metric("f1", keep_in_memory=True)
    with pytest.raises(ValueError, match="binary"):
        f1.compute(predictions=[0, 1, 2], references=[0, 1, 2])
    with pytest.raises(ValueError, match="average"):
        f1.compute(predictions=[0, 1], references=[0, 1], average="samples")
    with pytest.raises(ValueError, match="pos_label"):
        f1.compute(predictions=[0, 2], references=[2, 0])


# --- BLEU --------------------------------------------------------------------------------------------------


def _bleu_dict(output):
    return {
        "score": output.score,
        "counts": output.counts,
        "totals": output.totals,
        "precisions": output.precisions,
        "bp": output.bp,
        "sys_len": output.sys_len,
        "ref_len": output.ref_len,
    }


def _assert_close(result, expected):
    assert set(result) == set(expected)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-9, rel=0), key


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"tokenize": "char"},
        {"lowercase": True},
        {"smooth_method": "floor", "smooth_value": 0.1},
        {"tokenize": "none", "smooth_method": "none"},
    ],
)
def test_sacrebleu_matches_library(metrics, kwargs):
    result = metrics["sacrebleu"].compute(predictions=MT_PREDICTIONS, references=MT_REFERENCES, **kwargs)
    expected = _bleu_dict(sacrebleu.corpus_bleu(MT_PREDICTIONS, _streams(MT_REFERENCES), **kwargs))
    _assert_close(result, expected)
    assert 0.0 < result["score"] < 100.0


def test_sacrebleu_single_reference_strings(metrics):
    bleu = metrics["sacrebleu"]
    first_refs = [refs[0] for refs in MT_REFERENCES]
    as_strings = bleu.compute(predictions=MT_PREDICTIONS, references=first_refs)
    as_lists = bleu.compute(predictions=MT_PREDICTIONS, references=[[r] for r in first_refs])
    _assert_close(as_strings, _bleu_dict(sacrebleu.corpus_bleu(MT_PREDICTIONS, [first_refs])))
    assert as_strings == as_lists
    perfect = bleu.compute(predictions=["hello there general kenobi"], references=["hello there general kenobi"])
    assert perfect["score"] == pytest.approx(100.0) and perfect["bp"] == 1.0


def test_sacrebleu_needs_as_many_references_each(hf_home):
    bleu = load_metric("sacrebleu", keep_in_memory=True)
    with pytest.raises(ValueError, match="same number of references"):
        bleu.compute(predictions=["a b c", "d e f"], references=[["a b c", "a b"], ["d e f"]])


# --- chrF --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs", [{}, {"word_order": 2}, {"beta": 1, "lowercase": True}, {"eps_smoothing": True, "whitespace": True}]
)
def test_chrf_matches_library(metrics, kwargs):
    result = metrics["chrf"].compute(predictions=MT_PREDICTIONS, references=MT_REFERENCES, **kwargs)
    scorer = sacrebleu.CHRF(**kwargs)
    output = scorer.corpus_score(MT_PREDICTIONS, _streams(MT_REFERENCES))
    expected = {
        "score": output.score,
        "char_order": 6,
        "word_order": kwargs.get("word_order", 0),
        "beta": kwargs.get("beta", 2),
    }
    _assert_close(result, expected)
    assert 0.0 < result["score"] < 100.0


def test_chrf_defaults_and_single_reference_strings(metrics):
    chrf = metrics["chrf"]
    first_refs = [refs[0] for refs in MT_REFERENCES]
    result = chrf.compute(predictions=MT_PREDICTIONS, references=first_refs)
    assert (result["char_order"], result["word_order"], result["beta"]) == (6, 0, 2)
    assert result["score"] == pytest.approx(sacrebleu.CHRF().corpus_score(MT_PREDICTIONS, [first_refs]).score, abs=1e-9)
    chrf_pp = chrf.compute(predictions=MT_PREDICTIONS, references=first_refs, word_order=2)
    assert chrf_pp["word_order"] == 2 and chrf_pp["score"] != pytest.approx(result["score"])
    assert chrf.compute(predictions=["the cat sat"], references=[["the cat sat"]])["score"] == pytest.approx(100.0)


# --- SQuAD -------------------------------------------------------------------------------------------------


def test_squad_textbook_examples(metrics):
    squad = metrics["squad"]
    # Articles and case are normalized away.
    perfect = {"exact_match": 100.0, "f1": 100.0}
    assert squad.compute(predictions=["the Eiffel Tower"], references=[["Eiffel Tower"]]) == perfect
    assert squad.compute(predictions=["the Eiffel Tower"], references=["Eiffel Tower"]) == perfect
    # Punctuation too.
    assert squad.compute(predictions=["Paris!"], references=[["paris"]]) == perfect
    # Partial overlap: 2 shared tokens, 3 predicted, 2 gold -> P 2/3, R 1 -> F1 = 2 (2/3) / (5/3) = 0.8.
    partial = squad.compute(predictions=["Denver Broncos won"], references=[["Denver Broncos"]])
    assert partial["exact_match"] == 0.0 and partial["f1"] == pytest.approx(80.0, abs=1e-9)
    # Max over gold answers: "in 1889" vs "1889" -> P 1/2, R 1 -> 2/3; vs "March 1889" -> 1/2.
    best = squad.compute(predictions=["in 1889"], references=[["March 1889", "1889"]])
    assert best["exact_match"] == 0.0 and best["f1"] == pytest.approx(100 * 2 / 3, abs=1e-9)
    # Token bags: "the the cat cat" -> [cat, cat] vs [cat] shares 1 -> P 1/2, R 1 -> 2/3; "anthem" keeps its "an".
    assert squad.compute(predictions=["the the cat cat"], references=[["a cat"]])["f1"] == pytest.approx(100 * 2 / 3)
    assert squad.compute(predictions=["Anthem"], references=[["them"]]) == {"exact_match": 0.0, "f1": 0.0}
    # As in the v1.1 script, an answer that normalizes to nothing matches exactly but has F1 0.
    assert squad.compute(predictions=["The"], references=[["a"]]) == {"exact_match": 100.0, "f1": 0.0}


def test_squad_corpus_mean(metrics):
    result = metrics["squad"].compute(
        predictions=["the Eiffel Tower", "Denver Broncos won", "blue"],
        references=[["Eiffel Tower", "the tower"], ["Denver Broncos", "Broncos"], ["red"]],
    )
    # EM: 1, 0, 0; F1: 1, 0.8, 0.
    assert result["exact_match"] == pytest.approx(100 / 3, abs=1e-9)
    assert result["f1"] == pytest.approx(100 * 1.8 / 3, abs=1e-9)


# --- add_batch ---------------------------------------------------------------------------------------------

BATCH_CASES = {
    "accuracy": ([0, 1, 2, 2, 1, 0, 1], [0, 1, 1, 2, 0, 0, 0], {}),
    "f1": ([0, 0, 1, 1, 2, 0, 2], [0, 0, 0, 1, 2, 1, 2], {"average": "macro"}),
    "sacrebleu": (MT_PREDICTIONS, MT_REFERENCES, {}),
    "chrf": (MT_PREDICTIONS, MT_REFERENCES, {"word_order": 2}),
    "squad": (
        ["the Eiffel Tower", "Denver Broncos won", "in 1889", "blue"],
        [["Eiffel Tower"], ["Denver Broncos"], ["1889", "March 1889"], ["red"]],
        {},
    ),
}


@pytest.mark.parametrize("name", NAMES)
def test_add_batch_then_compute_equals_one_compute(metrics, name):
    metric = metrics[name]
    predictions, references, kwargs = BATCH_CASES[name]
    whole = metric.compute(predictions=predictions, references=references, **kwargs)
    split = 2
    metric.add_batch(predictions=predictions[:split], references=references[:split])
    metric.add_batch(predictions=predictions[split:], references=references[split:])
    batched = metric.compute(**kwargs)
    assert batched == whole
    # And one example at a time.
    for prediction, reference in zip(predictions, references):
        metric.add(prediction=prediction, reference=reference)
    assert metric.compute(**kwargs) == whole
