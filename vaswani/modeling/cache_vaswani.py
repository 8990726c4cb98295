"""
Decoding caches, not the paper: where the keys and values of earlier tokens are kept while `generate()` decodes.

    VaswaniCacheLayer     one layer's keys and values, written in place into a buffer (no re-copy per token)
    VaswaniDynamicCache   a `DynamicCache` made of those layers; generate() and `use_cache=True` use it

Any other `Cache` of transformers (`DynamicCache`, `StaticCache`, `EncoderDecoderCache`, ...) works with the model
too; this one only makes long generations cheaper. This module imports only torch and transformers.
"""

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer


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


__all__ = ["VaswaniCacheLayer", "VaswaniDynamicCache"]
