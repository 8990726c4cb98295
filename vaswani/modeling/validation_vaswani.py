"""
Input validation, not the paper: bad input is refused with a `ValueError` that names the argument and the fix, before
it becomes an index error deep in torch or a silently wrong answer.

    check_attention_mask   a 2D padding mask holds one 1/0 per token, cached tokens included
    validate_inputs        ids, embeddings, masks, positions and segment ids of one stack's input
    check_encoder_states   the encoder output a decoder attends over
    check_pixel_values     the images of an encoder that reads pixels: a float (B, C, H, W) of the config's size
    check_labels           labels are class ids of the head (or the ignore index), of the right shape
    decoding_own_tokens    generate()'s later steps skip the value checks of the model's own tokens
    check_span_positions   answer spans are token indices
    check_two_streams      permutation LM's perm_mask (B, L, L) and target_mapping (B, m, L): 0/1, one-hot rows

Value checks (which read tensor values, a host sync) are skipped while tracing or compiling, and in generate()'s
cached steps, whose inputs the model made itself. This module imports only
torch and transformers.
"""

import contextlib
import contextvars

import torch
from transformers.utils import is_tracing


# Set while generate() decodes: the ids, masks and positions of a step after the first are the model's own (its
# tokens, generate()'s mask and positions), so their value checks, a host sync each, are skipped.
_DECODING_OWN_TOKENS = contextvars.ContextVar("vaswani_decoding_own_tokens", default=False)


@contextlib.contextmanager
def decoding_own_tokens():
    """Within the block, cached decoding steps (a non-empty cache) skip the value checks of their inputs."""
    token = _DECODING_OWN_TOKENS.set(True)
    try:
        yield
    finally:
        _DECODING_OWN_TOKENS.reset(token)


_INDEX_DTYPES = (torch.int64, torch.int32)  # what nn.Embedding takes


def _check_index_dtype(tensor: torch.Tensor, name: str, what: str):
    if tensor.dtype not in _INDEX_DTYPES:
        raise ValueError(
            f"`{name}` must hold {what} as int64 (a LongTensor) or int32, got dtype {tensor.dtype}: convert with "
            f"`.long()`."
        )


def check_attention_mask(attention_mask: torch.Tensor | None, shape: tuple, past_length: int = 0, name: str = "attention_mask"):
    """
    A padding mask holds one 1/0 per token, cached tokens included: 2D (batch, past + length). A 4D mask is the
    attention pattern itself, (batch or 1, 1 or heads, length, keys >= past + length), bool or additive float.
    """
    if attention_mask is None:
        return
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"`{name}` must be a tensor, got {type(attention_mask).__name__}.")
    if attention_mask.is_complex():
        raise ValueError(f"`{name}` must hold 1/0 (or True/False), got dtype {attention_mask.dtype}.")
    traced = is_tracing() or isinstance(past_length, torch.Tensor)  # a static cache's length under torch.compile
    if attention_mask.dim() == 4:
        batch, heads, queries, keys = attention_mask.shape
        if batch not in (1, shape[0]) or queries != shape[1] or (not traced and keys < past_length + shape[1]):
            raise ValueError(
                f"A 4D `{name}` is the attention pattern, shaped (batch_size or 1, 1 or num_heads, length, keys): "
                f"got {tuple(attention_mask.shape)} for inputs of shape {tuple(shape)}"
                + (f" after {past_length} cached tokens" if past_length else "")
                + f", which need ({shape[0]}, 1, {shape[1]}, at least {past_length + shape[1]}). Or pass a 2D padding "
                f"mask (batch_size, length) of 1/0."
            )
        return
    if attention_mask.dim() != 2:
        raise ValueError(
            f"`{name}` must be 2D (batch_size, length), one 1/0 per token, or a 4D attention pattern; got "
            f"{attention_mask.dim()}D, shape {tuple(attention_mask.shape)}."
        )
    if traced:
        return
    expected = (shape[0], past_length + shape[1])
    if tuple(attention_mask.shape) != expected:
        cached = f" after {past_length} cached tokens" if past_length else ""
        raise ValueError(
            f"`{name}` has shape {tuple(attention_mask.shape)}, but inputs of shape {tuple(shape)}{cached} "
            f"need {expected}: one 1/0 per token (1 = attend, 0 = padding)."
        )


