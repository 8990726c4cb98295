"""
Streaming pre-training (`vaswani pretrain --streaming`): a corpus read while it is trained on, never held whole, so
that it may be larger than memory. Documents are read from sharded files (`.txt`, one document per file; `.jsonl`,
`.json`, `.parquet`, one per row; `.gz` too) or a Hub dataset as a `datasets.IterableDataset`, split across
processes with `split_dataset_by_node`, tokenised as they come, packed end to end into full blocks with eos after
each document (`packing.TokenPacker`, GPT-2's training data), and shuffled through a buffer of blocks.

    corpus_files        the shard files --data names (a folder, a glob, files), of one kind
    StreamingBlocks     the stream of blocks of one process: a torch IterableDataset whose exact position (reader,
                        packer carry, shuffle buffer, random state, pass over the corpus) is its `state_dict`
    VaswaniStreamingTrainer
                        a Trainer that saves each process's stream position with every checkpoint and resumes the
                        stream there (not from its start, and without reading the skipped batches again)
    DocumentPositions   a collator for attention within documents (`--attention-within-documents`): positions
                        that start again after each eos, and no attention mask, so that transformers' masks keep
                        each token's attention inside its document (as for a batch of documents one by one)
    prepare_streaming   the `Prepared` of a streaming clm run

A block holds `block_size + 1` tokens (`block_size` next-token predictions, as `tasks.clm_blocks`). Blocks are full
except the last one of each pass over a process's shards, padded (labels -100, attention mask 0) so that every token
of the corpus is trained on exactly once per pass; the shuffle buffer is emptied at the end of a pass, so passes do
not mix. A stream never ends (pass after pass): the run's length is `--steps`.
"""

import copy
import glob
import json
import os
import random
from pathlib import Path

import torch
from transformers import default_data_collator

from .data import UsageError
from .packing import TokenPacker
from .run import VaswaniTrainer, write_whole
from .tasks import Prepared, clm_blocks


# -- The corpus ---------------------------------------------------------------------------------------------------------
BUILDERS = {".txt": "text", ".text": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def _kind(path: Path) -> str | None:
    suffixes = path.suffixes[-2:] if path.suffix == ".gz" else path.suffixes[-1:]
    return BUILDERS.get(suffixes[0].lower()) if suffixes else None


def corpus_files(data: str) -> tuple[str, list[str]]:
    """
    The shard files `data` names, sorted, and the `datasets` builder that reads them ("text", "json", "parquet"):
    a folder (every corpus file below it), a glob pattern, or one file. Refused: nothing found, or files of several
    kinds. A name that is none of these is taken for a Hub dataset: ("hub", [name]).
    """
    path = Path(data)
    if path.is_dir():
        found = sorted(str(p) for p in path.rglob("*") if p.is_file() and _kind(p))
        where = f"--data {data}: the folder holds no corpus file (.txt, .jsonl, .json, .parquet, maybe .gz)"
    elif any(char in data for char in "*?["):
        found = sorted(p for p in glob.glob(data, recursive=True) if Path(p).is_file() and _kind(Path(p)))
        where = f"--data {data}: the pattern matches no corpus file (.txt, .jsonl, .json, .parquet, maybe .gz)"
    elif path.is_file():
        if not _kind(path):
            raise UsageError(f"--data {data}: --streaming reads .txt, .jsonl, .json and .parquet files (maybe .gz).")
        found, where = [str(path)], ""
    else:
        return "hub", [data]
    if not found:
        raise UsageError(where + ".")
    kinds = sorted({_kind(Path(p)) for p in found})
    if len(kinds) > 1:
        raise UsageError(f"--data {data} mixes kinds of files ({', '.join(kinds)}): stream one kind at a time.")
    return kinds[0], found


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), max(1, int(os.environ.get("WORLD_SIZE", "1")))


