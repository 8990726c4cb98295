"""VaswaniConfig: the paper's names and Hugging Face's aliases, presets, validation, and save/load."""

import json
import pytest
import torch
from transformers import CONFIG_MAPPING, AutoConfig

import vaswani  # noqa: F401  (registers "vaswani" with the Auto classes)
from helpers import BOS, VOCAB, tiny_config
from vaswani import (
    VaswaniConfig,
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMaskedLM,
    VaswaniForMultipleChoice,
    VaswaniForQuestionAnswering,
    VaswaniForSequenceClassification,
    VaswaniForTokenClassification,
    VaswaniModel,
)
from vaswani import PRESETS

ROPE = {"rope_type": "default", "rope_theta": 10000.0}


def _count_parameters(model: torch.nn.Module) -> int:
    # `parameters()` yields a tied / shared parameter once.
    return sum(p.numel() for p in model.parameters())


def _meta_model(head, preset: str):
    with torch.device("meta"):
        return head(VaswaniConfig.from_preset(preset))


# -- Names: the paper's and Hugging Face's ---------------------------------------------------------------------------
def test_hugging_face_names_set_the_paper_fields_and_read_back():
    config = VaswaniConfig(hidden_size=64, num_attention_heads=8, intermediate_size=256, vocab_size=VOCAB)
    assert (config.d_model, config.num_heads, config.d_ff) == (64, 8, 256)
    assert (config.hidden_size, config.num_attention_heads, config.intermediate_size) == (64, 8, 256)

    config.hidden_size = 96
    config.num_attention_heads = 12
    assert (config.d_model, config.num_heads) == (96, 12)


def test_num_hidden_layers_sets_both_stacks_unless_one_is_given():
    both = VaswaniConfig(num_hidden_layers=4)
    assert (both.num_encoder_layers, both.num_decoder_layers) == (4, 4)

    decoder_given = VaswaniConfig(num_hidden_layers=4, num_decoder_layers=2)
    assert (decoder_given.num_encoder_layers, decoder_given.num_decoder_layers) == (4, 2)

    encoder_given = VaswaniConfig(num_hidden_layers=3, num_encoder_layers=5)
    assert (encoder_given.num_encoder_layers, encoder_given.num_decoder_layers) == (5, 3)

    default = VaswaniConfig()
    assert (default.num_encoder_layers, default.num_decoder_layers) == (6, 6)  # paper: N = 6


def test_num_hidden_layers_reads_the_depth_of_the_stack_caches_refer_to():
    config = VaswaniConfig(num_encoder_layers=5, num_decoder_layers=3)
    assert config.num_hidden_layers == 3  # the decoder, when there is one
    assert VaswaniForMaskedLM(tiny_config(num_encoder_layers=3, num_decoder_layers=1)).config.num_hidden_layers == 3

    config.num_hidden_layers = 2
    assert (config.num_encoder_layers, config.num_decoder_layers) == (2, 2)


def test_decoder_start_token_id_defaults_to_bos_token_id():
    assert tiny_config(bos_token_id=7).decoder_start_token_id == 7
    assert tiny_config().decoder_start_token_id == BOS
    assert tiny_config(bos_token_id=7, decoder_start_token_id=9).decoder_start_token_id == 9


# -- Presets ---------------------------------------------------------------------------------------------------------
def test_transformer_base_preset_is_table_3_base():
    config = VaswaniConfig.from_preset("transformer-base")
    assert config.stacks == "encoder-decoder" and config.is_encoder_decoder
    assert (config.d_model, config.num_heads, config.d_ff) == (512, 8, 2048)
    assert config.d_model // config.num_heads == 64  # d_k = d_v = 64
    assert (config.num_encoder_layers, config.num_decoder_layers) == (6, 6)
    assert config.dropout == 0.1
    assert not hasattr(config, "label_smoothing")  # a training setting (the recipe's 0.1), not architecture
    assert config.vocab_size == 37000
    assert config.position_embedding_type == "sinusoidal"
    assert config.activation_function == "relu"
    assert config.norm_first is False  # post-LN, as in the paper
    assert config.scale_embedding is True and config.tie_word_embeddings is True


def test_transformer_big_preset_is_table_3_big():
    config = VaswaniConfig.from_preset("transformer-big")
    assert config.stacks == "encoder-decoder"
    assert (config.d_model, config.num_heads, config.d_ff) == (1024, 16, 4096)
    assert (config.num_encoder_layers, config.num_decoder_layers) == (6, 6)
    assert config.dropout == 0.3
    assert not hasattr(config, "label_smoothing")


