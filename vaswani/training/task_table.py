"""
The tasks the command line trains and evaluates, in one table: for each task, the Auto class of its head, how its
data is prepared, what it reports, the command-line options it reads, the Trainer that trains it, and whether its
loss takes label smoothing. `vaswani pretrain`, `finetune` and `evaluate` look a task up here; none of them branches
on the task's name.

    clm                       causal LM on running text (a .txt file is read whole)
    mlm, mlm+nsp              BERT's masked LM, with next-sentence prediction for `pretrain --nsp`
    plm                       XLNet's permutation LM (two-stream attention; a head no Auto class builds)
    sequence-classification   one label per text (or text pair)
    token-classification      one tag per word
    question-answering        the answer's span in a context
    seq2seq                   source to target (the paper's translation)
    image-classification      one label per image (ViT); the image processor plays the tokenizer's part
    captioning                a caption per image: an image encoder, a text decoder (the image processor and the
                              tokenizer both)
"""

from dataclasses import dataclass, fields
from typing import Callable

import numpy as np

from . import evaluation, segment_memory, tasks
from .data import UsageError, require_columns
from .run import VaswaniSeq2SeqTrainer, VaswaniTrainer
from .tasks import Prepared


@dataclass(frozen=True)
class TaskOptions:
    """What the tasks read from the command line: column names and sizes. The defaults are the command line's."""

    text_column: str = "text"
    image_column: str = "image"
    caption_column: str = "caption"
    pair_column: str | None = None
    label_column: str = "label"
    tokens_column: str = "tokens"
    tags_column: str = "tags"
    question_column: str = "question"
    context_column: str = "context"
    answer_column: str = "answers"
    answer_start_column: str | None = None
    source_column: str = "en"
    target_column: str = "es"
    max_length: int = 128
    block_size: int = 128
    doc_stride: int = 32
    plm_probability: float = 1 / 6
    max_span_length: int = 5
    memory_length: int | None = None
    batch_size: int = 16  # not an option of its own: a segment memory's streams are the rows of a batch
    pack: bool = False  # pretrain's --pack (clm, mlm, plm), offered by pretrain itself: evaluate reads rows as they are

    @classmethod
    def of(cls, namespace) -> "TaskOptions":
        """The options a parsed command line holds (the others keep their defaults)."""
        return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls) if hasattr(namespace, f.name)})


# Help for each option; the command line appends the default.
OPTION_HELP = {
    "text_column": "column holding the text",
    "image_column": "image-classification and captioning: column holding the images",
    "caption_column": "captioning: column holding each image's caption",
    "pair_column": "sequence-classification: second text of a pair",
    "label_column": "sequence- and image-classification: label column",
    "tokens_column": "token-classification: words column",
    "tags_column": "token-classification: tags column, one tag per word",
    "question_column": "question answering: question column",
    "context_column": "question answering: context column",
    "answer_column": "question answering: SQuAD-style answers, or the answer text",
    "answer_start_column": "question answering: character start of a plain-text answer",
    "source_column": "seq2seq: source column",
    "target_column": "seq2seq: target column",
    "max_length": "longest tokenised example",
    "block_size": "clm: tokens predicted per block",
    "doc_stride": "question answering: overlap of the windows of a long context",
    "plm_probability": "plm: share of tokens predicted (one span per span-length / probability tokens)",
    "max_span_length": "plm: longest span of predicted tokens",
    "memory_length": "clm: Transformer-XL segment memory, tokens of earlier segments each block of --block-size "
                     "also attends to; the rows of a batch then continue the same streams of the text from step to "
                     "step (pretrain: the new model's memory_length; evaluate: reads the text in order, by default "
                     "with the model's memory_length, 0 without memory)",
    "pack": "clm, mlm, plm: pack the rows into full rows with no padding (mlm, plm: [CLS] then sentences, a [SEP] "
            "after each, in rows of --max-length; clm: a table's rows, the eos token after each, in blocks); says the "
            "padding saved",
}


# -- Preparing the data -------------------------------------------------------------------------------------------------
def _documents(source, column: str) -> list[str] | str | None:
    """A causal LM's documents: a table's text column (a running text stays one)."""
    if source is None or isinstance(source, str):
        return source
    require_columns(source, [column], "the data")
    return list(source[column])


def _running_text(source, column: str) -> str | None:
    """A causal LM's running text: a text as it is, or a table's text column joined by newlines."""
    documents = _documents(source, column)
    return documents if documents is None or isinstance(documents, str) else "\n".join(documents)


def _prepare_clm(options, train, evaluation_rows, tokenizer, **_):
    if options.pack:  # documents, the eos token after each, packed into blocks
        if isinstance(train, str):
            raise UsageError("--pack packs a table's rows, not a running text (a .txt file): drop --pack, or give a "
                             "table.")
        return tasks.prepare_clm_packed(_documents(train, options.text_column),
                                        _documents(evaluation_rows, options.text_column), tokenizer,
                                        options.block_size, options.batch_size)
    if options.memory_length is not None:  # streams of segments, read in order
        return segment_memory.prepare_clm_memory(
            _running_text(train, options.text_column), _running_text(evaluation_rows, options.text_column),
            tokenizer, options.block_size, options.batch_size,
        )
    return tasks.prepare_clm(_running_text(train, options.text_column),
                             _running_text(evaluation_rows, options.text_column), tokenizer, options.block_size)


