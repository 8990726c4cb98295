"""
The plot helpers of vaswani.explore draw what the maps hold (padding left out, tokens as tick labels), the patch
attention of an image model is its weights on the patch grid over the image, the positional-encoding plot draws the
model's own encodings, and the bertviz bridge gives arguments bertviz renders.
"""

import json
import subprocess
import sys

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from helpers import PAD, tiny_config
from vaswani import (
    AttentionMaps,
    VaswaniConfig,
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForImageClassification,
    VaswaniModel,
    attention_maps,
)
from vaswani.explore import (
    bertviz_arguments,
    head_view,
    model_view,
    patch_attention,
    plot_cross_attention,
    plot_head,
    plot_heads,
    plot_patch_attention,
    plot_positional_encodings,
    positional_encodings,
    unpadded,
)
from vaswani.modeling.modeling_vaswani import sinusoidal_positions


matplotlib.use("Agg")

# The second example is padded at the end: two source tokens and one target token are padding.
SOURCE = torch.tensor([[5, 6, 7, 8, 9], [10, 11, 12, PAD, PAD]])
TARGET = torch.tensor([[1, 20, 21, 22], [1, 23, 24, PAD]])


def _translation_maps(**overrides):
    torch.manual_seed(0)
    model = VaswaniForConditionalGeneration(tiny_config(**overrides)).eval()
    inputs = {"input_ids": SOURCE, "attention_mask": (SOURCE != PAD).long(), "decoder_input_ids": TARGET,
              "decoder_attention_mask": (TARGET != PAD).long()}
    return attention_maps(model, inputs)


@pytest.fixture(scope="module")
def translation():
    return _translation_maps()


@pytest.fixture(scope="module")
def causal():
    torch.manual_seed(0)
    model = VaswaniForCausalLM(tiny_config(num_hidden_layers=3)).eval()
    return attention_maps(model, {"input_ids": SOURCE, "attention_mask": (SOURCE != PAD).long()})


def _ticks(labels) -> list[str]:
    return [label.get_text() for label in labels]


def _real(ids: torch.Tensor) -> list[str]:
    return [str(token) for token in ids.tolist() if token != PAD]


def test_unpadded_is_each_head_without_padding(translation):
    weights, queries, keys = unpadded(translation, "cross", example=1)
    assert weights.shape == (translation.num_layers["cross"], translation.num_heads, len(queries), len(keys))
    assert (queries, keys) == (_real(TARGET[1]), _real(SOURCE[1]))
    for layer in range(weights.shape[0]):
        for head in range(weights.shape[1]):
            assert torch.equal(weights[layer, head], translation.head(layer, head, "cross", example=1)[0])


@pytest.mark.parametrize("kind", ["encoder", "decoder", "cross"])
def test_the_grid_has_a_map_per_layer_and_head(translation, kind):
    figure = plot_heads(translation, kind=kind, example=1)
    assert isinstance(figure, Figure)
    layers, heads = translation.num_layers[kind], translation.num_heads
    maps = [ax for ax in figure.axes if ax.images]
    assert len(maps) == layers * heads and len(figure.axes) == layers * heads + 1  # and one colour bar
    weights, queries, keys = unpadded(translation, kind, example=1)
    for index, ax in enumerate(maps):
        layer, head = divmod(index, heads)
        assert torch.equal(torch.as_tensor(ax.images[0].get_array()), weights[layer, head])
        assert _ticks(ax.get_xticklabels()) == keys and _ticks(ax.get_yticklabels()) == queries


def test_the_grid_of_a_one_stack_model_is_its_only_kind(causal):
    figure = plot_heads(causal, example=1)
    layers, heads = causal.num_layers["decoder"], causal.num_heads
    assert causal.kinds == ("decoder",) and len([ax for ax in figure.axes if ax.images]) == layers * heads
    assert figure.axes[layers * heads - 1].get_title() == f"layer {layers - 1}, head {heads - 1}"


@pytest.mark.parametrize("kind, layer, head", [("encoder", 0, 1), ("decoder", 1, 3), ("cross", -1, 0)])
def test_one_head_is_its_map_with_the_tokens_as_ticks(translation, kind, layer, head):
    figure = plot_head(translation, layer, head, kind=kind, example=1)
    ax = figure.axes[0]
    weights, queries, keys = translation.head(layer, head, kind, example=1)
    assert torch.equal(torch.as_tensor(ax.images[0].get_array()), weights)
    assert _ticks(ax.get_xticklabels()) == keys and _ticks(ax.get_yticklabels()) == queries
    assert len(figure.axes) == 2  # the map and its colour bar


