"""
Positions after the paper: where the paper adds a fixed sinusoid to each embedding (3.5), its descendants put
position into attention itself. One class per scheme, each made once per forward and shared by every layer:

    VaswaniRotaryEmbedding         RoPE (Su et al. 2021; GPT-NeoX, Llama): queries and keys rotated by position, so
                                   q_m . k_n depends on m - n only; transformers' RoPE parameters and scalings
    apply_rotary                   the rotation itself, on the first `rotary_dim` features of each head
    VaswaniAlibi                   ALiBi (Press et al. 2022; BLOOM, MPT): score - m_h |i - j|, a fixed slope per head
    relative_position_bucket       T5's buckets of a distance: exact below num_buckets / 2, logarithmic up to
                                   max_distance (Raffel et al. 2020, 2.1)
    VaswaniRelativePositionBias    T5's learned scalar per (bucket, head), added to the scores
    key_positions                  positions of every key a query may see (cached ones too), from the padding mask
    merge_position_bias            a bias and a mask made into one additive mask, for the eager and sdpa back-ends

Positions come from the padding mask as for the paper's encoding (`positions_from_mask`), so left padding, the cache
and `generate()` see the positions a text has alone. This module imports only torch and transformers.
"""

import math

import torch
from torch import nn
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS, dynamic_rope_update


# The attention back-ends that take an additive bias: eager and sdpa through the mask, flex through its score_mod.
BIAS_BACKENDS = ("eager", "additive", "sdpa", "flex_attention")


def default_rope_parameters(config, device=None, **kwargs) -> tuple[torch.Tensor, float]:
    """RoPE's frequencies theta_i = base^(-2i / d) over the rotated part d of a head (Su et al. 2021, eq. 15)."""
    base = config.rope_parameters["rope_theta"]
    dim = rotary_dim(config)
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / dim))
    return inv_freq, 1.0


def rotary_dim(config) -> int:
    """Features of each head that rotate: `partial_rotary_factor` of d_k (GPT-NeoX rotates a quarter)."""
    head_dim = config.d_model // config.num_heads
    return int(head_dim * config.rope_parameters.get("partial_rotary_factor", 1.0))


class VaswaniRotaryEmbedding(nn.Module):
    """
    Rotary position embedding (RoPE): cos(m theta_i) and sin(m theta_i) for each position m, computed once per forward
    for all layers. The frequencies come from transformers' RoPE functions (`rope_parameters["rope_type"]`: default,
    linear, dynamic, yarn, longrope, llama3), so every scaled variant behaves as in transformers' models.
    """

    inv_freq: torch.Tensor

    def __init__(self, config, device=None):
        super().__init__()
        self.config = config
        self.rope_type = config.rope_parameters["rope_type"]
        self.rope_init_fn = default_rope_parameters if self.rope_type == "default" else ROPE_INIT_FUNCTIONS[self.rope_type]
        self.max_seq_len_cached = self.original_max_seq_len = config.max_position_embeddings
        inv_freq, self.attention_scaling = self.rope_init_fn(config, device)
        # Fixed, not parameters: rebuilt in `_init_weights` and never stored in checkpoints.
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)

    @torch.no_grad()
    @dynamic_rope_update  # the "dynamic" and "longrope" types change their frequencies with the length
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        angles = position_ids[..., None].float() * self.inv_freq.to(device=x.device, dtype=torch.float)  # (B, T, d/2)
        angles = torch.cat((angles, angles), dim=-1)  # (B, T, d): the halves rotate together (rotate_half)
        cos, sin = angles.cos() * self.attention_scaling, angles.sin() * self.attention_scaling
        return cos.to(x.dtype), sin.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension: the 90-degree turn of each feature pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """
    Rotate queries or keys (B, h, T, d_k) by their positions: x cos + rotate_half(x) sin on the first `rotary_dim`
    features; the rest pass unchanged (partial rotary, GPT-NeoX).
    """
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, T, rotary_dim): one rotation for every head
    dim = cos.shape[-1]
    if dim == x.shape[-1]:
        return x * cos + rotate_half(x) * sin
    rotated, passed = x[..., :dim], x[..., dim:]
    return torch.cat((rotated * cos + rotate_half(rotated) * sin, passed), dim=-1)


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """
    ALiBi's head slopes (Press et al. 2022, 3): the geometric sequence 2^(-8/n), 2^(-16/n), ... for n heads; when n is
    not a power of two, the first 2^floor(log2 n) of that sequence and then every other slope of the next power's.
    """
    closest = 2 ** math.floor(math.log2(num_heads))
    slopes = [2 ** (-8 * (i + 1) / closest) for i in range(closest)]
    if closest != num_heads:
        extra = [2 ** (-8 * (i + 1) / (2 * closest)) for i in range(2 * closest)]
        slopes += extra[0::2][: num_heads - closest]
    return torch.tensor(slopes, dtype=torch.float32)


