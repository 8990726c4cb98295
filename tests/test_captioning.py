"""
Captioning (issue 19): an image encoder with a text decoder that cross-attends to its patches
(`VaswaniForConditionalGeneration` whose config has `image_size`), trained and decoded with `generate()` (greedy,
beam, sampling, cache), through the Auto classes, the `vaswani-image-to-text` pipeline and remote code; and
`VaswaniForCausalLM` with `add_cross_attention` inside transformers' `VisionEncoderDecoderModel`, with a ViT encoder
and with a Vaswani one.
"""

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForImageTextToText,
    AutoModelForSeq2SeqLM,
    ViTConfig,
    ViTModel,
    VisionEncoderDecoderModel,
)

from vaswani import VaswaniConfig, VaswaniForCausalLM, VaswaniForConditionalGeneration, VaswaniModel, image_processor_for
from vaswani.modeling.modeling_vaswani_heads import shift_tokens_right

WORDS = "zero one two three four five six seven eight nine".split()
PAD, BOS, EOS, VOCAB = 0, 1, 2, 40


def captioner_config(**overrides) -> VaswaniConfig:
    settings = dict(vocab_size=VOCAB, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=2, num_decoder_layers=2,
                    image_size=16, patch_size=4, dropout=0.0, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
                    max_position_embeddings=32)
    settings.update(overrides)
    return VaswaniConfig(**settings)


def images(count: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def labels() -> torch.Tensor:
    return torch.tensor([[5, 6, 7, EOS], [8, 9, EOS, -100]])


@pytest.fixture(scope="module")
def captioner():
    torch.manual_seed(0)
    return VaswaniForConditionalGeneration(captioner_config()).eval()


def greedy_by_hand(model, pixel_values, steps: int) -> torch.Tensor:
    """Greedy decoding without generate() or a cache: one full forward per new token."""
    ids = torch.full((pixel_values.shape[0], 1), BOS)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(pixel_values=pixel_values, decoder_input_ids=ids, use_cache=False).logits[:, -1]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=-1)
    return ids


# -- The captioner -------------------------------------------------------------------------------------------------------
def test_the_captioner_reads_pixels_and_ties_its_projection_to_the_target_embedding(captioner):
    decoder_embedding = captioner.model.decoder.embeddings.word_embeddings
    assert captioner.main_input_name == "pixel_values"
    assert captioner.get_input_embeddings() is decoder_embedding
    assert captioner.lm_head.weight is decoder_embedding.weight
    assert not hasattr(captioner.model.encoder.embeddings, "word_embeddings")


