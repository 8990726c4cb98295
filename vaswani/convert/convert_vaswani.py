"""
Converters from Hugging Face's BERT, GPT-2, Marian, GPT-NeoX, BLOOM, T5 and ViT models (and ViT + GPT-2 captioners),
and from `torch.nn.Transformer`,
into Vaswani models that compute the same numbers. Each of those architectures is the paper's Transformer with a few
choices changed; the config names each choice (`embedding_layer_norm`, `type_vocab_size`, `activation_function`,
`norm_first`, `final_layer_norm`, `sinusoidal_layout`, `final_logits_bias`, `position_embedding_type`,
`parallel_residual`, `rms_norm`, `projection_bias`, ...), and the weights are copied tensor by tensor:

    BertModel / BertForMaskedLM / BertForPreTraining   -> VaswaniModel / VaswaniForMaskedLM / VaswaniForPreTraining
    GPT2Model / GPT2LMHeadModel                        -> VaswaniModel / VaswaniForCausalLM
    MarianModel / MarianMTModel                        -> VaswaniModel / VaswaniForConditionalGeneration
    GPTNeoXModel / GPTNeoXForCausalLM (Pythia)         -> VaswaniModel / VaswaniForCausalLM (rotary, parallel residual)
    BloomModel / BloomForCausalLM                      -> VaswaniModel / VaswaniForCausalLM (ALiBi)
    T5Model / T5ForConditionalGeneration               -> VaswaniModel / VaswaniForConditionalGeneration (relative bias)
    T5EncoderModel                                     -> VaswaniModel (encoder-only)
    ViTModel / ViTForImageClassification               -> VaswaniModel / VaswaniForImageClassification (image_size)
    VisionEncoderDecoderModel (ViT, GPT-2 + cross-attn) -> VaswaniForConditionalGeneration (a captioner)
    torch.nn.Transformer                               -> VaswaniModel (encoder-decoder; the embeddings are new)

Fused projections (GPT-2's, GPT-NeoX's, BLOOM's q/k/v) are split; T5's two scalings that have no config switch are
folded into weights (see `_t5_body` and `_head_weights`).

`convert(source)` takes a model object, a checkpoint folder or a Hub name. Every weight of the Vaswani model must
come from the source and every source weight must be used (or be a known leftover, named in a warning), so a
conversion never half-succeeds.
"""

import copy
import json
import logging
import math
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from ..configuration.configuration_vaswani import ACTIVATIONS, VaswaniConfig
from ..modeling.modeling_vaswani import VaswaniModel, sinusoidal_positions
from ..modeling.modeling_vaswani_heads import (
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForImageClassification,
    VaswaniForMaskedLM,
    VaswaniForPreTraining,
)


logger = logging.getLogger(__name__)


class ConversionError(ValueError):
    """The source cannot be expressed as a Vaswani model (an unsupported architecture or option)."""


def _activation(name: str, source: str) -> str:
    if name not in ACTIVATIONS:
        raise ConversionError(f"{source} uses activation {name!r}; Vaswani models support {ACTIVATIONS}.")
    return name


def _require(condition: bool, message: str):
    if not condition:
        raise ConversionError(message)


# -- Configs ------------------------------------------------------------------------------------------------------------
def config_from_bert(config) -> VaswaniConfig:
    """A `VaswaniConfig` (encoder-only) for a `BertConfig`: post-LN, learned positions, segments, embedding LayerNorm."""
    positions = getattr(config, "position_embedding_type", None) or "absolute"
    _require(positions == "absolute", f"BERT with position_embedding_type={positions!r} cannot be converted.")
    return VaswaniConfig(
        stacks="encoder-only",
        vocab_size=config.vocab_size,
        d_model=config.hidden_size,
        num_heads=config.num_attention_heads,
        d_ff=config.intermediate_size,
        num_encoder_layers=config.num_hidden_layers,
        num_decoder_layers=0,
        dropout=config.hidden_dropout_prob,
        attention_dropout=config.attention_probs_dropout_prob,
        activation_function=_activation(config.hidden_act, "This BERT"),
        max_position_embeddings=config.max_position_embeddings,
        position_embedding_type="learned",
        type_vocab_size=config.type_vocab_size,
        embedding_layer_norm=True,
        norm_first=False,
        final_layer_norm=False,
        scale_embedding=False,
        layer_norm_eps=config.layer_norm_eps,
        init_std=config.initializer_range,
        tie_word_embeddings=getattr(config, "tie_word_embeddings", True),
        pad_token_id=config.pad_token_id,
        bos_token_id=getattr(config, "bos_token_id", None),
        eos_token_id=getattr(config, "eos_token_id", None),
        decoder_start_token_id=None,
    )


def config_from_vit(config) -> VaswaniConfig:
    """A `VaswaniConfig` (encoder-only, reading pixels) for a `ViTConfig`: pre-LN, learned patch positions, [CLS]."""
    _require(config.qkv_bias, "A ViT with qkv_bias=False (no W^Q, W^K, W^V biases but a biased W^O) cannot be converted.")
    _require(isinstance(config.image_size, int) and isinstance(config.patch_size, int),
             f"A ViT with non-square images or patches ({config.image_size}, {config.patch_size}) cannot be converted.")
    return VaswaniConfig(
        stacks="encoder-only", vocab_size=1, d_model=config.hidden_size, num_heads=config.num_attention_heads,
        d_ff=config.intermediate_size, num_encoder_layers=config.num_hidden_layers, num_decoder_layers=0,
        image_size=config.image_size, patch_size=config.patch_size, num_channels=config.num_channels,
        dropout=config.hidden_dropout_prob, attention_dropout=config.attention_probs_dropout_prob,
        activation_function=_activation(config.hidden_act, "This ViT"), position_embedding_type="learned",
        norm_first=True, final_layer_norm=True, scale_embedding=False, layer_norm_eps=config.layer_norm_eps,
        init_std=config.initializer_range, type_vocab_size=0, tie_word_embeddings=False,
        pad_token_id=None, bos_token_id=None, eos_token_id=None, decoder_start_token_id=None,
        id2label=dict(config.id2label), label2id=dict(config.label2id),
    )


def _pre_ln_causal_config(config, **fields) -> VaswaniConfig:
    """
    What GPT-2, GPT-NeoX and BLOOM share: one decoder stack, pre-LN with a final LayerNorm, unscaled embeddings, the
    source's token ids; `fields` are each one's own choices.
    """
    return VaswaniConfig(
        stacks="decoder-only",
        num_encoder_layers=0,
        norm_first=True,
        final_layer_norm=True,
        scale_embedding=False,
        init_std=config.initializer_range,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        decoder_start_token_id=None,
        **fields,
    )


