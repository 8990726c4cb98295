"""
Tokenizer tests: `train_tokenizer` for the three kinds (wordpiece, byte-bpe, shared-bpe) from every kind of source,
the special tokens and templates of each kind, the round trip through `save_pretrained` and a plain
`AutoTokenizer.from_pretrained` (no remote code), `config_from_tokenizer` and `check_tokenizer_fits`.

Training text: the first 2,000 lines of tinyshakespeare when the shared data folder is there, else a few hundred
sentences built deterministically from a fixed word list. Vocabularies are small (300-800) so training is fast.
"""

import random

import pytest
import torch
from datasets import Dataset
from transformers import AutoTokenizer

from helpers import shakespeare_lines
from vaswani import (
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMaskedLM,
    check_tokenizer_fits,
    config_from_tokenizer,
    train_tokenizer,
)
from vaswani.tokenization import iterate_texts


SPANISH_WORDS = (
    "el señor dijo que su corazón también está aquí después del niño en la montaña él habló con ella sobre "
    "la canción del año pasado mañana será otro día acción nación jamás"
).split()
KINDS = ("wordpiece", "byte-bpe", "shared-bpe")  # the kinds these tests know (the package may offer more)
MAX_LENGTH = 64
VOCAB = 500

TEXTS = [
    "First Citizen: Before we proceed any further, hear me speak.",
    "you are all resolved rather to die than to famish?",
    "The king and the queen walked in the garden.",
    "a",
]
PAIRS = [
    ("What is your name?", "My name is Marcius."),
    ("speak, speak.", "Resolved. resolved."),
]
UNICODE_TEXT = "naïve café 東京 🙂"
LONG_TEXT = " ".join(["the king and the queen walked through the garden"] * 40)


def _spanish_lines(count: int = 300) -> list[str]:
    rng = random.Random(1)
    sentences = (" ".join(rng.choice(SPANISH_WORDS) for _ in range(rng.randint(5, 12))) for _ in range(count))
    return [sentence.capitalize() + "." for sentence in sentences]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return shakespeare_lines()


@pytest.fixture(scope="module")
def tokenizers(corpus) -> dict:
    return {kind: train_tokenizer(corpus, kind=kind, vocab_size=VOCAB, model_max_length=MAX_LENGTH) for kind in KINDS}


def _encode_all(tokenizer, kind):
    """Everything a tokenizer produces for the test texts (and pairs, for wordpiece), as plain lists."""
    encoded = [dict(tokenizer(text)) for text in TEXTS + [UNICODE_TEXT]]
    encoded.append(dict(tokenizer(TEXTS, padding=True)))
    encoded.append(dict(tokenizer(LONG_TEXT, truncation=True)))
    if kind == "wordpiece":
        encoded += [dict(tokenizer(a, b)) for a, b in PAIRS]
    if kind == "shared-bpe":
        encoded.append(dict(tokenizer(TEXTS[0], text_target=TEXTS[1])))
    return encoded


# -- Training from every kind of source -----------------------------------------------------------------------------
def _assert_works(tokenizer, text: str = "the king and the queen"):
    ids = tokenizer(text)["input_ids"]
    assert len(tokenizer) > len(tokenizer.all_special_tokens) + 20
    assert len(ids) >= 2
    assert all(0 <= i < len(tokenizer) for i in ids)
    assert tokenizer.decode(ids, skip_special_tokens=True).strip().lower() == text


def _assert_same_vocabulary(a, b, kind):
    """Two tokenizers trained on the same texts learned the same vocabulary. The BPE trainers are deterministic;
    the WordPiece trainer of `tokenizers` is not (it numbers its alphabet and breaks ties in no fixed order, and on a
    small corpus the learned pieces differ from run to run), so for it only the size is compared."""
    if kind == "wordpiece":
        assert abs(len(a) - len(b)) <= 0.1 * len(b)
    else:
        assert a.get_vocab() == b.get_vocab()


@pytest.mark.parametrize("kind", KINDS)
def test_train_from_list_of_strings(corpus, kind):
    _assert_works(train_tokenizer(corpus, kind=kind, vocab_size=400))