def test_the_loss_is_cross_entropy_of_the_shifted_labels(captioner):
    target = labels()
    output = captioner(pixel_values=images(), labels=target)
    decoder_input_ids = shift_tokens_right(target, PAD, BOS)
    assert decoder_input_ids[:, 0].eq(BOS).all()
    again = captioner(pixel_values=images(), decoder_input_ids=decoder_input_ids).logits
    torch.testing.assert_close(output.logits, again)
    expected = F.cross_entropy(again.reshape(-1, VOCAB), target.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(output.loss, expected)


def test_the_words_attend_to_the_image():
    torch.manual_seed(0)
    model = VaswaniForConditionalGeneration(captioner_config())
    pixel_values = images()
    pixel_values[1] = pixel_values[0]
    pixel_values = torch.cat([pixel_values, images(1, seed=1)])
    target = torch.tensor([[5, 6, EOS]] * 3)
    output = model(pixel_values=pixel_values, labels=target)
    torch.testing.assert_close(output.logits[0], output.logits[1])  # the same image, the same words
    assert (output.logits[0] - output.logits[2]).abs().max() > 1e-3  # another image, other logits
    output.loss.backward()
    assert model.model.encoder.embeddings.projection.weight.grad.abs().sum() > 0  # the loss reaches the patches


def test_greedy_generation_is_greedy_decoding_and_the_cache_changes_nothing(captioner):
    pixel_values = images(3)
    expected = greedy_by_hand(captioner, pixel_values, 6)
    for use_cache in (True, False):
        got = captioner.generate(pixel_values=pixel_values, max_new_tokens=6, min_new_tokens=6, use_cache=use_cache)
        assert torch.equal(got, expected), use_cache


def test_beam_search_and_sampling(captioner):
    pixel_values = images(2)
    greedy = captioner.generate(pixel_values=pixel_values, max_new_tokens=5, min_new_tokens=5)
    one_beam = captioner.generate(pixel_values=pixel_values, max_new_tokens=5, min_new_tokens=5, num_beams=1)
    assert torch.equal(one_beam, greedy)
    beams = {use_cache: captioner.generate(pixel_values=pixel_values, max_new_tokens=5, num_beams=3,
                                           num_return_sequences=2, use_cache=use_cache) for use_cache in (True, False)}
    assert beams[True].shape[0] == 4 and torch.equal(beams[True], beams[False])
    top1 = captioner.generate(pixel_values=pixel_values, max_new_tokens=5, min_new_tokens=5, do_sample=True, top_k=1)
    assert torch.equal(top1, greedy)  # sampling from the single likeliest token is greedy
    torch.manual_seed(3)
    sampled = captioner.generate(pixel_values=pixel_values, max_new_tokens=5, do_sample=True, top_k=0, temperature=5.0)
    torch.manual_seed(3)
    assert torch.equal(sampled, captioner.generate(pixel_values=pixel_values, max_new_tokens=5, do_sample=True,
                                                   top_k=0, temperature=5.0))


def test_eager_and_sdpa_agree():
    torch.manual_seed(0)
    eager = VaswaniForConditionalGeneration(captioner_config()).eval()
    sdpa = VaswaniForConditionalGeneration(captioner_config()).eval()
    sdpa.load_state_dict(eager.state_dict())
    eager.set_attn_implementation("eager")
    sdpa.set_attn_implementation("sdpa")
    with torch.no_grad():
        torch.testing.assert_close(sdpa(pixel_values=images(), labels=labels()).logits,
                                   eager(pixel_values=images(), labels=labels()).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "pixel_values,message",
    [
        (torch.randint(0, 255, (1, 3, 16, 16), dtype=torch.uint8), "float tensor"),
        (torch.randn(1, 1, 16, 16), "1 channels, the model 3"),
        (torch.randn(1, 3, 20, 20), "interpolate_pos_encoding=True"),
    ],
    ids=["bytes", "grey", "other-size"],
)
def test_bad_images_are_refused_by_name_in_training_and_generation(captioner, pixel_values, message):
    with pytest.raises(ValueError, match=message):
        captioner(pixel_values=pixel_values, labels=labels()[:1])
    with pytest.raises(ValueError, match=message):
        captioner.generate(pixel_values=pixel_values, max_new_tokens=2)


def test_labels_of_another_batch_are_refused(captioner):
    with pytest.raises(ValueError, match="labels"):
        captioner(pixel_values=images(3), labels=labels())


# -- Folders: the Auto classes, the pipeline, remote code ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    from vaswani import train_tokenizer

    lines = [" ".join(WORDS[(i * 7 + j) % 10] for j in range(3)) for i in range(200)]
    return train_tokenizer(lines, kind="wordpiece", vocab_size=VOCAB, model_max_length=32)


@pytest.fixture(scope="module")
def folder(captioner, tokenizer, tmp_path_factory):
    assert len(tokenizer) <= VOCAB and tokenizer.pad_token_id == PAD
    path = tmp_path_factory.mktemp("captioner") / "strips"
    captioner.save_pretrained(path)
    tokenizer.save_pretrained(path)
    image_processor_for(captioner.config).save_pretrained(path)
    return path


def pil_images(count: int = 2):
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    return [Image.fromarray(torch.randint(0, 256, (16, 48, 3), generator=generator, dtype=torch.uint8).numpy())
            for _ in range(count)]


@pytest.mark.parametrize("auto_class", [AutoModelForImageTextToText, AutoModelForSeq2SeqLM], ids=lambda c: c.__name__)
def test_the_auto_classes_load_the_folder_exactly(folder, captioner, auto_class):
    loaded = auto_class.from_pretrained(folder).eval()
    assert type(loaded) is VaswaniForConditionalGeneration and loaded.main_input_name == "pixel_values"
    assert loaded.lm_head.weight is loaded.model.decoder.embeddings.word_embeddings.weight
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values=images(), labels=labels()).logits,
                           captioner(pixel_values=images(), labels=labels()).logits)
    assert torch.equal(loaded.generate(pixel_values=images(), max_new_tokens=4, num_beams=2),
                       captioner.generate(pixel_values=images(), max_new_tokens=4, num_beams=2))


