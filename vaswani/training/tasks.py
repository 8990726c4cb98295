"""
What each objective and task feeds the model: tokenised datasets and the collator that batches them.

    clm            causal LM on running text, cut into blocks (nanoGPT's x, y = data[i:i+T], data[i+1:i+T+1])
    mlm (+ nsp)    BERT's masked LM on sentences; with NSP, sentence pairs of which half are random
    plm            XLNet's permutation LM on sentences: spans to predict, a factorisation order per sequence
    seq2seq        source and target columns, the target shifted right into decoder inputs by the collator
    sequence-classification, token-classification, question-answering: fine-tuning tasks
    image-classification   images and a label each, the image processor applied as rows are read
    captioning     images and a caption each: pixel values as rows are read, the tokenised caption as labels
"""

import functools
import random
from dataclasses import dataclass

import datasets
import torch
from transformers import (
    DataCollatorForLanguageModeling,
    DataCollatorForPermutationLanguageModeling,
    DataCollatorForSeq2Seq,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    default_data_collator,
)

from ..tokenization.tokenization_vaswani import _special_ids
from .data import UsageError, require_columns
from .packing import PackingReport, batch_padding, pack


@dataclass
class Prepared:
    """A tokenised train (and optional eval) set with the collator that batches it, and task facts for the head."""

    train: datasets.Dataset | None  # None when only evaluating
    eval: datasets.Dataset | None
    collator: object
    label_names: list[str] | None = None  # id -> label, for classification heads
    image_processor: object = None  # what made the pixel values, for scoring on the rows' images (captioning)
    trainer: type | None = None  # a Trainer these data need (the segment memory's streams), instead of the task's
    packing: PackingReport | None = None  # what `--pack` made of the training rows


def _map(table: datasets.Dataset, function, desc: str, **kwargs) -> datasets.Dataset:
    return table.map(function, batched=True, remove_columns=table.column_names, desc=desc, **kwargs)


# -- Pre-training -------------------------------------------------------------------------------------------------------
def clm_blocks(text: str, tokenizer, block_size: int) -> datasets.Dataset:
    """Token blocks of `block_size + 1` from one running text: each gives `block_size` next-token predictions."""
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]  # one long text, cut below
    span = block_size + 1
    blocks = [ids[i : i + span] for i in range(0, len(ids) - span + 1, span)]
    if not blocks:
        raise UsageError(f"The text has {len(ids)} tokens, fewer than one block of {span}: lower --block-size.")
    return datasets.Dataset.from_dict({"input_ids": blocks, "labels": blocks})


def prepare_clm(train_text: str | None, eval_text: str | None, tokenizer, block_size: int) -> Prepared:
    """Blocks of the training text and of the evaluation text; without a training text, the evaluation text must
    give at least one block (evaluation only)."""
    train = clm_blocks(train_text, tokenizer, block_size) if train_text is not None else None
    evaluate_only = train is None and eval_text is not None
    evaluation = clm_blocks(eval_text, tokenizer, block_size) if eval_text or evaluate_only else None
    return Prepared(train, evaluation, default_data_collator)


def clm_packed_blocks(documents: list[str], tokenizer, block_size: int, batch_size: int = 16):
    """
    Token blocks of `block_size + 1` from documents packed end to end, the eos token after each (GPT-2's
    <|endoftext|>), the last block short of full left out: the blocks and a `PackingReport`.
    """
    eos = _special_ids(tokenizer)["eos_token_id"]
    if eos is None:
        raise UsageError("--pack ends each document with the tokenizer's eos token, and this tokenizer has none (nor "
                         "a [SEP]): train a byte-bpe or char tokenizer, or drop --pack.")
    documents = [text for text in documents if text and text.strip()]
    ids = tokenizer(documents, add_special_tokens=False, verbose=False)["input_ids"] if documents else []
    blocks, left_out = pack(ids, block_size + 1, [eos], keep_last=False)
    if not blocks:
        raise UsageError(f"The {len(documents):,} documents have {left_out:,} tokens with their eos tokens, fewer "
                         f"than one block of {block_size + 1}: lower --block-size.")
    report = PackingReport(len(documents), sum(map(len, ids)), len(blocks), block_size + 1, 0, batch_size,
                           left_out=left_out, unit="documents")
    return datasets.Dataset.from_dict({"input_ids": blocks, "labels": blocks}), report


