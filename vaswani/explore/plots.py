"""
Attention and positions drawn with matplotlib: `plot_heads` (a layer x head grid of one kind of attention),
`plot_head` (one head, query tokens on the rows, key tokens on the columns), `plot_cross_attention` (where each
target token of a translation looks in the source), `plot_patch_attention` (where one query looks among an image's
patches, drawn over the image) and `plot_positional_encodings` (what the model adds for each position). Every map
leaves padding out; every function returns a `matplotlib.figure.Figure`.

matplotlib is imported inside the functions, so `import vaswani` does not import it. The figures are made without
pyplot (nothing is kept in pyplot's list of open figures, which matters in a long-running app); a notebook shows
one when it is a cell's last expression, and `figure.savefig(path)` writes it.
"""

import textwrap

import torch
from transformers import PreTrainedConfig, PreTrainedModel

from .maps import AttentionMaps


def _check_maps(maps) -> None:
    if not isinstance(maps, AttentionMaps):
        raise TypeError(f"`maps` must be the AttentionMaps of vaswani.attention_maps(...), got {type(maps).__name__}.")


def unpadded(maps: AttentionMaps, kind: str | None = None, example: int = 0):
    """
    Every layer and head of one kind of map for one example, padding rows and columns left out:
    `(weights (layers, heads, queries, keys), query tokens, key tokens)`. `kind` defaults to the model's first.
    """
    _check_maps(maps)
    _, queries, keys = maps.head(0, 0, kind, example)  # checks `kind` and `example` and gives the real tokens
    kind = kind or maps.kinds[0]
    rows, columns = (maps.masks[stack][example] for stack in _stacks(kind))
    return maps.weights[kind][:, example][:, :, rows][..., columns], queries, keys


def _stacks(kind: str) -> tuple[str, str]:
    from .maps import KEY_STACK, QUERY_STACK

    return QUERY_STACK[kind], KEY_STACK[kind]


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _heat_map(ax, weights: torch.Tensor, queries, keys, title: str, cmap: str, vmax: float | None = 1.0, size=8):
    image = ax.imshow(weights.numpy(), cmap=cmap, vmin=0.0, vmax=vmax)
    ax.set_xticks(range(len(keys)), keys, rotation=90, fontsize=size)
    ax.set_yticks(range(len(queries)), queries, fontsize=size)
    ax.set_title(title, fontsize=size + 1)
    return image


def _own_or_given(ax, width: float, height: float):
    if ax is None:
        return _figure(width, height).add_subplot()
    if not hasattr(ax, "imshow") or getattr(ax, "figure", None) is None:
        raise TypeError(f"`ax` must be a matplotlib Axes (or None for a new figure), got {type(ax).__name__}.")
    return ax


