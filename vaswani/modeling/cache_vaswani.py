"""
Decoding caches, not the paper: where the keys and values of earlier tokens are kept while `generate()` decodes.

    VaswaniCacheLayer     one layer's keys and values, written in place into a buffer (no re-copy per token)
    VaswaniDynamicCache   a `DynamicCache` made of those layers; generate() and `use_cache=True` use it
    VaswaniSegmentMemory  Transformer-XL's segment memory: the last `memory_length` keys and values of earlier
                          segments, which the next segment attends to (`VaswaniForCausalLM(..., memory=...)`)

Any other `Cache` of transformers (`DynamicCache`, `StaticCache`, `EncoderDecoderCache`, ...) works with the model
too; this one only makes long generations cheaper. This module imports only torch and transformers.
"""

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from .positions_vaswani import apply_rotary


class VaswaniCacheLayer(DynamicLayer):
    """
    One layer's keys and values for decoding, kept in a buffer that new tokens are written into: a `DynamicLayer`
    (the default cache of transformers) grows by `torch.cat`, which copies the whole cache at every step, so a token's
    cost rises with the length of the text. Here a step writes only its own keys and values, and attention reads the
    filled part of the buffer (a view). The buffer is sized by `capacity` (generate() passes its maximum length) and
    doubles when full. Anything else that replaces `keys` and `values` (beam reordering, cropping) is taken over at
    the next update.
    """

    def __init__(self, capacity: int = 0):
        super().__init__()
        self.capacity = capacity
        self._key_buffer = self._value_buffer = self._keys_view = None

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        if self._key_buffer is None or self.keys is not self._keys_view:  # first call, or replaced from outside
            self._adopt(key_states, value_states)
        length = self.keys.shape[-2]
        end = length + key_states.shape[-2]
        if end > self._key_buffer.shape[-2]:
            self._grow(end)
        self._key_buffer[:, :, length:end] = key_states
        self._value_buffer[:, :, length:end] = value_states
        self.keys = self._keys_view = self._key_buffer[:, :, :end]  # (B, h, T_cached, d_k), a view
        self.values = self._value_buffer[:, :, :end]
        return self.keys, self.values

    def _adopt(self, key_states: torch.Tensor, value_states: torch.Tensor):
        if self.keys.numel() == 0:  # empty: no tokens yet (the lazy initialisation's 1D placeholders)
            self.keys = key_states.new_empty(*key_states.shape[:2], 0, key_states.shape[-1])
            self.values = value_states.new_empty(*value_states.shape[:2], 0, value_states.shape[-1])
        self._key_buffer, self._value_buffer, self._keys_view = self.keys, self.values, self.keys

    def _grow(self, needed: int):
        length = self.keys.shape[-2]
        size = max(needed, 2 * self._key_buffer.shape[-2], self.capacity or 64)
        self._key_buffer = self.keys.new_empty(*self.keys.shape[:2], size, self.keys.shape[-1])
        self._value_buffer = self.values.new_empty(*self.values.shape[:2], size, self.values.shape[-1])
        self._key_buffer[:, :, :length] = self.keys
        self._value_buffer[:, :, :length] = self.values

    def reset(self):
        super().reset()
        self._key_buffer = self._value_buffer = self._keys_view = None


class VaswaniDynamicCache(DynamicCache):
    """
    A `DynamicCache` (so everything in transformers that expects one works) whose layers are `VaswaniCacheLayer`s:
    decoding writes each new token's keys and values in place instead of re-copying the cache. `capacity` is the
    expected number of tokens (prompt and new), for one allocation; the cache grows past it if needed.
    """

    def __init__(self, config, capacity: int = 0):
        super().__init__(config=config)  # one layer per decoder layer, as transformers builds them ...
        self.layers = [VaswaniCacheLayer(capacity) for _ in self.layers]  # ... each replaced by one that writes in place


