"""
Packing (issue 21): `TokenPacker` lays documents end to end and cuts full rows, and `pretrain --pack` trains on such
rows. A packed batch equals the tokenised documents concatenated with their separators, every token exactly once, in
order; the padding a run reports is what transformers' collators really pad; the command line packs mlm and a clm
table, says what it saved, records it in the model card, and refuses what cannot be packed.
"""

import json
import math
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_cli import TINY, cli, ok
from vaswani.tokenization.tokenization_vaswani import train_tokenizer
from vaswani.training import tasks
from vaswani.training.packing import PackingReport, TokenPacker, batch_padding, pack

QUICK = settings(max_examples=60, derandomize=True, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])
WORDS = "the a cat dog sat ran on under mat rug big small red old film was good bad and but".split()


def _sentences(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30))) for _ in range(count)]


@pytest.fixture(scope="module")
def wordpiece():
    return train_tokenizer(_sentences(200), kind="wordpiece", vocab_size=120)


@pytest.fixture(scope="module")
def char():
    return train_tokenizer(_sentences(200), kind="char", vocab_size=60)


def _table(texts):
    import datasets

    return datasets.Dataset.from_dict({"text": texts})


# -- TokenPacker --------------------------------------------------------------------------------------------------------
def test_rows_are_full_and_the_carry_waits_for_the_next_document():
    packer = TokenPacker(4, separator=[0])
    assert packer.add([1, 2]) == []  # 1 2 0: not a row yet
    assert packer.carry == [1, 2, 0]
    assert packer.add([3, 4, 5, 6, 7, 8]) == [[1, 2, 0, 3], [4, 5, 6, 7]]  # a long document runs on
    assert packer.carry == [8, 0]
    assert packer.flush() == [8, 0] and packer.flush() is None  # the end of the stream: the short row, once


def test_the_state_round_trip_continues_the_same_rows():
    documents = [[1] * 3, [2] * 7, [3] * 2, [4] * 9, [5]]
    whole = TokenPacker(5, [0])
    expected = [row for ids in documents for row in whole.add(ids)] + [whole.flush()]
    first = TokenPacker(5, [0])
    rows = [row for ids in documents[:2] for row in first.add(ids)]
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint holds it
    first.add([99])  # what the first packer does next does not reach the copy
    resumed = TokenPacker(5, [0])
    resumed.load_state_dict(state)
    rows += [row for ids in documents[2:] for row in resumed.add(ids)] + [resumed.flush()]
    assert rows == expected


def test_a_length_below_one_is_refused():
    with pytest.raises(ValueError, match="length"):
        TokenPacker(0)


@QUICK
@given(st.lists(st.integers(0, 40), max_size=30), st.integers(1, 17), st.integers(0, 2), st.data())
def test_every_token_comes_out_once_in_order_in_full_rows(sizes, length, separators, data):
    separator = [-1 - i for i in range(separators)]
    counter = iter(range(10**6))
    documents = [[next(counter) for _ in range(size)] for size in sizes]
    cut = data.draw(st.integers(0, len(documents)))  # a checkpoint between two documents
    packer = TokenPacker(length, separator)
    rows = [row for ids in documents[:cut] for row in packer.add(ids)]
    resumed = TokenPacker(length, separator)
    resumed.load_state_dict(packer.state_dict())
    rows += [row for ids in documents[cut:] for row in resumed.add(ids)]
    assert all(len(row) == length for row in rows)
    last = resumed.flush() or []
    assert len(last) < length
    assert [t for row in rows for t in row] + last == [t for ids in documents for t in ids + separator]


def test_pack_puts_the_start_token_first_and_keeps_or_leaves_out_the_last_row():
    documents = [[1, 2, 3], [4, 5], [6]]  # 1 2 3 0 4 5 0 6 0
    assert pack(documents, 4, [0], start=[9]) == ([[9, 1, 2, 3], [9, 0, 4, 5], [9, 0, 6, 0]], 0)
    assert pack(documents, 4, [0], keep_last=False) == ([[1, 2, 3, 0], [4, 5, 0, 6]], 1)