def prepare_clm_packed(train_documents: list[str] | None, evaluation: list[str] | str | None, tokenizer,
                       block_size: int, batch_size: int = 16) -> Prepared:
    """`prepare_clm` for `--pack`: documents (a table's rows) packed into blocks; a running text for evaluation is
    cut as `prepare_clm` cuts it."""
    train = report = None
    if train_documents is not None:
        train, report = clm_packed_blocks(train_documents, tokenizer, block_size, batch_size)
    if isinstance(evaluation, str):
        evaluation = clm_blocks(evaluation, tokenizer, block_size) if evaluation else None
    else:
        evaluation = clm_packed_blocks(evaluation, tokenizer, block_size)[0] if evaluation else None
    return Prepared(train, evaluation, default_data_collator, packing=report)


def packed_sentences(texts: list[str], tokenizer, max_length: int, batch_size: int = 16, multiple: int = 1,
                     seed: int = 0):
    """
    Sentences packed RoBERTa's way (Liu et al. 2019, "full-sentences") into rows of `max_length`: [CLS], then the
    sentences end to end with [SEP] after each, a sentence that does not fit running on into the next row; only the
    last row is short. Gives the rows and a `PackingReport` beside what the unpacked rows (one sentence each, cut at
    `max_length`) would have padded in shuffled batches of `batch_size` (padded to a `multiple`, as the collator
    pads them; shuffled by `seed`).
    """
    special = _special_ids(tokenizer)
    start = [] if special["bos_token_id"] is None else [special["bos_token_id"]]
    if special["eos_token_id"] is None:
        raise UsageError("--pack puts the tokenizer's [SEP] after each sentence, and this tokenizer has none: train "
                         "a wordpiece tokenizer, or drop --pack.")
    if max_length < len(start) + 2:
        raise UsageError(f"--max-length {max_length} leaves no room for a token after [CLS] in a packed row: raise "
                         f"--max-length.")
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
    rows, _ = pack(ids, max_length, [special["eos_token_id"]], start)
    extra = tokenizer.num_special_tokens_to_add()
    unpacked = [len(sentence) + extra for sentence in ids]
    padding, _ = batch_padding([len(row) for row in rows], batch_size, multiple, seed)
    unpacked_padding, positions = batch_padding([min(n, max_length) for n in unpacked], batch_size, multiple, seed)
    report = PackingReport(len(ids), sum(map(len, ids)), len(rows), max_length, padding, batch_size,
                           unpacked_padding, positions, truncated=sum(max(n - max_length, 0) for n in unpacked))
    return datasets.Dataset.from_dict({"input_ids": rows}), report


def _sentences(table, text_column: str) -> list[str]:
    """The table's sentences, one per row, blank rows left out (as the masked and permutation LMs read them)."""
    require_columns(table, [text_column], "the data")
    return [t for t in table[text_column] if t and t.strip()]


def _nsp_pairs(texts: list[str], seed: int) -> dict:
    """BERT's next-sentence pairs: B follows A (label 0) or B is a random sentence (label 1), half each."""
    rng = random.Random(seed)
    firsts, seconds, labels = [], [], []
    for i in range(len(texts) - 1):
        if rng.random() < 0.5:
            second, label = texts[i + 1], 0
        else:
            second, label = texts[rng.randrange(len(texts))], 1
        firsts.append(texts[i])
        seconds.append(second)
        labels.append(label)
    return {"first": firsts, "second": seconds, "next_sentence_label": labels}


