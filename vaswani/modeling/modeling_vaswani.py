"""
The Transformer of "Attention Is All You Need" (Vaswani et al., 2017), one class per concept of the paper:

    sinusoidal_positions     the positional encoding PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), ... (3.5)
    VaswaniEmbeddings        token embedding x sqrt(d_model) + positional encoding (3.4, 3.5)
    eager_attention_forward  scaled dot-product attention, Attention(Q, K, V) = softmax(QK^T / sqrt(d_k)) V (3.2.1)
    additive_attention_forward  additive attention, softmax(v^T tanh(W_q q + W_k k)) V, the other kind of 3.2.1
    VaswaniAttention         multi-head attention, MultiHead(Q, K, V) = Concat(head_1..head_h) W^O (3.2.2)
    VaswaniFeedForward       position-wise feed-forward network, FFN(x) = max(0, xW_1 + b_1) W_2 + b_2 (3.3)
    VaswaniEncoderLayer      self-attention, then feed-forward, each as LayerNorm(x + Dropout(Sublayer(x))) (3.1)
    VaswaniDecoderLayer      masked self-attention, encoder-decoder attention, feed-forward (3.1)
    VaswaniPreTrainedModel   initialisation and loading conventions shared by every Vaswani model
    VaswaniEncoder           N encoder layers over the embedded source (two streams for permutation LM: XLNet)
    VaswaniDecoder           N decoder layers over the embedded (shifted) target
    VaswaniModel             the stacks a config asks for: encoder-decoder, encoder-only or decoder-only

The positions of the paper's descendants (rotary, ALiBi, T5's relative bias), which act inside attention rather
than on the embeddings, are in `positions_vaswani.py`; each stack makes them once per forward for all its layers.

What is not the paper lives beside this file, each concern in its own module (all ship in a saved folder's remote
code): `cache_vaswani.py` (the decoding cache), `validation_vaswani.py` (named errors for bad input), and
`hub/hub_vaswani.py` (saving self-contained folders, the Hub). The task heads live in `modeling_vaswani_heads.py`.
Every learned projection (W^Q, W^K, W^V, W^O, W_1, W_2, the pre-softmax linear transformation) is exactly a
`torch.nn.Linear`, so quantisers, PEFT and anything else that matches module types find them all.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.masking_utils import (
    ALL_MASK_ATTENTION_FUNCTIONS,
    create_bidirectional_mask,
    create_causal_mask,
    eager_mask,
)
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithPastAndCrossAttentions,
    Seq2SeqModelOutput,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface, PreTrainedModel
from transformers.utils import is_tracing
from transformers.utils.deprecation import deprecate_kwarg
from transformers.utils.generic import can_return_tuple, merge_with_config_defaults
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from ..configuration.configuration_vaswani import VaswaniConfig
from ..hub.hub_vaswani import VaswaniHubMixin
from .cache_vaswani import VaswaniDynamicCache
from .positions_vaswani import (
    BIAS_BACKENDS,
    VaswaniAlibi,
    VaswaniRelativePositionBias,
    VaswaniRotaryEmbedding,
    alibi_slopes,
    apply_rotary,
    key_positions,
    merge_position_bias,
)
from .validation_vaswani import check_encoder_states, check_pixel_values, check_two_streams, validate_inputs
from .vision_vaswani import VaswaniPatchEmbeddings


# transformers 5.24 renamed the cache argument `past_key_values` -> `cache`; the old name still works, with
# transformers' own deprecation warning (a ValueError when both are given).
accepts_past_key_values = deprecate_kwarg("past_key_values", "5.40.0", new_name="cache", raise_if_both_names=True)


def positions_from_mask(attention_mask: torch.Tensor | None, batch: int, length: int, past_length: int, device):
    """
    Positions of the `length` newest tokens. With a 2D mask, padding does not count, so a left-padded prompt gets the
    positions it would have alone; otherwise positions simply continue after the cached tokens.
    """
    if attention_mask is not None and attention_mask.dim() == 2:
        positions = attention_mask.long().cumsum(-1) - 1  # (B, past + T)
        return positions.clamp(min=0)[:, -length:]
    # arange(length) + past, not arange(past, past + length): under torch.compile a static cache's length is a traced
    # value, which may shift positions but not size a tensor.
    return (torch.arange(length, device=device) + past_length).unsqueeze(0).expand(batch, -1)


def sinusoidal_positions(positions: torch.Tensor, d_model: int, layout: str = "interleaved") -> torch.Tensor:
    """
    The paper's positional encoding (3.5), for any positions:
    PE(pos, 2i) = sin(pos / 10000^(2i / d_model)),  PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model)).
    `layout="concatenated"` puts the sines in the first half and the cosines in the second (tensor2tensor, Marian).
    Computed in float64 where the device has it: float32 angles of long positions lose the last digits.
    """
    dtype = torch.float32 if positions.device.type == "mps" else torch.float64
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, dtype=dtype, device=positions.device) * (-math.log(10000.0) / d_model)
    )  # (ceil(d_model / 2),)
    angles = positions.to(dtype).unsqueeze(-1) * inv_freq  # (..., ceil(d_model / 2))
    if layout == "concatenated":
        table = torch.cat((angles.sin(), angles.cos()), dim=-1)  # sines, then cosines
    else:
        table = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # interleave: sin at 2i, cos at 2i+1
    return table[..., :d_model].float()


class VaswaniEmbeddings(nn.Module):
    """
    Input embedding of one stack (paper 3.4, 3.5): token embedding multiplied by sqrt(d_model), plus the positional
    encoding (sinusoidal or learned; none when positions act inside attention), plus an optional segment embedding,
    then an optional LayerNorm (BERT, BLOOM) and dropout (paper 5.4).
    """

    def __init__(self, config: VaswaniConfig, segments: bool = False):
        super().__init__()
        self.config = config
        self.word_embeddings = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.embed_scale = math.sqrt(config.d_model) if config.scale_embedding else 1.0
        self.adds_positions = config.position_embedding_type in ("sinusoidal", "learned")
        if config.position_embedding_type == "learned":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.d_model)
        elif config.position_embedding_type == "sinusoidal":
            # A fixed table, not a parameter: it is rebuilt in `_init_weights` and never stored in checkpoints.
            self.register_buffer(
                "sinusoidal_table",
                sinusoidal_positions(
                    torch.arange(config.max_position_embeddings), config.d_model, config.sinusoidal_layout
                ),
                persistent=False,
            )
        # Segment embeddings tell sentence A from sentence B in an encoder's input pair (BERT-style).
        self.type_vocab_size = config.type_vocab_size if segments else 0
        if self.type_vocab_size > 0:
            self.token_type_embeddings = nn.Embedding(self.type_vocab_size, config.d_model)
        if config.embedding_layer_norm:
            self.layer_norm = layer_norm(config)
        self.dropout = config.dropout

    def position_encoding(self, position_ids: torch.Tensor) -> torch.Tensor:
        if self.config.position_embedding_type == "learned":
            return self.position_embeddings(position_ids)
        table = self.sinusoidal_table
        if is_tracing() or int(position_ids.max()) < table.shape[0]:
            return table[position_ids]
        # Past the precomputed table: sinusoids extend to any length (paper 3.5).
        return sinusoidal_positions(position_ids, self.config.d_model, self.config.sinusoidal_layout).to(table.dtype)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        position_ids: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        if self.embed_scale != 1.0:
            inputs_embeds = inputs_embeds * self.embed_scale
        embeddings = inputs_embeds
        if self.adds_positions:
            embeddings = embeddings + self.position_encoding(position_ids).to(inputs_embeds.dtype)
        if self.type_vocab_size > 0:
            # No segment ids means every token is in segment 0, as in BERT.
            if token_type_ids is None:
                embeddings = embeddings + self.token_type_embeddings.weight[0]
            else:
                embeddings = embeddings + self.token_type_embeddings(token_type_ids)
        if self.config.embedding_layer_norm:
            embeddings = self.layer_norm(embeddings)
        return F.dropout(embeddings, p=self.dropout, training=self.training)


def layer_norm(config: VaswaniConfig) -> nn.Module:
    """The normalisation of every sub-layer (paper 3.1: LayerNorm), or an RMS norm (T5, Llama) with `rms_norm`."""
    if config.rms_norm:
        return nn.RMSNorm(config.d_model, eps=config.layer_norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)


def activation_function(name: str) -> nn.Module:
    """
    The activation `config.activation_function` names. `"gelu_new"` (GPT-2's tanh approximation of GELU, which
    transformers writes as eight elementwise operations) runs as PyTorch's fused kernel of the same formula
    (`"gelu_pytorch_tanh"`): one pass over the tensor instead of eight, equal up to float rounding (about 2e-7).
    """
    return ACT2FN["gelu_pytorch_tanh" if name == "gelu_new" else name]


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Scaled dot-product attention (paper 3.2.1, eq. 1): softmax(QK^T / sqrt(d_k)) V. A query the mask lets see no key
    at all (every token of a fully padded source) attends to nothing: its weights and output are zero, as in the
    sdpa and flex kernels. With `attention_scores="dot_product"` the scaling is 1.
    """
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, h, T_q, T_k)
    return attend(module, scores, value, attention_mask, dropout)


