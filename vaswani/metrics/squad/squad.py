"""SQuAD v1.1 exact match and F1 for extractive question answering (a local, offline `evaluate` module)."""

import collections
import re
import string

import datasets
import evaluate

_DESCRIPTION = """
The two scores of the official SQuAD v1.1 evaluation script (Rajpurkar et al., 2016), on plain answer
strings. Predictions and gold answers are first normalized: lowercased, punctuation removed, the articles
"a", "an" and "the" removed, whitespace collapsed.

- Exact match: 1 where the normalized prediction equals a normalized gold answer, else 0.
- F1: the F1 of the bags of normalized tokens shared by the prediction and a gold answer (0 where they
  share none).

Each question takes the best score over its gold answers; the corpus scores are the means over the
questions, in percent (0 to 100).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the predicted answer of each question.
    references (`list` of `list` of `str`, or `list` of `str`): the gold answers of each question (any
        number, at least one); a plain list of strings gives one gold answer per question.

Returns:
    exact_match (`float`): the exact match, 0 to 100.
    f1 (`float`): the token F1, 0 to 100.

Examples:

    >>> squad = vaswani.metrics.load_metric("squad")
    >>> squad.compute(predictions=["the Eiffel Tower"], references=[["Eiffel Tower", "the tower"]])
    {'exact_match': 100.0, 'f1': 100.0}
"""

_CITATION = """
@inproceedings{rajpurkar-etal-2016-squad,
    title = "{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text",
    author = "Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy",
    booktitle = "Proceedings of the 2016 Conference on Empirical Methods in Natural Language Processing",
    year = "2016",
    pages = "2383--2392",
    url = "https://aclanthology.org/D16-1264",
}
"""

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text):
    """Lowercase, drop punctuation, drop the articles a/an/the and collapse whitespace (SQuAD v1.1)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction, ground_truth):
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(prediction_tokens)
    recall = num_same / len(ground_truth_tokens)
    return 2 * precision * recall / (precision + recall)


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    return max(metric_fn(prediction, ground_truth) for ground_truth in ground_truths)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Squad(evaluate.Metric):
    """SQuAD v1.1 exact match and F1 on answer strings."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            homepage="https://rajpurkar.github.io/SQuAD-explorer/",
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Value("string"),
                    }
                ),
            ],
            codebase_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references):
        if not predictions:
            raise ValueError("squad needs at least one prediction")
        exact_match = f1 = 0.0
        for prediction, ground_truths in zip(predictions, references):
            if isinstance(ground_truths, str):
                ground_truths = [ground_truths]
            if not ground_truths:
                raise ValueError(f"every prediction needs at least one gold answer; {prediction!r} has none")
            exact_match += metric_max_over_ground_truths(exact_match_score, prediction, ground_truths)
            f1 += metric_max_over_ground_truths(f1_score, prediction, ground_truths)
        total = len(predictions)
        return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}
