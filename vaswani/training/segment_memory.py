"""
Training and evaluating with Transformer-XL's segment memory (`memory_length`, Dai et al. 2019, 3.2): a running
text laid out as parallel streams whose rows continue from one batch to the next, and a Trainer that carries each
stream's memory from step to step.

    stream_segments        rows of `segment` tokens in which row k * streams + s is segment k of stream s
    prepare_clm_memory     the training and evaluation texts as streams, `shift_labels` as targets
    VaswaniMemoryTrainer   a Trainer whose steps pass a `VaswaniSegmentMemory` on, one for training, one for evaluation

The layout fits accelerate's round-robin sharding of batches: with W processes of B rows each, process p's k-th batch
is global batch k W + p, whose row b is then segment k of stream p B + b, so `streams` = W B. Every token of a stream
after the first is a target, the first token of a segment predicted by the end of the one before. What breaks the
streams is refused or said: batches are drawn in order, never shuffled, and the last incomplete batch is dropped; a
new epoch starts the streams (and their memory) afresh; a resumed run starts with an empty memory.
"""

import os

import datasets
from transformers import TrainerCallback, default_data_collator

from ..modeling.cache_vaswani import VaswaniSegmentMemory
from .data import UsageError
from .run import VaswaniTrainer
from .tasks import Prepared


def stream_segments(ids: list[int], segment: int, streams: int) -> datasets.Dataset:
    """
    The token ids cut into `streams` contiguous streams of whole segments (the tail that fills no segment in every
    stream is left out), as rows {input_ids, shift_labels} of `segment` tokens: row k * streams + s is segment k of
    stream s, and its targets are the next tokens (the last one the first token of the next segment).
    """
    per_stream = (len(ids) - 1) // (streams * segment)  # segments in each stream (one more token for the last target)
    if per_stream == 0:
        raise UsageError(
            f"The text has {len(ids)} tokens, fewer than {streams} stream(s) of one segment of {segment} (and one "
            f"target): lower --block-size or --batch-size."
        )
    span = per_stream * segment
    inputs, targets = [], []
    for k in range(per_stream):
        for s in range(streams):
            start = s * span + k * segment
            inputs.append(ids[start : start + segment])
            targets.append(ids[start + 1 : start + segment + 1])
    return datasets.Dataset.from_dict({"input_ids": inputs, "shift_labels": targets})


def world_size() -> int:
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def prepare_clm_memory(train_text: str | None, eval_text: str | None, tokenizer, segment: int, batch_size: int) -> Prepared:
    """
    The texts as streams of segments for a memory run: `batch_size` rows per process (the streams are the rows of
    every process together). Without a training text, the evaluation text alone (evaluation only).
    """
    def streams_of(text):
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        return stream_segments(ids, segment, batch_size * world_size())

    train = streams_of(train_text) if train_text is not None else None
    evaluation = streams_of(eval_text) if eval_text or train is None and eval_text is not None else None
    return Prepared(train, evaluation, default_data_collator, trainer=VaswaniMemoryTrainer)


class _ResetAtEpoch(TrainerCallback):
    """A new epoch starts every stream again from its first segment: its memory starts empty."""

    def __init__(self, memories: dict):
        self.memories = memories

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.memories.pop("train", None)


class VaswaniMemoryTrainer(VaswaniTrainer):
    """
    A Trainer over `stream_segments` rows: each step reads the next segment of every stream with the memory the
    previous step left (`forward(..., memory=...)`), one memory for training and another for evaluation (which starts
    empty at every `evaluate`). The model's `config.memory_length` sets its length; 0 reads the same segments in
    order without memory (the comparison). Its arguments are made to keep streams whole: batches in order
    (`train_sampling_strategy="sequential"`), incomplete last batches dropped, `shift_labels` as the labels.
    Not with gradient checkpointing (the model refuses it with a memory).
    """

    def __init__(self, *args, **kwargs):
        arguments = kwargs.get("args")
        if arguments is not None:
            arguments.train_sampling_strategy = "sequential"
            arguments.dataloader_drop_last = True
            arguments.label_names = ["shift_labels"]
        super().__init__(*args, **kwargs)
        self._memories = {}
        self.add_callback(_ResetAtEpoch(self._memories))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        config = self.accelerator.unwrap_model(model).config
        if config.memory_length:
            phase = "train" if model.training else "eval"
            if phase not in self._memories:
                self._memories[phase] = VaswaniSegmentMemory(config)
            inputs = {**inputs, "memory": self._memories[phase]}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def evaluate(self, *args, **kwargs):
        self._memories.pop("eval", None)  # the evaluation text is read from its start
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self._memories.pop("eval", None)


__all__ = ["VaswaniMemoryTrainer", "prepare_clm_memory", "stream_segments"]