def prepare_mlm(
    train: datasets.Dataset,
    evaluation: datasets.Dataset | None,
    tokenizer,
    text_column: str,
    max_length: int,
    nsp: bool = False,
    seed: int = 0,
    mlm_probability: float = 0.15,
    pack: bool = False,
    batch_size: int = 16,
) -> Prepared:
    """BERT's masked LM on sentences, one per row (or `pack`ed, as `packed_sentences` packs them; not with `nsp`,
    whose pairs are two sentences each); the collator masks and pads."""
    if tokenizer.mask_token is None:
        raise UsageError("Masked-LM pre-training needs a tokenizer with a mask token: train a wordpiece tokenizer.")
    if pack and nsp:
        raise UsageError("--pack fills rows with many sentences, and next-sentence prediction needs a pair of "
                         "sentences per row: drop --pack or --nsp.")

    def tokenize(table):
        """The table's rows, and what packing made of them (None unpacked)."""
        if table is None:
            return None, None
        texts = _sentences(table, text_column)
        if pack:
            return packed_sentences(texts, tokenizer, max_length, batch_size, seed=seed)
        if nsp:
            if len(texts) < 2:
                raise UsageError("Next-sentence prediction needs at least two sentences.")
            pairs = datasets.Dataset.from_dict(_nsp_pairs(texts, seed))

            def encode(batch):
                encoded = tokenizer(batch["first"], batch["second"], truncation=True, max_length=max_length)
                encoded["next_sentence_label"] = batch["next_sentence_label"]
                return encoded

            return _map(pairs, encode, "Tokenising sentence pairs"), None
        plain = datasets.Dataset.from_dict({"text": texts})
        return _map(plain, lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), "Tokenising"), None

    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mlm_probability, seed=seed)
    (rows, packing), (evaluation_rows, _) = tokenize(train), tokenize(evaluation)
    return Prepared(rows, evaluation_rows, collator, packing=packing)


@dataclass
class PermutationCollator:
    """
    XLNet's permutation-LM batches from transformers' `DataCollatorForPermutationLanguageModeling`, made fit for the
    model: rows padded to an even length (the collator permutes within two halves and refuses odd lengths); an
    `attention_mask`, which it does not return (it leaves padding visible to every token); and `target_mapping`
    cut to the predicted positions (it gives one row per position, so the query stream would run L queries where
    about `plm_probability` * L are scored). Its spans and orders come from torch's global generator (the collator
    takes no seed): Trainer seeds it.
    """

    tokenizer: object
    plm_probability: float = 1 / 6
    max_span_length: int = 5

    def __post_init__(self):
        self.permute = DataCollatorForPermutationLanguageModeling(
            self.tokenizer, plm_probability=self.plm_probability, max_span_length=self.max_span_length
        )

    def __call__(self, examples: list[dict]) -> dict:
        padded = self.tokenizer.pad(
            [{"input_ids": example["input_ids"]} for example in examples], pad_to_multiple_of=2, return_tensors="pt"
        )
        batch = dict(self.permute(list(padded["input_ids"])))
        batch["attention_mask"] = padded["attention_mask"]
        labels = batch["labels"]
        labelled = labels != -100
        count = max(int(labelled.sum(-1).max()), 1)
        # The labelled positions of each row first, in order; shorter rows end in unlabelled ones (label -100).
        positions = torch.argsort((~labelled).to(torch.int8), dim=-1, stable=True)[:, :count]
        batch["labels"] = labels.gather(1, positions)
        batch["target_mapping"] = torch.nn.functional.one_hot(positions, labels.shape[-1]).to(torch.float32)
        return batch


def prepare_plm(
    train: datasets.Dataset | None,
    evaluation: datasets.Dataset | None,
    tokenizer,
    text_column: str,
    max_length: int,
    plm_probability: float = 1 / 6,
    max_span_length: int = 5,
    pack: bool = False,
    batch_size: int = 16,
    seed: int = 0,
) -> Prepared:
    """XLNet's permutation LM on sentences (one per row, or `pack`ed), as `prepare_mlm` reads them;
    `PermutationCollator` batches."""
    if tokenizer.mask_token is None or tokenizer.pad_token is None:
        raise UsageError("Permutation-LM pre-training needs a tokenizer with a mask token and a pad token (the "
                         "collator replaces targets by the mask): train a wordpiece tokenizer.")
    if max_length % 2:
        raise UsageError(f"--max-length {max_length} is odd: permutation LM needs an even length (the collator "
                         f"permutes within two halves): pass --max-length {max_length + 1} or {max_length - 1}.")

    def tokenize(table):
        """The table's rows, and what packing made of them (None unpacked)."""
        if table is None:
            return None, None
        texts = _sentences(table, text_column)
        if pack:  # rows of max_length, even; the collator pads a short last row to an even length
            return packed_sentences(texts, tokenizer, max_length, batch_size, multiple=2, seed=seed)
        plain = datasets.Dataset.from_dict({"text": texts})
        return _map(plain, lambda b: tokenizer(b["text"], truncation=True, max_length=max_length), "Tokenising"), None

    collator = PermutationCollator(tokenizer, plm_probability, max_span_length)
    (rows, packing), (evaluation_rows, _) = tokenize(train), tokenize(evaluation)
    return Prepared(rows, evaluation_rows, collator, packing=packing)