def additive_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Additive attention (Bahdanau et al. 2015), the compatibility function paper 3.2.1 sets beside its own: a
    feed-forward network with one hidden layer, score(q, k) = v^T tanh(W_q q + W_k k), per head. The queries and keys
    arriving here are already W_q q and W_k k (the head's slice of W^Q and W^K, biases included), so the hidden layer
    has d_k units and its output weights are `module.score_vector` (h, d_k). No scaling: tanh bounds each unit.
    Registered as the attention implementation `"additive"`; a model with `attention_scores="additive"` uses it.
    """
    score_vector = getattr(module, "score_vector", None)
    if score_vector is None:
        raise ValueError(
            "attn_implementation='additive' needs the per-head vector v of additive scores, which this attention "
            "module lacks: build the model with attention_scores='additive'."
        )
    hidden = torch.tanh(query.unsqueeze(3) + key.unsqueeze(2))  # (B, h, T_q, 1, d_k) + (B, h, 1, T_k, d_k)
    scores = torch.einsum("bhqkd,hd->bhqk", hidden, score_vector.to(hidden.dtype))  # (B, h, T_q, T_k)
    return attend(module, scores, value, attention_mask, dropout)


def attend(
    module: nn.Module, scores: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor | None, dropout: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The part every compatibility function shares: mask the scores, softmax over the keys, weigh the values."""
    sees_nothing = None
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
            sees_nothing = ~attention_mask.any(dim=-1, keepdim=True)  # (B or 1, 1 or h, T_q, 1)
        else:
            scores = scores + attention_mask  # additive mask: 0 to attend, a large negative number to block
            # One reduction, not a full-size comparison: a row sees nothing when even its largest entry blocks.
            sees_nothing = attention_mask.amax(dim=-1, keepdim=True) <= torch.finfo(attention_mask.dtype).min / 2
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    # Only when some query sees nothing (a host sync on a (B, h, T, 1) tensor, skipped when traced): one pass saved.
    if sees_nothing is not None and (is_tracing() or bool(sees_nothing.any())):
        weights = weights.masked_fill(sees_nothing, 0.0)
    weights = F.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value)  # (B, h, T_q, d_k)
    return output.transpose(1, 2).contiguous(), weights  # (B, T_q, h, d_k)


