"""
Packing: documents' tokens laid end to end and cut into full rows, so that no row is padded (what GPT-2 and RoBERTa
pre-train on; Radford et al. 2019, Liu et al. 2019, 4.2 "full-sentences"). A separator (the eos token) ends every
document, so the model sees where one stops and the next begins.

    TokenPacker   documents in, full rows of `length` out; its carry (the tokens of a row not yet full) is its state,
                  saved with a streaming run's checkpoint
    pack          a whole list of tokenised documents packed at once (`pretrain --pack`), each row after an optional
                  start token ([CLS])
    batch_padding the padding tokens a collator adds to rows batched as Trainer batches them
    PackingReport what packing saved, in the sentence a run says and its model card records
"""

import random
from dataclasses import dataclass


class TokenPacker:
    """
    Cut the token ids of documents, each followed by `separator`, into rows of exactly `length` tokens: `add` takes
    one document and gives the rows it completed; a document longer than a row runs on into the next ones, and the
    tokens of a row not yet full wait in the carry for the next document. `flush` gives the carry (a row shorter than
    `length`, or None), at the end of a stream. Every token added comes out exactly once, in order.
    """

    def __init__(self, length: int, separator=()):
        if length < 1:
            raise ValueError(f"TokenPacker: length must be at least 1, got {length}.")
        self.length = length
        self.separator = list(separator)
        self.carry: list[int] = []

    def add(self, ids) -> list[list[int]]:
        carry = self.carry
        carry.extend(ids)
        carry.extend(self.separator)
        full = len(carry) // self.length * self.length
        if not full:
            return []
        rows = [carry[start : start + self.length] for start in range(0, full, self.length)]
        self.carry = carry[full:]
        return rows

    def flush(self) -> list[int] | None:
        row, self.carry = self.carry, []
        return row or None

    def state_dict(self) -> dict:
        return {"carry": list(self.carry)}

    def load_state_dict(self, state: dict) -> None:
        self.carry = list(state["carry"])


def pack(documents, length: int, separator=(), start=(), keep_last: bool = True) -> tuple[list[list[int]], int]:
    """
    Token ids of `documents` packed by a `TokenPacker` into rows of `length`: each row is `start` (BERT's [CLS], or
    nothing) and `length - len(start)` tokens of the documents laid end to end, `separator` after each. The last
    row, short of full, is kept (`keep_last`: a masked LM's collator pads it) or left out (a causal LM's blocks
    are all full); gives the rows and the number of tokens left out.
    """
    start = list(start)
    packer = TokenPacker(length - len(start), separator)
    rows = [start + row for ids in documents for row in packer.add(ids)]
    last = packer.flush() or []
    if keep_last and last:
        rows.append(start + last)
        return rows, 0
    return rows, len(last)


def batch_padding(lengths: list[int], batch_size: int, multiple: int = 1, seed: int | None = 0) -> tuple[int, int]:
    """
    (padding tokens, batch positions) when rows of `lengths` are batched `batch_size` at a time and each batch is
    padded to its longest row, rounded up to a `multiple` (transformers' collators pad so). Trainer draws its
    batches in a shuffled order: with a `seed`, the rows are shuffled first by it (one such order; None: in order).
    """
    lengths = list(lengths)
    if seed is not None:
        random.Random(seed).shuffle(lengths)
    padding = positions = 0
    for begin in range(0, len(lengths), batch_size):
        batch = lengths[begin : begin + batch_size]
        width = -(-max(batch) // multiple) * multiple
        positions += width * len(batch)
        padding += width * len(batch) - sum(batch)
    return padding, positions


@dataclass(frozen=True)
class PackingReport:
    """
    What `pretrain --pack` made of the training data, and what the rows would have padded unpacked: said when
    training starts and recorded in the model card's training procedure.
    """

    documents: int  # sentences (mlm, plm) or documents (clm) packed
    tokens: int  # their tokens, special tokens not counted
    rows: int
    length: int
    padding: int  # padding tokens of the packed rows, batched as Trainer batches them
    batch_size: int
    unpacked_padding: int | None = None  # the same unpacked (None: unpacked, there is none either)
    unpacked_positions: int = 0
    truncated: int = 0  # tokens unpacked rows would have cut (sentences longer than a row)
    left_out: int = 0  # tokens of a last block short of full, left out (clm)
    unit: str = "sentences"

    def __str__(self) -> str:
        rows = "row" if self.unit == "sentences" else "block"
        text = (f"Packed {self.documents:,} {self.unit} ({self.tokens:,} tokens) into {self.rows:,} {rows}s of "
                f"{self.length}: {self.padding:,} padding tokens")
        if self.left_out:
            text += f", the last {self.left_out:,} tokens (short of a {rows}) left out"
        if self.unpacked_padding is None:
            return text + (f"; unpacked, the {self.unit} are joined into one running text cut into blocks, with "
                           f"no padding either (packing ends each with the eos token instead of a newline).")
        share = self.unpacked_padding / self.unpacked_positions if self.unpacked_positions else 0.0
        text += (f"; unpacked, shuffled batches of {self.batch_size} would have padded about "
                 f"{self.unpacked_padding:,} tokens ({share:.1%} of their positions)")
        if self.truncated:
            text += f" and cut {self.truncated:,} tokens off {self.unit} longer than {self.length}"
        return text + "."


__all__ = ["PackingReport", "TokenPacker", "batch_padding", "pack"]