def _check_mask_values(attention_mask: torch.Tensor | None, name: str):
    """A 2D padding mask holds only 1 and 0: positions count it and attention reads any nonzero as "attend"."""
    if attention_mask is None or attention_mask.dim() != 2 or attention_mask.dtype == torch.bool:
        return
    if attention_mask.numel() and not bool(((attention_mask == 0) | (attention_mask == 1)).all()):
        bad = attention_mask[(attention_mask != 0) & (attention_mask != 1)].reshape(-1)[0].item()
        raise ValueError(
            f"`{name}` holds {bad}: a padding mask holds only 1 (a token) and 0 (padding). For weights on the "
            f"attention scores, pass a 4D additive mask instead."
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
    given = input_ids if input_ids is not None else inputs_embeds
    if not isinstance(given, torch.Tensor):
        raise TypeError(f"{ids if input_ids is not None else embeds} must be a tensor, got {type(given).__name__}.")
    if input_ids is not None:
        if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
            raise ValueError(
                f"{ids} must hold integer token ids, got dtype {input_ids.dtype}: pass a LongTensor "
                f"(e.g. from the tokenizer with return_tensors='pt')."
            )
        _check_index_dtype(input_ids, ids.strip("`"), "token ids")
        if input_ids.dim() != 2:
            raise ValueError(f"{ids} must have shape (batch_size, sequence_length), got {tuple(input_ids.shape)}.")
    else:
        if not inputs_embeds.is_floating_point():
            raise ValueError(f"{embeds} must be floating point, got dtype {inputs_embeds.dtype}.")
        if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != config.d_model:
            raise ValueError(
                f"{embeds} must have shape (batch_size, sequence_length, d_model={config.d_model}), got "
                f"{tuple(inputs_embeds.shape)}."
            )
    shape = tuple(given.shape[:2])
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(
            f"{ids if input_ids is not None else embeds} is empty (shape {tuple(given.shape)}): pass at least one "
            f"sequence of at least one token."
        )
    check_attention_mask(attention_mask, shape, past_length, mask)
    if not isinstance(position_ids, torch.Tensor) or position_ids.is_floating_point() or position_ids.dtype == torch.bool:
        raise ValueError(
            f"`{prefix}position_ids` must hold integer positions (a LongTensor), got "
            f"{getattr(position_ids, 'dtype', type(position_ids).__name__)}."
        )
    if position_ids.dim() != 2 or position_ids.shape[0] not in (1, shape[0]) or position_ids.shape[1] != shape[1]:
        raise ValueError(
            f"`{prefix}position_ids` has shape {tuple(position_ids.shape)}, but the inputs have {shape}: pass one "
            f"position per new token, shaped (batch_size or 1, sequence_length)."
        )
    if token_type_ids is not None:
        if token_type_ids.is_floating_point() or token_type_ids.dtype == torch.bool or token_type_ids.is_complex():
            raise ValueError(
                f"`token_type_ids` must hold integer segment ids (0 for sentence A, 1 for B), got dtype "
                f"{token_type_ids.dtype}: convert with `.long()`."
            )
        _check_index_dtype(token_type_ids, "token_type_ids", "segment ids")
        if tuple(token_type_ids.shape) != shape:
            raise ValueError(f"`token_type_ids` has shape {tuple(token_type_ids.shape)}, but the inputs have {shape}.")
    if is_tracing() or (_DECODING_OWN_TOKENS.get() and past_length > 0):
        return
    _check_mask_values(attention_mask, mask)
    if input_ids is not None:
        low, high = (int(v) for v in torch.aminmax(input_ids))  # one pass, both ends
        if low < 0 or high >= config.vocab_size:
            raise ValueError(
                f"{ids} contains token id {low if low < 0 else high}, outside the vocabulary "
                f"[0, {config.vocab_size}). Check that the tokenizer matches the model, or resize the embeddings "
                f"with `model.resize_token_embeddings`."
            )
    elif not all_finite(inputs_embeds):
        raise ValueError(f"{embeds} holds NaN or infinite values: the model would give NaN for them.")
    if token_type_ids is not None and token_type_ids.numel() > 0:
        low, high = (int(v) for v in torch.aminmax(token_type_ids))
        if low < 0 or high >= max(type_vocab_size, 1):
            raise ValueError(
                f"`token_type_ids` must lie in [0, {type_vocab_size}) (`type_vocab_size`), got {high if high > 0 else low}."
                if type_vocab_size
                else "`token_type_ids` were given, but this stack has no segment embeddings (only encoders have them,"
                " with `type_vocab_size > 0`): drop them or set them to 0."
            )
    low, high = (int(v) for v in torch.aminmax(position_ids))
    if low < 0:
        raise ValueError(f"`{prefix}position_ids` holds {low}: positions count from 0.")
    if config.position_embedding_type == "learned" and high + 1 > config.max_position_embeddings:
        raise ValueError(
            f"The sequence needs position {high}, but learned positions stop at "
            f"{config.max_position_embeddings - 1} (`max_position_embeddings`): truncate the input "
            f"(tokenizer(..., truncation=True, max_length={config.max_position_embeddings})) or use sinusoidal "
            f"positions."
        )


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN and no infinity in `tensor`: its minimum and maximum are finite (one pass over it, not isfinite's two)."""
    if tensor.numel() == 0:
        return True
    return bool(torch.isfinite(torch.stack(torch.aminmax(tensor))).all())


def check_encoder_states(
    states: torch.Tensor, attention_mask: torch.Tensor | None, config, decoder_inputs: torch.Tensor | None,
    past_length: int = 0, prefix: str = "",
):
    """
    The encoder output a decoder attends over: (batch, source_length, d_model), finite, of the decoder inputs' batch,
    with a 2D padding mask of its size. generate()'s later steps reuse what its first step checked: nothing to do.
    """
    tracing = is_tracing()  # (dynamo cannot read a ContextVar: under compile only the static checks run)
    if not tracing and _DECODING_OWN_TOKENS.get() and past_length > 0:
        return
    name = "encoder_hidden_states"
    if not isinstance(states, torch.Tensor) or not states.is_floating_point():
        raise ValueError(f"`{name}` must be a float tensor, got {getattr(states, 'dtype', type(states).__name__)}.")
    if states.dim() != 3 or states.shape[-1] != config.d_model or states.shape[1] == 0:
        raise ValueError(
            f"`{name}` must have shape (batch_size, source_length > 0, d_model={config.d_model}), got "
            f"{tuple(states.shape)}."
        )
    if decoder_inputs is not None:
        check_batch(states.shape[0], decoder_inputs, f"{prefix}input_ids", "the source")
    if attention_mask is not None and attention_mask.dim() != 2:
        raise ValueError(
            "The encoder's `attention_mask` also masks the decoder's attention over the source, which needs "
            "a 2D padding mask (batch_size, source_length) of 1/0; a 4D mask shapes one attention only."
        )
    check_attention_mask(attention_mask, tuple(states.shape[:2]), 0, "attention_mask")
    if not tracing and not all_finite(states):
        raise ValueError(f"`{name}` holds NaN or infinite values: the decoder would give NaN for them.")


def check_pixel_values(config, pixel_values, input_ids=None, inputs_embeds=None, interpolate: bool = False):
    """
    Images for an encoder that reads pixels: a float tensor (batch, num_channels, image_size, image_size), finite;
    another height and width only with `interpolate_pos_encoding=True`, and then whole patches.
    """
    name, size, patch = "pixel_values", config.image_size, config.patch_size
    if input_ids is not None or inputs_embeds is not None:
        raise ValueError(
            f"This encoder reads pixels (its config has image_size={size}): pass `{name}` (an image processor's "
            f"output), not `input_ids` or `inputs_embeds`."
        )
    if pixel_values is None:
        raise ValueError(f"This encoder reads pixels: pass `{name}`, a (batch_size, {config.num_channels}, {size}, "
                         f"{size}) float tensor (the model's image processor makes it).")
    if not isinstance(pixel_values, torch.Tensor) or not pixel_values.is_floating_point():
        raise ValueError(
            f"`{name}` must be a float tensor (an image processor rescales 0-255 bytes to floats), got "
            f"{getattr(pixel_values, 'dtype', type(pixel_values).__name__)}."
        )
    if pixel_values.dim() != 4 or pixel_values.shape[0] == 0:
        raise ValueError(
            f"`{name}` must have shape (batch_size, num_channels, height, width), got {tuple(pixel_values.shape)}: "
            f"add a batch dimension to a single image (pixel_values[None])."
        )
    channels, height, width = pixel_values.shape[1:]
    if channels != config.num_channels:
        raise ValueError(
            f"`{name}` has {channels} channels, the model {config.num_channels} (`num_channels`): convert the images "
            f"(e.g. to RGB) or use the model's image processor."
        )
    if interpolate:
        if height % patch or width % patch or height < patch or width < patch:
            raise ValueError(
                f"`{name}` of {height}x{width} pixels is not whole {patch}x{patch} patches (`patch_size`): resize it "
                f"to a multiple of {patch}."
            )
    elif (height, width) != (size, size):
        raise ValueError(
            f"`{name}` is {height}x{width} pixels, the model takes {size}x{size} (`image_size`): resize the images "
            f"(the model's image processor does), or pass interpolate_pos_encoding=True."
        )
    if not is_tracing() and not all_finite(pixel_values):
        raise ValueError(f"`{name}` holds NaN or infinite values.")


def check_labels(
    labels: torch.Tensor, num_classes: int, ignore_index: int = -100, name: str = "labels", shape: tuple | None = None
):
    """
    Labels are integer class ids in [0, num_classes) or `ignore_index`, shaped as the predictions they score
    (`shape`): cross-entropy would otherwise fail deep in torch, or broadcast silently.
    """
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"`{name}` must be a tensor, got {type(labels).__name__}.")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"`{name}` must hold integer class ids (a LongTensor), got dtype {labels.dtype}.")
    if shape is not None and tuple(labels.shape) != tuple(shape):
        raise ValueError(
            f"`{name}` has shape {tuple(labels.shape)}, but the predictions it scores have shape {tuple(shape)}: "
            f"one label per token (per prediction), {ignore_index} where there is nothing to predict."
        )
    if is_tracing() or labels.numel() == 0:
        return
    valid = (labels == ignore_index) | ((labels >= 0) & (labels < num_classes))
    if not bool(valid.all()):
        bad = int(labels[~valid].reshape(-1)[0])
        raise ValueError(
            f"`{name}` contains {bad}, outside the vocabulary / label set [0, {num_classes}): use ids below "
            f"{num_classes}, or {ignore_index} for positions the loss should ignore."
        )