def prepare_seq2seq(
    train: datasets.Dataset,
    evaluation: datasets.Dataset | None,
    tokenizer,
    model,
    source_column: str,
    target_column: str,
    max_length: int,
) -> Prepared:
    def tokenize(table):
        if table is None:
            return None
        require_columns(table, [source_column, target_column], "the data")

        def encode(batch):
            return tokenizer(
                batch[source_column], text_target=batch[target_column], truncation=True, max_length=max_length
            )

        return _map(table, encode, "Tokenising pairs")

    collator = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100)
    return Prepared(tokenize(train), tokenize(evaluation), collator)


# -- Fine-tuning --------------------------------------------------------------------------------------------------------
def label_names_of(tables: list[datasets.Dataset], column: str, known: list[str] | None = None) -> list[str]:
    """
    Label names for a classification column, index = label id: the `known` names of a trained model (the data must
    use no others), else the sorted string labels, else "0".."K-1" for integer labels.
    """
    values = set()
    for table in tables:
        if table is not None:
            for value in table[column]:
                values.update(value if isinstance(value, list) else [value])
    if known is not None:
        unknown = sorted(str(v) for v in values if str(v) not in known)
        if unknown:
            raise UsageError(f"Labels {unknown} in column {column!r} are not among the model's labels {known}.")
        return list(known)
    if all(isinstance(v, int) for v in values):
        if values and min(values) < 0:
            raise UsageError(f"Labels in column {column!r} must be 0 or more, found {min(values)}.")
        return [str(i) for i in range(max(values) + 1)] if values else None
    return sorted(str(v) for v in values)


def prepare_sequence_classification(
    train, evaluation, tokenizer, text_column: str, label_column: str, max_length: int, pair_column: str | None = None,
    known_labels: list[str] | None = None,
) -> Prepared:
    names = None

    def tokenize(table):
        if table is None:
            return None
        require_columns(table, [text_column, label_column, pair_column], "the data")
        index = {name: i for i, name in enumerate(names)}

        def encode(batch):
            pairs = batch[pair_column] if pair_column else None
            encoded = tokenizer(batch[text_column], pairs, truncation=True, max_length=max_length)
            encoded["labels"] = [index[str(v)] for v in batch[label_column]]
            return encoded

        return _map(table, encode, "Tokenising")

    for table in (train, evaluation):
        if table is not None:
            require_columns(table, [text_column, label_column, pair_column], "the data")
    names = label_names_of([train, evaluation], label_column, known_labels)
    return Prepared(tokenize(train), tokenize(evaluation), DataCollatorWithPadding(tokenizer), names)


def _label_values(table: datasets.Dataset, column: str) -> list:
    """A label column's values, a `ClassLabel`'s ids as their names (an image folder's sub-folder names)."""
    feature = table.features[column]
    values = table[column]
    return [feature.int2str(v) for v in values] if isinstance(feature, datasets.ClassLabel) else values


def _process_images(processor, batch: dict, stack_labels: bool = True) -> dict:
    images = [image.convert("RGB") for image in batch["pixel_values"]]  # grey, RGBA, palette: three channels
    labels = batch["labels"]  # one class each (stacked), or a caption's ids each (padded by the collator)
    return {"pixel_values": processor(images, return_tensors="pt")["pixel_values"],
            "labels": torch.tensor(labels) if stack_labels else labels}


