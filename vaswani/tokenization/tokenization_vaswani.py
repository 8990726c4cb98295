"""
Tokenizers for the three shapes of the family, trained with the `tokenizers` library and returned as
`PreTrainedTokenizerFast`, so that `save_pretrained` writes a folder `AutoTokenizer` loads without remote code:

    "wordpiece"   BERT-style: [PAD] [UNK] [CLS] [SEP] [MASK], sentence pairs with token_type_ids
    "byte-bpe"    GPT-style byte-level BPE: <pad> <s> </s>, no unknown tokens, left padding for generation
    "shared-bpe"  one BPE vocabulary for source and target, as the paper shares 37k tokens between English and German
    "char"        one token per character (newlines included), as nanoGPT's Shakespeare: <pad> <s> </s> <unk>

The special tokens of the two BPE kinds take ids 0, 1, 2 (pad, bos, eos): `VaswaniConfig`'s defaults.
"""

import os
from collections.abc import Iterable, Iterator

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ..configuration.configuration_vaswani import VaswaniConfig


KINDS = ("wordpiece", "byte-bpe", "shared-bpe", "char")


def iterate_texts(source, text_column: str | list[str] | None = None, batch_size: int = 1000) -> Iterator[str]:
    """
    Texts from any of: an iterable of strings, a list of file paths (one text per line), or a `datasets.Dataset`
    (the `text_column` column, or several columns such as a translation pair's source and target).
    """
    if hasattr(source, "column_names"):  # a datasets.Dataset
        columns = [text_column] if isinstance(text_column, str) else text_column
        if not columns:
            string_columns = [c for c, f in source.features.items() if getattr(f, "dtype", None) == "string"]
            if not string_columns:
                raise ValueError(f"No text column in the dataset (columns: {source.column_names}); pass text_column.")
            columns = string_columns[:1]
        missing = [c for c in columns if c not in source.column_names]
        if missing:
            raise ValueError(f"Column(s) {missing} not in the dataset; it has {source.column_names}.")
        for start in range(0, len(source), batch_size):
            batch = source[start : start + batch_size]
            for column in columns:
                yield from (text for text in batch[column] if text)
        return
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    items = list(source) if not isinstance(source, Iterator) else source
    for item in items:
        if isinstance(item, os.PathLike) or (isinstance(item, str) and os.path.isfile(item)):
            with open(item, encoding="utf-8") as handle:
                yield from (line.rstrip("\n") for line in handle if line.strip())
        elif isinstance(item, str):
            yield item
        else:
            raise TypeError(f"Expected texts, file paths or a datasets.Dataset, got an item of type {type(item).__name__}.")


def train_tokenizer(
    source: Iterable[str] | str | os.PathLike,
    kind: str = "shared-bpe",
    vocab_size: int = 8000,
    model_max_length: int = 512,
    text_column: str | list[str] | None = None,
    min_frequency: int = 2,
    lowercase: bool = True,
) -> PreTrainedTokenizerFast:
    """
    Train a tokenizer of the given `kind` on `source` and return it ready to save.

    Args:
        source: texts (an iterable of strings), file paths, or a `datasets.Dataset`.
        kind: `"wordpiece"` (BERT-style), `"byte-bpe"` (GPT-style), `"shared-bpe"` (translation) or `"char"`.
        vocab_size: the target vocabulary size, special tokens included (for `"char"`, an upper bound).
        model_max_length: the longest sequence the model takes; `truncation=True` cuts there.
        text_column: with a dataset, the column(s) to read.
        min_frequency: merges or pieces seen fewer times are not learned.
        lowercase: lower-case text first (WordPiece only, as uncased BERT).
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown tokenizer kind {kind!r}; choose one of {KINDS}.")
    seen = [0]

    def texts():  # counts the texts with something in them, since the byte alphabet makes no vocabulary empty
        for text in iterate_texts(source, text_column):
            if text.strip():
                seen[0] += 1
                yield text
    if kind == "wordpiece":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials)
    elif kind == "byte-bpe":
        specials = ["<pad>", "<s>", "</s>"]
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    elif kind == "char":
        specials = ["<pad>", "<s>", "</s>", "<unk>"]
        tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
        tokenizer.decoder = decoders.Fuse()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=specials)
    else:
        specials = ["<pad>", "<s>", "</s>", "<unk>"]
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials)

    tokenizer.train_from_iterator(texts(), trainer=trainer)
    if seen[0] == 0:
        raise ValueError("The training texts are empty: there is nothing to learn a vocabulary from.")
    ids = {token: tokenizer.token_to_id(token) for token in specials}

    if kind == "wordpiece":
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tokenizer,
            model_max_length=model_max_length,
            pad_token="[PAD]",
            unk_token="[UNK]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
            padding_side="right",
            model_input_names=["input_ids", "token_type_ids", "attention_mask"],
        )
    # The three <pad> <s> </s> kinds differ in what they add around a text and on which side they pad.
    if kind == "byte-bpe":
        # A prompt starts with <s>; </s> is what the model learns to emit when a text ends.
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A </s> $B", special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])]
        )
    elif kind == "shared-bpe":
        # Each source and each target ends with </s>; the decoder starts from <s> (decoder_start_token_id).
        tokenizer.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", ids["</s>"])]
        )
    # (char: running text for language modelling, nothing is added.)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        model_max_length=model_max_length,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>" if "<unk>" in specials else None,
        padding_side="right" if kind == "shared-bpe" else "left",  # left: prompts for generation
        model_input_names=["input_ids", "attention_mask"],
    )


def _special_ids(tokenizer) -> dict:
    """The ids a model config needs, read from a tokenizer (BERT-style tokenizers use [CLS]/[SEP] as bos/eos)."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    return {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": bos, "eos_token_id": eos}


