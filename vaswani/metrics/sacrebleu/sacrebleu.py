"""Corpus BLEU with sacreBLEU (a local, offline `evaluate` module, with the outputs of the Hub's `sacrebleu`)."""

import datasets
import evaluate
import sacrebleu as scb

_DESCRIPTION = """
BLEU (Papineni et al., 2002) scores machine translations against one or more human references by the
geometric mean of the modified n-gram precisions (n = 1..4) times a brevity penalty. sacreBLEU (Post, 2018)
computes it in a reproducible way: it tokenizes the detokenized text itself (`tokenize="13a"` by default,
the WMT standard), so scores from different papers can be compared. This module wraps
`sacrebleu.corpus_bleu` and returns the same fields as the Hugging Face Hub's `sacrebleu` metric.

Every prediction must have the same number of references (sacreBLEU's reference streams).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the translations to score (detokenized text).
    references (`list` of `list` of `str`, or `list` of `str`): the references of each prediction, the same
        number for every prediction; a plain list of strings gives one reference per prediction.
    smooth_method (`str`, defaults to `"exp"`): "none", "floor", "add-k" or "exp".
    smooth_value (`float`, *optional*): the value for the "floor" and "add-k" smoothings.
    force (`bool`, defaults to `False`): score even text that looks tokenized already.
    lowercase (`bool`, defaults to `False`): lowercase predictions and references first.
    tokenize (`str`, *optional*): sacreBLEU's tokenizer ("13a" by default; "none", "zh", "intl",
        "char", "ja-mecab", ... where installed).
    use_effective_order (`bool`, defaults to `False`): leave out n-gram orders with no match (sentence BLEU).

Returns:
    score (`float`): BLEU, 0 to 100.
    counts (`list` of `int`): matching n-grams, n = 1..4.
    totals (`list` of `int`): n-grams in the predictions, n = 1..4.
    precisions (`list` of `float`): the modified n-gram precisions in percent, n = 1..4.
    bp (`float`): the brevity penalty.
    sys_len (`int`): length of the predictions in tokens.
    ref_len (`int`): effective length of the references in tokens.

Examples:

    >>> bleu = vaswani.metrics.load_metric("sacrebleu")
    >>> result = bleu.compute(predictions=["hello there general kenobi"],
    ...                       references=[["hello there general kenobi", "hello there !"]])
    >>> round(result["score"], 1)
    100.0
"""

_CITATION = """
@inproceedings{papineni-etal-2002-bleu,
    title = "{B}leu: a Method for Automatic Evaluation of Machine Translation",
    author = "Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing",
    booktitle = "Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics",
    year = "2002",
    pages = "311--318",
    url = "https://aclanthology.org/P02-1040",
}
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    pages = "186--191",
    url = "https://www.aclweb.org/anthology/W18-6319",
}
"""


def _reference_streams(references):
    """Per-prediction references (a list of lists, or one string each) -> sacreBLEU's reference streams."""
    references = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    if not references:
        return []
    n_refs = len(references[0])
    if n_refs == 0 or any(len(refs) != n_refs for refs in references):
        raise ValueError(
            "sacreBLEU needs the same number of references (at least one) for each prediction, got "
            f"{sorted({len(refs) for refs in references})}"
        )
    return [[refs[i] for refs in references] for i in range(n_refs)]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Sacrebleu(evaluate.Metric):
    """Corpus BLEU computed with sacreBLEU."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            homepage="https://github.com/mjpost/sacreBLEU",
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
            codebase_urls=["https://github.com/mjpost/sacreBLEU"],
            reference_urls=[
                "https://github.com/mjpost/sacreBLEU",
                "https://en.wikipedia.org/wiki/BLEU",
            ],
        )

    def _compute(
        self,
        predictions,
        references,
        smooth_method="exp",
        smooth_value=None,
        force=False,
        lowercase=False,
        tokenize=None,
        use_effective_order=False,
    ):
        if not predictions:
            raise ValueError("sacrebleu needs at least one prediction")
        output = scb.corpus_bleu(
            predictions,
            _reference_streams(references),
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            force=force,
            lowercase=lowercase,
            use_effective_order=use_effective_order,
            **({"tokenize": tokenize} if tokenize is not None else {}),
        )
        return {
            "score": output.score,
            "counts": output.counts,
            "totals": output.totals,
            "precisions": output.precisions,
            "bp": output.bp,
            "sys_len": output.sys_len,
            "ref_len": output.ref_len,
        }