def require_images(table: datasets.Dataset, image_column: str, columns=()) -> None:
    """Refuse a table without `columns`, or whose `image_column` is missing or holds no images, by name."""
    if image_column not in table.column_names:
        raise UsageError(f"The data has no column {image_column!r} of images (its columns are {table.column_names}): "
                         f"pass images (digits, mnist, digit-strips, mnist-strips, an image folder, a saved dataset), "
                         f"or name their column with --image-column.")
    require_columns(table, columns, "the data")
    if not isinstance(table.features[image_column], datasets.Image):
        raise UsageError(f"Column {image_column!r} holds {table.features[image_column]}, not images: choose the "
                         f"image column with --image-column.")


def _image_rows(table, image_column: str, labels: list, transform):
    """The table's images as `pixel_values` beside a `labels` column, `transform` applied as rows are read."""
    images = table.select_columns([image_column])
    if image_column != "pixel_values":
        images = images.rename_column(image_column, "pixel_values")
    return images.add_column("labels", labels).with_transform(transform)


def prepare_image_classification(
    train, evaluation, processor, image_column: str, label_column: str, known_labels: list[str] | None = None,
) -> Prepared:
    """
    Images and a label each. The image processor (resize, rescale, normalise) runs as rows are read
    (`with_transform`), on columns already named as the forward's arguments (`pixel_values`, `labels`), so that
    Trainer keeps them. Label names: a trained model's `known_labels`, else a `ClassLabel`'s names, else as for text.
    """
    tables = [table for table in (train, evaluation) if table is not None]
    for table in tables:
        require_images(table, image_column, [label_column])
    values = {id(table): _label_values(table, label_column) for table in tables}
    classes = next((t.features[label_column].names for t in tables
                    if isinstance(t.features[label_column], datasets.ClassLabel)), None)
    names = label_names_of([{label_column: v} for v in values.values()], label_column, known_labels or classes)
    index = {name: i for i, name in enumerate(names)}

    def rows(table):
        if table is None:
            return None
        labels = [index[str(v)] for v in values[id(table)]]
        return _image_rows(table, image_column, labels, functools.partial(_process_images, processor))

    return Prepared(rows(train), rows(evaluation), default_data_collator, names, image_processor=processor)


def _caption_batch(features: list[dict]) -> dict:
    """Stacked pixel values, and the captions' ids padded with -100 (ignored by the loss)."""
    longest = max(len(f["labels"]) for f in features)
    labels = [list(f["labels"]) + [-100] * (longest - len(f["labels"])) for f in features]
    return {"pixel_values": torch.stack([torch.as_tensor(f["pixel_values"]) for f in features]),
            "labels": torch.tensor(labels, dtype=torch.long)}


def prepare_captioning(train, evaluation, tokenizer, processor, image_column: str, caption_column: str,
                       max_length: int) -> Prepared:
    """
    Images and a caption each. The image processor runs as rows are read (as for image classification; a strip
    that is not square is resized to the model's square, as every image is); each caption is tokenised as a seq2seq
    target (`text_target`, cut at `max_length`) into `labels`, which the captioner shifts right into its decoder
    inputs itself.
    """
    def rows(table):
        if table is None:
            return None
        require_images(table, image_column, [caption_column])
        captions = [str(caption) for caption in table[caption_column]]
        labels = tokenizer(text_target=captions, truncation=True, max_length=max_length)["input_ids"]
        transform = functools.partial(_process_images, processor, stack_labels=False)
        return _image_rows(table, image_column, labels, transform)

    return Prepared(rows(train), rows(evaluation), _caption_batch, image_processor=processor)


def prepare_token_classification(
    train, evaluation, tokenizer, tokens_column: str, tags_column: str, max_length: int,
    known_labels: list[str] | None = None,
) -> Prepared:
    """Words and one tag per word; each word's first sub-word carries the tag, the others are ignored (-100)."""
    for table in (train, evaluation):
        if table is not None:
            require_columns(table, [tokens_column, tags_column], "the data")
    names = label_names_of([train, evaluation], tags_column, known_labels)
    index = {name: i for i, name in enumerate(names)}

    def encode(batch):
        encoded = tokenizer(batch[tokens_column], is_split_into_words=True, truncation=True, max_length=max_length)
        labels = []
        for row, tags in enumerate(batch[tags_column]):
            previous, row_labels = None, []
            for word in encoded.word_ids(row):
                row_labels.append(-100 if word is None or word == previous else index[str(tags[word])])
                previous = word
            labels.append(row_labels)
        encoded["labels"] = labels
        return encoded

    def tokenize(table):
        return None if table is None else _map(table, encode, "Tokenising")

    return Prepared(tokenize(train), tokenize(evaluation), DataCollatorForTokenClassification(tokenizer), names)