def test_a_head_draws_into_the_axes_it_is_given(causal):
    figure = Figure()
    left, right = figure.subplots(1, 2)
    assert plot_head(causal, 0, 0, ax=right) is figure
    assert not left.images and right.images
    assert torch.equal(torch.as_tensor(right.images[0].get_array()), causal.head(0, 0)[0])


def test_cross_attention_puts_the_source_on_x_and_the_target_on_y(translation):
    ax = plot_cross_attention(translation, example=1).axes[0]
    weights, targets, sources = unpadded(translation, "cross", example=1)
    assert torch.allclose(torch.as_tensor(ax.images[0].get_array()), weights[-1].mean(0))
    assert _ticks(ax.get_xticklabels()) == sources == _real(SOURCE[1])
    assert _ticks(ax.get_yticklabels()) == targets == _real(TARGET[1])
    one = plot_cross_attention(translation, layer=0, head=2, example=0).axes[0]
    assert torch.equal(torch.as_tensor(one.images[0].get_array()), translation.head(0, 2, "cross", example=0)[0])


@pytest.mark.parametrize("layout", ["interleaved", "concatenated"])
def test_the_sinusoidal_plot_is_the_papers_matrix(layout):
    config = tiny_config(sinusoidal_layout=layout)
    expected = sinusoidal_positions(torch.arange(40), config.d_model, layout)
    for source in (config, VaswaniModel(config)):
        ax = plot_positional_encodings(source, length=40).axes[0]
        assert torch.equal(torch.as_tensor(ax.images[0].get_array()), expected)


def test_the_learned_plot_is_the_trained_table_of_each_stack():
    model = VaswaniForConditionalGeneration(tiny_config(position_embedding_type="learned"))
    for stack in ("encoder", "decoder"):
        table = getattr(model.model, stack).embeddings.position_embeddings.weight[:10]
        ax = plot_positional_encodings(model, length=10, stack=stack).axes[0]
        assert torch.equal(torch.as_tensor(ax.images[0].get_array()), table.detach())
    assert not torch.equal(positional_encodings(model, 10, "encoder"), positional_encodings(model, 10, "decoder"))


def test_the_rotary_plot_is_the_rotation_angles():
    config = tiny_config(position_embedding_type="rotary")
    table = positional_encodings(config, length=12)
    head_dim = config.d_model // config.num_heads
    frequencies = 1.0 / config.rope_parameters["rope_theta"] ** (torch.arange(0, head_dim, 2).float() / head_dim)
    angles = torch.arange(12).float()[:, None] * frequencies
    assert torch.allclose(table, torch.cat((angles.cos(), angles.sin()), dim=-1), atol=1e-6)
    assert torch.equal(torch.as_tensor(plot_positional_encodings(VaswaniModel(config), 12).axes[0].images[0].get_array()),
                       table)


@pytest.mark.parametrize(
    "call, says",
    [
        (lambda m: plot_heads(m, kind="keys"), "`kind`"),
        (lambda m: plot_heads(m, example=2), "`example`"),
        (lambda m: plot_head(m, 2, 0), "`layer`"),
        (lambda m: plot_head(m, 0, 4), "`head`"),
        (lambda m: plot_head(m, 0, 0, ax="left"), "`ax`"),
        (lambda m: plot_cross_attention(m, layer=5), "`layer`"),
        (lambda m: plot_cross_attention(m, head=-5), "`head`"),
        (lambda m: plot_heads({"encoder": None}), "`maps`"),
        (lambda m: bertviz_arguments(m, example=-3), "`example`"),
    ],
)
def test_bad_arguments_are_named(translation, call, says):
    with pytest.raises((ValueError, TypeError), match=says):
        call(translation)


def test_a_one_stack_model_has_no_cross_attention_to_plot(causal):
    with pytest.raises(ValueError, match="no cross-attention"):
        plot_cross_attention(causal)


@pytest.mark.parametrize(
    "source, length, says",
    [
        (tiny_config(position_embedding_type="alibi"), 8, "ALiBi"),
        (tiny_config(position_embedding_type="relative"), 8, "relative"),
        (tiny_config(position_embedding_type="learned"), 8, "pass the model"),
        (tiny_config(), 0, "`length`"),
        ("sinusoidal", 8, "`model_or_config`"),
    ],
)
def test_positions_without_a_table_or_bad_arguments_raise(source, length, says):
    with pytest.raises((ValueError, TypeError), match=says):
        plot_positional_encodings(source, length=length)


def test_learned_positions_refuse_a_length_past_the_table_and_an_unknown_stack():
    model = VaswaniModel(tiny_config(position_embedding_type="learned", max_position_embeddings=16))
    with pytest.raises(ValueError, match="at most the 16 positions"):
        positional_encodings(model, length=17)
    with pytest.raises(ValueError, match="`stack`"):
        positional_encodings(model, length=4, stack="middle")


