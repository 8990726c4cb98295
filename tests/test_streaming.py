"""
Streaming pre-training (`vaswani pretrain --streaming`, vaswani/training/streaming.py) over corpora generated here:
hundreds of small gzipped shard files of random sentences.

- One pass of the stream holds every token of the corpus exactly once (counted), on one process and across the two
  processes of a torchrun training run (tests/stream_worker.py records every block each process's stream yields
  and every batch its Trainer trains on: the batches are the stream's blocks, in order, and the processes' differ).
- A packed block is the documents' tokens end to end with eos after each; every block is full but the last of a
  pass, which is padded (labels -100, attention mask 0).
- A stream continued from its `state_dict` (through JSON) after any number of blocks yields what the uninterrupted
  stream yields (hypothesis).
- A streaming run killed (SIGKILL) after a checkpoint and resumed with `--resume` trains on the same next batches and
  ends on the same weights as a run never interrupted.
- With `--attention-within-documents`, a document inside a packed block gets the logits it gets alone (every kind
  of position, eager and sdpa).
- Memory stays flat while one process, under an address-space limit (RLIMIT_AS), streams a corpus larger than the
  limit leaves it room for.
- What does not fit --streaming is refused with the option and the fix.
"""

import collections
import functools
import gzip
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import EOS, tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file
from test_distributed import FIND_UNUSED_WARNING

from vaswani import VaswaniForCausalLM
from vaswani.cli import build_parser, main, validate_args
from vaswani.tokenization import train_tokenizer
from vaswani.training.data import UsageError
from vaswani.training.streaming import DocumentPositions, StreamingBlocks, corpus_files, document_positions


ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("stream_worker.py")
WORDS = ("the king is dead long live the queen of hearts who stole some tarts all on a summer day and took them "
         "clean away").split()
TINY = ["--d-model", "32", "--num-heads", "4", "--d-ff", "64", "--layers", "2", "--dropout", "0", "--quiet",
        "--logging-steps", "1000"]
TIMEOUT = 300


def write_corpus(folder: Path, files: int, seed: int = 0, kind: str = "jsonl") -> list[str]:
    """`files` gzipped shards of 1-4 random sentences each; the documents, in file order."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    documents = []
    for index in range(files):
        texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 14))) for _ in range(rng.randint(1, 4))]
        with gzip.open(folder / f"shard-{index:04d}.{kind}.gz", "wt") as handle:
            if kind == "jsonl":
                handle.writelines(json.dumps({"text": text}) + "\n" for text in texts)
            else:  # a .txt file is one document
                texts = ["\n".join(texts)]
                handle.write(texts[0])
        documents.extend(texts)
    return documents


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    tokenizer = train_tokenizer([" ".join(WORDS)], kind="char", model_max_length=1024)
    folder = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(folder)
    tokenizer.folder = folder
    return tokenizer


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus") / "shards"
    documents = write_corpus(folder, 300)
    return folder, documents


def corpus_tokens(tokenizer, documents) -> collections.Counter:
    counts = collections.Counter()
    for text in documents:
        counts.update(tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])
    return counts


def rows_of(stream) -> list[list[int]]:
    return [row["input_ids"][row["attention_mask"].bool()].tolist() for row in stream]


def _env() -> dict:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _records(report: Path, rank: int = 0) -> list[dict]:
    return [json.loads(line) for line in (report / f"rank{rank}.jsonl").read_text().splitlines()]


def _batches(report: Path) -> list:
    """The batches of a one-process run's training (its only reading of the stream: no probe without DDP)."""
    records = _records(report)
    assert {r["reading"] for r in records} == {1}
    return [r["batch"] for r in records if "batch" in r]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- The stream ---------------------------------------------------------------------------------------------------------