def answer_of(row, answer_column: str, start_column: str | None):
    """(text, character start) of a row's first answer: SQuAD's {"text": [...], "answer_start": [...]} or flat."""
    answer = row[answer_column]
    if isinstance(answer, dict):
        return answer["text"][0], int(answer["answer_start"][0])
    if start_column is None:
        raise UsageError(f"Column {answer_column!r} holds plain text: name its start column with --answer-start-column.")
    return answer, int(row[start_column])


def prepare_question_answering(
    train,
    evaluation,
    tokenizer,
    question_column: str,
    context_column: str,
    answer_column: str,
    start_column: str | None,
    max_length: int,
    doc_stride: int,
) -> Prepared:
    """Question and context windows (long contexts overlap by `doc_stride`); the answer's first and last token."""

    def encode(batch):
        encoded = tokenizer(
            batch[question_column],
            batch[context_column],
            truncation="only_second",
            max_length=max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="max_length",
        )
        starts, ends = [], []
        for window, offsets in enumerate(encoded["offset_mapping"]):
            example = encoded["overflow_to_sample_mapping"][window]
            row = {key: batch[key][example] for key in batch}
            text, char_start = answer_of(row, answer_column, start_column)
            char_end = char_start + len(text)
            sequence = encoded.sequence_ids(window)
            context = [i for i, s in enumerate(sequence) if s == 1]
            start = end = 0  # the answer is not in this window: point at the first token, as SQuAD v1 does
            if context and offsets[context[0]][0] <= char_start and offsets[context[-1]][1] >= char_end:
                start = next(i for i in context if offsets[i][1] > char_start)
                end = next(i for i in reversed(context) if offsets[i][0] < char_end)
            starts.append(start)
            ends.append(end)
        encoded["start_positions"] = starts
        encoded["end_positions"] = ends
        encoded.pop("offset_mapping")
        encoded.pop("overflow_to_sample_mapping")
        return encoded

    def tokenize(table):
        if table is None:
            return None
        require_columns(table, [question_column, context_column, answer_column, start_column], "the data")
        return _map(table, encode, "Tokenising windows")

    return Prepared(tokenize(train), tokenize(evaluation), default_data_collator)


def batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


@torch.no_grad()
def generate_texts(model, tokenizer, sources: list[str], max_length: int, batch_size: int = 32, **generate_kwargs):
    """Generated texts for `sources`, batch by batch (seq2seq: translations; causal: continuations)."""
    model.eval()
    outputs = []
    for batch in batches(sources, batch_size):
        inputs = tokenizer(batch, return_tensors="pt", padding=True, truncation=True, max_length=max_length)
        inputs = {k: v.to(model.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        generated = model.generate(**inputs, **generate_kwargs)
        if not model.config.is_encoder_decoder:
            generated = generated[:, inputs["input_ids"].shape[1] :]
        outputs.extend(tokenizer.batch_decode(generated, skip_special_tokens=True))
    return outputs


@torch.no_grad()
def generate_captions(model, tokenizer, processor, images: list, batch_size: int = 32, **generate_kwargs) -> list[str]:
    """Captions of `images` (PIL images), batch by batch: the image processor, `generate()`, the tokenizer."""
    model.eval()
    outputs = []
    for batch in batches(list(images), batch_size):
        pixel_values = processor([image.convert("RGB") for image in batch], return_tensors="pt")["pixel_values"]
        generated = model.generate(pixel_values=pixel_values.to(model.device, model.dtype), **generate_kwargs)
        outputs.extend(tokenizer.batch_decode(generated, skip_special_tokens=True))
    return outputs