@pytest.mark.parametrize("kind", KINDS)
def test_train_from_file_paths(corpus, kind, tmp_path):
    half = len(corpus) // 2
    first, second = tmp_path / "part1.txt", tmp_path / "part2.txt"
    first.write_text("\n".join(corpus[:half]) + "\n", encoding="utf-8")
    second.write_text("\n".join(corpus[half:]) + "\n", encoding="utf-8")
    from_files = train_tokenizer([str(first), second], kind=kind, vocab_size=400)  # a str path and a Path
    _assert_works(from_files)
    # The files are read line by line, blank lines skipped: the same texts as the list.
    assert list(iterate_texts([str(first), second])) == [line for line in corpus if line.strip()]
    _assert_same_vocabulary(from_files, train_tokenizer(corpus, kind=kind, vocab_size=400), kind)


def test_train_from_a_single_file_path(corpus, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(corpus) + "\n", encoding="utf-8")
    _assert_works(train_tokenizer(str(path), kind="wordpiece", vocab_size=400))
    _assert_works(train_tokenizer(path, kind="shared-bpe", vocab_size=400))


@pytest.mark.parametrize("kind", KINDS)
def test_train_from_dataset(corpus, kind):
    dataset = Dataset.from_dict({"text": corpus, "number": list(range(len(corpus)))})
    from_dataset = train_tokenizer(dataset, kind=kind, vocab_size=400)  # the string column is found
    _assert_works(from_dataset)
    named = train_tokenizer(dataset, kind=kind, vocab_size=400, text_column="text")
    assert list(iterate_texts(dataset)) == list(iterate_texts(dataset, "text")) == [line for line in corpus if line]
    _assert_same_vocabulary(named, from_dataset, kind)
    _assert_same_vocabulary(from_dataset, train_tokenizer(corpus, kind=kind, vocab_size=400), kind)


def test_train_from_translation_dataset_uses_both_columns(corpus):
    spanish = _spanish_lines()
    english = (corpus * 2)[: len(spanish)]
    dataset = Dataset.from_dict({"en": english, "es": spanish})
    shared = train_tokenizer(dataset, kind="shared-bpe", vocab_size=600, text_column=["en", "es"])
    english_only = train_tokenizer(dataset, kind="shared-bpe", vocab_size=600, text_column="en")
    unk = shared.unk_token_id
    spanish_text = "El señor dijo que su corazón también está aquí después del niño."
    english_text = "The king and the queen walked in the garden."
    for text in (spanish_text, english_text):
        ids = shared(text)["input_ids"]
        assert unk not in ids, shared.convert_ids_to_tokens(ids)
        assert shared.decode(ids, skip_special_tokens=True) == text
    # The English column alone never saw ñ, ó, í: those characters are unknown to its vocabulary.
    assert unk in english_only(spanish_text)["input_ids"]


def test_dataset_missing_column_raises(corpus):
    dataset = Dataset.from_dict({"text": corpus[:20]})
    with pytest.raises(ValueError, match="missing|not in the dataset"):
        train_tokenizer(dataset, kind="wordpiece", vocab_size=300, text_column="nope")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("source", ["empty list", "empty strings", "empty file", "blank-line file", "empty dataset"])
def test_empty_input_raises(kind, source, tmp_path):
    if source == "empty list":
        texts = []
    elif source == "empty strings":
        texts = ["", ""]
    elif source == "empty file":
        (tmp_path / "empty.txt").write_text("", encoding="utf-8")
        texts = [str(tmp_path / "empty.txt")]
    elif source == "blank-line file":
        (tmp_path / "blank.txt").write_text("\n\n  \n\n", encoding="utf-8")
        texts = [str(tmp_path / "blank.txt")]
    else:
        texts = Dataset.from_dict({"text": ["", ""]})
    with pytest.raises(ValueError):
        train_tokenizer(texts, kind=kind, vocab_size=300, text_column="text" if source == "empty dataset" else None)


@pytest.mark.parametrize("kind", ["sentencepiece", "bpe", "WordPiece", ""])
def test_unknown_kind_raises(corpus, kind):
    with pytest.raises(ValueError, match="kind"):
        train_tokenizer(corpus, kind=kind, vocab_size=300)