def test_one_pass_holds_every_token_once(tokenizer, corpus):
    folder, documents = corpus
    builder, files = corpus_files(str(folder))
    assert (builder, len(files)) == ("json", 300)
    rows = rows_of(StreamingBlocks(builder, files, tokenizer, 17, shuffle_buffer=64, epochs=1, rank=0, world_size=1))
    counted = collections.Counter(token for row in rows for token in row)
    assert counted == corpus_tokens(tokenizer, documents)
    assert sum(len(row) < 17 for row in rows) == 1  # only the pass's last block is partial


def test_a_packed_block_is_the_documents_end_to_end(tokenizer, tmp_path):
    documents = write_corpus(tmp_path / "one", 1, seed=3) + write_corpus(tmp_path / "two", 1, seed=4)
    joined = []
    for text in documents:
        joined += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    shard = tmp_path / "both.jsonl"
    shard.write_text("".join(json.dumps({"text": text}) + "\n" for text in documents))
    stream = StreamingBlocks("json", [str(shard)], tokenizer, 8, shuffle_buffer=0, epochs=1, rank=0, world_size=1)
    rows = list(stream)
    assert [token for row in rows_of(rows) for token in row] == joined
    assert all(row["input_ids"].shape == (8,) for row in rows)
    last = rows[-1]
    pad = 8 - len(joined) % 8 if len(joined) % 8 else 0
    assert int((last["attention_mask"] == 0).sum()) == pad and int((last["labels"] == -100).sum()) == pad
    assert (rows[0]["labels"] == rows[0]["input_ids"]).all()  # the model shifts the labels itself


def test_text_shards_are_one_document_each(tokenizer, tmp_path):
    documents = write_corpus(tmp_path / "txt", 12, kind="txt")
    builder, files = corpus_files(str(tmp_path / "txt" / "*.txt.gz"))
    rows = rows_of(StreamingBlocks(builder, files, tokenizer, 16, shuffle_buffer=5, epochs=1, rank=0, world_size=1))
    assert collections.Counter(t for row in rows for t in row) == corpus_tokens(tokenizer, documents)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(share=st.floats(0, 1), buffer=st.sampled_from([0, 1, 7, 40]), batch=st.sampled_from([1, 3]))
def test_a_stream_continues_from_its_state(tokenizer, corpus, share, buffer, batch):
    folder, _ = corpus
    builder, files = corpus_files(str(folder))
    files = files[:40]

    def stream():
        return StreamingBlocks(builder, files, tokenizer, 13, shuffle_buffer=buffer, seed=5, batch_size=batch,
                               epochs=2, rank=1, world_size=2)

    whole = rows_of(stream())
    stop = int(share * len(whole))  # anywhere in the two passes: reading, emptying the buffer, between them
    first = stream()
    iterator = iter(first)
    head = [next(iterator) for _ in range(stop)] if stop else []
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint keeps it
    assert len(head) == stop
    second = stream()
    second.load_state_dict(state)
    assert rows_of(head) + rows_of(second) == whole
    if stop and stop % batch == 0:
        assert json.loads(json.dumps(first.state_at(stop))) == state


def test_a_stream_resumed_at_the_very_end_of_a_pass_goes_on_to_the_next(tokenizer, corpus):
    folder, _ = corpus
    builder, files = corpus_files(str(folder))

    def stream():
        return StreamingBlocks(builder, files[:30], tokenizer, 13, shuffle_buffer=7, seed=2, epochs=2, rank=0,
                               world_size=1)

    first_pass = rows_of(StreamingBlocks(builder, files[:30], tokenizer, 13, shuffle_buffer=7, seed=2, epochs=1,
                                         rank=0, world_size=1))
    whole, cut = rows_of(stream()), stream()
    iterator = iter(cut)
    for _ in first_pass:  # every block of the first pass, and not one more
        next(iterator)
    state = json.loads(json.dumps(cut.state_dict()))
    assert state["exhausted"] and not state["buffer"]
    rest = stream()
    rest.load_state_dict(state)
    assert rows_of(rest) == whole[len(first_pass):] and len(whole) > len(first_pass)