# -- The stream ---------------------------------------------------------------------------------------------------------
class StreamingBlocks(torch.utils.data.IterableDataset):
    """
    The blocks this process trains on, pass after pass over its share of the corpus (`epochs` passes, or without
    end). Each pass reads the shards (a Hub dataset's in its own order: datasets' shuffling would lose its buffer
    on resuming) in an order drawn from `seed` and the pass's number, this process's share of
    them (`split_dataset_by_node`: whole shards when their count divides among the processes, else every
    world-th document), packs the documents into blocks of `length` tokens, and yields them through a shuffle
    buffer of `shuffle_buffer` blocks (0: in order). Rows are {input_ids, attention_mask, labels}.

    `state_dict()` is where the stream stands after the blocks it has yielded; `state_at(count)` where it stood
    after `count` blocks (kept for the last batches, at batch boundaries: a data loader reads ahead of training);
    `load_state_dict` makes the next iteration continue from there. The state names the corpus and settings it
    belongs to, and refuses to continue another stream.
    """

    def __init__(self, builder: str, files: list[str], tokenizer, length: int, text_column: str = "text",
                 shuffle_buffer: int = 1000, seed: int = 0, batch_size: int = 1, epochs: int | None = None,
                 split: str = "train", rank: int | None = None, world_size: int | None = None):
        super().__init__()
        if tokenizer.eos_token_id is None:
            raise UsageError("--streaming packs documents with an eos token between them, and the tokenizer has "
                             "none: train one with vaswani train-tokenizer (every kind has one).")
        env_rank, env_world = _world()
        self.builder, self.files, self.tokenizer = builder, list(files), tokenizer
        self.length, self.text_column, self.shuffle_buffer = length, text_column, shuffle_buffer
        self.seed, self.batch_size, self.epochs, self.split = seed, batch_size, epochs, split
        self.rank = env_rank if rank is None else rank
        self.world_size = env_world if world_size is None else world_size
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._resume: dict | None = None  # where the next iteration starts (load_state_dict), else the start
        self._state, self._rng = None, None  # the running iteration's state and random generator
        self._history: dict[int, dict] = {}  # blocks yielded -> the state then, at batch boundaries
        self._started = self._fresh_state(0)
        self.kept_batches = 8  # batches of states kept: how far a data loader may read ahead of training

    # The identity of a stream: what must be the same to continue it.
    def _fingerprint(self) -> dict:
        return {"builder": self.builder, "files": [os.path.basename(f) for f in self.files], "length": self.length,
                "text_column": self.text_column, "shuffle_buffer": self.shuffle_buffer, "seed": self.seed,
                "rank": self.rank, "world_size": self.world_size, "vocab_size": len(self.tokenizer)}

    def _source(self, epoch: int):
        """This process's share of the corpus for pass `epoch`, as a `datasets.IterableDataset`."""
        import datasets
        from datasets.distributed import split_dataset_by_node

        if self.builder == "hub":
            try:
                stream = datasets.load_dataset(self.files[0], split=self.split, streaming=True)
            except Exception as error:  # offline, unknown name, no such split: what datasets said, in one line
                raise UsageError(f"--data {self.files[0]}: no such file or folder, and as a Hub dataset: "
                                 f"{str(error).splitlines()[0]}") from None
        else:
            order = list(self.files)
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)  # a new shard order every pass
            extra = {"sample_by": "document"} if self.builder == "text" else {}
            stream = datasets.load_dataset(self.builder, data_files=order, split="train", streaming=True, **extra)
        return split_dataset_by_node(stream, rank=self.rank, world_size=self.world_size)

    def __str__(self) -> str:
        source = f"the Hub dataset {self.files[0]}" if self.builder == "hub" else (
            f"{len(self.files):,} shard(s) of {self.builder}")
        return (f"streaming {source} ({self.world_size} process(es), shuffle buffer {self.shuffle_buffer:,}) in "
                f"blocks of {self.length:,} tokens")

    def check(self) -> None:
        """Refuse, before any training, a corpus that cannot be read or lacks the text column: its first document
        is read (then read again when training starts)."""
        for _ in self._documents(self._source(0), None):
            return
        raise UsageError("--data: the corpus holds no document for this process (fewer documents than processes?).")

    def _fresh_state(self, epoch: int) -> dict:
        # source: the reader's state before the current document (None: the pass's start); offset: the tokens of
        # that document already packed; exhausted: the pass has read its last document (the buffer is emptying).
        return {"fingerprint": self._fingerprint(), "epoch": epoch, "blocks": 0, "source": None, "offset": 0,
                "exhausted": False, "carry": [], "buffer": [], "random": None}

    def _row(self, tokens: list[int]) -> dict:
        pad = self.length - len(tokens)
        ids = torch.tensor(tokens + [self.pad_id] * pad, dtype=torch.long)
        mask = torch.ones(self.length, dtype=torch.long)
        labels = ids.clone()
        if pad:
            mask[-pad:] = 0
            labels[-pad:] = -100
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    def _documents(self, source, state_before):
        """The token ids of each document of `source`, eos last, with the reader's state before the document
        (`state_before` for the first: what it was loaded with, None at the pass's start)."""
        eos = self.tokenizer.eos_token_id
        before = state_before
        for row in source:
            if self.text_column not in row:
                raise UsageError(f"--data: the corpus has no column {self.text_column!r} (it has "
                                 f"{', '.join(row)}): pass --text-column.")
            text = row[self.text_column] or ""
            yield before, self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] + [eos]
            before = source.state_dict()  # after this document: where the next one starts

    def __iter__(self):
        state = copy.deepcopy(self._resume) if self._resume is not None else self._fresh_state(0)
        self._resume, self._history, self._started = None, {}, copy.deepcopy(state)
        rng = random.Random(self.seed * 7919 + self.rank)
        if state["random"] is not None:
            rng.setstate(_tuples(state["random"]))
        while self.epochs is None or state["epoch"] < self.epochs:
            blocks, whole = state["blocks"], _at_pass_start(state)
            yield from self._one_pass(state, rng)
            if whole and state["blocks"] == blocks:  # a whole pass without a block: every pass would read nothing
                raise UsageError(f"--data: pass {state['epoch']} over the corpus gave process {self.rank} no token: "
                                 f"give a corpus with documents in it (or fewer processes).")
            state.update(self._fresh_state(state["epoch"] + 1), blocks=state["blocks"])

    def _one_pass(self, state: dict, rng: random.Random):
        """The blocks of the pass `state["epoch"]` from where `state` stands, updating it as they are yielded."""
        buffer = state["buffer"]
        if not state["exhausted"]:
            yield from self._read(state, rng, buffer)
        while buffer:  # the end of the pass: the buffer emptied in random order
            yield self._emit(buffer.pop(rng.randrange(len(buffer)) if self.shuffle_buffer else 0), state, rng)

    def _read(self, state: dict, rng: random.Random, buffer: list):
        source = self._source(state["epoch"])
        if state["source"] is not None:
            source.load_state_dict(state["source"])
        packer = TokenPacker(self.length)
        packer.load_state_dict({"carry": state["carry"]})
        skip = state["offset"]  # tokens of the current document already packed before a resume
        for before, ids in self._documents(source, state["source"]):
            state["source"], state["offset"] = before, 0
            for start in range(skip, len(ids), self.length):
                piece = ids[start : start + self.length]
                state["offset"] = start + len(piece)
                for block in packer.add(piece):
                    state["carry"] = packer.carry
                    yield from self._through_buffer(block, buffer, state, rng)
                state["carry"] = packer.carry
            skip = 0
        # The last document read: the pass's last block, partial (padded), joins the buffer.
        state.update(source=None, offset=0, exhausted=True, carry=[])
        last = packer.flush()
        if last:
            yield from self._through_buffer(last, buffer, state, rng)

    def _through_buffer(self, block: list[int], buffer: list, state: dict, rng: random.Random):
        if not self.shuffle_buffer:
            yield self._emit(block, state, rng)
        elif len(buffer) < self.shuffle_buffer:
            buffer.append(block)
        else:
            index = rng.randrange(len(buffer))
            out, buffer[index] = buffer[index], block
            yield self._emit(out, state, rng)

    def _emit(self, block: list[int], state: dict, rng: random.Random) -> dict:
        """The row of `block`; the state after it is kept when it ends a batch."""
        state["blocks"] += 1
        if state["blocks"] % self.batch_size == 0:
            self._history[state["blocks"]] = _snapshot(state, rng)
            oldest = state["blocks"] - self.kept_batches * self.batch_size
            for old in [count for count in self._history if count < oldest]:
                del self._history[old]
        self._state, self._rng = state, rng
        return self._row(block)

    def state_dict(self) -> dict:
        """Where the stream stands after the blocks yielded so far (where it will start, before any)."""
        if self._state is None:
            return copy.deepcopy(self._resume) if self._resume is not None else self._fresh_state(0)
        return _snapshot(self._state, self._rng)

    def state_at(self, count: int) -> dict:
        """Where the stream stood after `count` blocks in all: a batch boundary among the last batches yielded, or
        where it started (0 blocks, or the state it was resumed from)."""
        if count in self._history:
            return copy.deepcopy(self._history[count])
        start = self._started
        if start["blocks"] == count:
            return copy.deepcopy(start)
        raise RuntimeError(f"The stream kept no state after block {count} (it kept {sorted(self._history)}).")

    def load_state_dict(self, state: dict) -> None:
        """Continue, at the next iteration, from `state` (a `state_dict` of the same corpus and settings)."""
        expected = self._fingerprint()
        if state.get("fingerprint") != expected:
            changed = [key for key in expected if state.get("fingerprint", {}).get(key) != expected[key]]
            raise UsageError(f"--resume: the checkpoint's stream was made with other {', '.join(changed)} (corpus "
                             f"files, --block-size, --text-column, --shuffle-buffer, --seed, processes or tokenizer): "
                             f"resume with the same ones, or start afresh with --overwrite.")
        self._resume = copy.deepcopy(state)
        self._state = None