class VaswaniAlibi(nn.Module):
    """
    ALiBi: no position is added to the embeddings; each head's score of query i for key j gets -m_h |i - j|, a fixed
    penalty linear in the distance, which lets a model trained short read longer texts (Press et al. 2022).
    """

    slopes: torch.Tensor

    def __init__(self, config):
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(config.num_heads), persistent=False)  # (h,), rebuilt on load

    def forward(self, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
        distance = (query_positions[:, :, None] - key_positions[:, None, :]).abs()  # (B, T, S)
        return -self.slopes[None, :, None, None] * distance[:, None].to(self.slopes.dtype)  # (B, h, T, S)


def relative_position_bucket(
    relative_position: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """
    T5's bucket of each key-minus-query distance: in each direction (one direction in a causal decoder) half the
    buckets hold the distances 0, 1, ... exactly, the other half grow logarithmically up to `max_distance`, beyond
    which every distance shares the last bucket.
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).long() * num_buckets  # keys after the query: the upper half
        distance = relative_position.abs()
    else:
        distance = (-relative_position).clamp(min=0)  # a causal query sees only keys at or before it
    exact = num_buckets // 2
    is_small = distance < exact
    log_bucket = exact + (
        torch.log(distance.float() / exact) / math.log(max_distance / exact) * (num_buckets - exact)
    ).long()
    log_bucket = log_bucket.clamp(max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, log_bucket)


class VaswaniRelativePositionBias(nn.Module):
    """
    T5's relative position bias (Raffel et al. 2020, 2.1): a learned scalar per head for each bucket of the distance
    between query and key, added to the attention scores. One table per stack, shared by all its layers; the encoder's
    tells before from after (bidirectional), the decoder's, being causal, needs only the past.
    """

    def __init__(self, config, bidirectional: bool):
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.relative_attention_bias = nn.Embedding(self.num_buckets, config.num_heads)

    def forward(self, query_positions: torch.Tensor, key_positions: torch.Tensor) -> torch.Tensor:
        relative_position = key_positions[:, None, :] - query_positions[:, :, None]  # (B, T, S)
        buckets = relative_position_bucket(relative_position, self.bidirectional, self.num_buckets, self.max_distance)
        return self.relative_attention_bias(buckets).permute(0, 3, 1, 2)  # (B, T, S, h) -> (B, h, T, S)


def key_positions(
    attention_mask: torch.Tensor | None,
    query_positions: torch.Tensor,
    key_length: int,
) -> torch.Tensor:
    """
    Positions of all `key_length` keys (the cached ones first), counted like the queries': with a 2D padding mask,
    padding does not count; without one, keys are numbered 0, 1, ... Without a cache the keys are the queries.
    Slots a static cache has not filled yet get positions past the text (the mask hides them).
    """
    if query_positions.shape[-1] == key_length:  # no cache (a cache holds at least the new tokens and the past)
        return query_positions
    if attention_mask is not None and attention_mask.dim() == 2:
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, past + T)
        if positions.shape[-1] < key_length:
            extra = torch.arange(1, key_length - positions.shape[-1] + 1, device=positions.device)
            positions = torch.cat((positions, positions[:, -1:] + extra), dim=-1)
        return positions[:, :key_length]
    return torch.arange(key_length, device=query_positions.device).unsqueeze(0)


def merge_position_bias(mask: torch.Tensor | None, bias: torch.Tensor, sdpa: bool = False) -> torch.Tensor:
    """
    One additive mask (B, h, T, S) for eager and sdpa: the bias where attention is allowed, and where the mask blocks
    it the dtype's minimum for eager (which zeroes a query that sees nothing itself; -inf would give it NaN) or -inf
    for sdpa (what sdpa makes of a boolean mask: a query that sees nothing gets zeros, no NaN, as with the paper's
    positions).
    """
    if mask is None:
        return bias
    blocked = ~mask if mask.dtype == torch.bool else mask <= torch.finfo(mask.dtype).min / 2
    return bias.masked_fill(blocked, float("-inf") if sdpa else torch.finfo(bias.dtype).min)


__all__ = [
    "VaswaniAlibi",
    "VaswaniRelativePositionBias",
    "VaswaniRotaryEmbedding",
    "alibi_slopes",
    "apply_rotary",
    "key_positions",
    "merge_position_bias",
    "relative_position_bucket",
    "rotate_half",
]