def config_from_gpt2(config) -> VaswaniConfig:
    """A `VaswaniConfig` (decoder-only) for a `GPT2Config`: pre-LN with a final LayerNorm, learned positions."""
    _require(config.scale_attn_weights, "GPT-2 with scale_attn_weights=False cannot be converted.")
    _require(
        not config.scale_attn_by_inverse_layer_idx,
        "GPT-2 with scale_attn_by_inverse_layer_idx=True cannot be converted (Vaswani attention scales by "
        "1/sqrt(d_k) only).",
    )
    if config.embd_pdrop != config.resid_pdrop:
        logger.warning(
            "GPT-2 embedding dropout (%s) differs from residual dropout (%s); the Vaswani model uses %s for both "
            "(no effect on inference).", config.embd_pdrop, config.resid_pdrop, config.resid_pdrop,
        )
    return _pre_ln_causal_config(
        config,
        vocab_size=config.vocab_size,
        d_model=config.n_embd,
        num_heads=config.n_head,
        d_ff=config.n_inner or 4 * config.n_embd,
        num_decoder_layers=config.n_layer,
        dropout=config.resid_pdrop,
        attention_dropout=config.attn_pdrop,
        activation_function=_activation(config.activation_function, "This GPT-2"),
        max_position_embeddings=config.n_positions,
        position_embedding_type="learned",
        layer_norm_eps=config.layer_norm_epsilon,
        tie_word_embeddings=getattr(config, "tie_word_embeddings", True),
    )


def config_from_vision_encoder_decoder(config) -> VaswaniConfig:
    """
    A `VaswaniConfig` (encoder-decoder, reading pixels) for a `VisionEncoderDecoderConfig` of a ViT encoder and a
    GPT-2 decoder with cross-attention: the encoder's ViT settings, the decoder's GPT-2 ones; where ViT and GPT-2
    differ in activation or LayerNorm epsilon (they do: gelu, 1e-12 against gelu_new, 1e-5), `encoder_overrides`.
    """
    encoder, decoder = config.encoder, config.decoder
    _require(encoder.model_type == "vit" and decoder.model_type == "gpt2",
             f"A VisionEncoderDecoderModel converts with a ViT encoder and a GPT-2 decoder, not {encoder.model_type} "
             f"and {decoder.model_type}.")
    _require(getattr(decoder, "add_cross_attention", False), "Its GPT-2 decoder has no cross-attention to convert.")
    vit, gpt2 = config_from_vit(encoder), config_from_gpt2(decoder)
    for name in ("d_model", "num_heads", "d_ff"):
        _require(getattr(vit, name) == getattr(gpt2, name),
                 f"Its ViT and GPT-2 differ in {name} ({getattr(vit, name)} and {getattr(gpt2, name)}): a Vaswani "
                 f"model has one {name} for both stacks (and no projection between them).")
    _require(getattr(decoder, "cross_attention_hidden_size", None) in (None, vit.d_model),
             "Its decoder's cross_attention_hidden_size differs from the encoder's: that projection has no counterpart.")
    overrides = {name: getattr(vit, name) for name in ("activation_function", "layer_norm_eps")
                 if getattr(vit, name) != getattr(gpt2, name)}
    if vit.dropout != gpt2.dropout or vit.attention_dropout != gpt2.attention_dropout:
        logger.warning("ViT's dropout (%s, attention %s) differs from GPT-2's (%s, %s); the Vaswani model uses GPT-2's "
                       "for both stacks (no effect on inference).",
                       vit.dropout, vit.attention_dropout, gpt2.dropout, gpt2.attention_dropout)
    start = config.decoder_start_token_id if getattr(config, "decoder_start_token_id", None) is not None else decoder.bos_token_id
    pad = config.pad_token_id if getattr(config, "pad_token_id", None) is not None else decoder.pad_token_id
    fields = {name: getattr(gpt2, name) for name in (
        "vocab_size", "d_model", "num_heads", "d_ff", "num_decoder_layers", "dropout", "attention_dropout",
        "activation_function", "max_position_embeddings", "layer_norm_eps", "tie_word_embeddings", "init_std",
        "bos_token_id", "eos_token_id",
    )}
    return VaswaniConfig(
        stacks="encoder-decoder", num_encoder_layers=vit.num_encoder_layers, image_size=vit.image_size,
        patch_size=vit.patch_size, num_channels=vit.num_channels, position_embedding_type="learned", norm_first=True,
        final_layer_norm=True, scale_embedding=False, type_vocab_size=0, pad_token_id=pad,
        decoder_start_token_id=start, encoder_overrides=overrides or None, **fields,
    )


def config_from_marian(config) -> VaswaniConfig:
    """
    A `VaswaniConfig` (encoder-decoder) for a `MarianConfig`: the paper's post-LN model with sines and cosines
    concatenated, a final logits bias, and (in the OPUS-MT models) swish and scaled embeddings.
    """
    _require(
        config.encoder_attention_heads == config.decoder_attention_heads
        and config.encoder_ffn_dim == config.decoder_ffn_dim,
        "Marian with different encoder and decoder widths (heads or ffn_dim) cannot be converted.",
    )
    _require(
        (config.decoder_vocab_size or config.vocab_size) == config.vocab_size,
        "Marian with a separate decoder vocabulary cannot be converted: Vaswani models share one vocabulary.",
    )
    tied = getattr(config, "tie_word_embeddings", True)
    _require(
        config.share_encoder_decoder_embeddings == tied,
        "Marian that shares only some of its embedding matrices cannot be converted: Vaswani ties source, target "
        "and output embeddings all together (tie_word_embeddings) or not at all.",
    )
    if config.activation_dropout:
        logger.warning(
            "Marian activation_dropout=%s has no Vaswani counterpart and is dropped (no effect on inference).",
            config.activation_dropout,
        )
    return VaswaniConfig(
        stacks="encoder-decoder",
        vocab_size=config.vocab_size,
        d_model=config.d_model,
        num_heads=config.encoder_attention_heads,
        d_ff=config.encoder_ffn_dim,
        num_encoder_layers=config.encoder_layers,
        num_decoder_layers=config.decoder_layers,
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        activation_function=_activation(config.activation_function, "This Marian model"),
        max_position_embeddings=config.max_position_embeddings,
        position_embedding_type="sinusoidal",
        sinusoidal_layout="concatenated",
        norm_first=False,
        final_layer_norm=False,
        scale_embedding=config.scale_embedding,
        final_logits_bias=True,
        layer_norm_eps=1e-5,
        init_std=config.init_std,
        tie_word_embeddings=tied,
        pad_token_id=config.pad_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
    )