def test_bert_base_preset_is_encoder_only_with_learned_positions_and_segments():
    config = VaswaniConfig.from_preset("bert-base")
    assert config.stacks == "encoder-only"
    assert config.is_encoder_decoder is False and config.is_decoder is False
    assert (config.d_model, config.num_heads, config.d_ff, config.num_encoder_layers) == (768, 12, 3072, 12)
    assert config.position_embedding_type == "learned"
    assert config.max_position_embeddings == 512
    assert config.type_vocab_size == 2
    assert config.activation_function == "gelu"
    assert config.vocab_size == 30522
    assert config.norm_first is False


def test_gpt2_small_preset_is_decoder_only_pre_ln_with_gelu_new():
    config = VaswaniConfig.from_preset("gpt2-small")
    assert config.stacks == "decoder-only"
    assert config.is_decoder is True and config.is_encoder_decoder is False
    assert (config.d_model, config.num_heads, config.d_ff, config.num_decoder_layers) == (768, 12, 3072, 12)
    assert config.norm_first is True
    assert config.activation_function == "gelu_new"
    assert config.position_embedding_type == "learned"
    assert config.max_position_embeddings == 1024
    assert config.vocab_size == 50257
    assert config.bos_token_id == config.eos_token_id == 50256


def test_preset_overrides_apply_and_leave_the_preset_untouched():
    config = VaswaniConfig.from_preset("transformer-base", vocab_size=1000, dropout=0.2, num_decoder_layers=3)
    assert (config.vocab_size, config.dropout, config.num_decoder_layers) == (1000, 0.2, 3)
    assert (config.d_model, config.num_encoder_layers) == (512, 6)  # the rest is the preset's
    assert PRESETS["transformer-base"]["vocab_size"] == 37000
    assert VaswaniConfig.from_preset("transformer-base").vocab_size == 37000


def test_unknown_preset_is_a_value_error_naming_the_choices():
    with pytest.raises(ValueError, match="transformer-base") as error:
        VaswaniConfig.from_preset("transformer-huge")
    for name in ("transformer-big", "bert-base", "gpt2-small", "transformer-huge"):
        assert name in str(error.value)


def test_transformer_base_has_about_63_million_parameters():
    n = _count_parameters(_meta_model(VaswaniForConditionalGeneration, "transformer-base"))
    print(f"transformer-base: {n:,} parameters (paper Table 3: 65M)")
    assert 60_000_000 < n < 66_000_000


def test_transformer_big_has_about_213_million_parameters():
    n = _count_parameters(_meta_model(VaswaniForConditionalGeneration, "transformer-big"))
    print(f"transformer-big: {n:,} parameters (paper Table 3: 213M)")
    assert 205_000_000 < n < 220_000_000


def test_bert_and_gpt2_presets_have_their_namesakes_parameter_counts():
    bert = _count_parameters(_meta_model(VaswaniForMaskedLM, "bert-base"))
    gpt2 = _count_parameters(_meta_model(VaswaniForCausalLM, "gpt2-small"))
    print(f"bert-base MLM: {bert:,}; gpt2-small: {gpt2:,}")
    assert 108_000_000 < bert < 112_000_000  # BERT-base: 110M
    assert 123_000_000 < gpt2 < 126_000_000  # GPT-2 small: 124M