def check_batch(batch: int, other: torch.Tensor | None, name: str, of: str = "the input"):
    """`other` (decoder inputs, labels, ...) has the batch size of the input it belongs to."""
    if other is not None and other.dim() > 0 and other.shape[0] != batch:
        raise ValueError(f"`{name}` has batch size {other.shape[0]}, but {of} has {batch}: pass one row per example.")


def check_span_positions(positions: torch.Tensor, name: str, batch: int):
    """Answer-span positions: one token index per example, 0 or more (past the window means "not in this window")."""
    if not isinstance(positions, torch.Tensor) or positions.is_floating_point() or positions.dtype == torch.bool:
        raise ValueError(f"`{name}` must hold token indices as a LongTensor, got {getattr(positions, 'dtype', positions)}.")
    if positions.numel() != batch or positions.dim() > 2:
        raise ValueError(f"`{name}` has shape {tuple(positions.shape)}: pass one token index per example ({batch}).")
    if is_tracing() or positions.numel() == 0:
        return
    if bool((positions < 0).any()):
        raise ValueError(f"`{name}` must hold token indices, 0 or more, got {positions.reshape(-1).tolist()}.")


def _check_zero_one(tensor: torch.Tensor, name: str, shape: tuple, meaning: str):
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"`{name}` must be a tensor, got {type(tensor).__name__}.")
    if tensor.is_complex():
        raise ValueError(f"`{name}` must hold 0s and 1s ({meaning}), got dtype {tensor.dtype}.")
    if tuple(tensor.shape) != shape:
        raise ValueError(
            f"`{name}` has shape {tuple(tensor.shape)}, expected {shape} (batch, predictions or tokens, tokens): "
            f"{meaning}, as DataCollatorForPermutationLanguageModeling makes it."
        )
    if not is_tracing() and tensor.numel() and not bool(((tensor == 0) | (tensor == 1)).all()):
        raise ValueError(f"`{name}` must hold only 0s and 1s ({meaning}).")