def _prepare_mlm(nsp: bool):
    def prepare(options, train, evaluation_rows, tokenizer, seed: int = 0, **_):
        return tasks.prepare_mlm(train, evaluation_rows, tokenizer, options.text_column, options.max_length, nsp=nsp,
                                 seed=seed, pack=options.pack, batch_size=options.batch_size)

    return prepare


def _prepare_plm(options, train, evaluation_rows, tokenizer, seed: int = 0, **_):
    return tasks.prepare_plm(train, evaluation_rows, tokenizer, options.text_column, options.max_length,
                             options.plm_probability, options.max_span_length, options.pack, options.batch_size, seed)


def _prepare_seq2seq(options, train, evaluation_rows, tokenizer, model=None, **_):
    return tasks.prepare_seq2seq(train, evaluation_rows, tokenizer, model, options.source_column,
                                 options.target_column, options.max_length)


def _prepare_sequence_classification(options, train, evaluation_rows, tokenizer, known_labels=None, **_):
    return tasks.prepare_sequence_classification(
        train, evaluation_rows, tokenizer, options.text_column, options.label_column, options.max_length,
        options.pair_column, known_labels,
    )


def _prepare_image_classification(options, train, evaluation_rows, tokenizer, processor=None, known_labels=None, **_):
    return tasks.prepare_image_classification(train, evaluation_rows, processor, options.image_column,
                                              options.label_column, known_labels)


def _prepare_captioning(options, train, evaluation_rows, tokenizer, processor=None, **_):
    return tasks.prepare_captioning(train, evaluation_rows, tokenizer, processor, options.image_column,
                                    options.caption_column, options.max_length)


def _prepare_token_classification(options, train, evaluation_rows, tokenizer, known_labels=None, **_):
    return tasks.prepare_token_classification(train, evaluation_rows, tokenizer, options.tokens_column,
                                              options.tags_column, options.max_length, known_labels)


def _prepare_question_answering(options, train, evaluation_rows, tokenizer, **_):
    return tasks.prepare_question_answering(
        train, evaluation_rows, tokenizer, options.question_column, options.context_column, options.answer_column,
        options.answer_start_column, options.max_length, options.doc_stride,
    )


# -- Scoring: (metrics, examples of predictions) ------------------------------------------------------------------------
def _classification_scores(model, tokenizer, rows, options, prepared, trainer, generation):
    logits, labels = evaluation.predict_logits(trainer, prepared.eval)
    return evaluation.classification_metrics(np.argmax(logits, -1), labels, model.config.num_labels), []


def _question_answering_scores(model, tokenizer, rows, options, prepared, trainer, generation):
    return evaluation.evaluate_question_answering(
        model, tokenizer, rows, options.question_column, options.context_column, options.answer_column,
        options.answer_start_column, options.max_length, options.doc_stride,
    ), []


def _translation_scores(model, tokenizer, rows, options, prepared, trainer, generation):
    return evaluation.evaluate_translation(model, tokenizer, rows, options.source_column, options.target_column,
                                           options.max_length, **generation)


def _caption_scores(model, tokenizer, rows, options, prepared, trainer, generation):
    batch_size = trainer.args.per_device_eval_batch_size if trainer is not None else 32
    return evaluation.evaluate_captioning(model, tokenizer, prepared.image_processor, rows, options.image_column,
                                          options.caption_column, batch_size, **generation)


def _loss(eval_loss: float) -> dict:
    return {"loss": round(eval_loss, 4)}


def _pretraining_loss(eval_loss: float) -> dict:
    return {"loss (MLM + NSP)": round(eval_loss, 4)}  # a sum of two losses has no perplexity