def test_the_image_to_text_pipeline_from_a_folder_and_an_object(folder, captioner, tokenizer):
    from transformers import AutoImageProcessor, pipeline

    processor = AutoImageProcessor.from_pretrained(folder)
    from_folder = pipeline("vaswani-image-to-text", model=str(folder))
    from_object = pipeline("vaswani-image-to-text", model=captioner, tokenizer=tokenizer, image_processor=processor)
    strips = pil_images(2)
    ids = captioner.generate(**processor(strips, return_tensors="pt"), max_new_tokens=5, min_new_tokens=5)
    expected = [{"generated_text": text} for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    for caption in (from_folder, from_object):
        assert caption(strips, max_new_tokens=5, min_new_tokens=5) == expected
        assert caption(strips[0], max_new_tokens=5, min_new_tokens=5) == [expected[0]]


def test_the_pipeline_refuses_a_text_model(folder, tmp_path, tokenizer):
    from transformers import pipeline

    text_model = VaswaniForConditionalGeneration(captioner_config(image_size=None))
    captioner = pipeline("vaswani-image-to-text", model=text_model, tokenizer=tokenizer,
                         image_processor=image_processor_for(captioner_config()))
    with pytest.raises(ValueError, match="reads tokens"):
        captioner(pil_images(1)[0])


def test_the_folder_captions_with_remote_code_where_the_package_is_absent(folder, captioner, tmp_path):
    from test_hub import run_without_vaswani
    from transformers import AutoImageProcessor

    batch = AutoImageProcessor.from_pretrained(folder)(pil_images(), return_tensors="pt")
    with torch.no_grad():
        logits = captioner(**batch, labels=labels()).logits
    ids = captioner.generate(**batch, max_new_tokens=4, num_beams=2)
    torch.save({"batch": dict(batch), "labels": labels(), "logits": logits, "ids": ids}, tmp_path / "case.pt")
    result = run_without_vaswani(
        f"""
        folder, case = {str(folder)!r}, torch.load({str(tmp_path / "case.pt")!r})
        model = transformers.AutoModelForImageTextToText.from_pretrained(folder, trust_remote_code=True).eval()
        caption = transformers.pipeline("vaswani-image-to-text", model=folder, trust_remote_code=True)
        with torch.no_grad():
            logits = model(**case["batch"], labels=case["labels"]).logits
        ids = model.generate(**case["batch"], max_new_tokens=4, num_beams=2)
        image = case["batch"]["pixel_values"][0].permute(1, 2, 0).add(1).mul(127.5).round().byte().numpy()
        print(json.dumps({{"module": type(model).__module__, "logits": torch.equal(logits, case["logits"]),
                          "ids": torch.equal(ids, case["ids"]), "pipeline": type(caption).__name__,
                          "caption": caption(image, max_new_tokens=3)[0]["generated_text"]}}))
        """,
        tmp_path,
    )
    assert result["module"].startswith("transformers_modules.") and result["logits"] is True and result["ids"] is True
    assert result["pipeline"] == "VaswaniImageToTextPipeline" and isinstance(result["caption"], str)


def test_the_card_speaks_of_captions(folder):
    card = (folder / "README.md").read_text()
    assert "pipeline_tag: image-to-text" in card and "AutoModelForImageTextToText.from_pretrained" in card
    assert "image captioning" in card and "AutoImageProcessor.from_pretrained" in card
    assert "The decoder's inputs are token embeddings." in card


# -- A causal LM that cross-attends: VisionEncoderDecoderModel ----------------------------------------------------------
def decoder_config(**overrides) -> VaswaniConfig:
    settings = dict(stacks="decoder-only", image_size=None, num_encoder_layers=0, add_cross_attention=True)
    return captioner_config(**{**settings, **overrides})


def test_encoder_states_need_cross_attention():
    plain = VaswaniForCausalLM(decoder_config(add_cross_attention=False)).eval()
    with pytest.raises(ValueError, match="add_cross_attention=True"):
        plain(input_ids=torch.tensor([[1, 5]]), encoder_hidden_states=torch.randn(1, 4, 32))


def test_cross_attention_refuses_the_parallel_layout():
    with pytest.raises(ValueError, match="add_cross_attention=False"):
        VaswaniForCausalLM(decoder_config(norm_first=True, parallel_residual=True))


def test_a_causal_lm_with_cross_attention_is_the_captioners_decoder(captioner):
    """The decoder of the captioner, as a causal LM fed the encoder's states, computes the captioner's logits."""
    lm = VaswaniForCausalLM(decoder_config()).eval()
    state = {k: v for k, v in captioner.state_dict().items() if k.startswith("model.decoder.") or k == "lm_head.weight"}
    assert set(state) == set(lm.state_dict())
    lm.load_state_dict(state)
    lm.set_attn_implementation("eager")  # attention weights to return
    target = shift_tokens_right(labels(), PAD, BOS)
    with torch.no_grad():
        states = captioner.get_encoder()(pixel_values=images()).last_hidden_state
        expected = captioner(pixel_values=images(), decoder_input_ids=target).logits
        got = lm(input_ids=target, encoder_hidden_states=states, output_attentions=True)
        torch.testing.assert_close(got.logits, expected)
        assert len(got.cross_attentions) == 2 and got.cross_attentions[0].shape == (2, 4, 4, 17)
        # Step by step with the cache: the same last logits.
        first = lm(input_ids=target[:, :2], encoder_hidden_states=states, use_cache=True)
        rest = lm(input_ids=target[:, 2:], encoder_hidden_states=states, cache=first.cache, use_cache=True)
        torch.testing.assert_close(rest.logits, expected[:, 2:], atol=1e-5, rtol=1e-5)


def vision_encoder_decoder(encoder) -> VisionEncoderDecoderModel:
    torch.manual_seed(1)
    model = VisionEncoderDecoderModel(encoder=encoder, decoder=VaswaniForCausalLM(decoder_config()))
    # transformers 5 leaves these to the user: the loss shifts the labels with them, generate() starts with them.
    model.config.pad_token_id, model.config.decoder_start_token_id = PAD, BOS
    model.generation_config.update(pad_token_id=PAD, decoder_start_token_id=BOS, eos_token_id=EOS)
    return model


def vit_encoder(hidden_size: int = 48) -> ViTModel:
    torch.manual_seed(0)
    return ViTModel(ViTConfig(hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=4,
                              intermediate_size=64, image_size=16, patch_size=4), add_pooling_layer=False)


def vaswani_encoder() -> VaswaniModel:
    torch.manual_seed(0)
    return VaswaniModel(captioner_config(stacks="encoder-only", num_decoder_layers=0))


@pytest.mark.parametrize("encoder", [vit_encoder, vaswani_encoder], ids=["vit-encoder", "vaswani-encoder"])
def test_vision_encoder_decoder_trains_generates_and_reloads(encoder, tmp_path):
    model = vision_encoder_decoder(encoder())
    output = model(pixel_values=images(), labels=labels())
    expected = F.cross_entropy(output.logits.reshape(-1, VOCAB), labels().reshape(-1), ignore_index=-100)
    torch.testing.assert_close(output.loss, expected)
    output.loss.backward()
    assert all(p.grad is not None for p in model.parameters())  # the loss reaches every weight, the encoder's too
    assert sum(p.grad.abs().sum() for p in model.encoder.parameters()) > 0
    model.eval()
    pixel_values = images(3)
    greedy = model.generate(pixel_values=pixel_values, max_new_tokens=5, min_new_tokens=5)
    assert torch.equal(greedy, model.generate(pixel_values=pixel_values, max_new_tokens=5, min_new_tokens=5,
                                              use_cache=False))
    beams = model.generate(pixel_values=pixel_values, max_new_tokens=5, num_beams=3)
    assert torch.equal(beams, model.generate(pixel_values=pixel_values, max_new_tokens=5, num_beams=3, use_cache=False))
    torch.manual_seed(0)
    sampled = model.generate(pixel_values=pixel_values, max_new_tokens=5, do_sample=True)
    assert sampled.shape[0] == 3 and sampled[:, 0].eq(BOS).all()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert type(loaded) is VisionEncoderDecoderModel and type(loaded.decoder) is VaswaniForCausalLM
    with torch.no_grad():
        assert torch.equal(loaded(pixel_values=images(), labels=labels()).logits,
                           model(pixel_values=images(), labels=labels()).logits)
    assert torch.equal(loaded.generate(pixel_values=pixel_values, max_new_tokens=5, min_new_tokens=5), greedy)


def test_vision_encoder_decoder_of_vaswani_halves_is_the_captioner(captioner):
    """A Vaswani image encoder and a cross-attending Vaswani causal LM, in transformers' wrapper, with the captioner's
    weights, compute its logits and its captions."""
    model = vision_encoder_decoder(vaswani_encoder()).eval()
    state = {}
    for name, value in captioner.state_dict().items():
        if name.startswith("model.encoder."):
            state["encoder.encoder." + name[len("model.encoder."):]] = value
        else:  # model.decoder.* and lm_head.weight
            state["decoder." + name] = value
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(model(pixel_values=images(), labels=labels()).logits,
                                   captioner(pixel_values=images(), labels=labels()).logits)
    for settings in ({}, {"num_beams": 3}):
        assert torch.equal(model.generate(pixel_values=images(3), max_new_tokens=6, **settings),
                           captioner.generate(pixel_values=images(3), max_new_tokens=6, **settings)), settings


# -- The converter: VisionEncoderDecoderModel(ViT, GPT-2 with cross-attention) -----------------------------------------
def vit_gpt2(**vit_settings) -> VisionEncoderDecoderModel:
    """A random ViT + GPT-2 captioner in transformers' wrapper, with ViT's and GPT-2's own defaults where they differ."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(**{**dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=64, image_size=16, patch_size=4), **vit_settings}))
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=32,
                                      add_cross_attention=True, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD))
    model = VisionEncoderDecoderModel(encoder=vit, decoder=gpt2)
    model.config.pad_token_id, model.config.decoder_start_token_id = PAD, BOS
    model.generation_config.update(pad_token_id=PAD, decoder_start_token_id=BOS, eos_token_id=EOS)
    return model.eval()


def test_a_vit_gpt2_captioner_converts_with_the_same_numbers_and_captions(tmp_path):
    from vaswani.convert import convert

    source = vit_gpt2()
    assert (source.config.encoder.layer_norm_eps, source.config.encoder.hidden_act) == (1e-12, "gelu")
    assert (source.config.decoder.layer_norm_epsilon, source.config.decoder.activation_function) == (1e-5, "gelu_new")
    converted = convert(source)
    assert type(converted) is VaswaniForConditionalGeneration and converted.config.image_size == 16
    assert converted.config.encoder_overrides == {"activation_function": "gelu", "layer_norm_eps": 1e-12}
    assert converted.lm_head.weight is converted.model.decoder.embeddings.word_embeddings.weight
    pixel_values = images(3)
    target = torch.tensor([[5, 6, 7, EOS], [8, 9, EOS, -100], [4, 4, 4, 4]])
    with torch.no_grad():
        expected, got = source(pixel_values=pixel_values, labels=target), converted(pixel_values=pixel_values, labels=target)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=1e-5)
    for settings in ({}, {"num_beams": 3}, {"num_beams": 2, "num_return_sequences": 2}):
        theirs = source.generate(pixel_values=pixel_values, max_new_tokens=8, **settings)
        ours = converted.generate(pixel_values=pixel_values, max_new_tokens=8, **settings)
        assert torch.equal(ours, theirs), settings
    converted.save_pretrained(tmp_path)  # the encoder's own settings survive the folder
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    assert reloaded.config.encoder_overrides == converted.config.encoder_overrides
    with torch.no_grad():
        assert torch.equal(reloaded(pixel_values=pixel_values, labels=target).logits, got.logits)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"d_model": 64}, r"may set \('activation_function', 'layer_norm_eps'\) only"),
        ({"layer_norm_eps": 0.0}, "`encoder_overrides`: `layer_norm_eps` must be a positive"),
        ({"activation_function": "tanh"}, "`encoder_overrides`: `activation_function` must be one of"),
        ({}, "non-empty dict"),
    ],
    ids=["other-field", "eps", "activation", "empty"],
)
def test_bad_encoder_overrides_are_refused_by_name(overrides, message):
    with pytest.raises(ValueError, match=message):
        captioner_config(encoder_overrides=overrides)


def test_a_vit_gpt2_of_other_widths_is_refused_by_name():
    from vaswani.convert import ConversionError, convert

    with pytest.raises(ConversionError, match="differ in d_model"):
        convert(vit_gpt2(hidden_size=48))


def test_vaswani_convert_writes_a_captioner_folder_with_its_image_processor_and_tokenizer(tmp_path):
    from transformers import ViTImageProcessorPil, pipeline

    from test_convert import cli

    source = vit_gpt2()
    source.save_pretrained(tmp_path / "vit-gpt2")
    ViTImageProcessorPil(size={"height": 16, "width": 16}, image_mean=[0.4] * 3).save_pretrained(tmp_path / "vit-gpt2")
    from vaswani import train_tokenizer

    train_tokenizer([" ".join(WORDS)] * 20, kind="wordpiece", vocab_size=VOCAB).save_pretrained(tmp_path / "vit-gpt2")
    run = cli("convert", "--source", tmp_path / "vit-gpt2", "--output", tmp_path / "captioner")
    assert run.code == 0, run.err[-3000:]
    assert "VaswaniForConditionalGeneration" in run.out and "ViTImageProcessor" in run.out and "made" not in run.out
    caption = pipeline("vaswani-image-to-text", model=str(tmp_path / "captioner"))
    assert list(caption.image_processor.image_mean) == [0.4] * 3  # the source's own processor, not a new one
    image = pil_images(1)[0]
    pixel_values = caption.image_processor(image, return_tensors="pt")["pixel_values"]
    ids = source.generate(pixel_values=pixel_values, max_new_tokens=4, min_new_tokens=4)
    assert caption(image, max_new_tokens=4, min_new_tokens=4)[0]["generated_text"] == caption.tokenizer.decode(
        ids[0], skip_special_tokens=True)