def config_from_gpt_neox(config) -> VaswaniConfig:
    """
    A `VaswaniConfig` (decoder-only) for a `GPTNeoXConfig` (Pythia): pre-LN with a final LayerNorm, rotary positions
    on `partial_rotary_factor` of each head (its RoPE parameters, scaled types included, as they are), attention and
    feed-forward in parallel (`use_parallel_residual`), an untied output projection.
    """
    return _pre_ln_causal_config(
        config,
        vocab_size=config.vocab_size,
        d_model=config.hidden_size,
        num_heads=config.num_attention_heads,
        d_ff=config.intermediate_size,
        num_decoder_layers=config.num_hidden_layers,
        dropout=config.hidden_dropout,
        attention_dropout=config.attention_dropout,
        activation_function=_activation(config.hidden_act, "This GPT-NeoX"),
        max_position_embeddings=config.max_position_embeddings,
        position_embedding_type="rotary",
        rope_parameters=copy.deepcopy(dict(config.rope_parameters)),
        parallel_residual=config.use_parallel_residual,
        # attention_bias=False leaves the feed-forward's biases: the attention's become zeros (exact).
        projection_bias=True,
        layer_norm_eps=config.layer_norm_eps,
        tie_word_embeddings=getattr(config, "tie_word_embeddings", False),
    )


def config_from_bloom(config) -> VaswaniConfig:
    """
    A `VaswaniConfig` (decoder-only) for a `BloomConfig`: ALiBi (BLOOM's m_h j and Vaswani's -m_h |i - j| differ by a
    constant per query, which softmax ignores), a LayerNorm over the embeddings, pre-LN with a final LayerNorm, GELU's
    tanh approximation, a feed-forward 4 d_model wide, the output projection tied to the embedding.
    """
    _require(
        not config.apply_residual_connection_post_layernorm,
        "BLOOM with apply_residual_connection_post_layernorm=True cannot be converted: its residual is the normalised "
        "input, and Vaswani layers add the sub-layer to the un-normalised one (norm_first) or normalise the sum.",
    )
    if config.hidden_dropout:
        logger.warning(
            "BLOOM has no embedding dropout; the Vaswani model applies hidden_dropout (%s) to the embeddings too (no "
            "effect on inference).", config.hidden_dropout,
        )
    return _pre_ln_causal_config(
        config,
        vocab_size=config.vocab_size,
        d_model=config.hidden_size,
        num_heads=config.n_head,
        d_ff=4 * config.hidden_size,
        num_decoder_layers=config.n_layer,
        dropout=config.hidden_dropout,
        attention_dropout=config.attention_dropout,
        activation_function="gelu_pytorch_tanh",  # BloomGelu: x/2 (1 + tanh(0.79788456 x (1 + 0.044715 x^2)))
        position_embedding_type="alibi",
        embedding_layer_norm=True,
        layer_norm_eps=config.layer_norm_epsilon,
        tie_word_embeddings=getattr(config, "tie_word_embeddings", True),
    )


def config_from_t5(config, stacks: str = "encoder-decoder") -> VaswaniConfig:
    """
    A `VaswaniConfig` for a `T5Config`: T5's relative position bias (one table per stack), RMS norms, pre-LN with a
    final norm per stack, no projection biases, no scaled embeddings. `stacks="encoder-only"` for `T5EncoderModel`.
    T5's two scalings without a config switch are folded into the weights by `convert` (see `_t5_body`).
    """
    _require(
        not config.is_gated_act,
        f"T5 with feed_forward_proj={config.feed_forward_proj!r} cannot be converted: its gated feed-forward (T5 v1.1, "
        f"Flan-T5) has a second input projection, and Vaswani's feed-forward is the paper's W_2 act(W_1 x).",
    )
    _require(
        config.d_kv * config.num_heads == config.d_model,
        f"T5 with d_kv * num_heads ({config.d_kv} * {config.num_heads}) != d_model ({config.d_model}) cannot be "
        f"converted: Vaswani heads are d_model / num_heads wide.",
    )
    decoder_layers = config.num_decoder_layers if stacks == "encoder-decoder" else 0
    return VaswaniConfig(
        stacks=stacks,
        vocab_size=config.vocab_size,
        d_model=config.d_model,
        num_heads=config.num_heads,
        d_ff=config.d_ff,
        num_encoder_layers=config.num_layers,
        num_decoder_layers=decoder_layers,
        dropout=config.dropout_rate,
        attention_dropout=config.dropout_rate,
        activation_function=_activation(config.dense_act_fn, "This T5"),
        position_embedding_type="relative",
        relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance,
        rms_norm=True,
        projection_bias=False,
        norm_first=True,
        final_layer_norm=True,
        scale_embedding=False,
        layer_norm_eps=config.layer_norm_epsilon,
        tie_word_embeddings=getattr(config, "tie_word_embeddings", True),
        pad_token_id=config.pad_token_id,
        bos_token_id=None,
        eos_token_id=config.eos_token_id,
        decoder_start_token_id=(
            (config.decoder_start_token_id if config.decoder_start_token_id is not None else config.pad_token_id)
            if decoder_layers else None
        ),
    )


# -- Weights ------------------------------------------------------------------------------------------------------------
def _linear(mapping, ours: str, weight, bias):
    mapping[f"{ours}.weight"] = weight
    mapping[f"{ours}.bias"] = bias


def _bert_body(sd: dict, config: VaswaniConfig) -> dict:
    """Our body keys (relative to VaswaniModel) -> tensors of a BertModel state dict."""
    m = {
        "encoder.embeddings.word_embeddings.weight": sd["embeddings.word_embeddings.weight"],
        "encoder.embeddings.position_embeddings.weight": sd["embeddings.position_embeddings.weight"],
        "encoder.embeddings.layer_norm.weight": sd["embeddings.LayerNorm.weight"],
        "encoder.embeddings.layer_norm.bias": sd["embeddings.LayerNorm.bias"],
    }
    if config.type_vocab_size:
        m["encoder.embeddings.token_type_embeddings.weight"] = sd["embeddings.token_type_embeddings.weight"]
    for i in range(config.num_encoder_layers):
        src, dst = f"encoder.layer.{i}.", f"encoder.layers.{i}."
        for ours, theirs in {
            "self_attn.q_proj": "attention.self.query",
            "self_attn.k_proj": "attention.self.key",
            "self_attn.v_proj": "attention.self.value",
            "self_attn.o_proj": "attention.output.dense",
            "self_attn_layer_norm": "attention.output.LayerNorm",
            "feed_forward.fc1": "intermediate.dense",
            "feed_forward.fc2": "output.dense",
            "final_layer_norm": "output.LayerNorm",
        }.items():
            _linear(m, dst + ours, sd[f"{src}{theirs}.weight"], sd[f"{src}{theirs}.bias"])
    return m