def test_batch_padding_pads_each_batch_to_its_longest_row():
    assert batch_padding([3, 5, 2, 2], 2, seed=None) == ((5 - 3) + 0, 10 + 4)
    assert batch_padding([3, 5, 2, 2], 2, multiple=2, seed=None) == ((6 - 3) + (6 - 5), 12 + 4)
    assert batch_padding([4, 4, 4], 2, seed=None) == (0, 12)
    # A shuffled order pads differently, and the same seed gives the same order.
    lengths = list(range(1, 41))
    assert batch_padding(lengths, 8, seed=None)[0] < batch_padding(lengths, 8, seed=3)[0]
    assert batch_padding(lengths, 8, seed=3) == batch_padding(lengths, 8, seed=3)


# -- A packed batch equals the concatenated documents ------------------------------------------------------------------
def test_packed_mlm_rows_are_the_sentences_concatenated_with_sep(wordpiece):
    texts = _sentences(120, seed=1)
    prepared = tasks.prepare_mlm(_table(texts), None, wordpiece, "text", 32, pack=True, batch_size=8)
    rows = prepared.train["input_ids"]
    stream = [t for text in texts for t in wordpiece(text, add_special_tokens=False)["input_ids"]
              + [wordpiece.sep_token_id]]  # each sentence alone, then [SEP]
    assert all(row[0] == wordpiece.cls_token_id for row in rows)
    assert all(len(row) == 32 for row in rows[:-1]) and 1 < len(rows[-1]) <= 32
    assert [t for row in rows for t in row[1:]] == stream  # every token once, in order
    for i, row in enumerate(rows):  # row by row
        assert row == [wordpiece.cls_token_id] + stream[31 * i : 31 * (i + 1)]
    # A batch of full rows reaches the model unpadded, and as the rows are (bar the masked tokens).
    batch = prepared.collator([prepared.train[i] for i in range(4)])
    assert batch["input_ids"].shape == (4, 32) and bool(batch["attention_mask"].all())
    kept = batch["labels"] == -100
    assert torch.equal(batch["input_ids"][kept], torch.tensor(rows[:4])[kept])
    report = prepared.packing
    assert (report.documents, report.rows, report.length) == (120, len(rows), 32)
    assert report.tokens == len(stream) - 120


def test_packed_clm_blocks_are_the_documents_concatenated_with_eos(char):
    documents = _sentences(60, seed=2)
    prepared = tasks.prepare_clm_packed(documents, documents[:20], char, 24, batch_size=4)
    stream = [t for text in documents for t in char(text, add_special_tokens=False)["input_ids"] + [char.eos_token_id]]
    blocks = prepared.train["input_ids"]
    assert prepared.train["labels"] == blocks  # the model shifts
    assert all(len(block) == 25 for block in blocks)
    assert [t for block in blocks for t in block] == stream[: 25 * len(blocks)]
    assert prepared.packing.left_out == len(stream) - 25 * len(blocks) < 25
    assert len(prepared.eval) > 0
    assert "no padding either" in str(prepared.packing)


def test_a_clm_pack_needs_an_eos_token(char):
    texts = _sentences(10)
    no_eos = train_tokenizer(texts, kind="char", vocab_size=60)
    no_eos.eos_token = None
    with pytest.raises(ValueError, match="eos"):
        tasks.prepare_clm_packed(texts, None, no_eos, 8)


# -- The padding reported is what the collators pad ---------------------------------------------------------------------
def _collated_padding(prepared, batch_size: int, seed: int) -> int:
    """Padding positions of the training rows, collated in batch_padding's shuffled order by the task's collator."""
    order = list(range(len(prepared.train)))
    random.Random(seed).shuffle(order)
    padding = 0
    for start in range(0, len(order), batch_size):
        batch = prepared.collator([prepared.train[i] for i in order[start : start + batch_size]])
        padding += int((batch["attention_mask"] == 0).sum())
    return padding