# -- The table ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """
    One task. `prepare(options, train, evaluation, tokenizer, processor=, model=, known_labels=, seed=)` gives a
    `Prepared` (either set may be None; `processor`: the image processor of a task that reads images, and
    `tokenizer` None for one without text); `scores(model, tokenizer, rows, options, prepared, trainer, generation)`
    gives the headline metrics and a few examples, or is None where the evaluation loss says all (language models).
    """

    name: str
    auto: str  # the transformers Auto class that builds and loads the head (the head's class where none fits)
    prepare: Callable[..., Prepared]
    options: tuple[str, ...]  # the TaskOptions fields it reads: the command line offers exactly these
    commands: tuple[str, ...]  # the commands that offer it as --objective / --task
    trainer: type = VaswaniTrainer
    loss_metrics: Callable[[float], dict] = _loss
    scores: Callable | None = None
    scores_prepared: bool = True  # `evaluate` scores the prepared evaluation set (else the rows)
    labelled: bool = False  # its head's labels come from the data (id2label), so data is prepared first
    running_text: bool = False  # a .txt file is one running text, not one row per line
    label_smoothing: bool = False  # its head's forward takes label smoothing (`smoothing`: token prediction)
    reads_images: bool = False  # its data are images (`images.load_images`), prepared by an image processor
    reads_text: bool = True  # its data pass through a tokenizer (text in, or a caption out)
    generates: bool = False  # it is scored on generated text: the generation options apply
    reports_loss: bool = False  # `evaluate` reports its evaluation loss beside its scores
    positions: Callable[[TaskOptions], int] = lambda options: max(options.max_length, 64)

    def auto_class(self):
        import transformers

        if hasattr(transformers, self.auto):
            return getattr(transformers, self.auto)
        return _OwnClass(self.auto)

    def head_class(self):
        """The model class the task trains."""
        import vaswani

        auto = self.auto_class()
        return auto.model_class if isinstance(auto, _OwnClass) else vaswani.AUTO_CLASSES[auto]


class _OwnClass:
    """In the place of an Auto class for a head that none builds (permutation LM): its own class builds and loads."""

    def __init__(self, name: str):
        import vaswani

        self.model_class = getattr(vaswani, name)

    def from_config(self, config, **kwargs):
        return self.model_class._from_config(config, **kwargs)

    def from_pretrained(self, *args, **kwargs):
        return self.model_class.from_pretrained(*args, **kwargs)


_TASKS = [
    Task("clm", "AutoModelForCausalLM", _prepare_clm, ("text_column", "block_size", "memory_length"),
         ("pretrain", "evaluate"),
         loss_metrics=evaluation.language_model_metrics, running_text=True, label_smoothing=True,
         positions=lambda options: max(options.block_size + 1, 64)),
    Task("mlm", "AutoModelForMaskedLM", _prepare_mlm(nsp=False), ("text_column", "max_length"),
         ("pretrain", "evaluate"), loss_metrics=evaluation.language_model_metrics, label_smoothing=True,
         positions=lambda options: options.max_length),
    Task("mlm+nsp", "AutoModelForPreTraining", _prepare_mlm(nsp=True), ("text_column", "max_length"), (),
         loss_metrics=_pretraining_loss, label_smoothing=True, positions=lambda options: options.max_length),
    Task("plm", "VaswaniForPermutationLM", _prepare_plm, ("text_column", "max_length", "plm_probability",
                                                          "max_span_length"),
         ("pretrain", "evaluate"), loss_metrics=evaluation.language_model_metrics, label_smoothing=True,
         positions=lambda options: options.max_length),
    Task("sequence-classification", "AutoModelForSequenceClassification", _prepare_sequence_classification,
         ("text_column", "pair_column", "label_column", "max_length"), ("finetune", "evaluate"),
         scores=_classification_scores, labelled=True),
    Task("token-classification", "AutoModelForTokenClassification", _prepare_token_classification,
         ("tokens_column", "tags_column", "max_length"), ("finetune", "evaluate"),
         scores=_classification_scores, labelled=True),
    Task("question-answering", "AutoModelForQuestionAnswering", _prepare_question_answering,
         ("question_column", "context_column", "answer_column", "answer_start_column", "max_length", "doc_stride"),
         ("finetune", "evaluate"), scores=_question_answering_scores, scores_prepared=False),
    Task("image-classification", "AutoModelForImageClassification", _prepare_image_classification,
         ("image_column", "label_column"), ("finetune", "evaluate"), scores=_classification_scores, labelled=True,
         reads_images=True, reads_text=False),
    Task("seq2seq", "AutoModelForSeq2SeqLM", _prepare_seq2seq, ("source_column", "target_column", "max_length"),
         ("pretrain", "finetune", "evaluate"), trainer=VaswaniSeq2SeqTrainer, scores=_translation_scores,
         scores_prepared=False, label_smoothing=True, generates=True),
    Task("captioning", "AutoModelForImageTextToText", _prepare_captioning,
         ("image_column", "caption_column", "max_length"), ("pretrain", "evaluate"), scores=_caption_scores,
         label_smoothing=True, reads_images=True, generates=True, reports_loss=True),
]
TASKS: dict[str, Task] = {task.name: task for task in _TASKS}


def tasks_of(command: str) -> list[str]:
    """The task names a command offers, in the table's order."""
    return [name for name, task in TASKS.items() if command in task.commands]


def options_of(names) -> list[str]:
    """The TaskOptions fields the named tasks read, in TaskOptions' order."""
    wanted = {option for name in names for option in TASKS[name].options}
    return [f.name for f in fields(TaskOptions) if f.name in wanted]


def pretraining_task(objective: str, nsp: bool) -> Task:
    """The task `vaswani pretrain --objective OBJECTIVE [--nsp]` trains."""
    return TASKS["mlm+nsp" if nsp and objective == "mlm" else objective]


__all__ = ["OPTION_HELP", "TASKS", "Task", "TaskOptions", "options_of", "pretraining_task", "tasks_of"]