def _gpt2_body(sd: dict, config: VaswaniConfig) -> dict:
    """Our body keys -> tensors of a GPT2Model state dict. GPT-2's Conv1D stores weights as (in, out): transposed."""
    d = config.d_model
    m = {
        "decoder.embeddings.word_embeddings.weight": sd["wte.weight"],
        "decoder.embeddings.position_embeddings.weight": sd["wpe.weight"],
        "decoder.final_layer_norm.weight": sd["ln_f.weight"],
        "decoder.final_layer_norm.bias": sd["ln_f.bias"],
    }
    for i in range(config.num_decoder_layers):
        src, dst = f"h.{i}.", f"decoder.layers.{i}."
        qkv_weight = sd[src + "attn.c_attn.weight"].t()  # (3 d_model, d_model): q, k, v stacked
        qkv_bias = sd[src + "attn.c_attn.bias"]
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            _linear(m, dst + "self_attn." + name, qkv_weight[j * d : (j + 1) * d], qkv_bias[j * d : (j + 1) * d])
        _linear(m, dst + "self_attn.o_proj", sd[src + "attn.c_proj.weight"].t(), sd[src + "attn.c_proj.bias"])
        _linear(m, dst + "feed_forward.fc1", sd[src + "mlp.c_fc.weight"].t(), sd[src + "mlp.c_fc.bias"])
        _linear(m, dst + "feed_forward.fc2", sd[src + "mlp.c_proj.weight"].t(), sd[src + "mlp.c_proj.bias"])
        _linear(m, dst + "self_attn_layer_norm", sd[src + "ln_1.weight"], sd[src + "ln_1.bias"])
        _linear(m, dst + "final_layer_norm", sd[src + "ln_2.weight"], sd[src + "ln_2.bias"])
    return m


def _marian_body(sd: dict, config: VaswaniConfig) -> dict:
    """Our body keys -> tensors of a MarianModel state dict (the same layer names as ours, nearly)."""
    m = {
        "encoder.embeddings.word_embeddings.weight": sd["encoder.embed_tokens.weight"],
        "decoder.embeddings.word_embeddings.weight": sd["decoder.embed_tokens.weight"],
    }
    for stack, depth in (("encoder", config.num_encoder_layers), ("decoder", config.num_decoder_layers)):
        # Marian keeps its sinusoids as a frozen table; ours are computed. They must agree, or the layout is wrong.
        table = sd[f"{stack}.embed_positions.weight"]
        expected = sinusoidal_positions(torch.arange(table.shape[0]), config.d_model, config.sinusoidal_layout)
        _require(
            torch.allclose(table.float(), expected, atol=1e-5),
            f"Marian's {stack} position table is not the concatenated sinusoid this converter expects.",
        )
        for i in range(depth):
            prefix = f"{stack}.layers.{i}."
            names = ["self_attn", "encoder_attn"] if stack == "decoder" else ["self_attn"]
            for attn in names:
                for proj in ("q_proj", "k_proj", "v_proj"):
                    key = f"{prefix}{attn}.{proj}"
                    _linear(m, key, sd[key + ".weight"], sd[key + ".bias"])
                _linear(m, f"{prefix}{attn}.o_proj", sd[f"{prefix}{attn}.out_proj.weight"], sd[f"{prefix}{attn}.out_proj.bias"])
                key = f"{prefix}{attn}_layer_norm"
                _linear(m, key, sd[key + ".weight"], sd[key + ".bias"])
            for fc in ("fc1", "fc2"):
                _linear(m, f"{prefix}feed_forward.{fc}", sd[f"{prefix}{fc}.weight"], sd[f"{prefix}{fc}.bias"])
            key = f"{prefix}final_layer_norm"
            _linear(m, key, sd[key + ".weight"], sd[key + ".bias"])
    return m


def _vit_body(sd: dict, config: VaswaniConfig) -> dict:
    """Our body keys (relative to VaswaniModel) -> tensors of a ViTModel state dict (transformers 5.24's names)."""
    m = {
        "encoder.embeddings.cls_token": sd["embeddings.cls_token"],
        "encoder.embeddings.position_embeddings.weight": sd["embeddings.position_embeddings"][0],  # (1, N + 1, d)
    }
    _linear(m, "encoder.embeddings.projection", sd["embeddings.patch_embeddings.projection.weight"],
            sd["embeddings.patch_embeddings.projection.bias"])
    _linear(m, "encoder.final_layer_norm", sd["layernorm.weight"], sd["layernorm.bias"])
    for i in range(config.num_encoder_layers):
        src, dst = f"layers.{i}.", f"encoder.layers.{i}."
        for ours, theirs in {
            "self_attn.q_proj": "attention.q_proj", "self_attn.k_proj": "attention.k_proj",
            "self_attn.v_proj": "attention.v_proj", "self_attn.o_proj": "attention.o_proj",
            "self_attn_layer_norm": "layernorm_before", "final_layer_norm": "layernorm_after",
            "feed_forward.fc1": "mlp.fc1", "feed_forward.fc2": "mlp.fc2",
        }.items():
            _linear(m, dst + ours, sd[f"{src}{theirs}.weight"], sd[f"{src}{theirs}.bias"])
    return m


