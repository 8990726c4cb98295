"""
Attention, seen: `attention_maps` (the weights of every layer and head, with their tokens) in `maps.py`.
"""

from .maps import AttentionMaps, attention_maps, eager_attention


__all__ = ["AttentionMaps", "attention_maps", "eager_attention"]
