"""
Attention made visible: `attention_maps(model, inputs)` returns the weights of every layer and head for a batch
(self-attention of each stack and the decoder's cross-attention), with the tokens their rows and columns belong to.
For a model that reads images (`config.image_size`) the encoder's tokens are `[CLS]` and the patches, named
`p(row,column)` row by row, and `patch_grid` says how many rows and columns of patches the images had.

The weights are what an eager forward returns with `output_attentions=True`; the model runs on eager attention
(the one implementation that materialises the weights) and in eval mode for the call, and gets back what it had
after it, also when the forward raises (`eager_attention`).
"""

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel


# Which stack's tokens label the rows (queries) and the columns (keys) of each kind of map.
QUERY_STACK = {"encoder": "encoder", "decoder": "decoder", "cross": "decoder"}
KEY_STACK = {"encoder": "encoder", "decoder": "decoder", "cross": "encoder"}


@dataclass
class AttentionMaps:
    """
    The attention weights of one batch. `weights[kind]` is a float32 tensor (layers, batch, heads, queries, keys)
    for each kind the model has: `"encoder"` (encoder self-attention), `"decoder"` (masked decoder self-attention)
    and `"cross"` (encoder-decoder attention: decoder queries, encoder keys). `tokens[stack]` holds, per example, the
    tokens of the `"encoder"` or `"decoder"` stack's input (padding included) and `masks[stack]` (batch, length)
    which of them are real. For a model that reads images, `patch_grid` is (rows, columns) of the patches: encoder
    token 0 is `[CLS]`, token 1 + r * columns + c the patch `p(r,c)`; it is None for a model that reads tokens.
    """

    weights: dict[str, torch.Tensor]
    tokens: dict[str, list[list[str]]]
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    patch_grid: tuple[int, int] | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(self.weights)

    @property
    def num_layers(self) -> dict[str, int]:
        return {kind: weights.shape[0] for kind, weights in self.weights.items()}

    @property
    def num_heads(self) -> int:
        return next(iter(self.weights.values())).shape[2]

    def _kind(self, kind: str | None) -> str:
        if kind is None:
            return self.kinds[0]
        if kind not in self.weights:
            raise ValueError(f"`kind` must be one of {self.kinds} for this model, got {kind!r}.")
        return kind

    def real_tokens(self, stack: str, example: int = 0) -> list[str]:
        """The tokens of `stack` ("encoder" or "decoder") for one example, padding left out."""
        keep = self.masks[stack][example].tolist()
        return [token for token, real in zip(self.tokens[stack][example], keep) if real]

    def head(self, layer: int, head: int, kind: str | None = None, example: int = 0):
        """
        One head's map for one example, padding rows and columns left out: `(weights (queries, keys), query
        tokens, key tokens)`. `kind` defaults to the first the model has (`kinds`).
        """
        kind = self._kind(kind)
        layers, batch, heads = self.weights[kind].shape[:3]
        for name, value, bound in (("layer", layer, layers), ("head", head, heads), ("example", example, batch)):
            if isinstance(value, bool) or not isinstance(value, int) or not -bound <= value < bound:
                raise ValueError(f"`{name}` must be an integer in [0, {bound}) for {kind!r} maps, got {value!r}.")
        rows = self.masks[QUERY_STACK[kind]][example]
        columns = self.masks[KEY_STACK[kind]][example]
        weights = self.weights[kind][layer, example, head][rows][:, columns]
        return weights, self.real_tokens(QUERY_STACK[kind], example), self.real_tokens(KEY_STACK[kind], example)


@contextmanager
def eager_attention(model: PreTrainedModel):
    """
    Run `model` on eager attention in eval mode inside the block, then give back its attention implementation and
    each module's train/eval mode, whatever happens in the block.
    """
    previous = model.config._attn_implementation
    modes = [(module, module.training) for module in model.modules()]
    try:
        if previous != "eager":
            model.set_attn_implementation("eager")  # a model with additive scores stays on "additive", also eager
        model.eval()
        yield model
    finally:
        if model.config._attn_implementation != previous:
            model.set_attn_implementation(previous)
        for module, training in modes:
            module.training = training


def image_config(model: PreTrainedModel):
    """
    The config of the part of `model` that reads images (the model's own, or its encoder's in a
    VisionEncoderDecoderModel), or None for a model that reads tokens.
    """
    for config in (model.config, getattr(model.config, "encoder", None)):
        if getattr(config, "image_size", None) is not None and getattr(config, "patch_size", None) is not None:
            return config
    return None


def patch_tokens(rows: int, columns: int) -> list[str]:
    """The encoder's tokens for an image of rows x columns patches: `[CLS]`, then `p(r,c)` row by row."""
    return ["[CLS]"] + [f"p({row},{column})" for row in range(rows) for column in range(columns)]


def _as_image_inputs(inputs) -> dict:
    if not isinstance(inputs, Mapping):
        raise TypeError(
            "`inputs` of a model that reads images must be an image processor's output (a mapping with "
            f"`pixel_values`), got {type(inputs).__name__}."
        )
    inputs = dict(inputs)
    pixels = inputs.get("pixel_values")
    if not isinstance(pixels, torch.Tensor) or pixels.dim() != 4:
        raise ValueError(
            "This model reads images: `inputs` needs `pixel_values`, a (batch, channels, height, width) tensor (the "
            "output of the model's image processor with return_tensors='pt'), not "
            + ("`input_ids`." if "input_ids" in inputs else f"{type(pixels).__name__}.")
        )
    return inputs