def _vision_encoder_decoder_body(sd: dict, config: VaswaniConfig) -> dict:
    """
    Our body keys -> tensors of a VisionEncoderDecoderModel(ViT, GPT-2 with cross-attention) state dict: the ViT's,
    GPT-2's, and its cross-attention (q_attn: W^Q; c_attn: W^K and W^V stacked; Conv1D weights transposed).
    """
    d = config.d_model
    m = _vit_body({k[len("encoder."):]: v for k, v in sd.items() if k.startswith("encoder.")}, config)
    gpt2 = {k[len("decoder.transformer."):]: v for k, v in sd.items() if k.startswith("decoder.transformer.")}
    m.update(_gpt2_body(gpt2, config))
    for i in range(config.num_decoder_layers):
        src, dst = f"decoder.transformer.h.{i}.", f"decoder.layers.{i}."
        _linear(m, dst + "encoder_attn.q_proj", sd[src + "crossattention.q_attn.weight"].t(),
                sd[src + "crossattention.q_attn.bias"])
        kv_weight, kv_bias = sd[src + "crossattention.c_attn.weight"].t(), sd[src + "crossattention.c_attn.bias"]
        for j, name in enumerate(("k_proj", "v_proj")):  # (2 d_model, d_model): k, v stacked
            _linear(m, dst + "encoder_attn." + name, kv_weight[j * d : (j + 1) * d], kv_bias[j * d : (j + 1) * d])
        _linear(m, dst + "encoder_attn.o_proj", sd[src + "crossattention.c_proj.weight"].t(),
                sd[src + "crossattention.c_proj.bias"])
        _linear(m, dst + "encoder_attn_layer_norm", sd[src + "ln_cross_attn.weight"], sd[src + "ln_cross_attn.bias"])
    return m


def _unfuse_heads(weight: torch.Tensor, bias: torch.Tensor | None, num_heads: int) -> list[tuple]:
    """
    (weight, bias) of W^Q, W^K and W^V from a fused projection whose outputs are laid out head by head, each head's
    query, key and value side by side (GPT-NeoX's view(B, T, h, 3 d_k), BLOOM's view(B, T, h, 3, d_k)).
    """
    d_in = weight.shape[1]
    weight = weight.view(num_heads, 3, -1, d_in)
    bias = bias.view(num_heads, 3, -1) if bias is not None else torch.zeros(num_heads, 3, weight.shape[2])
    return [(weight[:, j].reshape(-1, d_in), bias[:, j].reshape(-1)) for j in range(3)]


def _pre_ln_causal_body(sd: dict, config: VaswaniConfig, names: dict) -> dict:
    """Our body keys -> tensors of a pre-LN decoder-only model with a head-by-head fused q/k/v (GPT-NeoX, BLOOM)."""
    m = {"decoder.embeddings.word_embeddings.weight": sd[names["embeddings"]]}
    norms = {"decoder.final_layer_norm": names["final_norm"], "decoder.embeddings.layer_norm": names.get("embedding_norm")}
    for ours, theirs in norms.items():
        if theirs is not None:
            _linear(m, ours, sd[theirs + ".weight"], sd[theirs + ".bias"])
    for i in range(config.num_decoder_layers):
        src, dst = f"{names['layers']}.{i}.", f"decoder.layers.{i}."
        qkv, dense = src + names["qkv"], src + names["dense"]
        for (weight, bias), proj in zip(_unfuse_heads(sd[qkv + ".weight"], sd.get(qkv + ".bias"), config.num_heads),
                                        ("q_proj", "k_proj", "v_proj")):
            _linear(m, dst + "self_attn." + proj, weight, bias)
        # GPT-NeoX with attention_bias=False: zero biases, exact (its feed-forward keeps its own).
        _linear(m, dst + "self_attn.o_proj", sd[dense + ".weight"], sd.get(dense + ".bias", torch.zeros(config.d_model)))
        for ours, theirs in {
            "feed_forward.fc1": "mlp.dense_h_to_4h",
            "feed_forward.fc2": "mlp.dense_4h_to_h",
            "self_attn_layer_norm": "input_layernorm",
            "final_layer_norm": "post_attention_layernorm",
        }.items():
            _linear(m, dst + ours, sd[f"{src}{theirs}.weight"], sd[f"{src}{theirs}.bias"])
    return m


def _gpt_neox_body(sd: dict, config: VaswaniConfig) -> dict:
    """Our body keys -> tensors of a GPTNeoXModel state dict."""
    return _pre_ln_causal_body(sd, config, {
        "embeddings": "embed_in.weight", "final_norm": "final_layer_norm", "layers": "layers",
        "qkv": "attention.query_key_value", "dense": "attention.dense",
    })


def _bloom_body(sd: dict, config: VaswaniConfig) -> dict:
    """Our body keys -> tensors of a BloomModel state dict (ALiBi has no weights: the slopes are computed)."""
    return _pre_ln_causal_body(sd, config, {
        "embeddings": "word_embeddings.weight", "embedding_norm": "word_embeddings_layernorm", "final_norm": "ln_f",
        "layers": "h", "qkv": "self_attention.query_key_value", "dense": "self_attention.dense",
    })