def test_a_stream_refuses_another_streams_state(tokenizer, corpus):
    folder, _ = corpus
    builder, files = corpus_files(str(folder))
    state = StreamingBlocks(builder, files, tokenizer, 13, rank=0, world_size=2).state_dict()
    other = StreamingBlocks(builder, files, tokenizer, 13, rank=0, world_size=3)
    with pytest.raises(UsageError, match="processes"):
        other.load_state_dict(state)


# -- Attention within documents -----------------------------------------------------------------------------------------
def test_document_positions_start_again_after_each_eos_and_at_the_padding():
    eos = 2
    ids = torch.tensor([[5, 6, eos, 7, 8, 9, eos, 4], [5, eos, 6, 7, 0, 0, 0, 0]])
    mask = torch.tensor([[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0]])
    assert document_positions(ids, mask, eos).tolist() == [[0, 1, 2, 0, 1, 2, 3, 0], [0, 1, 0, 1, 0, 1, 2, 3]]


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("kind", ["learned", "sinusoidal", "rotary", "alibi", "relative"])
def test_a_document_in_a_block_is_computed_as_it_is_alone(kind, implementation):
    """With DocumentPositions' batches (and no cache, as VaswaniStreamingTrainer runs them), each document of a
    packed block gets the logits it gets alone; a plain block's later documents see the earlier ones."""
    torch.manual_seed(0)
    model = VaswaniForCausalLM(tiny_config(position_embedding_type=kind)).eval()
    model.set_attn_implementation(implementation)
    documents = [torch.tensor([5, 6, 7, 8, EOS]), torch.tensor([9, 10, 11, EOS]), torch.tensor([12, 13])]
    row = torch.cat(documents)
    batch = DocumentPositions(EOS)([{"input_ids": row, "attention_mask": torch.ones_like(row), "labels": row}])
    assert set(batch) == {"input_ids", "position_ids", "labels"}
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
        alone = torch.cat([model(input_ids=document[None]).logits[0] for document in documents])
        across = model(input_ids=row[None]).logits[0]
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(across[5:], alone[5:], atol=1e-3)  # without it, attention crosses the boundaries


def test_a_stream_with_attention_within_documents_trains_on_such_batches(tokenizer, corpus, tmp_path, monkeypatch):
    folder, _ = corpus
    calls, forward = [], VaswaniForCausalLM.forward

    @functools.wraps(forward)  # Trainer keeps the columns the signature names
    def recorded(self, *args, **kwargs):
        if self.training:
            calls.append((kwargs.get("use_cache"), "position_ids" in kwargs, "attention_mask" in kwargs))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(VaswaniForCausalLM, "forward", recorded)
    code = main(_pretrain(tokenizer, folder, tmp_path / "model", "--steps", "3", "--batch-size", "4",
                          "--attention-within-documents"))
    assert code == 0 and (tmp_path / "model" / "model.safetensors").is_file()
    assert calls == [(False, True, False)] * 3  # no cache, documents' positions, no mask: the documents' masks


# -- Training -----------------------------------------------------------------------------------------------------------
def _pretrain(tokenizer, data, output, *extra) -> list[str]:
    return ["pretrain", "--objective", "clm", "--streaming", "--tokenizer", str(tokenizer.folder), "--data",
            str(data), "--block-size", "16", *TINY, "--output", str(output), *extra]


