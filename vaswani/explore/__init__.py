"""
Attention, seen: `attention_maps` (the weights of every layer and head, with their tokens) in `maps.py`; matplotlib
figures of them and of positional encodings in `plots.py`; bertviz's interactive views in `bertviz_views.py`.
"""

from .bertviz_views import bertviz_arguments, head_view, model_view
from .maps import AttentionMaps, attention_maps, eager_attention
from .plots import (
    patch_attention,
    plot_cross_attention,
    plot_head,
    plot_heads,
    plot_patch_attention,
    plot_positional_encodings,
    positional_encodings,
    unpadded,
)


__all__ = [
    "AttentionMaps",
    "attention_maps",
    "bertviz_arguments",
    "eager_attention",
    "head_view",
    "model_view",
    "patch_attention",
    "plot_cross_attention",
    "plot_head",
    "plot_heads",
    "plot_patch_attention",
    "plot_positional_encodings",
    "positional_encodings",
    "unpadded",
]