def _t5_body(sd: dict, config: VaswaniConfig) -> dict:
    """
    Our body keys -> tensors of a T5 state dict (T5Model, T5ForConditionalGeneration, T5EncoderModel). T5 keeps each
    stack's relative bias table in its block 0; T5 does not divide scores by sqrt(d_k), so W^Q is multiplied by
    sqrt(d_k) here (every attention, cross-attention too), which Vaswani attention's 1/sqrt(d_k) undoes.
    """
    unscale = math.sqrt(config.d_model // config.num_heads)
    m = {}
    for stack, depth in (("encoder", config.num_encoder_layers), ("decoder", config.num_decoder_layers)):
        if depth == 0:  # T5EncoderModel
            continue
        m[f"{stack}.embeddings.word_embeddings.weight"] = sd[f"{stack}.embed_tokens.weight"]
        m[f"{stack}.position_bias.relative_attention_bias.weight"] = sd[
            f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        ]
        m[f"{stack}.final_layer_norm.weight"] = sd[f"{stack}.final_layer_norm.weight"]
        for i in range(depth):
            src, dst = f"{stack}.block.{i}.layer.", f"{stack}.layers.{i}."
            sublayers = [("self_attn", "0.SelfAttention")]
            if stack == "decoder":
                sublayers.append(("encoder_attn", "1.EncDecAttention"))
            for ours, theirs in sublayers:
                m[f"{dst}{ours}.q_proj.weight"] = sd[f"{src}{theirs}.q.weight"] * unscale
                for proj in ("k", "v", "o"):
                    m[f"{dst}{ours}.{proj}_proj.weight"] = sd[f"{src}{theirs}.{proj}.weight"]
                m[f"{dst}{ours}_layer_norm.weight"] = sd[f"{src}{theirs[0]}.layer_norm.weight"]
            ff = f"{src}{len(sublayers)}."
            m[f"{dst}feed_forward.fc1.weight"] = sd[ff + "DenseReluDense.wi.weight"]
            m[f"{dst}feed_forward.fc2.weight"] = sd[ff + "DenseReluDense.wo.weight"]
            m[f"{dst}final_layer_norm.weight"] = sd[ff + "layer_norm.weight"]
    return m


def _load_exactly(model: nn.Module, mapping: dict, source_name: str) -> nn.Module:
    """Copy `mapping` into `model`, insisting that it names every tensor of the model and nothing else."""
    ours = set(model.state_dict())
    missing, unexpected = sorted(ours - set(mapping)), sorted(set(mapping) - ours)
    if missing or unexpected:
        raise ConversionError(
            f"Converting {source_name}: the weights do not line up (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}); this is a converter bug, please report it."
        )
    with torch.no_grad():
        for key, tensor in model.state_dict(keep_vars=True).items():
            source = mapping[key]
            if tuple(source.shape) != tuple(tensor.shape):
                raise ConversionError(
                    f"Converting {source_name}: {key} has shape {tuple(source.shape)} in the source but "
                    f"{tuple(tensor.shape)} here."
                )
            tensor.copy_(source)
    return model


def _check_all_used(sd: dict, used, source_name: str, leftovers: tuple = ()):
    """
    Every source tensor must be used (tied tensors count once: they share memory), except known leftovers (named in a
    warning) and position tables that are computed here.
    """
    used = {t.data_ptr() for t in used}
    unused = sorted(
        k for k in sd if sd[k].data_ptr() not in used and not k.endswith(("embed_positions.weight", "position_ids"))
    )
    dropped = [k for k in unused if k.startswith(leftovers)]
    unknown = [k for k in unused if k not in dropped]
    if unknown:
        raise ConversionError(f"Converting {source_name}: source weights without a place here: {unknown[:8]}.")
    if dropped:
        logger.warning("Converting %s: left out (no counterpart in this head): %s", source_name, dropped)


# (architecture class name) -> (family, Vaswani class, the source's body attribute or None for a bare body)
ARCHITECTURES = {
    "BertModel": ("bert", VaswaniModel, None),
    "BertForMaskedLM": ("bert", VaswaniForMaskedLM, "bert"),
    "BertForPreTraining": ("bert", VaswaniForPreTraining, "bert"),
    "GPT2Model": ("gpt2", VaswaniModel, None),
    "GPT2LMHeadModel": ("gpt2", VaswaniForCausalLM, "transformer"),
    "MarianModel": ("marian", VaswaniModel, None),
    "MarianMTModel": ("marian", VaswaniForConditionalGeneration, "model"),
    "GPTNeoXModel": ("gpt_neox", VaswaniModel, None),
    "GPTNeoXForCausalLM": ("gpt_neox", VaswaniForCausalLM, "gpt_neox"),
    "BloomModel": ("bloom", VaswaniModel, None),
    "BloomForCausalLM": ("bloom", VaswaniForCausalLM, "transformer"),
    "T5Model": ("t5", VaswaniModel, None),
    "T5ForConditionalGeneration": ("t5", VaswaniForConditionalGeneration, None),
    "T5EncoderModel": ("t5-encoder", VaswaniModel, None),
    "ViTModel": ("vit", VaswaniModel, None),
    "ViTForImageClassification": ("vit", VaswaniForImageClassification, "vit"),
    "VisionEncoderDecoderModel": ("vision-encoder-decoder", VaswaniForConditionalGeneration, None),
}
_CONFIGS = {
    "bert": config_from_bert,
    "gpt2": config_from_gpt2,
    "marian": config_from_marian,
    "gpt_neox": config_from_gpt_neox,
    "bloom": config_from_bloom,
    "t5": config_from_t5,
    "t5-encoder": lambda config: config_from_t5(config, stacks="encoder-only"),
    "vit": config_from_vit,
    "vision-encoder-decoder": config_from_vision_encoder_decoder,
}
_BODIES = {
    "bert": _bert_body,
    "gpt2": _gpt2_body,
    "marian": _marian_body,
    "gpt_neox": _gpt_neox_body,
    "bloom": _bloom_body,
    "t5": _t5_body,
    "t5-encoder": _t5_body,
    "vit": _vit_body,
    "vision-encoder-decoder": _vision_encoder_decoder_body,
}


class _ReadStateDict(dict):
    """A state dict that remembers what a converter read: a tensor it un-fuses or rescales is used all the same."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = []

    def __getitem__(self, key):
        value = super().__getitem__(key)
        self.read.append(value)
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default


def _head_weights(architecture: str, sd: dict, source_config) -> dict:
    """Our head keys -> tensors of the source's full state dict."""
    if architecture in ("BertForMaskedLM", "BertForPreTraining"):
        m = {}
        _linear(m, "lm_head.dense", sd["cls.predictions.transform.dense.weight"], sd["cls.predictions.transform.dense.bias"])
        _linear(
            m, "lm_head.layer_norm",
            sd["cls.predictions.transform.LayerNorm.weight"], sd["cls.predictions.transform.LayerNorm.bias"],
        )
        # decoder.bias is the one the forward adds (`cls.predictions.bias` is the same tensor only when tied).
        _linear(m, "lm_head.decoder", sd["cls.predictions.decoder.weight"], sd["cls.predictions.decoder.bias"])
        if architecture == "BertForPreTraining":
            _linear(m, "pooler.dense", sd["bert.pooler.dense.weight"], sd["bert.pooler.dense.bias"])
            _linear(m, "nsp_head", sd["cls.seq_relationship.weight"], sd["cls.seq_relationship.bias"])
        return m
    if architecture in ("GPT2LMHeadModel", "GPTNeoXForCausalLM", "BloomForCausalLM"):
        return {"lm_head.weight": sd["lm_head.weight"]}
    if architecture == "T5ForConditionalGeneration":
        m = {"lm_head.weight": sd["lm_head.weight"]}
        # T5 with tied embeddings multiplies the decoder's output by d_model^-0.5 before lm_head: folded into the
        # decoder's final RMS norm, whose output (our decoder's last_hidden_state) is therefore the scaled one.
        if getattr(source_config, "scale_decoder_outputs", source_config.tie_word_embeddings):
            scale = source_config.d_model**-0.5
            m["model.decoder.final_layer_norm.weight"] = sd["decoder.final_layer_norm.weight"] * scale
        return m
    if architecture == "VisionEncoderDecoderModel":
        return {"lm_head.weight": sd["decoder.lm_head.weight"]}
    if architecture == "ViTForImageClassification":
        return {"classifier.weight": sd["classifier.weight"], "classifier.bias": sd["classifier.bias"]}
    if architecture == "MarianMTModel":
        return {"lm_head.weight": sd["lm_head.weight"], "final_logits_bias": sd["final_logits_bias"]}
    return {}


def convert(source, architecture: str | None = None, **load_kwargs):
    """
    Convert a Hugging Face BERT, GPT-2, Marian, GPT-NeoX, BLOOM, T5 or ViT model, or a ViT + GPT-2 captioner, into
    the Vaswani model that computes the same numbers.

    Args:
        source: a model object (one of `ARCHITECTURES`: `BertModel`, `BertForMaskedLM`, `BertForPreTraining`,
            `GPT2Model`, `GPT2LMHeadModel`, `MarianModel`, `MarianMTModel`, `GPTNeoXModel`, `GPTNeoXForCausalLM`,
            `BloomModel`, `BloomForCausalLM`, `T5Model`, `T5ForConditionalGeneration`, `T5EncoderModel`, `ViTModel`,
            `ViTForImageClassification`, `VisionEncoderDecoderModel` of a ViT and a GPT-2 with cross-attention), or
            a checkpoint folder or Hub name holding one, or a
            `torch.nn.Transformer` (then pass `vocab_size`; see `convert_torch_transformer`).
        architecture (`str`, *optional*): for a folder, the class to load it as (default: its config's
            `architectures[0]`).
        load_kwargs: passed to `from_pretrained` for a folder (e.g. `revision`), or to `convert_torch_transformer`.

    Returns:
        The Vaswani model, in the source's dtype and train/eval mode, with the source's generation config and a
        model card that names where it came from. A converted T5ForConditionalGeneration with tied embeddings has
        T5's d_model^-0.5 output scaling inside its decoder's final norm, so its decoder `last_hidden_state` is the
        scaled one (the logits are T5's).
    """
    if isinstance(source, nn.Transformer):
        return convert_torch_transformer(source, **load_kwargs)
    if not isinstance(source, nn.Module):
        source = _load_source(str(source), architecture, **load_kwargs)
    architecture = type(source).__name__
    if architecture not in ARCHITECTURES:
        raise ConversionError(
            f"Cannot convert a {architecture}: supported are {sorted(ARCHITECTURES)} and torch.nn.Transformer."
        )
    family, vaswani_class, body_attr = ARCHITECTURES[architecture]
    source_name = getattr(source, "name_or_path", "") or architecture
    try:
        config = _CONFIGS[family](source.config)
    except ConversionError:
        raise
    except ValueError as error:  # a setting the Vaswani config refuses (e.g. an odd rotary width)
        raise ConversionError(f"Converting {source_name}: {error}") from None
    output, embeddings = source.get_output_embeddings(), source.get_input_embeddings()
    if output is not None and output.weight.data_ptr() != embeddings.weight.data_ptr():
        config.tie_word_embeddings = False  # a source untied by hand (T5 always says it ties)
    config.model_card_data = {
        "name": f"vaswani-{str(source_name).rstrip('/').split('/')[-1]}",
        "tags": ["converted", family],
        "training_data": (
            f"Not trained here: the weights were converted from `{source_name}` ({architecture}) with "
            "`vaswani.convert`, and compute the same numbers. See that model's card for its training data."
        ),
        "training_procedure": f"Converted from `{source_name}` ({architecture}); no further training.",
    }
    model = vaswani_class(config)
    full = _ReadStateDict(source.state_dict())
    body = (
        _ReadStateDict({k[len(body_attr) + 1 :]: v for k, v in full.items() if k.startswith(body_attr + ".")})
        if body_attr else full
    )
    mapping = _BODIES[family](body, model.config)
    if vaswani_class is not VaswaniModel:
        mapping = {f"model.{key}": value for key, value in mapping.items()}
    mapping.update(_head_weights(architecture, full, source.config))
    _load_exactly(model, mapping, source_name)
    used = [*mapping.values(), *body.read, *full.read]
    _check_all_used(dict(full), used, source_name, ("pooler.", "bert.pooler.", "encoder.pooler.", "cls.predictions.bias"))
    if getattr(source, "generation_config", None) is not None and hasattr(model, "generation_config"):
        model.generation_config = copy.deepcopy(source.generation_config)
    dtype = next(source.parameters()).dtype
    return model.to(dtype).train(source.training)


# What makes a folder a sentence-transformers model, beside the Transformer module's own files (config, weights,
# tokenizer) and the folders of the modules after it (pooling, normalisation, dense layers).
SENTENCE_TRANSFORMERS_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def sentence_transformers_modules(source: str) -> tuple[Path, list[str]] | None:
    """
    Where a sentence-transformers source (a folder or a Hub name with a `modules.json`) keeps its module files, and
    what of them a converted folder needs: the files of `SENTENCE_TRANSFORMERS_FILES` it has and the folders of its
    modules after the Transformer (for all-MiniLM-L6-v2: mean pooling, normalisation, `max_seq_length` 256). None
    for a source that is not a sentence-transformers model. The Transformer module must be the folder itself (path
    ""), where the converted weights go; a source that keeps it in a subfolder is refused.
    """
    source = str(source)
    if os.path.isdir(os.path.expanduser(source)):
        root = Path(os.path.expanduser(source))
        if not (root / "modules.json").is_file():
            return None
        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
    elif source.startswith(("/", ".", "~")):  # a path, but no folder there: nothing to find
        return None
    else:  # a Hub name: its modules.json, if it has one, then the files it names
        from huggingface_hub import snapshot_download
        from transformers.utils import cached_file

        found = cached_file(source, "modules.json", _raise_exceptions_for_missing_entries=False,
                            _raise_exceptions_for_connection_errors=False)
        if found is None:
            return None
        modules = json.loads(Path(found).read_text(encoding="utf-8"))
        patterns = [*SENTENCE_TRANSFORMERS_FILES, *(f"{m['path']}/*" for m in modules if m.get("path"))]
        try:
            root = Path(snapshot_download(source, allow_patterns=patterns))
        except Exception as error:  # offline and not cached, or the Hub's errors: one line
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ConversionError(f"Cannot fetch the sentence-transformers modules of {source}: {first_line}") from None
    transformers_modules = [m for m in modules if m.get("type", "").endswith(".Transformer")]
    _require(
        [m.get("path", "") for m in transformers_modules] == [""],
        f"{source} is a sentence-transformers model whose Transformer module is not the folder itself (modules.json: "
        f"{[m.get('path') for m in transformers_modules]}): convert that module's folder (its pooling and "
        f"normalisation are then not carried over).",
    )
    names = [name for name in SENTENCE_TRANSFORMERS_FILES if (root / name).is_file()]
    names += [m["path"] for m in modules if m.get("path") and (root / m["path"]).is_dir()]
    return root, names


def copy_sentence_transformers_modules(root: Path, names: list[str], folder) -> None:
    """
    Copy into `folder` (a converted model's) the module files `sentence_transformers_modules` found in `root`, so
    that `SentenceTransformer(folder, trust_remote_code=True)` pools, normalises and truncates as the source does.
    """
    for name in names:
        if (root / name).is_dir():
            shutil.copytree(root / name, Path(folder) / name)
        else:
            shutil.copy2(root / name, Path(folder) / name)


def _load_source(name: str, architecture: str | None, **load_kwargs) -> nn.Module:
    import transformers
    from transformers import AutoConfig

    if name.startswith(("/", ".", "~")) and not os.path.isdir(os.path.expanduser(name)):
        raise ConversionError(f"No folder at {name}: pass a checkpoint folder or a Hub model name.")
    try:
        source_config = AutoConfig.from_pretrained(name, **load_kwargs)
    except (OSError, ValueError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConversionError(f"Cannot read a model config from {name}: {first_line}") from None
    if architecture is not None and architecture not in ARCHITECTURES:
        raise ConversionError(f"Cannot convert as {architecture}: supported are {sorted(ARCHITECTURES)}.")
    architecture = architecture or (source_config.architectures or [None])[0]
    if architecture not in ARCHITECTURES:
        raise ConversionError(
            f"{name} holds a {architecture or source_config.model_type} model; supported are "
            f"{sorted(ARCHITECTURES)} (pass --architecture to load the folder as one of them)."
        )
    return getattr(transformers, architecture).from_pretrained(name, **load_kwargs)


def convert_torch_transformer(transformer: nn.Transformer, vocab_size: int, **config_overrides) -> VaswaniModel:
    """
    A `VaswaniModel` (encoder-decoder) whose layers carry the weights of a `torch.nn.Transformer`.

    `nn.Transformer` starts from embeddings and has none of its own, so the Vaswani embeddings (token x sqrt(d_model)
    + sinusoids, paper 3.4-3.5) are freshly initialised: given the same embedded inputs, the two compute the same
    outputs. Missing biases (`bias=False`) become zeros.

    Args:
        transformer (`torch.nn.Transformer`): the source (batch_first or not: only weights are read).
        vocab_size (`int`): size of the vocabulary for the new embeddings.
        config_overrides: other `VaswaniConfig` fields (e.g. `pad_token_id`).
    """
    encoder_layers, decoder_layers = transformer.encoder.layers, transformer.decoder.layers
    first = encoder_layers[0]
    attention = first.self_attn
    _require(attention._qkv_same_embed_dim, "nn.Transformer with kdim/vdim != d_model cannot be converted.")
    activation = first.activation
    name = {1: "relu", 2: "gelu"}.get(getattr(first, "activation_relu_or_gelu", 0))
    if name is None:
        name = {torch.nn.functional.relu: "relu", torch.nn.functional.gelu: "gelu"}.get(activation)
        _require(name is not None, f"nn.Transformer with activation {activation!r} cannot be converted.")
    config = VaswaniConfig(
        **{
            "stacks": "encoder-decoder",
            "vocab_size": vocab_size,
            "d_model": attention.embed_dim,
            "num_heads": attention.num_heads,
            "d_ff": first.linear1.out_features,
            "num_encoder_layers": len(encoder_layers),
            "num_decoder_layers": len(decoder_layers),
            "dropout": first.dropout1.p,
            "attention_dropout": attention.dropout,
            "activation_function": name,
            "norm_first": first.norm_first,
            "final_layer_norm": transformer.encoder.norm is not None,
            "layer_norm_eps": first.norm1.eps,
            **config_overrides,
        }
    )
    model = VaswaniModel(config)
    mapping = {k: v for k, v in model.state_dict().items() if ".embeddings." in k}

    def linear(ours, module):
        bias = module.bias if module.bias is not None else torch.zeros(module.weight.shape[0])
        _linear(mapping, ours, module.weight, bias)

    def attention_weights(ours, module: nn.MultiheadAttention):
        d = module.embed_dim
        bias = module.in_proj_bias if module.in_proj_bias is not None else torch.zeros(3 * d)
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):  # in_proj stacks W^Q, W^K, W^V: (3 d, d)
            _linear(mapping, f"{ours}.{proj}", module.in_proj_weight[j * d : (j + 1) * d], bias[j * d : (j + 1) * d])
        linear(f"{ours}.o_proj", module.out_proj)

    for i, layer in enumerate(encoder_layers):
        prefix = f"encoder.layers.{i}."
        attention_weights(prefix + "self_attn", layer.self_attn)
        linear(prefix + "self_attn_layer_norm", layer.norm1)
        linear(prefix + "feed_forward.fc1", layer.linear1)
        linear(prefix + "feed_forward.fc2", layer.linear2)
        linear(prefix + "final_layer_norm", layer.norm2)
    for i, layer in enumerate(decoder_layers):
        prefix = f"decoder.layers.{i}."
        attention_weights(prefix + "self_attn", layer.self_attn)
        linear(prefix + "self_attn_layer_norm", layer.norm1)
        attention_weights(prefix + "encoder_attn", layer.multihead_attn)
        linear(prefix + "encoder_attn_layer_norm", layer.norm2)
        linear(prefix + "feed_forward.fc1", layer.linear1)
        linear(prefix + "feed_forward.fc2", layer.linear2)
        linear(prefix + "final_layer_norm", layer.norm3)
    if config.final_layer_norm:
        linear("encoder.final_layer_norm", transformer.encoder.norm)
        linear("decoder.final_layer_norm", transformer.decoder.norm)
    _load_exactly(model, mapping, "torch.nn.Transformer")
    return model.train(transformer.training)


__all__ = [
    "ARCHITECTURES",
    "ConversionError",
    "config_from_bert",
    "config_from_bloom",
    "config_from_gpt2",
    "config_from_gpt_neox",
    "config_from_marian",
    "config_from_t5",
    "convert",
    "convert_torch_transformer",
    "copy_sentence_transformers_modules",
    "sentence_transformers_modules",
]