def _as_inputs(model, inputs, tokenizer) -> dict:
    if image_config(model) is not None:
        inputs = _as_image_inputs(inputs)
        return _with_target(model, inputs)
    if isinstance(inputs, str) or (
        isinstance(inputs, Sequence) and inputs and all(isinstance(text, str) for text in inputs)
    ):
        if tokenizer is None:
            raise ValueError(
                "`inputs` is text, so attention_maps needs the `tokenizer` that goes with the model: pass "
                "tokenizer=AutoTokenizer.from_pretrained(folder), or pass tokenized inputs."
            )
        inputs = tokenizer(inputs, return_tensors="pt", padding=True)
        inputs.pop("token_type_ids", None) if not getattr(model.config, "type_vocab_size", 0) else None
    if not isinstance(inputs, Mapping):
        raise TypeError(
            f"`inputs` must be a tokenizer's output (a mapping with `input_ids`) or text, got {type(inputs).__name__}."
        )
    inputs = dict(inputs)
    if "pixel_values" in inputs:
        raise ValueError(
            f"`inputs` holds `pixel_values`, but this {type(model).__name__} reads tokens (its config has no "
            "`image_size`): pass `input_ids`, or the maps of a model that reads images."
        )
    if not isinstance(inputs.get("input_ids"), torch.Tensor) or inputs["input_ids"].dim() != 2:
        raise ValueError(
            "`inputs` needs `input_ids`, a (batch, length) tensor of token ids: tokenize with return_tensors='pt'."
        )
    return _with_target(model, inputs)


def _with_target(model, inputs: dict) -> dict:
    """A sequence-to-sequence model's decoder inputs, from `labels` when only they are given; no labels after."""
    if model.config.is_encoder_decoder and inputs.get("decoder_input_ids") is None:
        labels = inputs.pop("labels", None)
        if labels is None or not hasattr(model, "prepare_decoder_input_ids_from_labels"):
            raise ValueError(
                "A sequence-to-sequence model's maps need a target: pass `decoder_input_ids` (for example the output "
                "of model.generate(...)) or `labels` in `inputs`."
            )
        inputs["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(labels)
    inputs.pop("labels", None)  # the maps need no loss
    return inputs


def _tokens(ids: torch.Tensor, tokenizer) -> list[list[str]]:
    if tokenizer is None:
        return [[str(token) for token in row] for row in ids.tolist()]
    return [tokenizer.convert_ids_to_tokens(row) for row in ids.tolist()]


def _mask(mask, ids: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.to(torch.bool).cpu()


def _stacked(layers) -> torch.Tensor:
    return torch.stack([weights.detach().float().cpu() for weights in layers])  # (layers, B, h, T_q, T_k)


def attention_maps(model: PreTrainedModel, inputs, tokenizer=None) -> AttentionMaps:
    """
    The attention weights of every layer and head of `model` on a batch, with their tokens.

    `inputs` is a tokenizer's output (`input_ids`, `attention_mask`, and for a sequence-to-sequence model
    `decoder_input_ids` or `labels`), or text when `tokenizer` is given; for a model that reads images, an image
    processor's output (`pixel_values`, and for an image encoder-decoder the caption's `decoder_input_ids` or
    `labels`). Tokens are the tokenizer's (ids as text without one; `[CLS]` and `p(row,column)` for an image's
    patches). The model runs once, without gradients, on eager attention and in eval mode; both are restored.
    """
    wrapped = model  # a PEFT model runs as itself; its base model holds the config and the attention switch
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    if not isinstance(model, PreTrainedModel):
        raise TypeError(f"`model` must be a transformers model (a Vaswani model), got {type(model).__name__}.")
    inputs = _as_inputs(model, inputs, tokenizer)
    device = next(model.parameters()).device
    batch = {name: value.to(device) if isinstance(value, torch.Tensor) else value for name, value in inputs.items()}
    with eager_attention(model), torch.no_grad():
        outputs = wrapped(**batch, output_attentions=True, use_cache=False, return_dict=True)
    grid = None
    if image_config(model) is not None:
        patch = image_config(model).patch_size
        pixels = inputs["pixel_values"]
        grid = (pixels.shape[2] // patch, pixels.shape[3] // patch)
        source_tokens = [patch_tokens(*grid) for _ in range(pixels.shape[0])]
        encoder = outputs.encoder_attentions if model.config.is_encoder_decoder else outputs.attentions
        if encoder[0].shape[-1] != 1 + grid[0] * grid[1]:  # e.g. DeiT's distillation token, Swin's windows
            raise ValueError(
                f"{type(model).__name__}'s encoder attends over {encoder[0].shape[-1]} tokens, not [CLS] and the "
                f"{grid[0]} x {grid[1]} patches of its images: attention_maps knows ViT's layout only."
            )
        source_mask = torch.ones(pixels.shape[0], 1 + grid[0] * grid[1], dtype=torch.bool)  # no padding in images
    else:
        source_ids = inputs["input_ids"].cpu()
        source_tokens, source_mask = _tokens(source_ids, tokenizer), _mask(inputs.get("attention_mask"), source_ids)
    if model.config.is_encoder_decoder:
        target_ids = inputs["decoder_input_ids"].cpu()
        target_mask = _mask(inputs.get("decoder_attention_mask"), target_ids)
        return AttentionMaps(
            weights={
                "encoder": _stacked(outputs.encoder_attentions),
                "decoder": _stacked(outputs.decoder_attentions),
                "cross": _stacked(outputs.cross_attentions),
            },
            tokens={"encoder": source_tokens, "decoder": _tokens(target_ids, tokenizer)},
            masks={"encoder": source_mask, "decoder": target_mask},
            patch_grid=grid,
        )
    stack = "decoder" if getattr(model.config, "stacks", None) == "decoder-only" else "encoder"  # one stack
    return AttentionMaps(
        weights={stack: _stacked(outputs.attentions)},
        tokens={stack: source_tokens},
        masks={stack: source_mask},
        patch_grid=grid,
    )
