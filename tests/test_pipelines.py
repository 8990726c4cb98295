"""
Pipeline tests: the standard transformers pipelines (fill-mask, text-classification, token-classification,
feature-extraction, text-generation) on Vaswani heads, and the family's own `vaswani-text2text` and
`vaswani-question-answering`, from objects, from saved folders, and from a folder in a fresh process where the
`vaswani` package cannot be imported (remote code only).

Models are tiny (width 32, 2 layers) and built with `config_from_tokenizer` on tokenizers trained here. Every number a
pipeline returns is checked against the model called directly. The question-answering model is trained for a few
seconds to point at a marker word, so that the long-context (several windows) checks mean something.
"""

import json
import logging
import os
import random
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
import transformers
from transformers import AutoModel, pipeline

from helpers import shakespeare_lines
from vaswani import (
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMaskedLM,
    VaswaniForQuestionAnswering,
    VaswaniForSequenceClassification,
    VaswaniForTokenClassification,
    VaswaniModel,
    config_from_tokenizer,
    train_tokenizer,
)
from vaswani.pipelines import VaswaniQuestionAnsweringPipeline, VaswaniText2TextPipeline


MAX_LENGTH = 64
TINY = dict(d_model=32, num_heads=4, d_ff=64, num_hidden_layers=2, dropout=0.0)
# Generative models: untied output projection and larger weights, so that outputs depend on the input and a
# comparison between two ways of generating means something (see test_generation.py).
GENERATIVE = dict(tie_word_embeddings=False, init_std=0.1)

MASK_TEXT = "the king [MASK] in the garden ."
SOURCES = ["First Citizen: Before we proceed any further, hear me speak.", "You are all resolved rather to die."]
PROMPT = "First Citizen:"

MARKER = "zebra"
QUESTION = "where is the zebra ?"  # the marker is in the question too: the answer must still come from the context


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return shakespeare_lines()