# The transformers way to add an attention implementation: `attn_implementation="additive"` finds the function, and
# its masks are built as for eager attention (a float mask, 0 to attend, the dtype's minimum to block).
AttentionInterface.register("additive", additive_attention_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register("additive", eager_mask)


class VaswaniAttention(nn.Module):
    """
    Multi-head attention (paper 3.2.2): h heads of scaled dot-product attention on projections of the queries, keys
    and values, concatenated and projected by W^O. Serves as encoder self-attention, masked decoder self-attention
    and encoder-decoder (cross) attention, where the queries come from the decoder and the keys and values from the
    encoder output (paper 3.2.3).
    """

    def __init__(self, config: VaswaniConfig, layer_idx: int | None = None, is_causal: bool = False):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.is_causal = is_causal  # read by the sdpa and flash kernels; encoder and cross attention are not causal
        self.num_heads = config.num_heads
        self.head_dim = config.d_model // config.num_heads  # d_k = d_v = d_model / h
        # 1 / sqrt(d_k): "to counteract" dot products that grow with d_k and push the softmax where its gradients
        # are extremely small (paper 3.2.1). The unscaled dot product is the comparison 3.2.1 draws.
        self.scaling = 1.0 if config.attention_scores == "dot_product" else self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        bias = config.projection_bias
        self.q_proj = nn.Linear(config.d_model, config.d_model, bias=bias)
        self.k_proj = nn.Linear(config.d_model, config.d_model, bias=bias)
        self.v_proj = nn.Linear(config.d_model, config.d_model, bias=bias)
        self.o_proj = nn.Linear(config.d_model, config.d_model, bias=bias)
        # v of additive scores v^T tanh(W_q q + W_k k): the output weights of each head's one-hidden-layer network.
        additive = config.attention_scores == "additive"
        self.score_vector = nn.Parameter(torch.empty(self.num_heads, self.head_dim)) if additive else None

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        key_value_states: torch.Tensor | None = None,
        cache: Cache | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        position_bias: torch.Tensor | None = None,
        content_length: int | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r"""
        position_embeddings: (cos, sin) of rotary positions, each (B, T, rotary_dim): queries and keys are rotated
            before the keys are cached. position_bias: (B, h, T, S), for the flex back-end, which adds it in its
            score_mod (eager and sdpa get the bias inside `attention_mask`). content_length: two-stream attention
            (XLNet): only the first `content_length` rows (the content stream) give keys and values; every row,
            the query stream's after them, gives a query.
        """
        is_cross_attention = key_value_states is not None
        batch, length, _ = hidden_states.shape
        query = self.q_proj(hidden_states).view(batch, length, -1, self.head_dim).transpose(1, 2)  # (B, h, T, d_k)
        if position_embeddings is not None:
            query = apply_rotary(query, *position_embeddings)

        own_cache = cache
        if isinstance(cache, EncoderDecoderCache):
            own_cache = cache.cross_attention_cache if is_cross_attention else cache.self_attention_cache
        if is_cross_attention and own_cache is not None and cache.is_updated.get(self.layer_idx):
            # The encoder output does not change while decoding: its keys and values were projected once.
            key, value = own_cache.layers[self.layer_idx].keys, own_cache.layers[self.layer_idx].values
        else:
            source = key_value_states if is_cross_attention else hidden_states
            key_rotation = position_embeddings
            if content_length is not None:  # the query stream knows positions, not tokens: it gives no keys
                source = source[:, :content_length]
                key_rotation = tuple(table[:, :content_length] for table in position_embeddings or ()) or None
            kv_shape = (batch, source.shape[1], -1, self.head_dim)
            key = self.k_proj(source).view(kv_shape).transpose(1, 2)  # (B, h, S, d_k)
            value = self.v_proj(source).view(kv_shape).transpose(1, 2)
            if key_rotation is not None:
                key = apply_rotary(key, *key_rotation)  # rotated once, then cached (RoPE)
            if own_cache is not None:
                key, value = own_cache.update(key, value, self.layer_idx)
                if is_cross_attention:
                    cache.is_updated[self.layer_idx] = True

        implementation = self.config._attn_implementation  # "additive" in any model with additive scores
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            implementation or ("additive" if self.score_vector is not None else "eager"), eager_attention_forward
        )
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            **({"position_bias": position_bias} if position_bias is not None else {}),
            **kwargs,
        )
        output = output.reshape(batch, length, -1).contiguous()  # Concat(head_1, ..., head_h): (B, T, d_model)
        return self.o_proj(output), weights


class VaswaniFeedForward(nn.Module):
    """Position-wise feed-forward network (paper 3.3, eq. 2): FFN(x) = max(0, xW_1 + b_1) W_2 + b_2."""

    def __init__(self, config: VaswaniConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.d_ff, bias=config.projection_bias)
        self.activation = activation_function(config.activation_function)
        self.fc2 = nn.Linear(config.d_ff, config.d_model, bias=config.projection_bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(hidden_states)))


class VaswaniEncoderLayer(GradientCheckpointingLayer):
    """
    One encoder layer (paper 3.1): multi-head self-attention, then the feed-forward network. Each sub-layer is
    wrapped as LayerNorm(x + Dropout(Sublayer(x))) (post-LN, the paper), or x + Dropout(Sublayer(LayerNorm(x)))
    with `norm_first`; with `parallel_residual` both sub-layers read x: x + Attn(LN_1(x)) + FFN(LN_2(x)) (GPT-J).
    """

    def __init__(self, config: VaswaniConfig, layer_idx: int | None = None):
        super().__init__()
        self.norm_first = config.norm_first
        self.parallel_residual = config.parallel_residual
        self.dropout = config.dropout
        self.self_attn = VaswaniAttention(config, layer_idx, is_causal=False)
        self.self_attn_layer_norm = layer_norm(config)
        self.feed_forward = VaswaniFeedForward(config)
        self.final_layer_norm = layer_norm(config)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs):
        if self.parallel_residual:
            return parallel_residual(self, hidden_states, attention_mask, **kwargs)
        residual = hidden_states
        if self.norm_first:
            hidden_states = self.self_attn_layer_norm(hidden_states)
        hidden_states, _ = self.self_attn(hidden_states, attention_mask=attention_mask, **kwargs)
        hidden_states = residual + F.dropout(hidden_states, p=self.dropout, training=self.training)
        if not self.norm_first:
            hidden_states = self.self_attn_layer_norm(hidden_states)

        residual = hidden_states
        if self.norm_first:
            hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.feed_forward(hidden_states)
        hidden_states = residual + F.dropout(hidden_states, p=self.dropout, training=self.training)
        if not self.norm_first:
            hidden_states = self.final_layer_norm(hidden_states)
        return hidden_states