def check_two_streams(config, perm_mask, target_mapping, query_embeds, batch: int, length: int):
    """
    The inputs of two-stream attention (permutation language modelling): `perm_mask` (B, L, L) of 0/1, 1 where
    token i may not see token j; `target_mapping` (B, m, L) of one-hot rows, the predicted positions; `query_embeds`
    (B, m, d_model), the query stream's input, with it.
    """
    if config.image_size is not None:
        raise ValueError("`perm_mask` / `target_mapping` (permutation language modelling) need an encoder that reads "
                         "tokens; this config has `image_size`, its encoder reads pixels.")
    if perm_mask is not None:
        _check_zero_one(perm_mask, "perm_mask", (batch, length, length), "1 where token i may not attend to token j")
    if target_mapping is None:
        return
    three_d = isinstance(target_mapping, torch.Tensor) and target_mapping.dim() == 3
    num_predict = target_mapping.shape[1] if three_d else "num_predict"
    _check_zero_one(target_mapping, "target_mapping", (batch, num_predict, length),
                    "one 1 per row, at the position that prediction is for")
    if not is_tracing() and target_mapping.numel() and not bool((target_mapping.sum(-1) == 1).all()):
        raise ValueError(
            "`target_mapping` must have exactly one 1 per row (the position each prediction is for): a row of "
            "target_mapping[b, k] picks the token that prediction k of example b predicts."
        )
    expected = (batch, target_mapping.shape[1], config.d_model)
    if query_embeds is None or not isinstance(query_embeds, torch.Tensor) or tuple(query_embeds.shape) != expected:
        raise ValueError(
            f"`query_embeds` must be the query stream's input, a tensor of shape {expected} (one row per prediction "
            f"of `target_mapping`), got {getattr(query_embeds, 'shape', query_embeds)}: a permutation head passes "
            f"its learned vector, VaswaniForPermutationLM does this for you."
        )


__all__ = [
    "check_attention_mask",
    "check_batch",
    "check_encoder_states",
    "check_labels",
    "check_span_positions",
    "check_two_streams",
    "decoding_own_tokens",
    "validate_inputs",
]
