"""
The model: `modeling_vaswani.py` (the paper: embeddings, attention, feed-forward, layers, stacks, the model) and
`modeling_vaswani_heads.py` (the task heads); beside them the concerns that are not the paper, a module each:
`cache_vaswani.py` (decoding cache, segment memory) and `validation_vaswani.py` (named errors for bad input). All ship in a saved
folder's remote code.
"""

from .cache_vaswani import VaswaniCacheLayer, VaswaniDynamicCache, VaswaniSegmentMemory
from .modeling_vaswani import *  # noqa: F403
from .modeling_vaswani import __all__ as _paper
from .modeling_vaswani_heads import *  # noqa: F403
from .modeling_vaswani_heads import __all__ as _heads


__all__ = ["VaswaniCacheLayer", "VaswaniDynamicCache", "VaswaniSegmentMemory", *_paper, *_heads]