@pytest.fixture(scope="module")
def wordpiece(corpus):
    return train_tokenizer(corpus, kind="wordpiece", vocab_size=500, model_max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def byte_bpe(corpus):
    return train_tokenizer(corpus, kind="byte-bpe", vocab_size=500, model_max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def shared_bpe(corpus):
    return train_tokenizer(corpus, kind="shared-bpe", vocab_size=500, model_max_length=MAX_LENGTH)


def tiny(tokenizer, **overrides):
    return config_from_tokenizer(tokenizer, **{**TINY, **overrides})


def build(head, config, seed: int = 0):
    torch.manual_seed(seed)
    return head(config).eval()


def save(model, tokenizer, folder: Path) -> str:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def modules_cache(tmp_path, monkeypatch):
    """
    HF_MODULES_CACHE (and offline mode) for the loads of one test. transformers reads the variable when it is
    imported, so in this process it only reaches what the test starts; the folder loads here need no remote code
    anyway (the tests check that the package's own classes serve them).
    """
    cache = tmp_path / "hf_modules"
    monkeypatch.setenv("HF_MODULES_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@contextmanager
def transformers_log():
    """Every record the transformers loggers emit at warning level or above, while the block runs."""
    records = []
    handler = logging.Handler(level=logging.WARNING)
    handler.emit = records.append
    root = logging.getLogger("transformers")
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_warning()
    root.addHandler(handler)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        transformers.logging.set_verbosity(verbosity)


def make_pipeline(capfd, *args, **kwargs):
    """`pipeline(*args, **kwargs)`, asserting that creating it says nothing about the model being 'not supported'."""
    capfd.readouterr()
    with transformers_log() as records:
        result = pipeline(*args, **kwargs)
    messages = " ".join(record.getMessage() for record in records)
    captured = capfd.readouterr()
    for text in (messages, captured.out, captured.err):
        assert "not supported" not in text, text[:500]
    return result


def test_the_not_supported_check_catches_a_wrong_head(wordpiece, capfd):
    # The check used everywhere below is honest: a masked LM in a text-classification pipeline is reported.
    model = build(VaswaniForMaskedLM, tiny(wordpiece))
    with pytest.raises(AssertionError, match="not supported"):
        make_pipeline(capfd, "text-classification", model=model, tokenizer=wordpiece)


# -- fill-mask -------------------------------------------------------------------------------------------------------
@torch.no_grad()
def manual_fill_mask(model, tokenizer, text: str, top_k: int = 5) -> list[dict]:
    encoded = tokenizer(text, return_tensors="pt")
    logits = model(**encoded).logits[0]
    (position,) = (encoded["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0].tolist()
    probabilities = logits[position].softmax(-1)
    values, indices = probabilities.topk(top_k)
    return [(int(i), float(v)) for v, i in zip(values, indices)]


def test_fill_mask_from_object_and_folder(wordpiece, tmp_path, modules_cache, capfd):
    model = build(VaswaniForMaskedLM, tiny(wordpiece, init_std=0.1))
    from_object = make_pipeline(capfd, "fill-mask", model=model, tokenizer=wordpiece)
    result = from_object(MASK_TEXT)
    assert isinstance(result, list) and len(result) == 5
    for entry in result:
        assert set(entry) == {"token", "token_str", "score", "sequence"}
        assert isinstance(entry["token_str"], str) and isinstance(entry["sequence"], str)
        assert entry["token_str"] == wordpiece.decode([entry["token"]])
    expected = manual_fill_mask(model, wordpiece, MASK_TEXT)
    assert [entry["token"] for entry in result] == [token for token, _ in expected]
    for entry, (_, score) in zip(result, expected):
        assert entry["score"] == pytest.approx(score, abs=1e-6)
    assert [entry["score"] for entry in result] == sorted((entry["score"] for entry in result), reverse=True)

    folder = save(model, wordpiece, tmp_path / "mlm")
    from_folder = make_pipeline(capfd, "fill-mask", model=folder)
    assert type(from_folder.model) is VaswaniForMaskedLM  # the package's class: no remote code was needed
    folder_result = from_folder(MASK_TEXT)
    assert [entry["token"] for entry in folder_result] == [entry["token"] for entry in result]
    assert [entry["token_str"] for entry in folder_result] == [entry["token_str"] for entry in result]
    assert [entry["sequence"] for entry in folder_result] == [entry["sequence"] for entry in result]
    for a, b in zip(folder_result, result):
        assert a["score"] == pytest.approx(b["score"], abs=1e-6)


# -- text-classification ---------------------------------------------------------------------------------------------
LABELS = {0: "NEGATIVE", 1: "NEUTRAL", 2: "POSITIVE"}


def test_text_classification_from_object_and_folder(wordpiece, tmp_path, modules_cache, capfd):
    model = build(VaswaniForSequenceClassification, tiny(wordpiece, id2label=LABELS, init_std=0.1))
    texts = ["the king is in the garden", "speak , speak ."]
    with torch.no_grad():
        probabilities = model(**wordpiece(texts, padding=True, return_tensors="pt")).logits.softmax(-1)

    def check(classifier):
        for text, row in zip(texts, probabilities):
            (best,) = classifier(text)
            assert best["label"] == LABELS[int(row.argmax())]
            assert best["score"] == pytest.approx(float(row.max()), abs=1e-6)
            everything = classifier(text, top_k=None)
            assert {entry["label"] for entry in everything} == set(LABELS.values())
            for entry in everything:
                label_id = {label: i for i, label in LABELS.items()}[entry["label"]]
                assert entry["score"] == pytest.approx(float(row[label_id]), abs=1e-6)
            assert sum(entry["score"] for entry in everything) == pytest.approx(1.0, abs=1e-5)

    check(make_pipeline(capfd, "text-classification", model=model, tokenizer=wordpiece))
    from_folder = make_pipeline(capfd, "text-classification", model=save(model, wordpiece, tmp_path / "classifier"))
    assert type(from_folder.model) is VaswaniForSequenceClassification
    check(from_folder)


# -- token-classification --------------------------------------------------------------------------------------------
TAGS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC"}


def test_token_classification_from_object_and_folder(wordpiece, tmp_path, modules_cache, capfd):
    model = build(VaswaniForTokenClassification, tiny(wordpiece, id2label=TAGS, init_std=0.1))
    text = "the king walked to the garden with his friend"
    encoded = wordpiece(text, return_tensors="pt", return_offsets_mapping=True)
    offsets = encoded.pop("offset_mapping")[0]
    with torch.no_grad():
        probabilities = model(**encoded).logits[0].softmax(-1)
    tokens = wordpiece.convert_ids_to_tokens(encoded["input_ids"][0])

    def check(tagger):
        entities = tagger(text, ignore_labels=[])
        # One entity per token of the text (the special tokens [CLS] and [SEP] are left out).
        assert [entity["index"] for entity in entities] == list(range(1, len(tokens) - 1))
        for entity in entities:
            index = entity["index"]
            assert entity["word"] == tokens[index]
            assert entity["entity"] == TAGS[int(probabilities[index].argmax())]
            assert entity["score"] == pytest.approx(float(probabilities[index].max()), abs=1e-6)
            assert (entity["start"], entity["end"]) == tuple(offsets[index].tolist())

    check(make_pipeline(capfd, "token-classification", model=model, tokenizer=wordpiece))
    from_folder = make_pipeline(capfd, "token-classification", model=save(model, wordpiece, tmp_path / "tagger"))
    assert type(from_folder.model) is VaswaniForTokenClassification
    check(from_folder)


# -- feature-extraction ----------------------------------------------------------------------------------------------
def test_feature_extraction_from_object_and_folder(wordpiece, tmp_path, modules_cache, capfd):
    model = build(VaswaniModel, tiny(wordpiece).with_stacks("encoder-only"))
    text = "the king is in the garden"
    with torch.no_grad():
        expected = model(**wordpiece(text, return_tensors="pt")).last_hidden_state
    extractor = make_pipeline(capfd, "feature-extraction", model=model, tokenizer=wordpiece)
    features = torch.tensor(extractor(text))
    assert features.shape == expected.shape == (1, len(wordpiece(text)["input_ids"]), 32)
    torch.testing.assert_close(features, expected, atol=1e-6, rtol=0)

    from_folder = make_pipeline(capfd, "feature-extraction", model=save(model, wordpiece, tmp_path / "body"))
    assert type(from_folder.model) is VaswaniModel
    torch.testing.assert_close(torch.tensor(from_folder(text)), expected, atol=1e-6, rtol=0)
    tensors = from_folder(text, return_tensors=True)
    torch.testing.assert_close(tensors, expected, atol=1e-6, rtol=0)


def test_feature_extraction_from_a_masked_lm_folder(wordpiece, tmp_path, modules_cache, capfd):
    mlm = build(VaswaniForMaskedLM, tiny(wordpiece))
    folder = save(mlm, wordpiece, tmp_path / "mlm")
    text = "the king is in the garden"
    encoded = wordpiece(text, return_tensors="pt")
    with torch.no_grad():
        expected = mlm.model(**encoded).last_hidden_state  # the MLM's body
        body = AutoModel.from_pretrained(folder).eval()
        torch.testing.assert_close(body(**encoded).last_hidden_state, expected, atol=1e-6, rtol=0)
    extractor = make_pipeline(capfd, "feature-extraction", model=folder)
    assert type(extractor.model) is VaswaniModel and extractor.model.config.stacks == "encoder-only"
    torch.testing.assert_close(torch.tensor(extractor(text)), expected, atol=1e-6, rtol=0)


# -- text-generation -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def causal_lm(byte_bpe):
    return build(VaswaniForCausalLM, tiny(byte_bpe, **GENERATIVE))


def test_text_generation_from_object_and_folder(causal_lm, byte_bpe, tmp_path, modules_cache, capfd):
    encoded = byte_bpe(PROMPT, return_tensors="pt")  # a prompt starts with <s>
    assert encoded["input_ids"][0, 0] == byte_bpe.bos_token_id
    with torch.no_grad():
        output = causal_lm.generate(**encoded, do_sample=False, max_new_tokens=12)
    new_ids = output[0, encoded["input_ids"].shape[1] :]
    assert new_ids.unique().numel() > 1, "degenerate generation; the comparison would mean little"
    expected = byte_bpe.decode(output[0], skip_special_tokens=True)
    expected_new = byte_bpe.decode(new_ids, skip_special_tokens=True)

    generator = make_pipeline(capfd, "text-generation", model=causal_lm, tokenizer=byte_bpe)
    (result,) = generator(PROMPT, do_sample=False, max_new_tokens=12)
    assert result == {"generated_text": expected}
    assert result["generated_text"].startswith(PROMPT)
    (new_only,) = generator(PROMPT, do_sample=False, max_new_tokens=12, return_full_text=False)
    assert new_only["generated_text"] == expected_new

    from_folder = make_pipeline(capfd, "text-generation", model=save(causal_lm, byte_bpe, tmp_path / "lm"))
    assert type(from_folder.model) is VaswaniForCausalLM
    assert from_folder(PROMPT, do_sample=False, max_new_tokens=12) == [result]


def test_text_generation_batched_prompts_are_left_padded(causal_lm, byte_bpe, capfd):
    prompts = [PROMPT, "You are all resolved rather to die than to famish?"]
    generator = make_pipeline(capfd, "text-generation", model=causal_lm, tokenizer=byte_bpe)
    one_by_one = [generator(prompt, do_sample=False, max_new_tokens=8) for prompt in prompts]
    batched = generator(prompts, do_sample=False, max_new_tokens=8, batch_size=2)
    assert batched == one_by_one


# -- vaswani-text2text -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seq2seq(shared_bpe):
    model = build(VaswaniForConditionalGeneration, tiny(shared_bpe, **GENERATIVE))
    with torch.no_grad():
        # Make </s> likely enough that beams end at different lengths: otherwise length_penalty changes nothing and
        # a pipeline that dropped it would pass.
        weight = model.lm_head.weight
        eos = shared_bpe.eos_token_id
        weight[eos] = weight[eos] / weight[eos].norm() * 2 * weight.norm(dim=1).mean()
    return model


@pytest.fixture(scope="module")
def seq2seq_folder(seq2seq, shared_bpe, tmp_path_factory):
    return save(seq2seq, shared_bpe, tmp_path_factory.mktemp("seq2seq"))


@torch.no_grad()
def generate_texts(model, tokenizer, source: str, **generate_kwargs) -> list[str]:
    encoded = tokenizer(source, return_tensors="pt", truncation=True)
    output = model.generate(**encoded, **generate_kwargs)
    return [tokenizer.decode(ids, skip_special_tokens=True) for ids in output]


GREEDY = dict(max_new_tokens=10)
BEAM = dict(max_new_tokens=10, num_beams=3, length_penalty=0.6)


def test_text2text_from_object_matches_generate(seq2seq, shared_bpe, capfd):
    translator = make_pipeline(capfd, "vaswani-text2text", model=seq2seq, tokenizer=shared_bpe)
    assert isinstance(translator, VaswaniText2TextPipeline)
    for arguments in (GREEDY, BEAM):
        single = translator(SOURCES[0], **arguments)
        assert isinstance(single, list) and len(single) == 1 and set(single[0]) == {"generated_text"}
        assert isinstance(single[0]["generated_text"], str)
        assert single == [{"generated_text": generate_texts(seq2seq, shared_bpe, SOURCES[0], **arguments)[0]}]
        several = translator(SOURCES, **arguments)
        assert several == [
            {"generated_text": generate_texts(seq2seq, shared_bpe, source, **arguments)[0]} for source in SOURCES
        ]
    greedy = translator(SOURCES, **GREEDY)
    assert greedy[0] != greedy[1], "every source gets the same text; the comparisons would mean little"
    assert all(entry["generated_text"].strip() for entry in greedy)
    # The arguments matter for these sources, so the pipeline must pass them on: beams differ from greedy search,
    # and length_penalty=0.6 from the default 1.0.
    assert translator(SOURCES, **BEAM) != greedy
    assert translator(SOURCES, **BEAM) != translator(SOURCES, **dict(BEAM, length_penalty=1.0))


def test_text2text_from_folder_matches_object(seq2seq, seq2seq_folder, shared_bpe, modules_cache, capfd):
    from_object = pipeline("vaswani-text2text", model=seq2seq, tokenizer=shared_bpe)
    from_folder = make_pipeline(capfd, "vaswani-text2text", model=seq2seq_folder)
    assert type(from_folder) is VaswaniText2TextPipeline
    assert type(from_folder.model) is VaswaniForConditionalGeneration
    for arguments in (GREEDY, BEAM):
        assert from_folder(SOURCES, **arguments) == from_object(SOURCES, **arguments)
        assert from_folder(SOURCES[1], **arguments) == from_object(SOURCES[1], **arguments)


def test_text2text_without_trust_remote_code_uses_the_registered_pipeline(seq2seq_folder, modules_cache, capfd):
    translator = make_pipeline(capfd, "vaswani-text2text", model=seq2seq_folder)
    assert type(translator) is VaswaniText2TextPipeline
    assert type(translator.model) is VaswaniForConditionalGeneration
    assert translator(SOURCES[0], **GREEDY)[0]["generated_text"]


def test_text2text_honours_max_new_tokens(seq2seq, shared_bpe):
    translator = pipeline("vaswani-text2text", model=seq2seq, tokenizer=shared_bpe)
    longest = None
    for new in (9, 5, 2):
        for source in SOURCES:
            (result,) = translator(source, max_new_tokens=new, return_tensors=True)
            ids = result["generated_token_ids"].tolist()
            assert ids[0] == seq2seq.config.decoder_start_token_id
            assert len(ids) <= new + 1
            (exact,) = translator(source, max_new_tokens=new, min_new_tokens=new, return_tensors=True)
            assert len(exact["generated_token_ids"]) == new + 1
        (forced,) = translator(SOURCES[0], max_new_tokens=new, min_new_tokens=new, return_tensors=True)
        forced = forced["generated_token_ids"].tolist()
        if longest is None:
            longest = forced
        assert forced == longest[: new + 1]  # greedy: a shorter limit cuts the same sequence


def test_text2text_num_return_sequences(seq2seq, shared_bpe):
    translator = pipeline("vaswani-text2text", model=seq2seq, tokenizer=shared_bpe)
    arguments = dict(BEAM, num_return_sequences=2)
    single = translator(SOURCES[0], **arguments)
    assert len(single) == 2 and all(set(entry) == {"generated_text"} for entry in single)
    assert [entry["generated_text"] for entry in single] == generate_texts(seq2seq, shared_bpe, SOURCES[0], **arguments)
    several = translator(SOURCES, **arguments)
    assert len(several) == len(SOURCES) and all(len(results) == 2 for results in several)
    assert several[0] == single


def test_text2text_truncates_long_sources(seq2seq, shared_bpe):
    translator = pipeline("vaswani-text2text", model=seq2seq, tokenizer=shared_bpe)
    source = " ".join([SOURCES[0]] * 20)
    assert len(shared_bpe(source)["input_ids"]) > MAX_LENGTH
    (result,) = translator(source, **GREEDY)
    assert result["generated_text"] == generate_texts(seq2seq, shared_bpe, source, **GREEDY)[0]  # truncated there too


@pytest.mark.parametrize("bad", ["", "   ", ["a real source", ""]])
def test_text2text_empty_input_raises(seq2seq, shared_bpe, bad):
    translator = pipeline("vaswani-text2text", model=seq2seq, tokenizer=shared_bpe)
    with pytest.raises(ValueError):
        translator(bad, max_new_tokens=3)


# -- vaswani-question-answering --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qa_filler(wordpiece) -> list[str]:
    """Whole words of the vocabulary (one token each) to fill contexts with."""
    words = sorted(
        word for word, _ in wordpiece.get_vocab().items() if word.isascii() and word.isalpha() and len(word) >= 3
    )
    words = [word for word in words if word != MARKER and len(wordpiece.tokenize(word)) == 1]
    assert len(words) >= 20
    return words[:60]


def marker_context(rng: random.Random, filler: list[str], words: int, position: int | None = None) -> str:
    text = [rng.choice(filler) for _ in range(words)]
    text.insert(rng.randint(0, words) if position is None else position, MARKER)
    return " ".join(text)


def qa_batch(tokenizer, rng, filler, size: int = 32, max_length: int = 32):
    contexts = [marker_context(rng, filler, rng.randint(3, 14)) for _ in range(size)]
    encoded = tokenizer(
        [QUESTION] * size, contexts, truncation="only_second", max_length=max_length, padding=True,
        return_offsets_mapping=True, return_tensors="pt",
    )
    starts, ends = [], []
    for row, context in enumerate(contexts):
        first_char = context.index(MARKER)
        last_char = first_char + len(MARKER)
        sequence_ids, offsets = encoded.sequence_ids(row), encoded["offset_mapping"][row].tolist()
        in_context = [t for t, s in enumerate(sequence_ids) if s == 1]
        starts.append(next(t for t in in_context if offsets[t][0] == first_char))
        ends.append(next(t for t in in_context if offsets[t][1] == last_char))
    encoded.pop("offset_mapping")
    return encoded, torch.tensor(starts), torch.tensor(ends)


@pytest.fixture(scope="module")
def qa_model(wordpiece, qa_filler):
    """A tiny QA model trained briefly to point at the marker word (a few pieces long) in filler text."""
    torch.manual_seed(0)
    model = VaswaniForQuestionAnswering(tiny(wordpiece))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    model.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is as fast, and does not suffer from a busy machine
    try:
        for _ in range(120):
            inputs, starts, ends = qa_batch(wordpiece, rng, qa_filler)
            loss = model(**inputs, start_positions=starts, end_positions=ends).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    assert loss.item() < 0.2, f"the QA model did not learn (loss {loss.item():.3f})"
    return model.eval()


@pytest.fixture(scope="module")
def qa_folder(qa_model, wordpiece, tmp_path_factory):
    return save(qa_model, wordpiece, tmp_path_factory.mktemp("qa"))


@pytest.fixture(scope="module")
def qa_contexts(qa_filler) -> dict:
    rng = random.Random(123)
    long_end = marker_context(rng, qa_filler, 195, position=190)
    return {
        "short": marker_context(rng, qa_filler, 12, position=7),
        "long_end": long_end,
        "long_middle": marker_context(rng, qa_filler, 195, position=100),
        "long_start": marker_context(rng, qa_filler, 195, position=2),
    }


LONG = dict(max_seq_len=32, doc_stride=8)


def assert_valid_answer(answer: dict, question: str, context: str):
    assert set(answer) == {"answer", "score", "start", "end"}
    assert isinstance(answer["start"], int) and isinstance(answer["end"], int)
    assert 0 <= answer["start"] < answer["end"] <= len(context)
    assert context[answer["start"] : answer["end"]] == answer["answer"]
    assert 0.0 <= answer["score"] <= 1.0


def test_qa_finds_the_marker_in_a_short_context(qa_model, wordpiece, qa_filler, capfd):
    qa = make_pipeline(capfd, "vaswani-question-answering", model=qa_model, tokenizer=wordpiece)
    assert isinstance(qa, VaswaniQuestionAnsweringPipeline)
    rng = random.Random(7)
    for _ in range(10):
        context = marker_context(rng, qa_filler, rng.randint(3, 14))
        answer = qa(question=QUESTION, context=context)
        assert_valid_answer(answer, QUESTION, context)
        assert answer["answer"] == MARKER
        assert answer["start"] == context.index(MARKER)
        assert answer["score"] > 0.5


@torch.no_grad()
def test_qa_score_is_start_times_end_probability(qa_model, wordpiece, qa_contexts):
    qa = pipeline("vaswani-question-answering", model=qa_model, tokenizer=wordpiece)
    context = qa_contexts["short"]
    answer = qa(question=QUESTION, context=context)
    encoded = wordpiece(QUESTION, context, return_tensors="pt", return_offsets_mapping=True)
    offsets = encoded.pop("offset_mapping")[0].tolist()
    in_context = torch.tensor([s == 1 for s in encoded.sequence_ids(0)])
    output = qa_model(**encoded)
    start = output.start_logits[0].masked_fill(~in_context, float("-inf")).softmax(-1)
    end = output.end_logits[0].masked_fill(~in_context, float("-inf")).softmax(-1)
    best = max(
        (float(start[i] * end[j]), i, j)
        for i in range(len(offsets)) for j in range(i, min(i + 30, len(offsets)))
        if in_context[i] and in_context[j]
    )
    score, i, j = best
    assert (answer["start"], answer["end"]) == (offsets[i][0], offsets[j][1])
    assert answer["score"] == pytest.approx(score, abs=1e-6)


def test_qa_answer_is_never_in_the_question(wordpiece, capfd):
    # An untrained model points anywhere; the pipeline must still only answer from the context.
    question = "the king the queen the king the queen and the lord ?"
    context = "speak , speak ."
    for seed in range(5):
        model = build(VaswaniForQuestionAnswering, tiny(wordpiece, init_std=0.2), seed=seed)
        qa = pipeline("vaswani-question-answering", model=model, tokenizer=wordpiece)
        for answer in qa(question=question, context=context, top_k=5):
            assert_valid_answer(answer, question, context)


def test_qa_marker_in_question_answer_from_context(qa_model, wordpiece, qa_contexts):
    qa = pipeline("vaswani-question-answering", model=qa_model, tokenizer=wordpiece)
    context = qa_contexts["short"]
    answer = qa(question=QUESTION, context=context)
    assert MARKER in QUESTION
    assert answer["answer"] == MARKER and answer["start"] == context.index(MARKER)


def test_qa_top_k(qa_model, wordpiece, qa_contexts):
    qa = pipeline("vaswani-question-answering", model=qa_model, tokenizer=wordpiece)
    context = qa_contexts["short"]
    answers = qa(question=QUESTION, context=context, top_k=3)
    assert isinstance(answers, list) and len(answers) == 3
    for answer in answers:
        assert_valid_answer(answer, QUESTION, context)
    scores = [answer["score"] for answer in answers]
    assert scores == sorted(scores, reverse=True)
    assert len({(answer["start"], answer["end"]) for answer in answers}) == 3
    assert answers[0] == qa(question=QUESTION, context=context)
    assert answers[0]["answer"] == MARKER


def test_qa_input_forms(qa_model, wordpiece, qa_filler):
    qa = pipeline("vaswani-question-answering", model=qa_model, tokenizer=wordpiece)
    rng = random.Random(11)
    contexts = [marker_context(rng, qa_filler, 10) for _ in range(3)]
    singles = [qa(question=QUESTION, context=context) for context in contexts]
    assert all(isinstance(single, dict) for single in singles)
    assert qa({"question": QUESTION, "context": contexts[0]}) == singles[0]
    assert qa([{"question": QUESTION, "context": context} for context in contexts]) == singles
    assert qa(question=[QUESTION] * 3, context=contexts) == singles
    batched = qa(question=[QUESTION] * 3, context=contexts, top_k=2)
    assert len(batched) == 3 and all(len(answers) == 2 for answers in batched)
    assert [answers[0] for answers in batched] == singles


@pytest.mark.parametrize(
    "call",
    [
        dict(question="", context="the king"),
        dict(question="who ?", context="   "),
        dict(question=["who ?", "what ?"], context=["the king"]),
        dict(question="who ?", context="the king", top_k=0),
    ],
)
def test_qa_bad_input_raises(qa_model, wordpiece, call):
    qa = pipeline("vaswani-question-answering", model=qa_model, tokenizer=wordpiece)
    with pytest.raises(ValueError):
        qa(**call)


def _windows_holding_the_marker(qa, context: str, **arguments) -> tuple[int, list[int]]:
    features = qa.preprocess({"question": QUESTION, "context": context}, **arguments)
    first_char = context.index(MARKER)
    offsets, mask = features["offsets"], features["context_mask"]
    holding = [
        window
        for window in range(offsets.shape[0])
        if any(mask[window][t] and int(offsets[window][t][0]) == first_char for t in range(offsets.shape[1]))
    ]
    return offsets.shape[0], holding


def test_qa_long_context_answer_from_a_late_window(qa_model, wordpiece, qa_contexts):
    qa = pipeline("vaswani-question-answering", model=qa_model, tokenizer=wordpiece)
    context = qa_contexts["long_end"]
    assert len(wordpiece(QUESTION, context)["input_ids"]) > 6 * LONG["max_seq_len"]  # far beyond one window
    windows, holding = _windows_holding_the_marker(qa, context, **LONG)
    assert windows >= 8
    assert holding and min(holding) >= windows - 2, (windows, holding)  # only the last windows see the marker
    answer = qa(question=QUESTION, context=context, **LONG)
    assert_valid_answer(answer, QUESTION, context)
    assert answer["answer"] == MARKER
    assert answer["start"] == context.index(MARKER) > 0.9 * len(context)
    assert answer["score"] > 0.5
    # With top_k, the other candidates are valid spans too.
    answers = qa(question=QUESTION, context=context, top_k=3, **LONG)
    assert answers[0] == answer
    for candidate in answers:
        assert_valid_answer(candidate, QUESTION, context)


@pytest.mark.parametrize("where", ["long_start", "long_middle"])
def test_qa_long_context_any_window(qa_model, wordpiece, qa_contexts, where):
    qa = pipeline("vaswani-question-answering", model=qa_model, tokenizer=wordpiece)
    context = qa_contexts[where]
    answer = qa(question=QUESTION, context=context, **LONG)
    assert_valid_answer(answer, QUESTION, context)
    assert answer["answer"] == MARKER and answer["start"] == context.index(MARKER)


def test_qa_long_context_with_default_window(qa_model, wordpiece, qa_contexts):
    # Without max_seq_len the window is the tokenizer's model_max_length (64): still several windows.
    qa = pipeline("vaswani-question-answering", model=qa_model, tokenizer=wordpiece)
    context = qa_contexts["long_end"]
    windows, holding = _windows_holding_the_marker(qa, context)
    assert windows >= 3 and min(holding) >= 1
    answer = qa(question=QUESTION, context=context)
    assert answer["answer"] == MARKER and answer["start"] == context.index(MARKER)


def test_qa_from_folder_matches_object(qa_model, qa_folder, wordpiece, qa_contexts, modules_cache, capfd):
    from_object = pipeline("vaswani-question-answering", model=qa_model, tokenizer=wordpiece)
    from_folder = make_pipeline(capfd, "vaswani-question-answering", model=qa_folder)
    assert type(from_folder) is VaswaniQuestionAnsweringPipeline
    assert type(from_folder.model) is VaswaniForQuestionAnswering
    for context in qa_contexts.values():
        for arguments in ({}, LONG, dict(LONG, top_k=3)):
            a = from_folder(question=QUESTION, context=context, **arguments)
            b = from_object(question=QUESTION, context=context, **arguments)
            for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
                assert (x["answer"], x["start"], x["end"]) == (y["answer"], y["start"], y["end"])
                assert x["score"] == pytest.approx(y["score"], abs=1e-6)


# -- A fresh process without the package: remote code only ----------------------------------------------------------
FRESH_PROCESS = textwrap.dedent(
    """
    import sys; sys.modules["vaswani"] = None
    import json
    try:
        import vaswani
        importable = True
    except ImportError:
        importable = False
    from transformers import pipeline

    seq2seq_folder, qa_folder, sources, question, contexts, greedy, beam, long = json.loads(sys.argv[1])
    translator = pipeline("vaswani-text2text", model=seq2seq_folder, trust_remote_code=True)
    qa = pipeline("vaswani-question-answering", model=qa_folder, trust_remote_code=True)
    results = {
        "vaswani_importable": importable,
        "translator_class": type(translator).__module__ + "." + type(translator).__name__,
        "qa_class": type(qa).__module__ + "." + type(qa).__name__,
        "model_class": type(translator.model).__module__,
        "greedy": translator(sources, **greedy),
        "beam": translator(sources, **beam),
        "single": translator(sources[0], **greedy),
        "qa": {name: qa(question=question, context=context) for name, context in contexts.items()},
        "qa_long": {name: qa(question=question, context=context, **long) for name, context in contexts.items()},
        "qa_top3": qa(question=question, context=contexts["short"], top_k=3),
    }
    print("RESULTS " + json.dumps(results))
    """
)


@pytest.fixture(scope="module")
def fresh_process_results(seq2seq_folder, qa_folder, qa_contexts, tmp_path_factory):
    modules = tmp_path_factory.mktemp("fresh_modules")
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", HF_MODULES_CACHE=str(modules)
    )
    env.pop("PYTHONPATH", None)
    argument = json.dumps([seq2seq_folder, qa_folder, SOURCES, QUESTION, qa_contexts, GREEDY, BEAM, LONG])
    completed = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, argument],
        env=env,
        cwd=str(tmp_path_factory.mktemp("fresh_cwd")),  # not the repository root, where `vaswani` is importable
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULTS ")]
    assert lines, completed.stdout[-2000:] + completed.stderr[-2000:]
    results = json.loads(lines[-1][len("RESULTS ") :])
    results["remote_files"] = sorted(path.name for path in modules.rglob("*.py"))
    return results


def test_fresh_process_cannot_import_vaswani(fresh_process_results):
    assert fresh_process_results["vaswani_importable"] is False
    for key in ("translator_class", "qa_class", "model_class"):
        assert not fresh_process_results[key].startswith("vaswani"), fresh_process_results[key]
        assert "transformers_modules" in fresh_process_results[key], fresh_process_results[key]
    # The remote code went to the test's own modules cache.
    assert {"pipeline_vaswani.py", "modeling_vaswani_heads.py"} <= set(fresh_process_results["remote_files"])


def test_fresh_process_text2text_matches(fresh_process_results, seq2seq, shared_bpe):
    translator = pipeline("vaswani-text2text", model=seq2seq, tokenizer=shared_bpe)
    assert fresh_process_results["greedy"] == translator(SOURCES, **GREEDY)
    assert fresh_process_results["beam"] == translator(SOURCES, **BEAM)
    assert fresh_process_results["single"] == translator(SOURCES[0], **GREEDY)


def test_fresh_process_question_answering_matches(fresh_process_results, qa_model, wordpiece, qa_contexts):
    qa = pipeline("vaswani-question-answering", model=qa_model, tokenizer=wordpiece)

    def same(remote: dict, local: dict):
        assert (remote["answer"], remote["start"], remote["end"]) == (local["answer"], local["start"], local["end"])
        assert remote["score"] == pytest.approx(local["score"], abs=1e-6)

    for name, context in qa_contexts.items():
        same(fresh_process_results["qa"][name], qa(question=QUESTION, context=context))
        same(fresh_process_results["qa_long"][name], qa(question=QUESTION, context=context, **LONG))
    assert fresh_process_results["qa_long"]["long_end"]["answer"] == MARKER
    local_top3 = qa(question=QUESTION, context=qa_contexts["short"], top_k=3)
    assert len(fresh_process_results["qa_top3"]) == 3
    for remote, local in zip(fresh_process_results["qa_top3"], local_top3):
        same(remote, local)
