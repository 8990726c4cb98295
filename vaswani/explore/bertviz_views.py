"""
AttentionMaps into bertviz (https://github.com/jessevig/bertviz), the interactive head and model views:
`bertviz_arguments(maps, example)` gives the keyword arguments of `bertviz.head_view` / `bertviz.model_view` for one
example (padding left out); `head_view(maps)` and `model_view(maps)` call bertviz with them. bertviz is optional:
`pip install bertviz` (or the `bertviz` extra of this package).
"""

from .plots import unpadded


def bertviz_arguments(maps, example: int = 0) -> dict:
    """
    bertviz's arguments for one example: `attention` (a tuple of per-layer (1, heads, T, T) tensors) and `tokens`
    for a one-stack model; `encoder_attention`, `decoder_attention`, `cross_attention`, `encoder_tokens` and
    `decoder_tokens` for an encoder-decoder model.
    """
    weights, tokens, _ = unpadded(maps, None, example)  # checks `maps` and `example`
    if "cross" not in maps.kinds:
        return {"attention": tuple(layer[None] for layer in weights), "tokens": tokens}
    arguments = {}
    for kind in ("encoder", "decoder", "cross"):
        weights, queries, keys = unpadded(maps, kind, example)
        arguments[f"{kind}_attention"] = tuple(layer[None] for layer in weights)
    arguments["encoder_tokens"], arguments["decoder_tokens"] = keys, queries  # cross: decoder rows, encoder columns
    return arguments


def _bertviz():
    try:
        import bertviz
    except ImportError as error:
        raise ImportError(
            "The bertviz views need bertviz: `pip install bertviz` (or `pip install 'vaswani[bertviz]'`)."
        ) from error
    return bertviz


def head_view(maps, example: int = 0, **options):
    """bertviz's head view of one example; `options` go to `bertviz.head_view` (e.g. `html_action="return"`)."""
    return _bertviz().head_view(**bertviz_arguments(maps, example), **options)


def model_view(maps, example: int = 0, **options):
    """bertviz's model view (every layer and head at once) of one example; `options` go to `bertviz.model_view`."""
    return _bertviz().model_view(**bertviz_arguments(maps, example), **options)