class VaswaniSegmentMemory(DynamicCache):
    """
    Transformer-XL's segment memory (Dai et al. 2019, 3.2) for a decoder-only model reading a long text segment by
    segment: after each segment, every layer keeps the keys and values of the last `memory_length` tokens seen,
    detached from the graph (the paper's stop-gradient SG), and the next segment attends to them before its own.

    The paper keeps the hidden states h^{n-1} and projects them again with the current W^K, W^V; this memory keeps
    the projected keys and values. For fixed weights (evaluation, generation) the numbers are the same; in training
    they are one optimizer step old and no gradient reaches W^K, W^V through memory positions.

    Positions: the memory's tokens are numbered 0, 1, ... and the segment's continue after them (the forward
    prepends `mask` to the segment's attention mask), so ALiBi and T5 distances are right as they are; rotary keys,
    rotated when they were made, are turned back by the number of tokens cropped from their row (a rotation by
    -dropped positions), so that they sit where the next queries expect them.

    `mask` (batch, kept): 1 for a remembered token, 0 for one forgotten (`reset_rows`, padding). `token_ids`
    (batch, kept): the remembered tokens when the segments came as `input_ids` (what `generate(memory=...)` needs).
    Made empty (`VaswaniSegmentMemory(config)`); the forward fills it.
    """

    def __init__(self, config, memory_length: int | None = None):
        super().__init__(config=config)
        self.config = config  # to_cache() builds a cache of the same layers
        self.memory_length = config.memory_length if memory_length is None else memory_length
        if isinstance(self.memory_length, bool) or not isinstance(self.memory_length, int) or self.memory_length < 1:
            raise ValueError(
                f"A segment memory needs `memory_length` of 1 or more tokens, got {self.memory_length!r}: set "
                f"VaswaniConfig(memory_length=...) or pass memory_length=."
            )
        self.mask: torch.Tensor | None = None
        self.token_ids: torch.Tensor | None = None

    def attention_mask_for(self, attention_mask: torch.Tensor | None, batch: int, length: int, device) -> torch.Tensor | None:
        """The 2D mask of memory and segment together, (batch, kept + length), for a segment of `length` tokens."""
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(
                f"With a segment memory, `attention_mask` must be the segment's 2D padding mask (batch, length), got "
                f"shape {tuple(attention_mask.shape)}: the memory's own mask is prepended to it."
            )
        if self.mask is None:
            return attention_mask
        if self.mask.shape[0] != batch:
            raise ValueError(
                f"This memory holds {self.mask.shape[0]} rows (streams), but the segment has {batch}: keep the batch "
                f"size of a stream fixed, or start a new VaswaniSegmentMemory."
            )
        segment = attention_mask if attention_mask is not None else torch.ones(batch, length, device=device)
        return torch.cat((self.mask.to(device=device, dtype=segment.dtype), segment), dim=-1)

    @torch.no_grad()
    def end_segment(self, attention_mask: torch.Tensor | None, input_ids: torch.Tensor | None, rotary=None):
        """
        After a segment's forward (which appended its keys and values): keep the last `memory_length` tokens, detached;
        `attention_mask` is the mask that forward used (memory and segment), `rotary` the stack's
        `VaswaniRotaryEmbedding` (None for positions without rotation).
        """
        total = self.get_seq_length()
        mask = attention_mask if attention_mask is not None else torch.ones(
            self.layers[0].keys.shape[0], total, dtype=torch.long, device=self.layers[0].keys.device
        )
        drop = max(total - self.memory_length, 0)
        dropped = mask[:, :drop].long().sum(-1)  # (B,): tokens of each row that leave the memory
        for layer in self.layers:
            if not layer.is_initialized:
                continue
            keys, values = layer.keys[:, :, drop:].detach(), layer.values[:, :, drop:].detach()
            if rotary is not None and drop:
                keys = self._rebase(keys, dropped, rotary)
            layer.keys, layer.values = keys.contiguous(), values.contiguous()
        self.mask = mask[:, drop:].long()
        if input_ids is not None and (self.token_ids is not None or total == input_ids.shape[-1]):
            past = self.token_ids if self.token_ids is not None else input_ids[:, :0]
            self.token_ids = torch.cat((past.to(input_ids.device), input_ids), dim=-1)[:, drop:]
        else:
            self.token_ids = None  # a segment given as embeddings: its tokens are unknown

    @staticmethod
    def _rebase(keys: torch.Tensor, dropped: torch.Tensor, rotary) -> torch.Tensor:
        # RoPE rotations compose: turning a key made at position p by -d puts it at p - d. Unscaled cos and sin
        # (yarn's attention scaling was applied once already), in float32.
        angles = -dropped.to(keys.device, torch.float32)[:, None] * rotary.inv_freq.to(keys.device, torch.float32)
        angles = torch.cat((angles, angles), dim=-1)[:, None]  # (B, 1, rotary_dim): one turn for a row's keys
        return apply_rotary(keys.float(), angles.cos(), angles.sin()).to(keys.dtype)

    def reset_rows(self, rows):
        """Forget the memory of the given rows (a stream that starts again): they read their next segment alone."""
        if self.mask is not None:
            self.mask[rows] = 0

    def to_cache(self, capacity: int = 0) -> "VaswaniDynamicCache":
        """A `VaswaniDynamicCache` holding copies of the memory's keys and values (generate() decodes on it)."""
        cache = VaswaniDynamicCache(self.config, capacity=capacity)
        for index, layer in enumerate(self.layers):
            if layer.is_initialized:
                cache.update(layer.keys, layer.values, index)
        return cache


__all__ = ["VaswaniCacheLayer", "VaswaniDynamicCache", "VaswaniSegmentMemory"]