# -- Patch attention of models that read images ---------------------------------------------------------------------
PIXELS = torch.randn(2, 3, 8, 12)  # 8 x 12 pixels in 4 x 4 patches: 2 rows and 3 columns, so rows and columns differ


@pytest.fixture(scope="module")
def image():
    torch.manual_seed(0)
    model = VaswaniForImageClassification(VaswaniConfig(
        stacks="encoder-only", vocab_size=8, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=2,
        num_decoder_layers=0, image_size=8, patch_size=4, num_labels=3, pad_token_id=None, bos_token_id=None,
        eos_token_id=None,
    ))
    return attention_maps(model, {"pixel_values": PIXELS, "interpolate_pos_encoding": True})


@pytest.fixture(scope="module")
def caption():
    """The maps of an image encoder-decoder, made by hand: 2 x 3 patches, a caption of 4 tokens, the second padded."""
    torch.manual_seed(0)
    tokens = ["[CLS]"] + [f"p({r},{c})" for r in range(2) for c in range(3)]
    weights = {"encoder": torch.rand(2, 2, 4, 7, 7), "decoder": torch.rand(1, 2, 4, 4, 4),
               "cross": torch.rand(1, 2, 4, 4, 7)}
    return AttentionMaps(
        weights=weights, tokens={"encoder": [tokens, tokens], "decoder": [["<s>", "a", "cat", "."], ["<s>", "a", "<pad>", "<pad>"]]},
        masks={"encoder": torch.ones(2, 7, dtype=torch.bool), "decoder": torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]]).bool()},
        patch_grid=(2, 3),
    )


def _patches(maps, kind, layer, example, query):
    """What the grid must hold, from the weights themselves: key 1 + r * columns + c at (r, c); the [CLS] key apart."""
    weights = maps.weights[kind][layer, example, :, query]
    grid = torch.stack([torch.stack([weights[:, 1 + r * 3 + c] for c in range(3)], -1) for r in range(2)], -2)
    return grid, weights[:, 0]


@pytest.mark.parametrize("layer, query, example", [(0, 0, 0), (1, 4, 1), (-1, -1, 0)])
def test_patch_attention_is_the_weights_on_the_patch_grid(image, layer, query, example):
    grid, cls_weights, token = patch_attention(image, layer, query=query, example=example)
    expected, expected_cls = _patches(image, "encoder", layer, example, query)
    assert grid.shape == (4, 2, 3) and torch.equal(grid, expected) and torch.equal(cls_weights, expected_cls)
    assert token == image.tokens["encoder"][example][query]
    # Each row of the map is a distribution: the patches and the [CLS] key together hold all of it.
    torch.testing.assert_close(grid.sum((1, 2)) + cls_weights, torch.ones(4))
    one, one_cls, _ = patch_attention(image, layer, head=2, query=query, example=example)
    assert torch.equal(one, expected[2:3]) and torch.equal(one_cls, expected_cls[2:3])


def test_the_plot_draws_each_heads_grid_over_the_image(image):
    figure = plot_patch_attention(image, PIXELS[1], layer=1, query=3, example=1)
    drawn = [ax for ax in figure.axes if ax.images]
    assert len(drawn) == image.num_heads
    grid, cls_weights, token = patch_attention(image, 1, query=3, example=1)
    picture = PIXELS[1].permute(1, 2, 0)
    picture = (picture - picture.min()) / (picture.max() - picture.min())
    for head, ax in enumerate(drawn):
        background, overlay = ax.images
        assert torch.allclose(torch.from_numpy(background.get_array().data), picture)
        assert torch.equal(torch.from_numpy(overlay.get_array().data), grid[head])
        # The grid is stretched over the whole picture (12 wide, 8 high), patch (0, 0) at the top left.
        assert list(overlay.get_extent()) == [0, 12, 8, 0] == list(background.get_extent())
        assert ax.get_title() == f"head {head} ([CLS] key {float(cls_weights[head]):.2f})"
        assert overlay.get_clim() == (0.0, float(grid.max()))  # one scale for every head
    assert token == "p(0,2)" and "'p(0,2)'" in figure.get_suptitle() and "[CLS] key is left out" in figure.get_suptitle()


def test_one_head_of_the_cross_attention_draws_into_the_axes_given(caption):
    ax = _figure_axes()
    figure = plot_patch_attention(caption, None, layer=0, head=-1, query=1, kind="cross", example=1, ax=ax)
    assert figure is ax.figure and len(ax.images) == 1  # no picture: the grid alone
    grid, _ = _patches(caption, "cross", 0, 1, 1)
    assert torch.equal(torch.from_numpy(ax.images[0].get_array().data), grid[3])
    assert ax.get_title().startswith("head 3 ") and "'a'" in ax.get_xlabel()


