"""
Input validation, not the paper: bad input is refused with a `ValueError` that names the argument and the fix, before
it becomes an index error deep in torch or a silently wrong answer.

    check_attention_mask   a 2D padding mask holds one 1/0 per token, cached tokens included
    validate_inputs        ids, embeddings, masks, positions and segment ids of one stack's input
    check_labels           labels are class ids of the head (or the ignore index)
    check_span_positions   answer spans are token indices

Value checks (which read tensor values, a host sync) are skipped while tracing or compiling. This module imports only
torch and transformers.
"""

import torch
from transformers.utils import is_tracing


def check_attention_mask(attention_mask: torch.Tensor | None, shape: tuple, past_length: int = 0, name: str = "attention_mask"):
    """A 2D padding mask must hold one 1/0 per token, cached tokens included."""
    if attention_mask is None or attention_mask.dim() != 2:
        return
    expected = (shape[0], past_length + shape[1])
    if tuple(attention_mask.shape) != expected:
        cached = f" after {past_length} cached tokens" if past_length else ""
        raise ValueError(
            f"`{name}` has shape {tuple(attention_mask.shape)}, but inputs of shape {tuple(shape)}{cached} "
            f"need {expected}: one 1/0 per token (1 = attend, 0 = padding)."
        )


def validate_inputs(
    config,
    input_ids: torch.Tensor | None,
    inputs_embeds: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor,
    past_length: int = 0,
    token_type_ids: torch.Tensor | None = None,
    type_vocab_size: int = 0,
    prefix: str = "",
):
    """
    Check one stack's input against `config`. `prefix` is "decoder_" when these are a seq2seq model's decoder inputs.
    """
    ids, embeds, mask = f"`{prefix}input_ids`", f"`{prefix}inputs_embeds`", f"{prefix}attention_mask"
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError(f"Pass exactly one of {ids} and {embeds}.")
    shape = tuple(input_ids.shape if input_ids is not None else inputs_embeds.shape[:-1])
    if input_ids is not None:
        if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
            raise ValueError(
                f"{ids} must hold integer token ids, got dtype {input_ids.dtype}: pass a LongTensor "
                f"(e.g. from the tokenizer with return_tensors='pt')."
            )
        if input_ids.dim() != 2:
            raise ValueError(f"{ids} must have shape (batch_size, sequence_length), got {shape}.")
    check_attention_mask(attention_mask, shape, past_length, mask)
    if position_ids.dim() != 2 or position_ids.shape[0] not in (1, shape[0]) or position_ids.shape[1] != shape[1]:
        raise ValueError(
            f"`{prefix}position_ids` has shape {tuple(position_ids.shape)}, but the inputs have {shape}: pass one "
            f"position per new token, shaped (batch_size or 1, sequence_length)."
        )
    if token_type_ids is not None and tuple(token_type_ids.shape) != shape:
        raise ValueError(f"`token_type_ids` has shape {tuple(token_type_ids.shape)}, but the inputs have {shape}.")
    if is_tracing():
        return
    if input_ids is not None and input_ids.numel() > 0:
        low, high = (int(v) for v in torch.aminmax(input_ids))  # one pass, both ends
        if low < 0 or high >= config.vocab_size:
            raise ValueError(
                f"{ids} contains token id {low if low < 0 else high}, outside the vocabulary "
                f"[0, {config.vocab_size}). Check that the tokenizer matches the model, or resize the embeddings "
                f"with `model.resize_token_embeddings`."
            )
    if token_type_ids is not None and token_type_ids.numel() > 0:
        low, high = int(token_type_ids.min()), int(token_type_ids.max())
        if low < 0 or high >= max(type_vocab_size, 1):
            raise ValueError(
                f"`token_type_ids` must lie in [0, {type_vocab_size}) (`type_vocab_size`), got {high if high > 0 else low}."
                if type_vocab_size
                else "`token_type_ids` were given, but this stack has no segment embeddings (only encoders have them,"
                " with `type_vocab_size > 0`): drop them or set them to 0."
            )
    if config.position_embedding_type == "learned" and position_ids.numel() > 0:
        longest = int(position_ids.max()) + 1
        if longest > config.max_position_embeddings:
            raise ValueError(
                f"The sequence needs position {longest - 1}, but learned positions stop at "
                f"{config.max_position_embeddings - 1} (`max_position_embeddings`): truncate the input "
                f"(tokenizer(..., truncation=True, max_length={config.max_position_embeddings})) or use sinusoidal "
                f"positions."
            )


def check_labels(labels: torch.Tensor, num_classes: int, ignore_index: int = -100, name: str = "labels"):
    """Every label is a class id in [0, num_classes) or `ignore_index`: cross-entropy would fail deep in torch."""
    if is_tracing() or labels.numel() == 0:
        return
    valid = (labels == ignore_index) | ((labels >= 0) & (labels < num_classes))
    if not bool(valid.all()):
        bad = int(labels[~valid].reshape(-1)[0])
        raise ValueError(
            f"`{name}` contains {bad}, outside the vocabulary / label set [0, {num_classes}): use ids below "
            f"{num_classes}, or {ignore_index} for positions the loss should ignore."
        )


def check_span_positions(positions: torch.Tensor, name: str):
    """Answer-span positions are token indices: 0 or more (past the window means "not in this window")."""
    if is_tracing() or positions.numel() == 0:
        return
    if positions.is_floating_point() or bool((positions < 0).any()):
        raise ValueError(f"`{name}` must hold token indices (0 or more, as LongTensor), got {positions.tolist()}.")


__all__ = ["check_attention_mask", "check_labels", "check_span_positions", "validate_inputs"]