def test_two_torchrun_processes_train_on_every_token_once_per_pass(tokenizer, corpus, tmp_path):
    folder, documents = corpus
    report = tmp_path / "report"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(_free_port()), str(WORKER), str(report),
               *_pretrain(tokenizer, folder, tmp_path / "model", "--steps", "150", "--batch-size", "16",
                          "--shuffle-buffer", "50")]
    done = subprocess.run(command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert FIND_UNUSED_WARNING not in done.stderr  # the probe found every parameter used
    expected = corpus_tokens(tokenizer, documents)
    first_pass, trained = collections.Counter(), []
    for rank in (0, 1):
        records = _records(report, rank)
        training = max(r["reading"] for r in records)  # the last reading of the stream (DDP's probe read one batch)
        records = [r for r in records if r["reading"] == training]
        rows = [r for r in records if "row" in r]
        batches = [r["batch"] for r in records if "batch" in r]
        assert max(r["pass"] for r in rows) >= 1, "the run should go past one pass of its share"
        mine = [r["row"] for r in rows if r["pass"] == 0]
        assert mine, f"process {rank} read nothing"
        first_pass.update(token for row in mine for token in row)
        # What training read is what the stream gave, in order: nothing re-sharded, dispatched or skipped.
        assert len(batches) >= 150 and all(len(batch) == 16 for batch in batches)
        flat = [[t for t in row if t != tokenizer.pad_token_id] for batch in batches for row in batch]
        assert flat == [r["row"] for r in rows][: len(flat)]
        trained.append(flat)
    assert first_pass == expected  # the two shares together: the corpus, every token once
    assert trained[0][:50] != trained[1][:50]
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_a_killed_streaming_run_resumes_where_its_stream_stood(tokenizer, corpus, tmp_path):
    folder, _ = corpus
    extra = ["--steps", "8", "--save-steps", "4", "--batch-size", "4", "--gradient-accumulation", "2",
             "--shuffle-buffer", "30", "--seed", "3"]

    def run(output, report, *more, kill=False):
        env = _env()
        if kill:
            env["VASWANI_INTERRUPT_AT"] = "checkpoint:SIGKILL"
        command = [sys.executable, str(WORKER), str(report), *_pretrain(tokenizer, folder, output, *extra, *more)]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)

    whole = run(tmp_path / "whole", tmp_path / "r-whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = run(tmp_path / "cut", tmp_path / "r-killed", kill=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "cut").exists()
    checkpoint = tmp_path / "cut.checkpoints" / "checkpoint-4"
    assert (checkpoint / "stream_state_0.json").is_file()
    other = run(tmp_path / "cut", tmp_path / "r-other", "--resume", "--batch-size", "2")  # argparse: the last wins
    assert other.returncode == 2 and "--batch-size and --gradient-accumulation" in other.stderr, other.stderr[-2000:]
    resumed = run(tmp_path / "cut", tmp_path / "r-resumed", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    uninterrupted, after = _batches(tmp_path / "r-whole"), _batches(tmp_path / "r-resumed")
    assert len(uninterrupted) >= 16 and len(after) >= 8
    assert after[:8] == uninterrupted[8:16]  # steps 5-8: two batches each, the stream continued, not restarted
    first = load_file(tmp_path / "whole" / "model.safetensors")
    second = load_file(tmp_path / "cut" / "model.safetensors")
    assert first.keys() == second.keys()
    assert all((first[name] == second[name]).all() for name in first)


MEMORY_CHILD = textwrap.dedent("""
    import json, resource, sys
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    from vaswani.training.streaming import StreamingBlocks, corpus_files

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024

    words = sys.argv[2].split()
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "</s>", *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="</s>")
    builder, files = corpus_files(sys.argv[1])
    stream = iter(StreamingBlocks(builder, files, tokenizer, 1025, shuffle_buffer=200, epochs=1, batch_size=16,
                                  rank=0, world_size=1))
    for _ in range(400):  # warm up: the reader, the tokenizer and the buffer at their working size
        next(stream)
    room = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (status("VmSize") + room, resource.RLIM_INFINITY))
    start, samples, blocks = status("VmRSS"), [], 400
    for blocks, _ in enumerate(stream, start=401):
        if blocks % 200 == 0:
            samples.append(status("VmRSS"))
    samples.append(status("VmRSS"))
    print(json.dumps({"start": start, "samples": samples, "blocks": blocks, "room": room}))
""")


def test_memory_stays_flat_streaming_a_corpus_larger_than_allowed(tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    line = json.dumps({"text": " ".join(WORDS * 4)}) + "\n"
    per_shard, shards = 4000, 20  # 1.9 MB of text per shard, a few kB gzipped
    for index in range(shards):
        with gzip.open(folder / f"part-{index:03d}.jsonl.gz", "wt", compresslevel=1) as handle:
            handle.write(line * per_shard)
    text_bytes = shards * per_shard * len(line)
    room = 20 * 2**20  # what the process may take beyond what it holds once warmed up
    assert text_bytes > 1.5 * room
    done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(folder), " ".join(sorted(set(WORDS))), str(room)],
                          env={**_env(), "MALLOC_ARENA_MAX": "2"}, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.splitlines()[-1])
    tokens = shards * per_shard * (4 * len(WORDS) + 1)  # the words and eos of every document
    assert figures["blocks"] == -(-tokens // 1025)  # the whole corpus streamed
    # As Python lists the corpus's tokens alone would take 8 bytes each, well past the room it had.
    assert tokens * 8 > 2 * room
    samples = figures["samples"]
    assert len(samples) > 20
    # Flat: the second half of the corpus adds nothing to what the first half needed (a few MB of allocator noise).
    half = len(samples) // 2
    assert max(samples[half:]) - max(samples[:half]) < 4 * 2**20, figures
    assert max(samples) - figures["start"] < room, figures


# -- Refusals -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, words", [
    (["--objective", "mlm", "--steps", "5"], "--objective clm"),
    (["--objective", "clm"], "--steps"),
    (["--objective", "clm", "--steps", "5", "--validation-fraction", "0.2"], "--eval-data"),
    (["--objective", "clm", "--steps", "5", "--max-train-samples", "9"], "--max-train-samples"),
    (["--objective", "clm", "--steps", "5", "--memory-length", "8"], "--memory-length"),
    (["--objective", "clm", "--steps", "5", "--pack"], "always packed"),
])
def test_what_does_not_fit_streaming_is_refused(extra, words):
    args = build_parser().parse_args(["pretrain", "--streaming", "--tokenizer", "t", "--data", "d", "--output", "o",
                                      *extra])
    with pytest.raises(UsageError, match=words.replace("-", r"\-")):
        validate_args(args)