class VaswaniDecoderLayer(GradientCheckpointingLayer):
    """
    One decoder layer (paper 3.1): masked multi-head self-attention (a position sees only earlier positions),
    multi-head attention over the encoder output (when there is an encoder, or `add_cross_attention` asks for it
    over states given from outside), then the feed-forward network; each sub-layer wrapped like the encoder's
    (`parallel_residual` too, when there is no encoder).
    """

    def __init__(self, config: VaswaniConfig, layer_idx: int | None = None):
        super().__init__()
        self.norm_first = config.norm_first
        self.parallel_residual = config.parallel_residual
        self.dropout = config.dropout
        self.self_attn = VaswaniAttention(config, layer_idx, is_causal=True)
        self.self_attn_layer_norm = layer_norm(config)
        if config.is_encoder_decoder or config.add_cross_attention:
            self.encoder_attn = VaswaniAttention(config, layer_idx, is_causal=False)
            self.encoder_attn_layer_norm = layer_norm(config)
        self.feed_forward = VaswaniFeedForward(config)
        self.final_layer_norm = layer_norm(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        position_bias: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        # Positions (rotary, a bias) are the target's own: they go to self-attention only, never across.
        positions = {"position_embeddings": position_embeddings, "position_bias": position_bias}
        if self.parallel_residual:
            return parallel_residual(self, hidden_states, attention_mask, cache=cache, **positions, **kwargs)
        residual = hidden_states
        if self.norm_first:
            hidden_states = self.self_attn_layer_norm(hidden_states)
        hidden_states, _ = self.self_attn(hidden_states, attention_mask=attention_mask, cache=cache, **positions, **kwargs)
        hidden_states = residual + F.dropout(hidden_states, p=self.dropout, training=self.training)
        if not self.norm_first:
            hidden_states = self.self_attn_layer_norm(hidden_states)

        if encoder_hidden_states is not None:
            residual = hidden_states
            if self.norm_first:
                hidden_states = self.encoder_attn_layer_norm(hidden_states)
            hidden_states, _ = self.encoder_attn(
                hidden_states,
                attention_mask=encoder_attention_mask,
                key_value_states=encoder_hidden_states,
                cache=cache,
                **kwargs,
            )
            hidden_states = residual + F.dropout(hidden_states, p=self.dropout, training=self.training)
            if not self.norm_first:
                hidden_states = self.encoder_attn_layer_norm(hidden_states)

        residual = hidden_states
        if self.norm_first:
            hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.feed_forward(hidden_states)
        hidden_states = residual + F.dropout(hidden_states, p=self.dropout, training=self.training)
        if not self.norm_first:
            hidden_states = self.final_layer_norm(hidden_states)
        return hidden_states


def parallel_residual(layer: nn.Module, hidden_states: torch.Tensor, attention_mask, **kwargs) -> torch.Tensor:
    """
    GPT-J's and GPT-NeoX's layer (`parallel_residual`): self-attention and the feed-forward network both read the
    layer's input, each through its own norm, and both add to the residual: x + Attn(LN_1(x)) + FFN(LN_2(x)).
    """
    attention, _ = layer.self_attn(layer.self_attn_layer_norm(hidden_states), attention_mask=attention_mask, **kwargs)
    feed_forward = layer.feed_forward(layer.final_layer_norm(hidden_states))
    attention = F.dropout(attention, p=layer.dropout, training=layer.training)
    return hidden_states + attention + F.dropout(feed_forward, p=layer.dropout, training=layer.training)


class VaswaniPreTrainedModel(VaswaniHubMixin, PreTrainedModel):
    """Weight initialisation, attention back-ends and loading conventions shared by every Vaswani model."""

    config_class = VaswaniConfig
    config: VaswaniConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["VaswaniEncoderLayer", "VaswaniDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module):
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None and not getattr(module.weight, "_is_hf_initialized", False):
                init.zeros_(module.weight[module.padding_idx])
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.RMSNorm):
            init.ones_(module.weight)
        elif isinstance(module, nn.Conv2d):  # the patch projection: a linear map of each patch
            init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        if isinstance(module, VaswaniPatchEmbeddings):
            init.normal_(module.cls_token, mean=0.0, std=std)
        if isinstance(getattr(module, "query_embedding", None), nn.Parameter):
            init.normal_(module.query_embedding, mean=0.0, std=std)  # a permutation head's query-stream input
        if isinstance(getattr(module, "final_logits_bias", None), torch.Tensor):
            init.zeros_(module.final_logits_bias)  # loaded from the checkpoint when it has one
        if isinstance(module, VaswaniEmbeddings) and hasattr(module, "sinusoidal_table"):
            # Non-persistent, so `from_pretrained` (which builds on the meta device) must recompute it here.
            init.copy_(
                module.sinusoidal_table,
                sinusoidal_positions(
                    torch.arange(module.sinusoidal_table.shape[0]), self.config.d_model, self.config.sinusoidal_layout
                ),
            )
        if isinstance(module, VaswaniRotaryEmbedding):  # fixed frequencies, non-persistent: rebuilt, as the table
            inv_freq, _ = module.rope_init_fn(module.config, module.inv_freq.device)
            init.copy_(module.inv_freq, inv_freq)
            init.copy_(module.original_inv_freq, inv_freq)
        if isinstance(module, VaswaniAlibi):
            init.copy_(module.slopes, alibi_slopes(self.config.num_heads))
        if isinstance(module, VaswaniAttention) and module.score_vector is not None:
            # Variance 1/d_k: a score sums d_k terms v_i tanh(.), so its spread does not grow with d_k.
            init.normal_(module.score_vector, mean=0.0, std=module.head_dim**-0.5)

    def get_correct_attn_implementation(self, requested_attention: str | None, is_init_check: bool = False) -> str:
        """
        Additive scores have one implementation, `"additive"`: a model with `attention_scores="additive"` takes it
        when given none or `"eager"` (it is eager: it returns its weights), and refuses the dot-product kernels.
        """
        if self.config.attention_scores == "additive":
            if requested_attention in (None, "eager", "additive"):
                return "additive"
            raise ValueError(
                f"attn_implementation={requested_attention!r} computes dot-product scores, but this model has "
                f"attention_scores='additive' (v^T tanh(W_q q + W_k k)): load it with attn_implementation='additive' "
                f"(or 'eager', the same here), or leave attn_implementation unset."
            )
        if requested_attention == "additive":
            raise ValueError(
                f"attn_implementation='additive' needs additive scores, but this model has attention_scores="
                f"{self.config.attention_scores!r}: build it with VaswaniConfig(attention_scores='additive') (a new "
                f"parameter per head, trained from scratch), or pick 'sdpa' or 'eager'."
            )
        return super().get_correct_attn_implementation(requested_attention, is_init_check)

    def attention_positions(self, hidden_states, mask, attention_mask, position_ids, past_length: int, keys=None):
        """
        The positions a stack's self-attention layers share, made once per forward: rotary cos and sin, or a bias
        (ALiBi, T5's) merged into the mask for eager and sdpa and handed to flex's score_mod. Returns the mask the
        layers get and their keyword arguments. `keys`: the keys' positions where the queries are not the keys (two
        streams); by default those of the cache and the new tokens.
        """
        if self.rotary_embedding is not None:
            return mask, {"position_embeddings": self.rotary_embedding(hidden_states, position_ids)}
        if self.position_bias is None:
            return mask, {}
        implementation = self.config._attn_implementation
        if implementation not in BIAS_BACKENDS:
            raise ValueError(
                f"`position_embedding_type={self.config.position_embedding_type!r}` adds a bias to the attention "
                f"scores, which the {implementation!r} attention back-end cannot take: load the model with "
                f"attn_implementation='sdpa' (or 'eager', 'flex_attention'), or use rotary positions."
            )
        if mask is None or isinstance(mask, torch.Tensor):
            key_length = mask.shape[-1] if mask is not None else past_length + hidden_states.shape[1]
        else:  # flex's BlockMask
            key_length = mask.seq_lengths[1]
        if keys is None:
            keys = key_positions(attention_mask, position_ids, key_length)
        bias = self.position_bias(position_ids, keys).to(hidden_states.dtype)  # (B, h, T, S)
        if implementation == "flex_attention":
            return mask, {"position_bias": bias.expand(hidden_states.shape[0], -1, -1, -1)}
        return merge_position_bias(mask, bias, sdpa=implementation == "sdpa"), {}

    def _make_attention_positions(self, config: VaswaniConfig, bidirectional: bool):
        """The stack's own position module for positions inside attention (none for sinusoidal or learned)."""
        kind = config.position_embedding_type
        self.rotary_embedding = VaswaniRotaryEmbedding(config) if kind == "rotary" else None
        if kind == "alibi":
            self.position_bias = VaswaniAlibi(config)
        elif kind == "relative":
            self.position_bias = VaswaniRelativePositionBias(config, bidirectional=bidirectional)
        else:
            self.position_bias = None


def _stack_positions(embeddings, input_ids, inputs_embeds, attention_mask, position_ids, past_length, token_type_ids, prefix=""):
    """Shared front of both stacks: derive the positions of the new tokens, then validate the whole input."""
    reference = input_ids if input_ids is not None else inputs_embeds
    if position_ids is None and reference is not None:
        batch, length = reference.shape[:2]
        position_ids = positions_from_mask(attention_mask, batch, length, past_length, reference.device)
    validate_inputs(
        embeddings.config, input_ids, inputs_embeds, attention_mask, position_ids, past_length,
        token_type_ids, embeddings.type_vocab_size, prefix,
    )
    return position_ids


class VaswaniEncoder(VaswaniPreTrainedModel):
    """The encoder (paper 3.1, Figure 1 left): embeddings, then N identical layers of self-attention and FFN."""

    _can_record_outputs = {"hidden_states": VaswaniEncoderLayer, "attentions": VaswaniAttention}

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        # Tokens, or an image as a sequence of patches (ViT) when the config has an `image_size`.
        self.reads_pixels = config.image_size is not None
        if self.reads_pixels:
            self.embeddings = VaswaniPatchEmbeddings(config, sinusoids=sinusoidal_positions)
        else:
            self.embeddings = VaswaniEmbeddings(config, segments=True)
        self._make_attention_positions(config, bidirectional=True)
        self.layers = nn.ModuleList(
            [VaswaniEncoderLayer(config, layer_idx=i) for i in range(config.num_encoder_layers)]
        )
        # Pre-LN leaves the residual stream un-normalised; a final LayerNorm closes the stack (`final_layer_norm`).
        self.final_layer_norm = layer_norm(config) if config.final_layer_norm else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings.projection if self.reads_pixels else self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Module):
        if self.reads_pixels:
            self.embeddings.projection = value
        else:
            self.embeddings.word_embeddings = value

    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        perm_mask: torch.Tensor | None = None,
        target_mapping: torch.Tensor | None = None,
        query_embeds: torch.Tensor | None = None,
        **kwargs,
    ) -> BaseModelOutput:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, source_length)`): source token ids.
            attention_mask (`torch.Tensor` of shape `(batch_size, source_length)`): 1 for tokens, 0 for padding.
            token_type_ids (`torch.LongTensor`, *optional*): segment ids, with `type_vocab_size > 0`.
            position_ids (`torch.LongTensor`, *optional*): positions; by default derived from the mask.
            inputs_embeds (`torch.Tensor`, *optional*): token embeddings instead of `input_ids`.
            pixel_values (`torch.FloatTensor` of shape `(batch_size, num_channels, height, width)`): the images,
                for a config with `image_size` (instead of tokens).
            interpolate_pos_encoding (`bool`, defaults to `False`): let images of another size than `image_size`
                through (a multiple of `patch_size`), resizing learned patch positions to their grid.
            perm_mask (`torch.Tensor` of shape `(batch_size, source_length, source_length)`, *optional*): two-stream
                attention (XLNet): 1 where token i may not see token j (j comes later in i's factorisation order).
            target_mapping (`torch.Tensor` of shape `(batch_size, num_predict, source_length)`, *optional*): one-hot
                rows, the positions the query stream predicts; with it the output's `query_hidden_state` holds them.
            query_embeds (`torch.Tensor` of shape `(batch_size, num_predict, d_model)`): the query stream's input
                before positions (a permutation head's learned vector), with `target_mapping`.
        """
        if self.reads_pixels:
            check_pixel_values(self.config, pixel_values, input_ids, inputs_embeds, interpolate_pos_encoding)
            hidden_states = self.embeddings(pixel_values.to(self.embeddings.projection.weight.dtype),
                                            interpolate_pos_encoding)
            batch, length = hidden_states.shape[:2]
            position_ids = torch.arange(length, device=hidden_states.device).expand(batch, -1)
        else:
            if pixel_values is not None:
                raise ValueError(
                    "`pixel_values` given to a model that reads tokens: its config has no `image_size`. Pass "
                    "`input_ids`, or build a model with VaswaniConfig(image_size=..., patch_size=...)."
                )
            position_ids = _stack_positions(
                self.embeddings, input_ids, inputs_embeds, attention_mask, position_ids, 0, token_type_ids
            )
            hidden_states = self.embeddings(input_ids, position_ids, token_type_ids, inputs_embeds)
        if perm_mask is not None or target_mapping is not None:
            return self._two_streams(
                hidden_states, attention_mask, position_ids, token_type_ids, perm_mask, target_mapping, query_embeds,
                **kwargs,
            )
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask,
            allow_is_bidirectional_skip=self.position_bias is None,  # a bias needs a mask to live in
        )
        mask, positions = self.attention_positions(hidden_states, mask, attention_mask, position_ids, 0)
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, **positions, **kwargs)
        if self.final_layer_norm is not None:
            hidden_states = self.final_layer_norm(hidden_states)
        return BaseModelOutput(last_hidden_state=hidden_states)

    def _two_streams(
        self, hidden_states, attention_mask, position_ids, token_type_ids, perm_mask, target_mapping, query_embeds,
        **kwargs,
    ) -> "VaswaniTwoStreamOutput":
        """
        Two-stream self-attention (Yang et al. 2019, 2.3). The content stream h is the encoder as always, each token
        seeing the tokens not after it in its factorisation order (and itself); the query stream g, at the m
        predicted positions only, starts from `query_embeds` with the position (and segment) of its target but not
        its token, and never attends to that token. Every layer is position-wise but for attention, so both streams
        run as one sequence, the m query rows after the L content rows, through the same weights; attention takes keys
        and values from the content rows alone (`content_length`).
        """
        batch, length = hidden_states.shape[:2]
        check_two_streams(self.config, perm_mask, target_mapping, query_embeds, batch, length)
        implementation = self.config._attn_implementation
        if implementation not in ("eager", "additive", "sdpa"):
            raise ValueError(
                f"Two-stream attention (`perm_mask`, `target_mapping`) needs a mask per query, which the "
                f"{implementation!r} back-end cannot take: load the model with attn_implementation='sdpa' or 'eager'."
            )
        if target_mapping is None:  # a permutation mask on the content stream alone: no predictions
            target_mapping = hidden_states.new_zeros(batch, 0, length)
            query_embeds = hidden_states.new_zeros(batch, 0, hidden_states.shape[-1])
        targets = target_mapping.argmax(-1)  # (B, m): the position each prediction is at
        query_positions = position_ids.gather(1, targets)
        query_types = token_type_ids.gather(1, targets) if token_type_ids is not None else None
        query_embeds = query_embeds.to(hidden_states.dtype)
        queries = self.embeddings(None, query_positions, query_types, inputs_embeds=query_embeds)
        hidden_states = torch.cat((hidden_states, queries), dim=1)  # (B, L + m, d)
        mask = two_stream_mask(perm_mask, targets, attention_mask, length)
        mask, positions = self.attention_positions(
            hidden_states, mask, attention_mask, torch.cat((position_ids, query_positions), dim=1), 0, keys=position_ids
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, **positions, content_length=length, **kwargs)
        if self.final_layer_norm is not None:
            hidden_states = self.final_layer_norm(hidden_states)
        return VaswaniTwoStreamOutput(
            last_hidden_state=hidden_states[:, :length], query_hidden_state=hidden_states[:, length:]
        )


def two_stream_mask(perm_mask, targets: torch.Tensor, attention_mask, length: int) -> torch.Tensor:
    """
    The boolean mask (B, 1, L + m, L) of two-stream attention, True where a query may attend: the content rows from
    `perm_mask` (1 = may not see) with the diagonal always open (a token's content includes itself), then the query
    rows of the m targets, the same rows of `perm_mask` with the diagonal always shut (the query stream predicts that
    token: it never attends to it; that no other token passes it on is `perm_mask`'s part, a factorisation order
    gives it); padding keys shut in both.
    """
    own = torch.eye(length, dtype=torch.bool, device=targets.device)
    if perm_mask is None:
        sees = torch.ones(targets.shape[0], length, length, dtype=torch.bool, device=targets.device)
    else:
        sees = perm_mask.to(targets.device) == 0
    content = sees | own
    query = sees.gather(1, targets[..., None].expand(-1, -1, length)) & ~own[targets]  # (B, m, L)
    rows = torch.cat((content, query), dim=1)
    if attention_mask is not None:
        rows = rows & attention_mask.to(device=rows.device).bool()[:, None, :]
    return rows[:, None]


@dataclass
class VaswaniTwoStreamOutput(BaseModelOutput):
    """
    The encoder's output with two-stream attention: `last_hidden_state` is the content stream (B, L, d),
    `query_hidden_state` the query stream at the predicted positions (B, m, d). Recorded hidden states and attention
    weights hold both, the m query rows after the L content rows.
    """

    query_hidden_state: torch.FloatTensor | None = None


class VaswaniDecoder(VaswaniPreTrainedModel):
    """
    The decoder (paper 3.1, Figure 1 right): embeddings of the target shifted right, then N identical layers of
    masked self-attention, encoder-decoder attention (when there is an encoder) and FFN.
    """

    _can_record_outputs = {
        "hidden_states": VaswaniDecoderLayer,
        "attentions": OutputRecorder(VaswaniAttention, index=1, layer_name="self_attn"),
        "cross_attentions": OutputRecorder(VaswaniAttention, index=1, layer_name="encoder_attn"),
    }

    def __init__(self, config: VaswaniConfig):
        super().__init__(config)
        self.embeddings = VaswaniEmbeddings(config)
        self._make_attention_positions(config, bidirectional=False)
        self.layers = nn.ModuleList(
            [VaswaniDecoderLayer(config, layer_idx=i) for i in range(config.num_decoder_layers)]
        )
        self.final_layer_norm = layer_norm(config) if config.final_layer_norm else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding):
        self.embeddings.word_embeddings = value

    @accepts_past_key_values
    @merge_with_config_defaults
    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        token_type_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, target_length)`): target token ids.
            attention_mask (`torch.Tensor` of shape `(batch_size, past_length + target_length)`): 1 for tokens, 0 for
                padding, covering the cached tokens too.
            position_ids (`torch.LongTensor`, *optional*): positions; by default derived from the mask.
            encoder_hidden_states (`torch.Tensor`, *optional*): the encoder output, for encoder-decoder attention.
            encoder_attention_mask (`torch.Tensor`, *optional*): padding mask of the encoder output.
            cache (`Cache`, *optional*; also accepted as `past_key_values`): keys and values of earlier steps (any
                `Cache`: by default a `VaswaniDynamicCache`, or `StaticCache`; an `EncoderDecoderCache` when there is
                an encoder).
            inputs_embeds (`torch.Tensor`, *optional*): token embeddings instead of `input_ids`.
            use_cache (`bool`, *optional*): create and return a cache.
            token_type_ids (`torch.LongTensor`, *optional*): accepted only as zeros; a decoder has no segments.
        """
        if self.config.is_encoder_decoder and encoder_hidden_states is None:
            raise ValueError("This decoder attends over an encoder: pass `encoder_hidden_states`.")
        cross_attends = self.config.is_encoder_decoder or self.config.add_cross_attention
        if encoder_hidden_states is not None and not cross_attends:
            raise ValueError(
                "`encoder_hidden_states` were given, but this decoder has no encoder-decoder attention: build it "
                "with `add_cross_attention=True` in its config (as VisionEncoderDecoderModel does)."
            )
        if self.training and torch.is_grad_enabled() and self.layers and self.layers[0].gradient_checkpointing:
            # A checkpointed layer runs again in the backward pass, which would write its cache entries twice.
            if cache is not None:
                raise ValueError(
                    "Gradient checkpointing replays each layer during backward and cannot update a cache: pass no "
                    "`cache` in training, or decode under `torch.no_grad()` / `model.eval()`."
                )
            use_cache = False
        if use_cache and cache is None:
            cache = VaswaniDynamicCache(self.config)
        if cache is not None and cross_attends and not isinstance(cache, EncoderDecoderCache):
            # Keys and values over the encoder output are kept apart from the target's own (as in GPT-2).
            cache = EncoderDecoderCache(cache, DynamicCache(config=self.config))
        past_length = cache.get_seq_length() if cache is not None else 0
        prefix = "decoder_" if self.config.is_encoder_decoder else ""
        position_ids = _stack_positions(
            self.embeddings, input_ids, inputs_embeds, attention_mask, position_ids, past_length, token_type_ids, prefix
        )
        if encoder_hidden_states is not None:
            check_encoder_states(
                encoder_hidden_states, encoder_attention_mask, self.config,
                input_ids if input_ids is not None else inputs_embeds, past_length, prefix,
            )
        hidden_states = self.embeddings(input_ids, position_ids, inputs_embeds=inputs_embeds)

        self_attention_cache = cache.self_attention_cache if isinstance(cache, EncoderDecoderCache) else cache
        causal_mask = create_causal_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=attention_mask,
            cache=self_attention_cache,
            position_ids=position_ids,
            allow_is_causal_skip=self.position_bias is None,  # a bias needs a mask to live in
        )
        causal_mask, positions = self.attention_positions(
            hidden_states, causal_mask, attention_mask, position_ids, past_length
        )
        if encoder_hidden_states is not None:
            encoder_attention_mask = create_bidirectional_mask(
                config=self.config,
                inputs_embeds=hidden_states,
                attention_mask=encoder_attention_mask,
                encoder_hidden_states=encoder_hidden_states,
            )
        for layer in self.layers:
            hidden_states = layer(
                hidden_states,
                causal_mask,
                encoder_hidden_states,  # positional, so gradient checkpointing sees it
                encoder_attention_mask=encoder_attention_mask,
                cache=cache,
                **positions,
                **kwargs,
            )
        if self.final_layer_norm is not None:
            hidden_states = self.final_layer_norm(hidden_states)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states, cache=cache if use_cache else None
        )


class VaswaniModel(VaswaniPreTrainedModel):
    """
    The bare Transformer, holding the stacks that `config.stacks` names:

    - `"encoder-decoder"` (the paper): encoder over the source, decoder over the target, returning
      `Seq2SeqModelOutput`; source embedding, target embedding (and, in heads, the pre-softmax projection) share one
      matrix when `tie_word_embeddings` (paper 3.4);
    - `"encoder-only"` (BERT-style): returns `BaseModelOutput`;
    - `"decoder-only"` (GPT-style, masked self-attention only): returns `BaseModelOutputWithPastAndCrossAttentions`.

    Heads pick their stacks themselves, so `AutoModel` on a folder saved from any head builds the matching body.
    """

    # Loading the body from a head's folder leaves that head's own weights (all but the stacks) behind, by design.
    _keys_to_ignore_on_load_unexpected = [r"^(?!(model\.)?(encoder|decoder)\.)"]

    def __init__(self, config: VaswaniConfig):
        config.check_stacks()
        super().__init__(config)
        self.encoder = VaswaniEncoder(config.for_encoder()) if config.has_encoder else None
        self.decoder = VaswaniDecoder(config) if config.has_decoder else None
        if config.image_size is not None:
            self.main_input_name = "pixel_values"  # what generate() and the pipelines feed the encoder
        if config.is_encoder_decoder and config.image_size is None:
            # Paper 3.4: the same weight matrix for both embedding layers.
            self._tied_weights_keys = {"decoder.embeddings.word_embeddings.weight": "encoder.embeddings.word_embeddings.weight"}
        self.post_init()

    def _token_stack(self) -> nn.Module:
        """The stack whose embeddings are the model's token embeddings (a captioner's decoder: its encoder reads pixels)."""
        if self.config.image_size is not None and self.decoder is not None:
            return self.decoder
        return self.encoder or self.decoder

    def get_input_embeddings(self) -> nn.Module:
        return self._token_stack().get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module):
        self._token_stack().set_input_embeddings(value)
        if self.config.is_encoder_decoder and self.config.tie_word_embeddings and self.config.image_size is None:
            self.decoder.set_input_embeddings(value)

    def get_encoder(self, modality=None):
        return self.encoder

    def get_decoder(self):
        return self.decoder

    @accepts_past_key_values
    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        decoder_input_ids: torch.LongTensor | None = None,
        decoder_attention_mask: torch.Tensor | None = None,
        decoder_position_ids: torch.LongTensor | None = None,
        encoder_outputs: BaseModelOutput | tuple | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        decoder_inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        pixel_values: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs,
    ) -> Seq2SeqModelOutput | BaseModelOutput | BaseModelOutputWithPastAndCrossAttentions:
        r"""
        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`): token ids of the source
                (encoder-decoder, encoder-only) or of the text (decoder-only).
            attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`): 1 for tokens, 0 for padding.
            token_type_ids (`torch.LongTensor`, *optional*): segment ids (encoder, `type_vocab_size > 0`).
            position_ids (`torch.LongTensor`, *optional*): positions of `input_ids`; derived from the mask if absent.
            decoder_input_ids (`torch.LongTensor`, *optional*): the target shifted right (encoder-decoder).
            decoder_attention_mask (`torch.Tensor`, *optional*): padding mask of the target.
            decoder_position_ids (`torch.LongTensor`, *optional*): positions of `decoder_input_ids`.
            encoder_outputs (*optional*): a precomputed encoder output, as `generate()` passes it.
            cache (`Cache`, *optional*; also accepted as `past_key_values`): keys and values of earlier decoding steps.
            inputs_embeds, decoder_inputs_embeds (`torch.Tensor`, *optional*): embeddings instead of ids.
            use_cache (`bool`, *optional*): return a cache for the next decoding step.
            pixel_values (`torch.FloatTensor`, *optional*): images for an encoder that reads pixels (`image_size`),
                instead of `input_ids`; `interpolate_pos_encoding` lets other sizes through.
        """
        if self.config.stacks == "decoder-only":
            return self.decoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                inputs_embeds=inputs_embeds,
                use_cache=use_cache,
                token_type_ids=token_type_ids,
                **kwargs,
            )
        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                pixel_values=pixel_values,
                interpolate_pos_encoding=interpolate_pos_encoding,
                **kwargs,
            )
        elif not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        if self.config.stacks == "encoder-only":
            return encoder_outputs

        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError(
                "An encoder-decoder model needs `decoder_input_ids`: the target shifted right, starting with "
                "`decoder_start_token_id` (pass `labels` to a VaswaniForConditionalGeneration to have them made)."
            )
        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            position_ids=decoder_position_ids,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=decoder_inputs_embeds,
            use_cache=use_cache,
            **kwargs,
        )
        return Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            cache=decoder_outputs.cache,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )


__all__ = [
    "VaswaniAttention",
    "VaswaniDecoder",
    "VaswaniDecoderLayer",
    "VaswaniEmbeddings",
    "VaswaniEncoder",
    "VaswaniEncoderLayer",
    "VaswaniFeedForward",
    "VaswaniModel",
    "VaswaniPreTrainedModel",
    "VaswaniTwoStreamOutput",
    "additive_attention_forward",
    "eager_attention_forward",
    "sinusoidal_positions",
]