def plot_heads(maps: AttentionMaps, kind: str | None = None, example: int = 0, cmap: str = "viridis"):
    """
    A layer x head grid of heat maps of one kind of attention (`"encoder"`, `"decoder"` or `"cross"`; default the
    model's first) for one example: row i of a map is where query token i looks, every row summing to 1.
    """
    weights, queries, keys = unpadded(maps, kind, example)
    kind = kind or maps.kinds[0]
    layers, heads = weights.shape[:2]
    tokens = max(len(queries), len(keys))
    cell = min(max(1.0 + 0.12 * tokens, 2.0), 3.6)  # inches per map: room for the tick labels, not a wall of maps
    figure = _figure(heads * cell + 1.2, layers * cell + 0.6)
    axes = figure.subplots(layers, heads, squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            image = _heat_map(axes[layer][head], weights[layer, head], queries, keys,
                              f"layer {layer}, head {head}", cmap, size=7 if tokens <= 24 else 5)
    figure.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    figure.suptitle(f"{kind} attention (rows: queries, columns: keys)")
    return figure


def plot_head(
    maps: AttentionMaps, layer: int, head: int, kind: str | None = None, example: int = 0, ax=None,
    cmap: str = "viridis",
):
    """One head's map: its query tokens on the rows, its key tokens on the columns. Draws into `ax` when given."""
    _check_maps(maps)
    weights, queries, keys = maps.head(layer, head, kind, example)
    layer, head = layer % maps.num_layers[kind or maps.kinds[0]], head % maps.num_heads  # -1: the last, by number
    ax = _own_or_given(ax, 2.5 + 0.3 * len(keys), 1.5 + 0.3 * len(queries))
    image = _heat_map(ax, weights, queries, keys, f"{kind or maps.kinds[0]} attention, layer {layer}, head {head}",
                      cmap)
    ax.set(xlabel="keys", ylabel="queries")
    ax.figure.colorbar(image, ax=ax, label="attention weight")
    return ax.figure


def plot_cross_attention(
    maps: AttentionMaps, layer: int = -1, head: int | None = None, example: int = 0, ax=None, cmap: str = "magma"
):
    """
    The encoder-decoder attention of a translation: source tokens on x, target (decoder input) tokens on y. Row
    `<s>` is where the model looked to choose the first target token. `head=None` draws the mean over the heads.
    """
    _check_maps(maps)
    if "cross" not in maps.kinds:
        raise ValueError(
            f"`maps` has no cross-attention (kinds {maps.kinds}): it comes from an encoder-decoder model's maps; "
            "use plot_heads or plot_head for a one-stack model."
        )
    maps.head(layer, 0 if head is None else head, "cross", example)  # checks `layer`, `head` and `example`
    layer = layer % maps.num_layers["cross"]
    if head is None:
        weights, targets, sources = unpadded(maps, "cross", example)
        weights, title = weights[layer].mean(0), f"cross-attention, layer {layer}, mean of the heads"
    else:
        weights, targets, sources = maps.head(layer, head, "cross", example)
        head = head % maps.num_heads
        title = f"cross-attention, layer {layer}, head {head}"
    ax = _own_or_given(ax, 2.5 + 0.3 * len(sources), 1.5 + 0.3 * len(targets))
    image = _heat_map(ax, weights, targets, sources, title, cmap, vmax=None)
    ax.set(xlabel="source (encoder) tokens", ylabel="target (decoder) tokens")
    ax.figure.colorbar(image, ax=ax, label="attention weight")
    return ax.figure


def patch_attention(
    maps: AttentionMaps, layer: int, head: int | None = None, query: int = 0, kind: str = "encoder", example: int = 0
):
    """
    The attention of one query over an image's patches, on the patch grid: `(grid (heads, rows, columns), [CLS]
    weights (heads,), query token)`, every head (`head=None`) or one. `query` indexes the query tokens: for
    `kind="encoder"` the image's ([CLS] = 0, the default; patch p(r,c) = 1 + r * columns + c), for `kind="cross"`
    (an image encoder-decoder) the decoder's, position i being where the model looked to choose token i + 1. The
    [CLS] key is not a patch: it is left out of the grid and its weight returned beside it.
    """
    _check_maps(maps)
    if maps.patch_grid is None:
        raise ValueError(
            "`maps` come from a model that reads tokens: patch attention needs the maps of a model that reads images "
            "(a config with `image_size`), e.g. attention_maps(model, {'pixel_values': ...})."
        )
    if kind not in ("encoder", "cross") or kind not in maps.kinds:
        raise ValueError(
            f"`kind` must be 'encoder' (the image's self-attention) or 'cross' (a caption's decoder over the image) "
            f"among this model's kinds {maps.kinds}, got {kind!r}: only those have the patches as keys."
        )
    maps.head(layer, 0 if head is None else head, kind, example)  # checks `layer`, `head` and `example`
    weights, queries, keys = unpadded(maps, kind, example)
    if isinstance(query, bool) or not isinstance(query, int) or not -len(queries) <= query < len(queries):
        raise ValueError(
            f"`query` must be an integer in [0, {len(queries)}) (the {kind} attention's query tokens "
            f"{queries[:3] + ['...'] if len(queries) > 3 else queries}), got {query!r}."
        )
    rows, columns = maps.patch_grid
    weights = weights[layer % weights.shape[0], :, query]  # (heads, keys): [CLS] then the patches, row by row
    if head is not None:
        weights = weights[[head % weights.shape[0]]]
    return weights[:, 1:].reshape(-1, rows, columns), weights[:, 0], queries[query]


def _image_array(image):
    """An image to draw under the map, as (height, width[, channels]) floats in [0, 1]; None for none."""
    import numpy as np

    if image is None:
        return None
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        image = np.asarray(image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode))
    elif isinstance(image, torch.Tensor):
        image = image.detach().float().cpu()
        image = (image.permute(1, 2, 0) if image.dim() == 3 and image.shape[0] in (1, 3) else image).numpy()
    if not isinstance(image, np.ndarray):
        raise TypeError(
            "`image` must be the image the maps were made from: a PIL image, a (height, width[, channels]) array, "
            f"a (channels, height, width) tensor such as pixel_values[example], or None; got {type(image).__name__}."
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)) or 0 in image.shape:
        raise ValueError(
            f"`image` must be (height, width), (height, width, 3 or 4) or (channels, height, width), got shape "
            f"{tuple(image.shape)}."
        )
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())  # pixel values are normalised (-1..1); bytes 0..255
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def plot_patch_attention(
    maps: AttentionMaps, image, layer: int, head: int | None = None, query: int = 0, kind: str = "encoder",
    example: int = 0, ax=None, cmap: str = "inferno", alpha: float = 0.6, interpolation: str = "nearest",
):
    """
    Where one query looks in an image: its attention over the patches (`patch_attention`), upsampled onto `image`
    (the picture the maps were made from, e.g. `pixel_values[example]` or the PIL image; None draws the grid alone)
    as a heat map with opacity `alpha`, one cell a patch (`interpolation="bilinear"` smooths it). `head=None` draws every head of `layer` in a grid; a head number draws that
    one (into `ax` when given). The [CLS] key is not a patch: it is left out and its weight written in each title.
    The colour scale is shared by the heads, from 0 to the largest patch weight drawn.
    """
    grids, cls_weights, token = patch_attention(maps, layer, head, query, kind, example)
    if head is None and ax is not None:
        raise ValueError("`ax` draws one head: pass `head` with it, or leave `ax` out for the grid of every head.")
    picture = _image_array(image)
    rows, columns = maps.patch_grid
    height, width = picture.shape[:2] if picture is not None else (rows, columns)
    layer = layer % maps.num_layers[kind]
    heads = [head % maps.num_heads] if head is not None else list(range(maps.num_heads))
    per_row = min(len(heads), 4)
    if ax is None:
        figure = _figure(2.6 * per_row + 1.0, 2.6 * -(-len(heads) // per_row) + 0.8)
        axes = [a for line in figure.subplots(-(-len(heads) // per_row), per_row, squeeze=False) for a in line]
    else:
        axes = [_own_or_given(ax, 0, 0)]
        figure = axes[0].figure
    vmax = float(grids.max()) or 1.0
    extent = (0, width, height, 0)  # the grid stretched over the whole picture, patch (0, 0) at the top left
    for axis, number, grid, cls_weight in zip(axes, heads, grids, cls_weights):
        if picture is not None:
            axis.imshow(picture, cmap="gray" if picture.ndim == 2 else None, extent=extent)
        overlay = axis.imshow(grid.numpy(), cmap=cmap, alpha=alpha if picture is not None else 1.0, vmin=0.0,
                              vmax=vmax, extent=extent, interpolation=interpolation)
        axis.set_title(f"head {number} ([CLS] key {float(cls_weight):.2f})", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in axes[len(heads):]:
        axis.set_visible(False)
    figure.colorbar(overlay, ax=axes, shrink=0.7, label="attention weight")
    number = query % len(maps.real_tokens(_stacks(kind)[0], example))
    title = (f"{'encoder ' if kind == 'encoder' else 'cross-'}attention, layer {layer}: where {token!r} (query "
             f"{number}) looks among the {rows} x {columns} patches; the [CLS] key is left out")
    if ax is not None or len(heads) == 1:
        axes[0].set_xlabel(textwrap.fill(title, 48), fontsize=8)
    else:
        figure.suptitle(textwrap.fill(title, 30 * per_row), fontsize=10)
    return figure


def positional_encodings(model_or_config, length: int | None = None, stack: str = "encoder") -> torch.Tensor:
    """
    What the model uses for positions 0..length-1 (default: `max_position_embeddings`), as a (length, features)
    table: the paper's sinusoidal PE matrix (3.5); the trained table of learned positions (of `stack`'s embedding
    when a model has two); for rotary positions cos(m theta_i) then sin(m theta_i), the angles that turn each pair of
    query and key features. ALiBi and relative positions add a bias per head to the attention scores instead: they
    have no such table (their effect is in the attention maps).
    """
    from ..modeling.modeling_vaswani import VaswaniEmbeddings, sinusoidal_positions
    from ..modeling.positions_vaswani import VaswaniRotaryEmbedding

    if isinstance(model_or_config, PreTrainedModel):
        model, config = model_or_config, model_or_config.config
    elif isinstance(model_or_config, PreTrainedConfig):
        model, config = None, model_or_config
    else:
        raise TypeError(f"`model_or_config` must be a Vaswani model or config, got {type(model_or_config).__name__}.")
    kind = getattr(config, "position_embedding_type", None)
    length = config.max_position_embeddings if length is None else length
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"`length` must be a positive number of positions, got {length!r}.")
    if kind == "sinusoidal":
        return sinusoidal_positions(torch.arange(length), config.d_model, config.sinusoidal_layout)
    if kind == "rotary":
        rotary = next((m for m in model.modules() if isinstance(m, VaswaniRotaryEmbedding)), None) if model else None
        rotary = rotary or VaswaniRotaryEmbedding(config)
        cos, sin = rotary(torch.zeros(1, dtype=torch.float32), torch.arange(length)[None])
        half = cos.shape[-1] // 2  # the two halves repeat the same angles (rotate_half)
        return torch.cat((cos[0, :, :half], sin[0, :, :half]), dim=-1).float()
    if kind == "learned":
        if model is None:
            raise ValueError(
                "Learned positions are a trained table: pass the model, not its config, to draw them."
            )
        if stack not in ("encoder", "decoder"):
            raise ValueError(f"`stack` must be 'encoder' or 'decoder', got {stack!r}.")
        embeddings = [(name, m) for name, m in model.named_modules() if isinstance(m, VaswaniEmbeddings)]
        # An encoder-decoder model learns a table per stack; a one-stack model has one.
        table = next((m for name, m in embeddings if stack in name), embeddings[0][1]).position_embeddings.weight
        if length > table.shape[0]:
            raise ValueError(
                f"`length` must be at most the {table.shape[0]} positions the model learned, got {length}."
            )
        return table[:length].detach().float().cpu()
    raise ValueError(
        f"position_embedding_type={kind!r} adds no encoding to the embeddings: ALiBi and relative positions are a "
        "bias per head on the attention scores, seen in the attention maps (plot_heads); positional encodings can "
        "be drawn for 'sinusoidal', 'learned' and 'rotary' positions."
    )


def plot_positional_encodings(model_or_config, length: int | None = None, stack: str = "encoder", ax=None):
    """
    The positional encodings of `positional_encodings(...)` as a heat map: one row per position, one column per
    feature (the sinusoidal PE matrix of paper 3.5 for the paper's model).
    """
    table = positional_encodings(model_or_config, length, stack)
    kind = (model_or_config.config if isinstance(model_or_config, PreTrainedModel) else model_or_config)
    kind = kind.position_embedding_type
    ax = _own_or_given(ax, 9.0, 4.5)
    limit = float(table.abs().max()) or 1.0
    image = ax.imshow(table.numpy(), aspect="auto", cmap="RdBu", vmin=-limit, vmax=limit)
    ax.set(xlabel="feature" if kind != "rotary" else "cos(m θ_i) | sin(m θ_i)", ylabel="position",
           title=f"{kind} positions, {table.shape[0]} positions x {table.shape[1]} features")
    ax.figure.colorbar(image, ax=ax)
    return ax.figure
