"""
Packing: documents' tokens laid end to end and cut into full rows, so that no row is padded (what GPT-2 and RoBERTa
pre-train on; Radford et al. 2019, Liu et al. 2019, 4.2 "full-sentences"). A separator (the eos token) ends every
document, so the model sees where one stops and the next begins.

    TokenPacker   documents in, full rows of `length` out; its carry (the tokens of a row not yet full) is its state,
                  saved with a streaming run's checkpoint
"""


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


__all__ = ["TokenPacker"]