# -- Validation ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(d_model=32, num_heads=5), "num_heads"),
        (dict(d_model=30, num_heads=4), "d_model"),
        (dict(activation_function="tanh"), "activation_function"),
        (dict(position_embedding_type="xpos"), "position_embedding_type"),
        (dict(stacks="decoder-encoder"), "stacks"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(d_model=-8), "d_model"),
        (dict(num_heads=0), "num_heads"),
        (dict(d_ff=0), "d_ff"),
        (dict(max_position_embeddings=0), "max_position_embeddings"),
        (dict(num_encoder_layers=-1), "num_encoder_layers"),
        (dict(type_vocab_size=-1), "type_vocab_size"),
        (dict(pad_token_id=VOCAB), "pad_token_id"),
        (dict(pad_token_id=-1), "pad_token_id"),
        (dict(bos_token_id=VOCAB + 5), "bos_token_id"),
        (dict(bos_token_id=-1, decoder_start_token_id=1), "bos_token_id"),
        (dict(eos_token_id=VOCAB), "eos_token_id"),
        (dict(eos_token_id=[2, VOCAB]), "eos_token_id"),
        (dict(eos_token_id=-3), "eos_token_id"),
        (dict(decoder_start_token_id=VOCAB), "decoder_start_token_id"),
        (dict(decoder_start_token_id=-1), "decoder_start_token_id"),
        (dict(dropout=1.0), "dropout"),
        (dict(dropout=-0.1), "dropout"),
        (dict(attention_dropout=1.5), "attention_dropout"),
        (dict(sinusoidal_layout="blocked"), "sinusoidal_layout"),
        (dict(final_layer_norm="yes"), "final_layer_norm"),
        (dict(embedding_layer_norm=1), "embedding_layer_norm"),
        (dict(final_logits_bias=None), "final_logits_bias"),
        (dict(sparse_prediction="yes"), "sparse_prediction"),
        # Positions after the paper: RoPE's parameters belong to rotary positions only, and must make a rotation.
        (dict(position_embedding_type="alibi", rope_parameters=ROPE), "rope_parameters"),
        (dict(position_embedding_type="relative", rope_theta=10000.0), "rope_theta"),
        (dict(rope_scaling={"rope_type": "linear", "factor": 2.0}), "rope_scaling"),
        (dict(position_embedding_type="rotary", rope_parameters={**ROPE, "rope_type": "linear"}), "rope_parameters"),
        (dict(position_embedding_type="rotary", rope_parameters={**ROPE, "rope_type": "xpos"}), "rope_type"),
        (dict(position_embedding_type="rotary", rope_parameters={**ROPE, "partial_rotary_factor": 0.375}),
         "partial_rotary_factor"),  # 3 of a head's 8 features: an odd rotary dimension
        (dict(position_embedding_type="rotary", rope_parameters={**ROPE, "partial_rotary_factor": 0.1}),
         "partial_rotary_factor"),  # no feature pair at all
        (dict(position_embedding_type="relative", relative_attention_num_buckets=2), "relative_attention_num_buckets"),
        (dict(relative_attention_num_buckets=0), "relative_attention_num_buckets"),
        (dict(position_embedding_type="relative", relative_attention_num_buckets=8, relative_attention_max_distance=4),
         "relative_attention_max_distance"),
        (dict(rms_norm="yes"), "rms_norm"),
        (dict(projection_bias=None), "projection_bias"),
        (dict(parallel_residual=1), "parallel_residual"),
    ],
)
def test_invalid_config_is_a_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        tiny_config(**overrides)


@pytest.mark.parametrize(
    "head, overrides",
    [
        (VaswaniForCausalLM, dict(parallel_residual=True)),  # post-LN: no normalised input to share
        (VaswaniForMaskedLM, dict(parallel_residual=True)),
        (VaswaniForConditionalGeneration, dict(parallel_residual=True, norm_first=True)),  # cross-attention
    ],
    ids=["causal-post-ln", "encoder-post-ln", "encoder-decoder"],
)
def test_parallel_residual_needs_norm_first_and_one_stack(head, overrides):
    with pytest.raises(ValueError, match="`parallel_residual=True`"):
        head(tiny_config(**overrides))
    if head is not VaswaniForConditionalGeneration:  # pre-LN, the one-stack heads take it
        assert head(tiny_config(parallel_residual=True, norm_first=True)).config.parallel_residual


def test_divisibility_error_suggests_a_head_count_that_works():
    with pytest.raises(ValueError, match=r"num_heads=4") as error:
        tiny_config(d_model=32, num_heads=5)
    assert "divisible" in str(error.value)


def test_valid_edge_values_are_accepted():
    config = tiny_config(dropout=0.0, attention_dropout=0.999, pad_token_id=VOCAB - 1, eos_token_id=[2, VOCAB - 1])
    assert config.attention_dropout == 0.999
    assert config.pad_token_id == VOCAB - 1
    none_specials = tiny_config(stacks="encoder-only", pad_token_id=None, bos_token_id=None, eos_token_id=None)
    assert none_specials.decoder_start_token_id is None


# -- A config a head cannot use --------------------------------------------------------------------------------------
def test_no_decoder_layers_serves_encoder_heads_only():
    config = tiny_config(num_decoder_layers=0, stacks="encoder-only")
    for head in (VaswaniForCausalLM, VaswaniForConditionalGeneration):
        with pytest.raises(ValueError, match="num_decoder_layers"):
            head(config)
    model = VaswaniForMaskedLM(config)
    assert model.config.num_decoder_layers == 0 and model.model.decoder is None
    assert model(input_ids=torch.tensor([[5, 6, 7]])).logits.shape == (1, 3, VOCAB)
    assert config.stacks == "encoder-only"