@pytest.mark.parametrize("option", [["--shuffle-buffer", "9"], ["--attention-within-documents"]])
def test_stream_options_without_streaming_are_refused(option):
    args = build_parser().parse_args(["pretrain", "--objective", "clm", "--tokenizer", "t", "--data", "d",
                                      "--output", "o", *option])
    with pytest.raises(UsageError, match=f"{option[0]}.*add --streaming"):
        validate_args(args)


def test_corpus_files_are_found_and_checked(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.jsonl").write_text("{}")
    with pytest.raises(UsageError, match="mixes kinds"):
        corpus_files(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no corpus file"):
        corpus_files(str(tmp_path / "empty"))
    assert corpus_files(str(tmp_path / "*.txt")) == ("text", [str(tmp_path / "a.txt")])
    assert corpus_files("someone/corpus") == ("hub", ["someone/corpus"])


def test_a_hub_corpus_that_cannot_be_reached_is_a_usage_error(tokenizer, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    stream = StreamingBlocks("hub", ["someone/no-such-corpus"], tokenizer, 13, rank=0, world_size=1)
    with pytest.raises(UsageError, match="someone/no-such-corpus"):
        stream.check()  # what prepare_streaming calls before the model trains


def test_a_share_without_tokens_is_refused_not_read_forever(tokenizer, tmp_path):
    shard = tmp_path / "empty.jsonl"
    shard.write_text(json.dumps({"text": ""}) + "\n")
    stream = StreamingBlocks("json", [str(shard)], tokenizer, 13, rank=1, world_size=2)  # rank 1 gets no document
    with pytest.raises(UsageError, match="no token"):
        list(stream)
