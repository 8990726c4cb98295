"""
The plot helpers of vaswani.explore draw what the maps hold (padding left out, tokens as tick labels), the
positional-encoding plot draws the model's own encodings, and the bertviz bridge gives arguments bertviz renders.
"""

import json
import subprocess
import sys

import matplotlib
import pytest
import torch
from matplotlib.figure import Figure

from helpers import PAD, tiny_config
from vaswani import VaswaniForCausalLM, VaswaniForConditionalGeneration, VaswaniModel, attention_maps
from vaswani.explore import (
    bertviz_arguments,
    head_view,
    model_view,
    plot_cross_attention,
    plot_head,
    plot_heads,
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