def _at_pass_start(state: dict) -> bool:
    """Whether `state` stands at the start of its pass (not resumed inside it, nor at its end)."""
    return state["source"] is None and not (state["offset"] or state["exhausted"] or state["carry"] or state["buffer"])


def _snapshot(state: dict, rng: random.Random) -> dict:
    """A copy of `state` that later blocks leave as it is: blocks and the reader's states are never changed, only
    the lists holding them are."""
    return {**state, "carry": list(state["carry"]), "buffer": list(state["buffer"]),
            "source": state["source"], "random": rng.getstate()}  # JSON writes its tuples as lists


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


# -- Attention within documents ---------------------------------------------------------------------------------------
def document_positions(input_ids: torch.Tensor, attention_mask: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """
    Positions of packed rows that start again at 0 with each document: at a row's start, after each eos, and where
    padding begins (padding is a segment of its own, which no token attends into).
    """
    starts = torch.zeros_like(input_ids, dtype=torch.bool)
    starts[:, 0] = True
    starts[:, 1:] |= input_ids[:, :-1] == eos_token_id
    starts[:, 1:] |= (attention_mask[:, 1:] == 0) & (attention_mask[:, :-1] == 1)
    index = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    last_start = index.masked_fill(~starts, 0).cummax(dim=1).values
    return index - last_start


class DocumentPositions:
    """
    Batches of packed blocks whose tokens attend only within their document: `position_ids` that start again after
    each eos (`document_positions`) and no `attention_mask`. Given positions that start again and no mask,
    transformers' `create_causal_mask` keeps each segment to itself (its packed-sequence masks), and the positions
    (learned, sinusoidal, rotary, ALiBi, relative) count from each document's start: a document inside a block is
    computed as it would be alone. The Trainer then runs the model without a cache (a cache turns those masks off).
    """

    def __init__(self, eos_token_id: int):
        self.eos_token_id = eos_token_id

    def __call__(self, rows: list[dict]) -> dict:
        batch = default_data_collator(rows)
        mask = batch.pop("attention_mask")
        batch["position_ids"] = document_positions(batch["input_ids"], mask, self.eos_token_id)
        return batch


# -- Training -----------------------------------------------------------------------------------------------------------
STATE_FILE = "stream_state_{rank}.json"  # in every checkpoint folder, one per process


class VaswaniStreamingTrainer(VaswaniTrainer):
    """
    A Trainer over a `StreamingBlocks` stream. Each process reads its own share (accelerate would otherwise
    dispatch every batch from the first process, or read the whole stream on every process and keep a slice).
    With every checkpoint each process writes where its stream stood after the batches trained on
    (`stream_state_<rank>.json`); `--resume` loads it and continues the stream from there, instead of reading the
    skipped batches again (`ignore_data_skip`).
    """

    def __init__(self, *args, **kwargs):
        arguments = kwargs.get("args")
        if arguments is not None:
            arguments.ignore_data_skip = True  # the stream's own state resumes it
            arguments.accelerator_config.dispatch_batches = False
        super().__init__(*args, **kwargs)
        if self.train_dataset is not None:  # the loader reads an optimizer step's batches, and one more, ahead
            self.train_dataset.kept_batches = 2 * self.args.gradient_accumulation_steps + 4

    def get_train_dataloader(self):
        from accelerate.data_loader import IterableDatasetShard

        loader = super().get_train_dataloader()
        shard = loader.dataset
        if isinstance(shard, IterableDatasetShard):  # the stream is this process's already: take it whole
            shard.num_processes, shard.process_index = 1, 0
        return loader

    def _blocks_trained(self) -> int:
        """The blocks this process's steps so far took from the stream: every step takes whole batches."""
        return self.state.global_step * self.args.gradient_accumulation_steps * self.args.per_device_train_batch_size

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "position_ids" in inputs and "attention_mask" not in inputs:  # DocumentPositions: no cache, whose mask
            inputs = {**inputs, "use_cache": False}  # would take the place of the documents' masks
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def _save_rng_state(self, output_dir):
        super()._save_rng_state(output_dir)
        state = self.train_dataset.state_at(self._blocks_trained())  # not the batches the loader read ahead
        write_whole(Path(output_dir) / STATE_FILE.format(rank=self.args.process_index), json.dumps(state))

    def _load_rng_state(self, checkpoint):
        super()._load_rng_state(checkpoint)
        if checkpoint is None:
            return
        path = Path(checkpoint) / STATE_FILE.format(rank=self.args.process_index)
        if not path.is_file():
            raise UsageError(f"--resume: {checkpoint} holds no stream state for process {self.args.process_index} "
                             f"({path.name}): it was not written by a --streaming run with these processes.")
        state = json.loads(path.read_text())
        count = self._blocks_trained()
        if state.get("blocks") != count:  # the checkpoint's steps read other batches than these settings would
            raise UsageError(f"--resume: {checkpoint} was written after {state.get('blocks')} blocks on this process, "
                             f"and {self.state.global_step} steps of these settings read {count}: resume with the "
                             f"--batch-size and --gradient-accumulation of the run that wrote it.")
        self.train_dataset.load_state_dict(state)


def prepare_streaming(data: str, eval_text: str | None, tokenizer, block_size: int, text_column: str,
                      shuffle_buffer: int, seed: int, batch_size: int, split: str = "train",
                      within_documents: bool = False) -> Prepared:
    """The stream of `data` in blocks of `block_size + 1` tokens, and the evaluation text's blocks if given; with
    `within_documents`, batches whose tokens attend only within their documents (`DocumentPositions`)."""
    builder, files = corpus_files(data)
    stream = StreamingBlocks(builder, files, tokenizer, block_size + 1, text_column, shuffle_buffer, seed,
                             batch_size, split=split)
    stream.check()
    evaluation = clm_blocks(eval_text, tokenizer, block_size) if eval_text else None
    collator = DocumentPositions(tokenizer.eos_token_id) if within_documents else default_data_collator
    return Prepared(stream, evaluation, collator, trainer=VaswaniStreamingTrainer)


__all__ = ["DocumentPositions", "StreamingBlocks", "VaswaniStreamingTrainer", "corpus_files", "document_positions",
           "prepare_streaming"]
