"""Helpers for the test suite: a tiny config, every head with its Auto class, and inputs that fit each head."""

import torch
import transformers

import vaswani
from vaswani import VaswaniConfig, VaswaniForMultipleChoice
from vaswani.modeling.modeling_vaswani_heads import _VaswaniHead

VOCAB = 99
PAD, BOS, EOS = 0, 1, 2

# (model class, the Auto class that must load it): read from the family's one table of heads. The heads that read
# text; those that read images (a config with `image_size`) are IMAGE_HEADS, tested with image configs.
HEADS = [(getattr(vaswani, name), getattr(transformers, head.auto_class)) for name, head in vaswani.HEADS.items()
         if head.reads == "text" and head.auto_class]
# The heads no Auto class builds, loaded by their own class (tested in their own files): the permutation LM.
UNREGISTERED_HEADS = [getattr(vaswani, name) for name, head in vaswani.HEADS.items() if head.auto_class is None]
IMAGE_HEADS = [(getattr(vaswani, name), getattr(transformers, head.auto_class))
               for name, head in vaswani.HEADS.items() if head.reads == "image"]
HEAD_CLASSES = [head for head, _ in HEADS]
ENCODER_HEADS = [head for head in HEAD_CLASSES if issubclass(head, _VaswaniHead) and head.stacks == "encoder-only"]
GENERATIVE_HEADS = [head for head in HEAD_CLASSES if head.can_generate()]
assert set(vaswani.AUTO_CLASSES.values()) == set(HEAD_CLASSES) | {head for head, _ in IMAGE_HEADS}
assert len(HEAD_CLASSES) == 10 and len(ENCODER_HEADS) == 7 and len(GENERATIVE_HEADS) == 2  # the family today
assert [head.__name__ for head in UNREGISTERED_HEADS] == ["VaswaniForPermutationLM"]


def shakespeare_lines(count: int = 2000) -> list[str]:
    """The non-empty lines among the first `count` lines of Tiny Shakespeare, as the package ships it."""
    from vaswani.training.data import SHAKESPEARE

    with open(SHAKESPEARE, encoding="utf-8") as handle:
        return [line.rstrip("\n") for _, line in zip(range(count), handle) if line.strip()]


def tiny_config(**overrides) -> VaswaniConfig:
    """A 2-layer, width-32 model: big enough to have every part, small enough for a test."""
    settings = dict(
        vocab_size=VOCAB,
        d_model=32,
        num_heads=4,
        d_ff=64,
        num_hidden_layers=2,
        max_position_embeddings=64,
        dropout=0.0,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        type_vocab_size=2,
    )
    settings.update(overrides)
    return VaswaniConfig(**settings)


def random_ids(batch: int = 2, length: int = 7, low: int = 3, generator=None) -> torch.Tensor:
    """Token ids that avoid the special tokens (pad 0, bos 1, eos 2)."""
    return torch.randint(low, VOCAB, (batch, length), generator=generator)


def inputs_for(model, batch: int = 2, length: int = 7, target_length: int = 5) -> dict:
    """Inputs (without labels) that fit the head `model` is."""
    ids = random_ids(batch, length)
    mask = torch.ones_like(ids)
    if isinstance(model, VaswaniForMultipleChoice):
        choices = 3
        return {
            "input_ids": random_ids(batch * choices, length).view(batch, choices, length),
            "attention_mask": torch.ones(batch, choices, length, dtype=torch.long),
        }
    inputs = {"input_ids": ids, "attention_mask": mask}
    if model.config.is_encoder_decoder:
        inputs["decoder_input_ids"] = random_ids(batch, target_length)
    if model.config.stacks == "encoder-only":
        inputs["token_type_ids"] = torch.zeros_like(ids)
    return inputs


def main_output(output) -> torch.Tensor:
    """The tensor a head is about: logits, or the last hidden state for the bare model."""
    for name in ("logits", "prediction_logits", "start_logits", "last_hidden_state"):
        if getattr(output, name, None) is not None:
            return getattr(output, name)
    raise AssertionError(f"no main output in {list(output.keys())}")