def _figure_axes():
    return Figure().add_subplot()


@pytest.mark.parametrize(
    "maps, call, error, says",
    [
        ("translation", lambda m: patch_attention(m, 0), ValueError, "reads tokens"),
        ("image", lambda m: patch_attention(m, 0, query=7), ValueError, r"`query` must be an integer in \[0, 7\)"),
        ("image", lambda m: patch_attention(m, 0, query=1.0), ValueError, "`query`"),
        ("caption", lambda m: patch_attention(m, 0, query=2, kind="cross", example=1), ValueError, r"\[0, 2\)"),
        ("caption", lambda m: patch_attention(m, 0, kind="decoder"), ValueError, "`kind`"),
        ("image", lambda m: patch_attention(m, 0, kind="cross"), ValueError, "`kind`"),
        ("image", lambda m: patch_attention(m, 2), ValueError, "`layer`"),
        ("image", lambda m: patch_attention(m, 0, head=4), ValueError, "`head`"),
        ("image", lambda m: plot_patch_attention(m, PIXELS[0], 0, ax=_figure_axes()), ValueError, "`ax`"),
        ("image", lambda m: plot_patch_attention(m, "cat.png", 0), TypeError, "`image`"),
        ("image", lambda m: plot_patch_attention(m, torch.rand(2, 8, 12), 0), ValueError, "`image`"),
        ("image", lambda m: plot_patch_attention({"encoder": None}, PIXELS[0], 0), TypeError, "`maps`"),
    ],
)
def test_patch_attention_refuses_what_is_not_there(request, maps, call, error, says):
    with pytest.raises(error, match=says):
        call(request.getfixturevalue(maps))


# -- bertviz -------------------------------------------------------------------------------------------------------------
def test_bertviz_arguments_of_a_translation_leave_padding_out(translation):
    arguments = bertviz_arguments(translation, example=1)
    assert sorted(arguments) == sorted(
        ["encoder_attention", "decoder_attention", "cross_attention", "encoder_tokens", "decoder_tokens"]
    )
    assert arguments["encoder_tokens"] == _real(SOURCE[1]) and arguments["decoder_tokens"] == _real(TARGET[1])
    source, target, heads = len(arguments["encoder_tokens"]), len(arguments["decoder_tokens"]), translation.num_heads
    shapes = {"encoder": (1, heads, source, source), "decoder": (1, heads, target, target),
              "cross": (1, heads, target, source)}
    for kind, shape in shapes.items():
        layers = arguments[f"{kind}_attention"]
        assert isinstance(layers, tuple) and len(layers) == translation.num_layers[kind]
        assert all(layer.shape == shape for layer in layers)
        assert torch.equal(torch.cat(layers), unpadded(translation, kind, example=1)[0])


def test_bertviz_arguments_of_one_stack(causal):
    arguments = bertviz_arguments(causal, example=1)
    assert sorted(arguments) == ["attention", "tokens"] and arguments["tokens"] == _real(SOURCE[1])
    assert len(arguments["attention"]) == causal.num_layers["decoder"]
    assert all(layer.shape == (1, causal.num_heads, 3, 3) for layer in arguments["attention"])


@pytest.mark.parametrize("view", [head_view, model_view])
@pytest.mark.parametrize("which", ["translation", "causal"])
def test_bertviz_renders_the_maps(view, which, request):
    pytest.importorskip("bertviz", reason="bertviz is an optional extra: pip install bertviz")
    maps = request.getfixturevalue(which)
    html = view(maps, example=1, html_action="return").data
    arguments = bertviz_arguments(maps, example=1)
    kinds = ["encoder", "decoder", "cross"] if which == "translation" else [None]
    for kind in kinds:  # bertviz writes each kind's weights (layers, heads, queries, keys) and tokens into the page
        weights, queries, keys = unpadded(maps, kind, example=1)
        assert json.dumps(weights.tolist()) in html
        assert f'"left_text": {json.dumps(queries)}, "right_text": {json.dumps(keys)}' in html
    assert ('"name": "Cross"' in html) == (which == "translation")
    assert len(arguments) == (5 if which == "translation" else 2)


def test_without_bertviz_the_views_say_how_to_install_it(causal, monkeypatch):
    monkeypatch.setitem(sys.modules, "bertviz", None)  # an import of it now fails
    with pytest.raises(ImportError, match="pip install bertviz"):
        head_view(causal)


def test_importing_vaswani_imports_neither_matplotlib_nor_bertviz():
    code = "import sys, vaswani, vaswani.explore; print(sorted({'matplotlib', 'bertviz'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
