"""F1 score of integer class predictions: binary, macro, micro or weighted (a local, offline `evaluate` module)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
The F1 score is the harmonic mean of precision and recall:

    F1 = 2 * (precision * recall) / (precision + recall) = 2 TP / (2 TP + FP + FN)

computed from the true positives (TP), false positives (FP) and false negatives (FN) of a class.
Where a class has no TP, FP nor FN the score is undefined; it is then 0.0 (scikit-learn's behaviour
with `zero_division="warn"`, without the warning).

`average` picks how the classes are combined, as in scikit-learn's `f1_score`:
- "binary" (default): the F1 of the class `pos_label` only; the inputs may hold at most two labels.
- "micro": F1 of the TP, FP and FN summed over all the labels (equal to the accuracy in single-label
  classification when every label is counted).
- "macro": the unweighted mean of the per-label F1 scores.
- "weighted": the mean of the per-label F1 scores weighted by their support (number of true instances).

This implementation needs only numpy (no scikit-learn).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted labels.
    references (`list` of `int`): ground-truth labels, one per prediction.
    average (`str`, defaults to `"binary"`): one of "binary", "micro", "macro", "weighted".
    pos_label (`int`, defaults to 1): the positive class when `average="binary"`.
    labels (`list` of `int`, *optional*): the labels to score for the "micro", "macro" and "weighted"
        averages; defaults to every label found in `predictions` or `references`, sorted.

Returns:
    f1 (`float`): the F1 score, in [0, 1].

Examples:

    >>> f1 = vaswani.metrics.load_metric("f1")
    >>> f1.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 1])
    {'f1': 0.5}
    >>> f1.compute(predictions=[0, 2, 1, 0, 0, 1], references=[0, 1, 2, 0, 1, 2], average="micro")
    {'f1': 0.3333333333333333}
"""

_CITATION = """
@book{van-rijsbergen-1979,
  title={Information Retrieval},
  author={van Rijsbergen, C. J.},
  edition={2nd},
  publisher={Butterworth-Heinemann},
  year={1979}
}
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O. and
          Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and
          Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""

AVERAGES = ("binary", "micro", "macro", "weighted")


def _f1(tp, fp, fn):
    """2 TP / (2 TP + FP + FN), 0.0 where that is 0 / 0 (works on scalars and arrays)."""
    tp, fp, fn = (np.asarray(x, dtype=np.float64) for x in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    """F1 score of integer class predictions."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("int64"),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def _compute(self, predictions, references, average="binary", pos_label=1, labels=None):
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {', '.join(map(repr, AVERAGES))}, got {average!r}")
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if predictions.size == 0:
            raise ValueError("f1 needs at least one prediction")
        present = np.union1d(predictions, references)

        if average == "binary":
            if present.size > 2:
                raise ValueError(
                    f"average='binary' needs at most two labels, got {present.tolist()}; "
                    "use average='micro', 'macro' or 'weighted' for multiclass inputs"
                )
            if present.size == 2 and pos_label not in present:
                raise ValueError(f"pos_label={pos_label} is not one of the labels {present.tolist()}")
            labels = np.array([pos_label], dtype=np.int64)
        else:
            labels = present if labels is None else np.asarray(labels, dtype=np.int64)

        # Per-label counts, one row per label.
        is_pred = predictions[None, :] == labels[:, None]
        is_ref = references[None, :] == labels[:, None]
        tp = np.sum(is_pred & is_ref, axis=1)
        fp = np.sum(is_pred & ~is_ref, axis=1)
        fn = np.sum(~is_pred & is_ref, axis=1)

        if average == "micro":
            score = _f1(tp.sum(), fp.sum(), fn.sum())
        else:
            per_label = _f1(tp, fp, fn)
            if average == "binary":
                score = per_label[0]
            elif average == "macro":
                score = per_label.mean() if per_label.size else 0.0
            else:  # weighted by support
                support = tp + fn
                score = (per_label * support).sum() / support.sum() if support.sum() > 0 else 0.0
        return {"f1": float(score)}