def test_no_encoder_layers_serves_the_causal_head_only():
    config = tiny_config(num_encoder_layers=0, stacks="decoder-only")
    for head in (VaswaniForMaskedLM, VaswaniForSequenceClassification, VaswaniForConditionalGeneration):
        with pytest.raises(ValueError, match="num_encoder_layers"):
            head(config)
    model = VaswaniForCausalLM(config)
    assert model.model.encoder is None
    assert model(input_ids=torch.tensor([[5, 6, 7]])).logits.shape == (1, 3, VOCAB)


def test_config_without_decoder_layers_serves_encoder_heads_without_naming_stacks():
    # "Heads choose the stacks they need themselves, so one config serves every head": a config with no decoder
    # layers must build an encoder head even though `stacks` was left at its default.
    config = tiny_config(num_decoder_layers=0)
    with pytest.raises(ValueError, match="num_decoder_layers"):
        VaswaniForCausalLM(config)
    model = VaswaniForMaskedLM(config)
    assert model.config.stacks == "encoder-only"
    assert model(input_ids=torch.tensor([[5, 6, 7]])).logits.shape == (1, 3, VOCAB)


# -- Heads choose their stacks on a copy -----------------------------------------------------------------------------
def test_heads_choose_their_stacks_without_touching_the_callers_config():
    config = tiny_config()
    expected = {
        VaswaniForCausalLM: ("decoder-only", False, True),
        VaswaniForMaskedLM: ("encoder-only", False, False),
        VaswaniForSequenceClassification: ("encoder-only", False, False),
        VaswaniForTokenClassification: ("encoder-only", False, False),
        VaswaniForQuestionAnswering: ("encoder-only", False, False),
        VaswaniForMultipleChoice: ("encoder-only", False, False),
        VaswaniForConditionalGeneration: ("encoder-decoder", True, False),
    }
    models = {head: head(config) for head in expected}
    for head, (stacks, is_encoder_decoder, is_decoder) in expected.items():
        model = models[head]
        assert model.config.stacks == stacks, head.__name__
        assert model.config.is_encoder_decoder is is_encoder_decoder, head.__name__
        assert model.config.is_decoder is is_decoder, head.__name__
        assert (model.model.encoder is not None) == (stacks != "decoder-only"), head.__name__
        assert (model.model.decoder is not None) == (stacks != "encoder-only"), head.__name__
    assert config.stacks == "encoder-decoder"
    assert config.is_encoder_decoder is True and config.is_decoder is False


def test_bare_model_follows_the_stacks_the_config_names():
    assert VaswaniModel(tiny_config(stacks="decoder-only")).encoder is None
    assert VaswaniModel(tiny_config(stacks="encoder-only")).decoder is None
    both = VaswaniModel(tiny_config())
    assert both.encoder is not None and both.decoder is not None


# -- Save, load, Auto classes ----------------------------------------------------------------------------------------
_IGNORED_KEYS = {"_name_or_path", "name_or_path", "transformers_version"}


def _fields(config) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in _IGNORED_KEYS}


def _unusual_config() -> VaswaniConfig:
    """Every field away from its default, so a field that is dropped or reset on load shows."""
    return VaswaniConfig(
        vocab_size=123, d_model=48, num_heads=6, d_ff=80, num_encoder_layers=3, num_decoder_layers=1,
        dropout=0.2, attention_dropout=0.05, activation_function="gelu_new", max_position_embeddings=40,
        position_embedding_type="learned", norm_first=True, layer_norm_eps=1e-6, scale_embedding=False,
        tie_word_embeddings=False, type_vocab_size=3, init_std=0.05,
        pad_token_id=5, bos_token_id=6, eos_token_id=[7, 8], decoder_start_token_id=9, use_cache=False,
        stacks="decoder-only", num_labels=4,
    )


@pytest.mark.parametrize("make", [_unusual_config, tiny_config, lambda: VaswaniConfig.from_preset("bert-base")])
def test_save_and_from_pretrained_round_trip_every_field(tmp_path, make):
    config = make()
    config.save_pretrained(tmp_path)
    loaded = VaswaniConfig.from_pretrained(tmp_path)
    auto = AutoConfig.from_pretrained(tmp_path)
    assert type(auto) is VaswaniConfig
    assert _fields(loaded) == _fields(config)
    assert _fields(auto) == _fields(config)