@pytest.mark.parametrize("objective", ["mlm", "plm"])
def test_the_reported_padding_is_the_collators(wordpiece, objective):
    texts = _sentences(90, seed=3)
    prepare = tasks.prepare_mlm if objective == "mlm" else tasks.prepare_plm
    packed = prepare(_table(texts), None, wordpiece, "text", 20, pack=True, batch_size=8, seed=5)
    unpacked = prepare(_table(texts), None, wordpiece, "text", 20, seed=5)
    report = packed.packing
    assert report.unpacked_padding == _collated_padding(unpacked, 8, seed=5) > 0
    assert report.padding == _collated_padding(packed, 8, seed=5) < 20
    assert report.unpacked_positions == report.unpacked_padding + sum(map(len, unpacked.train["input_ids"]))
    longer = [len(wordpiece(text)["input_ids"]) - 20 for text in texts]
    assert report.truncated == sum(n for n in longer if n > 0) > 0  # what unpacked rows cut, packed rows keep
    assert unpacked.packing is None


def test_the_report_reads_as_a_sentence():
    report = PackingReport(11497, 243118, 1900, 128, 0, 32, 187502, 430620)
    assert str(report) == ("Packed 11,497 sentences (243,118 tokens) into 1,900 rows of 128: 0 padding tokens; "
                           "unpacked, shuffled batches of 32 would have padded about 187,502 tokens (43.5% of their "
                           "positions).")


# -- The command line ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, wordpiece, char):
    folder = tmp_path_factory.mktemp("packing")
    wordpiece.save_pretrained(folder / "wordpiece")
    char.save_pretrained(folder / "char")
    rows = [{"text": text, "split": "train"} for text in _sentences(160, seed=4)]
    rows += [{"text": text, "split": "validation"} for text in _sentences(20, seed=5)]
    (folder / "sentences.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    (folder / "text.txt").write_text("\n".join(_sentences(100)), encoding="utf-8")
    return folder


def test_pretrain_mlm_pack_reports_the_padding_saved_and_trains(files):
    output = files / "mlm"
    run = ok("pretrain", "--objective", "mlm", "--pack", "--tokenizer", files / "wordpiece",
             "--data", files / "sentences.jsonl", "--max-length", "32", "--batch-size", "8", "--steps", "3",
             "--output", output, *TINY)
    said = next(line for line in run.out.splitlines() if line.startswith("Packed "))
    assert "Packed 160 sentences" in said and "rows of 32" in said and "batches of 8" in said
    assert math.isfinite(run.metrics["loss"])  # evaluated on packed rows
    card = json.loads((output / "config.json").read_text())["model_card_data"]
    assert said in card["training_procedure"]
    assert said in (output / "README.md").read_text()


def test_pretrain_clm_pack_on_a_table(files):
    run = ok("pretrain", "--objective", "clm", "--pack", "--tokenizer", files / "char",
             "--data", files / "sentences.jsonl", "--block-size", "32", "--batch-size", "4", "--steps", "2",
             "--output", files / "clm", *TINY)
    assert "Packed 160 documents" in run.out and "blocks of 33" in run.out


@pytest.mark.parametrize("argv, named", [
    (["--objective", "mlm", "--nsp", "--tokenizer", "wordpiece", "--data", "sentences.jsonl"], "--nsp"),
    (["--objective", "clm", "--tokenizer", "char", "--data", "text.txt"], "running text"),
    (["--objective", "clm", "--tokenizer", "char", "--data", "sentences.jsonl", "--memory-length", "8",
      "--positions", "alibi"], "--memory-length"),
    (["--objective", "seq2seq", "--tokenizer", "char", "--data", "sentences.jsonl"], "clm, mlm or plm"),
])
def test_what_cannot_be_packed_is_refused(files, argv, named):
    argv = [files / value if value in ("wordpiece", "char", "sentences.jsonl", "text.txt") else value
            for value in argv]
    run = cli("pretrain", "--pack", *argv, "--output", files / "refused", *TINY)
    assert run.code == 2 and named in run.err and "--pack" in run.err
    assert not (files / "refused").exists()