def config_from_tokenizer(tokenizer, config: VaswaniConfig | None = None, **overrides) -> VaswaniConfig:
    """
    A `VaswaniConfig` whose vocabulary size and special token ids are the tokenizer's: from `config` (or the
    defaults) with `overrides` applied. Positions follow the tokenizer's `model_max_length` when it is finite.
    """
    settings = config.to_dict() if config is not None else {}
    for key in ("model_type", "transformers_version", "architectures", "auto_map"):
        settings.pop(key, None)
    settings.update({"vocab_size": len(tokenizer), **_special_ids(tokenizer)})
    settings["decoder_start_token_id"] = settings["bos_token_id"]
    if "token_type_ids" in tokenizer.model_input_names:
        settings.setdefault("type_vocab_size", 2)
        settings["type_vocab_size"] = max(settings["type_vocab_size"], 2)
    if config is None and 0 < tokenizer.model_max_length < 1_000_000:
        settings["max_position_embeddings"] = tokenizer.model_max_length
    settings.update(overrides)
    return VaswaniConfig(**settings)


def check_tokenizer_fits(config: VaswaniConfig, tokenizer) -> None:
    """
    Raise a `ValueError` naming every disagreement between a model config and a tokenizer: a vocabulary larger than
    the model's, special token ids that differ, and a `model_max_length` beyond the model's learned positions (the
    tokenizer's truncation would let through inputs the model cannot take).
    """
    problems = []
    positions = config.max_position_embeddings
    if config.position_embedding_type == "learned" and tokenizer.model_max_length > positions:
        shown = tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else "unbounded"
        problems.append(
            f"the tokenizer's `model_max_length` is {shown} but the model has {positions} learned positions "
            f"(`max_position_embeddings`), so truncated inputs can be too long (set "
            f"tokenizer.model_max_length = {positions} and save the tokenizer again)"
        )
    if len(tokenizer) > config.vocab_size:
        problems.append(
            f"the tokenizer has {len(tokenizer)} tokens but the model's `vocab_size` is {config.vocab_size} "
            f"(call model.resize_token_embeddings({len(tokenizer)}))"
        )
    for name, token_id in _special_ids(tokenizer).items():
        configured = getattr(config, name)
        if isinstance(configured, list):
            configured = configured[0] if configured else None
        if token_id is not None and configured is not None and token_id != configured:
            problems.append(f"`{name}` is {configured} in the model config but {token_id} in the tokenizer")
    if problems:
        raise ValueError("The tokenizer does not fit the model: " + "; ".join(problems) + ".")


__all__ = ["KINDS", "check_tokenizer_fits", "config_from_tokenizer", "iterate_texts", "train_tokenizer"]