def test_round_trip_keeps_the_unusual_values(tmp_path):
    config = _unusual_config()
    assert config.is_decoder is True and config.is_encoder_decoder is False
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert loaded.stacks == "decoder-only"
    assert loaded.is_decoder is True and loaded.is_encoder_decoder is False
    assert loaded.eos_token_id == [7, 8]
    assert loaded.decoder_start_token_id == 9
    assert (loaded.d_model, loaded.num_heads, loaded.hidden_size) == (48, 6, 48)
    assert (loaded.num_encoder_layers, loaded.num_decoder_layers) == (3, 1)
    assert loaded.position_embedding_type == "learned" and loaded.norm_first is True
    assert loaded.num_labels == 4


def test_auto_config_resolves_vaswani():
    assert CONFIG_MAPPING["vaswani"] is VaswaniConfig
    config = AutoConfig.for_model("vaswani", d_model=64, num_heads=4)
    assert type(config) is VaswaniConfig
    assert (config.d_model, config.num_heads) == (64, 4)
    assert VaswaniConfig.model_type == "vaswani"


def test_the_paper_recipe_keeps_label_smoothing_out_of_the_config():
    from vaswani.training.recipe import LABEL_SMOOTHING

    assert LABEL_SMOOTHING == 0.1  # epsilon_ls of paper 5.4, applied by training, not stored with the model
    assert all("label_smoothing" not in preset for preset in PRESETS.values())


def test_an_old_folder_whose_config_carries_label_smoothing_still_loads(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    saved["label_smoothing"] = 0.1  # as folders saved before it became a training setting have it
    path.write_text(json.dumps(saved))
    loaded = VaswaniConfig.from_pretrained(tmp_path)
    assert loaded.d_model == tiny_config().d_model
    assert not hasattr(loaded, "label_smoothing")
    loaded.save_pretrained(tmp_path / "again")
    assert "label_smoothing" not in json.loads((tmp_path / "again" / "config.json").read_text())


def test_the_vaswani_small_preset_is_the_command_lines_default_shape():
    config = VaswaniConfig.from_preset("vaswani-small")
    assert (config.d_model, config.num_heads, config.d_ff, config.num_encoder_layers) == (256, 4, 1024, 4)


# -- Nothing silent (issue 15) -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, names",
    [
        (dict(d_model=32, hidden_size=64, num_heads=4), "`hidden_size=64` and `d_model=32`"),
        (dict(num_heads=4, num_attention_heads=8, d_model=32), "`num_attention_heads=8` and `num_heads=4`"),
        (dict(d_ff=64, intermediate_size=128), "`intermediate_size=128` and `d_ff=64`"),
    ],
)
def test_two_names_for_one_setting_must_agree(kwargs, names):
    with pytest.raises(ValueError, match=names):
        VaswaniConfig(**kwargs)


def test_agreeing_names_are_fine():
    assert VaswaniConfig(d_model=64, hidden_size=64, num_heads=4).d_model == 64


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(layer_norm_eps=float("nan")), "layer_norm_eps"),
        (dict(layer_norm_eps=float("inf")), "layer_norm_eps"),
        (dict(init_std="0.02"), "init_std"),
        (dict(pad_token_id=1.0), "pad_token_id"),
        (dict(eos_token_id=True), "eos_token_id"),
        (dict(tie_word_embeddings="yes"), "tie_word_embeddings"),
        (dict(use_cache="no"), "use_cache"),
        (dict(dropout="0.1"), "dropout"),
        (dict(attention_dropout=float("nan")), "attention_dropout"),
    ],
)
def test_invalid_values_are_named(kwargs, field):
    with pytest.raises(ValueError, match=f"`{field}`"):
        tiny_config(**kwargs)


@pytest.mark.parametrize("missing", ["norm_first", "activation_function", "num_decoder_layers", "position_embedding_type",
                                     "d_model"])
def test_a_config_json_missing_an_architecture_field_is_refused(tmp_path, missing):
    tiny_config(norm_first=True, activation_function="gelu").save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    del saved[missing]
    path.write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=f"lacks {missing}, which shape the computation"):
        AutoConfig.from_pretrained(tmp_path)


def test_a_config_json_with_huggingface_names_is_complete(tmp_path):
    tiny_config().save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    saved = json.loads(path.read_text())
    saved["hidden_size"] = saved.pop("d_model")
    saved["num_hidden_layers"] = saved.pop("num_encoder_layers")
    saved.pop("num_decoder_layers")
    path.write_text(json.dumps(saved))
    assert AutoConfig.from_pretrained(tmp_path).d_model == tiny_config().d_model