# -- WordPiece ------------------------------------------------------------------------------------------------------
def test_wordpiece_special_tokens(tokenizers):
    tok = tokenizers["wordpiece"]
    for index, token in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]):
        assert tok.convert_tokens_to_ids(token) == index
    assert (tok.pad_token, tok.unk_token, tok.cls_token, tok.sep_token, tok.mask_token) == (
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    )
    ids = (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id)
    assert ids == (0, 1, 2, 3, 4)
    assert set(tok.all_special_tokens) == {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    assert tok.padding_side == "right"
    assert "token_type_ids" in tok.model_input_names


def test_wordpiece_single_and_pair_templates(tokenizers):
    tok = tokenizers["wordpiece"]
    a, b = "the king is here", "the queen is there"
    single = tok(a)
    tokens = tok.convert_ids_to_tokens(single["input_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 1
    assert single["token_type_ids"] == [0] * len(tokens)

    pair = tok(a, b)
    ids_a = tok(a, add_special_tokens=False)["input_ids"]
    ids_b = tok(b, add_special_tokens=False)["input_ids"]
    cls, sep = tok.cls_token_id, tok.sep_token_id
    assert pair["input_ids"] == [cls, *ids_a, sep, *ids_b, sep]
    assert pair["token_type_ids"] == [0] * (len(ids_a) + 2) + [1] * (len(ids_b) + 1)
    assert pair["attention_mask"] == [1] * len(pair["input_ids"])


def test_wordpiece_unknown_characters_map_to_unk(tokenizers):
    tok = tokenizers["wordpiece"]
    ids = tok("the king 東京 🙂")["input_ids"]
    tokens = tok.convert_ids_to_tokens(ids)
    assert tokens.count("[UNK]") >= 2, tokens
    assert tok.unk_token_id in ids
    # BERT splits CJK characters apart: 東, 京 and 🙂 are three unknown tokens.
    assert tok.decode(ids) == "[CLS] the king [UNK] [UNK] [UNK] [SEP]"
    assert tok.decode(ids, skip_special_tokens=True) == "the king"


def test_wordpiece_lowercases(tokenizers):
    tok = tokenizers["wordpiece"]
    assert tok("THE KING")["input_ids"] == tok("the king")["input_ids"]


# -- Byte-level BPE -------------------------------------------------------------------------------------------------
def test_byte_bpe_special_tokens(tokenizers):
    tok = tokenizers["byte-bpe"]
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 0)
    assert tok.unk_token is None and tok.unk_token_id is None
    assert set(tok.all_special_tokens) == {"<s>", "</s>", "<pad>"}
    assert tok.padding_side == "left"
    assert "token_type_ids" not in tok.model_input_names


def test_byte_bpe_pads_on_the_left(tokenizers):
    tok = tokenizers["byte-bpe"]
    batch = tok(["a", "the king and the queen walked in the garden"], padding=True)
    short_ids, short_mask = batch["input_ids"][0], batch["attention_mask"][0]
    pads = len(short_ids) - sum(short_mask)
    assert pads > 0
    assert short_ids[:pads] == [tok.pad_token_id] * pads and short_mask[:pads] == [0] * pads
    assert short_ids[pads] == tok.bos_token_id and short_ids[-1] != tok.pad_token_id


@pytest.mark.parametrize(
    "text",
    [UNICODE_TEXT, "Ünïcödé ßtraße — «quotes» ½ ≠ ∑", "  leading and trailing spaces  ", "tabs\tand\nnewlines", "🙂🙃🚀"],
)
def test_byte_bpe_round_trips_any_text(tokenizers, text):
    tok = tokenizers["byte-bpe"]
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


# -- Shared BPE -----------------------------------------------------------------------------------------------------
def test_shared_bpe_special_tokens(tokenizers):
    tok = tokenizers["shared-bpe"]
    for index, token in enumerate(["<pad>", "<s>", "</s>", "<unk>"]):
        assert tok.convert_tokens_to_ids(token) == index
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert set(tok.all_special_tokens) == {"<pad>", "<s>", "</s>", "<unk>"}
    assert "token_type_ids" not in tok.model_input_names


def test_shared_bpe_every_text_ends_with_eos(tokenizers):
    tok = tokenizers["shared-bpe"]
    for text in TEXTS:
        ids = tok(text)["input_ids"]
        assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
        assert tok.bos_token_id not in ids
    batch = tok(TEXTS, padding=True)
    for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
        assert ids[sum(mask) - 1] == tok.eos_token_id


def test_shared_bpe_text_target_labels_end_with_eos(tokenizers):
    tok = tokenizers["shared-bpe"]
    encoded = tok(TEXTS[0], text_target=TEXTS[1])
    assert encoded["input_ids"][-1] == tok.eos_token_id
    assert encoded["labels"][-1] == tok.eos_token_id
    assert encoded["labels"] == tok(TEXTS[1])["input_ids"]
    targets_only = tok(text_target=TEXTS[2])
    assert targets_only["input_ids"][-1] == tok.eos_token_id
    assert tok.decode(targets_only["input_ids"], skip_special_tokens=True) == TEXTS[2]


def test_shared_bpe_one_vocabulary_for_english_and_spanish(corpus):
    tok = train_tokenizer(corpus + _spanish_lines(), kind="shared-bpe", vocab_size=700)
    english, spanish = "The king and the queen walked in the garden.", "El niño habló con ella después del año."
    english_ids, spanish_ids = tok(english)["input_ids"], tok(spanish)["input_ids"]
    for text, ids in ((english, english_ids), (spanish, spanish_ids)):
        assert tok.unk_token_id not in ids
        assert ids[-1] == tok.eos_token_id
        assert tok.decode(ids, skip_special_tokens=True) == text
    # The one vocabulary learned merges for both languages: each text takes far fewer tokens than characters.
    for text, ids in ((english, english_ids), (spanish, spanish_ids)):
        assert len(ids) - 1 < len(text.replace(" ", "")) / 2, tok.convert_ids_to_tokens(ids)
    assert {"ñ", "ó"} <= set("".join(tok.get_vocab()))
    encoded = tok(english, text_target=spanish)
    assert encoded["labels"] == spanish_ids


# -- Save and load with a plain AutoTokenizer -----------------------------------------------------------------------
SPECIAL_ID_NAMES = ("pad_token_id", "bos_token_id", "eos_token_id", "cls_token_id", "sep_token_id", "mask_token_id",
                    "unk_token_id")


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_auto_tokenizer_round_trip(tokenizers, kind, tmp_path):
    tok = tokenizers[kind]
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert _encode_all(loaded, kind) == _encode_all(tok, kind)
    assert loaded.all_special_tokens == tok.all_special_tokens
    assert loaded.all_special_ids == tok.all_special_ids
    for name in SPECIAL_ID_NAMES:
        assert getattr(loaded, name) == getattr(tok, name), name
    assert loaded.model_max_length == tok.model_max_length == MAX_LENGTH
    assert list(loaded.model_input_names) == list(tok.model_input_names)
    assert ("token_type_ids" in loaded.model_input_names) == (kind == "wordpiece")
    assert loaded.padding_side == tok.padding_side == ("left" if kind == "byte-bpe" else "right")
    assert len(loaded) == len(tok)
    assert loaded.get_vocab() == tok.get_vocab()
    for text in TEXTS + [UNICODE_TEXT]:
        ids = tok(text)["input_ids"]
        assert loaded.decode(ids, skip_special_tokens=True) == tok.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("kind", KINDS)
def test_truncation_at_model_max_length(tokenizers, kind, tmp_path):
    tok = tokenizers[kind]
    assert len(tok(LONG_TEXT)["input_ids"]) > MAX_LENGTH
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for tokenizer in (tok, loaded):
        ids = tokenizer(LONG_TEXT, truncation=True)["input_ids"]
        assert len(ids) == MAX_LENGTH
        batch = tokenizer([LONG_TEXT, TEXTS[0]], truncation=True, padding=True)
        assert [len(row) for row in batch["input_ids"]] == [MAX_LENGTH, MAX_LENGTH]
    # Truncation keeps the template's closing token where the kind has one.
    if kind == "wordpiece":
        assert tok(LONG_TEXT, truncation=True)["input_ids"][-1] == tok.sep_token_id
    if kind == "shared-bpe":
        assert tok(LONG_TEXT, truncation=True)["input_ids"][-1] == tok.eos_token_id


# -- config_from_tokenizer --------------------------------------------------------------------------------------------
EXPECTED_IDS = {
    # kind: (pad, bos, eos)
    "wordpiece": (0, 2, 3),  # bos = [CLS], eos = [SEP]
    "byte-bpe": (0, 1, 2),
    "shared-bpe": (0, 1, 2),
}


@pytest.mark.parametrize("kind", KINDS)
def test_config_from_tokenizer_follows_the_tokenizer(tokenizers, kind):
    tok = tokenizers[kind]
    config = config_from_tokenizer(tok)
    assert config.vocab_size == len(tok)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == EXPECTED_IDS[kind]
    assert config.pad_token_id == tok.pad_token_id
    if kind == "wordpiece":
        assert config.bos_token_id == tok.cls_token_id and config.eos_token_id == tok.sep_token_id
        assert config.type_vocab_size >= 2
    else:
        assert config.bos_token_id == tok.bos_token_id and config.eos_token_id == tok.eos_token_id
    assert config.decoder_start_token_id == config.bos_token_id
    assert config.max_position_embeddings == tok.model_max_length
    check_tokenizer_fits(config, tok)


@pytest.mark.parametrize("kind", KINDS)
def test_config_from_tokenizer_applies_overrides(tokenizers, kind):
    tok = tokenizers[kind]
    config = config_from_tokenizer(
        tok, d_model=32, num_heads=4, d_ff=64, num_hidden_layers=2, dropout=0.0, max_position_embeddings=128
    )
    assert (config.d_model, config.num_heads, config.d_ff) == (32, 4, 64)
    assert (config.num_encoder_layers, config.num_decoder_layers) == (2, 2)
    assert config.dropout == 0.0 and config.max_position_embeddings == 128
    assert config.vocab_size == len(tok)


def test_config_from_tokenizer_starts_from_a_given_config(tokenizers):
    tok = tokenizers["shared-bpe"]
    base = config_from_tokenizer(tokenizers["wordpiece"], d_model=48, num_heads=6, d_ff=96, num_hidden_layers=1)
    config = config_from_tokenizer(tok, base)
    assert (config.d_model, config.num_heads, config.d_ff, config.num_encoder_layers) == (48, 6, 96, 1)
    assert config.vocab_size == len(tok)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (0, 1, 2)
    assert config.decoder_start_token_id == 1


def _all_ids_in_rows(vocab_size: int, width: int) -> torch.Tensor:
    """Every id of the vocabulary, laid out in rows of `width` (the last row wraps around)."""
    ids = torch.arange(vocab_size)
    rows = -(-vocab_size // width)
    return torch.cat([ids, ids[: rows * width - vocab_size]]).view(rows, width)


@torch.no_grad()
def test_masked_lm_accepts_every_wordpiece_id(tokenizers):
    tok = tokenizers["wordpiece"]
    model = VaswaniForMaskedLM(config_from_tokenizer(tok, d_model=32, num_heads=4, d_ff=64, num_hidden_layers=2)).eval()
    batch = tok([a for a, _ in PAIRS] + [UNICODE_TEXT, LONG_TEXT], [b for _, b in PAIRS] + ["[MASK] here", "x"],
                truncation=True, padding=True, return_tensors="pt")
    assert batch["token_type_ids"].max() == 1
    logits = model(**batch).logits
    assert logits.shape == (*batch["input_ids"].shape, len(tok))
    assert torch.isfinite(logits).all()
    ids = _all_ids_in_rows(len(tok), 32)
    assert torch.isfinite(model(input_ids=ids, token_type_ids=torch.ones_like(ids)).logits).all()


@torch.no_grad()
def test_causal_lm_accepts_every_byte_bpe_id(tokenizers):
    tok = tokenizers["byte-bpe"]
    model = VaswaniForCausalLM(config_from_tokenizer(tok, d_model=32, num_heads=4, d_ff=64, num_hidden_layers=2)).eval()
    batch = tok(TEXTS + [UNICODE_TEXT, LONG_TEXT], truncation=True, padding=True, return_tensors="pt")
    output = model(**batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100))
    assert output.logits.shape == (*batch["input_ids"].shape, len(tok))
    assert torch.isfinite(output.loss)
    ids = _all_ids_in_rows(len(tok), 32)
    assert torch.isfinite(model(input_ids=ids).logits).all()


@torch.no_grad()
def test_seq2seq_accepts_every_shared_bpe_id(tokenizers):
    tok = tokenizers["shared-bpe"]
    model = VaswaniForConditionalGeneration(
        config_from_tokenizer(tok, d_model=32, num_heads=4, d_ff=64, num_hidden_layers=2)
    ).eval()
    batch = tok(TEXTS + [LONG_TEXT], text_target=TEXTS[::-1] + [UNICODE_TEXT], truncation=True, padding=True,
                return_tensors="pt")
    labels = batch["labels"].masked_fill(batch["labels"] == tok.pad_token_id, -100)
    output = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)
    assert output.logits.shape == (*labels.shape, len(tok))
    assert torch.isfinite(output.loss)
    ids = _all_ids_in_rows(len(tok), 32)
    assert torch.isfinite(model(input_ids=ids, decoder_input_ids=ids.flip(-1)).logits).all()


# -- check_tokenizer_fits ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_check_tokenizer_fits_passes_for_a_matching_config(tokenizers, kind):
    tok = tokenizers[kind]
    check_tokenizer_fits(config_from_tokenizer(tok), tok)
    # A model with spare rows (vocab padded to a multiple of 64, say) fits too.
    check_tokenizer_fits(config_from_tokenizer(tok, vocab_size=len(tok) + 64), tok)


@pytest.mark.parametrize("kind", KINDS)
def test_check_tokenizer_fits_rejects_a_too_small_vocabulary(tokenizers, kind):
    tok = tokenizers[kind]
    config = config_from_tokenizer(tok, vocab_size=len(tok) - 10)
    with pytest.raises(ValueError, match="vocab_size|resize_token_embeddings") as error:
        check_tokenizer_fits(config, tok)
    assert "resize_token_embeddings" in str(error.value)
    assert str(len(tok)) in str(error.value)


def test_check_tokenizer_fits_rejects_added_tokens(tokenizers, tmp_path):
    tokenizers["wordpiece"].save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)  # a copy: the module's tokenizer stays as it is
    config = config_from_tokenizer(tok)
    tok.add_tokens(["<new1>", "<new2>", "<new3>"])
    with pytest.raises(ValueError, match="resize_token_embeddings"):
        check_tokenizer_fits(config, tok)
    check_tokenizer_fits(config_from_tokenizer(tok), tok)


@pytest.mark.parametrize("kind", KINDS)
def test_check_tokenizer_fits_rejects_a_different_pad_id(tokenizers, kind):
    tok = tokenizers[kind]
    config = config_from_tokenizer(tok, pad_token_id=tok.pad_token_id + 5)
    with pytest.raises(ValueError, match="pad_token_id"):
        check_tokenizer_fits(config, tok)


def test_check_tokenizer_fits_names_every_problem(tokenizers):
    tok = tokenizers["shared-bpe"]
    config = config_from_tokenizer(tok, vocab_size=len(tok) - 1, pad_token_id=7, eos_token_id=9)
    with pytest.raises(ValueError) as error:
        check_tokenizer_fits(config, tok)
    message = str(error.value)
    assert "resize_token_embeddings" in message and "pad_token_id" in message and "eos_token_id" in message


def test_config_from_wrong_tokenizer_does_not_fit(tokenizers):
    # A BERT-style config (bos = [CLS] = 2) does not fit a GPT-style tokenizer (bos = <s> = 1).
    config = config_from_tokenizer(tokenizers["wordpiece"])
    with pytest.raises(ValueError, match="bos_token_id"):
        check_tokenizer_fits(config, tokenizers["byte-bpe"])
