"""chrF and chrF++ with sacreBLEU (a local, offline `evaluate` module, with the outputs of the Hub's `chrf`)."""

import datasets
import evaluate
from sacrebleu import CHRF

_DESCRIPTION = """
chrF (Popović, 2015) scores translations by the F-score of character n-grams (n = 1..`char_order`,
6 by default) between a prediction and its references, with recall weighted `beta` (2 by default)
times as much as precision. chrF++ (Popović, 2017) adds word n-grams (n = 1..`word_order`); it is
`word_order=2`. The corpus score is computed with sacreBLEU's `CHRF` (Post, 2018), as the Hugging Face
Hub's `chrf` metric does, and ranges from 0 to 100.

Every prediction must have the same number of references (sacreBLEU's reference streams).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the translations to score.
    references (`list` of `list` of `str`, or `list` of `str`): the references of each prediction, the same
        number for every prediction; a plain list of strings gives one reference per prediction.
    char_order (`int`, defaults to 6): the longest character n-gram.
    word_order (`int`, defaults to 0): the longest word n-gram; 2 gives chrF++.
    beta (`int`, defaults to 2): the weight of recall relative to precision.
    lowercase (`bool`, defaults to `False`): lowercase predictions and references first.
    whitespace (`bool`, defaults to `False`): count whitespace in the character n-grams.
    eps_smoothing (`bool`, defaults to `False`): the epsilon smoothing of the reference chrF++.py,
        NLTK and Moses instead of sacreBLEU's default effective-order smoothing.

Returns:
    score (`float`): chrF (or chrF++), 0 to 100.
    char_order (`int`), word_order (`int`), beta (`int`): the settings used.

Examples:

    >>> chrf = vaswani.metrics.load_metric("chrf")
    >>> chrf.compute(predictions=["the cat sat"], references=[["the cat sat"]])["score"]
    100.0
"""

_CITATION = """
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    year = "2015",
    pages = "392--395",
    url = "https://aclanthology.org/W15-3049",
}
@inproceedings{popovic-2017-chrf,
    title = "chr{F}++: words helping character n-grams",
    author = "Popovi{\\'c}, Maja",
    booktitle = "Proceedings of the Second Conference on Machine Translation",
    year = "2017",
    pages = "612--618",
    url = "https://aclanthology.org/W17-4770",
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
            "chrF needs the same number of references (at least one) for each prediction, got "
            f"{sorted({len(refs) for refs in references})}"
        )
    return [[refs[i] for refs in references] for i in range(n_refs)]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(evaluate.Metric):
    """chrF / chrF++ computed with sacreBLEU."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            homepage="https://github.com/mjpost/sacreBLEU#chrf--chrf",
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
            codebase_urls=["https://github.com/mjpost/sacreBLEU#chrf--chrf"],
            reference_urls=["https://github.com/m-popovic/chrF"],
        )

    def _compute(
        self,
        predictions,
        references,
        char_order=CHRF.CHAR_ORDER,
        word_order=CHRF.WORD_ORDER,
        beta=CHRF.BETA,
        lowercase=False,
        whitespace=False,
        eps_smoothing=False,
    ):
        if not predictions:
            raise ValueError("chrf needs at least one prediction")
        scorer = CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        output = scorer.corpus_score(predictions, _reference_streams(references))
        return {
            "score": output.score,
            "char_order": output.char_order,
            "word_order": output.word_order,
            "beta": output.beta,
        }
