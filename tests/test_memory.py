"""
Transformer-XL's segment memory (`memory_length`, `VaswaniSegmentMemory`, `VaswaniForCausalLM(..., memory=...)`):
exact where the paper's computation is (fixed weights), no gradient into the memory, per-row reset, refusals by
name, generate() with a memory consistent with the cache, and the Trainer that reads streams of segments
with memory.
"""

import copy

import pytest
import torch
from transformers import AutoConfig

from helpers import random_ids, tiny_config
from test_positions import KINDS
from vaswani import VaswaniConfig, VaswaniForCausalLM, VaswaniForMaskedLM, VaswaniSegmentMemory
from vaswani.modeling.cache_vaswani import DynamicCache
from vaswani.training.segment_memory import VaswaniMemoryTrainer, stream_segments

ATOL = 1e-5
MOVED = 1e-3  # what a change must move the logits by, for an "unchanged" check to mean anything


def build(kind: str, memory_length: int, norm_first: bool = False) -> VaswaniForCausalLM:
    """std 0.2: at 0.02 attention is nearly uniform and a wrong memory would move the logits less than ATOL."""
    torch.manual_seed(0)
    config = tiny_config(**copy.deepcopy(KINDS[kind]), init_std=0.2, memory_length=memory_length, norm_first=norm_first)
    return VaswaniForCausalLM(config).eval()


def segments(model, ids, length, memory):
    """The logits of `ids` read `length` tokens at a time with `memory`, side by side."""
    return torch.cat([model(ids[:, start:start + length], memory=memory).logits
                      for start in range(0, ids.shape[-1], length)], dim=1)


def banded(model, ids, length, memory_length):
    """One pass where query q sees its own segment's past and the memory_length tokens before the segment."""
    total = ids.shape[-1]
    q, k = torch.arange(total)[:, None], torch.arange(total)[None]
    mask = (k <= q) & (k >= (q // length) * length - memory_length)
    positions = torch.arange(total).expand(ids.shape[0], -1)
    return model(ids, attention_mask=mask.expand(ids.shape[0], 1, -1, -1), position_ids=positions).logits


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("kind", KINDS)
def test_segment_after_segment_equals_the_slice_of_one_pass(kind, norm_first):
    model = build(kind, memory_length=7, norm_first=norm_first)
    a, b = random_ids(2, 7), random_ids(2, 5)
    memory = VaswaniSegmentMemory(model.config)
    with torch.no_grad():
        model(a, memory=memory)
        after_a = model(b, memory=memory)
        whole = model(torch.cat((a, b), dim=1)).logits[:, 7:]
        alone = model(b).logits
    torch.testing.assert_close(after_a.logits, whole, atol=ATOL, rtol=0)
    assert after_a.memory is memory and after_a.cache is None
    assert (alone - whole).abs().max() > MOVED  # the memory is read: without it segment B reads otherwise


@pytest.mark.parametrize("factor", [0.5, 1, 2], ids=["M=L/2", "M=L", "M=2L"])
@pytest.mark.parametrize("kind", KINDS)
def test_k_segments_equal_one_pass_with_the_banded_mask(kind, factor):
    length = 6
    model = build(kind, memory_length=int(factor * length))
    ids = random_ids(2, 4 * length)
    memory = VaswaniSegmentMemory(model.config)
    with torch.no_grad():
        read = segments(model, ids, length, memory)
        reference = banded(model, ids, length, model.config.memory_length)
    torch.testing.assert_close(read, reference, atol=ATOL, rtol=0)
    assert memory.get_seq_length() == model.config.memory_length and memory.mask.shape == (2, model.config.memory_length)
    assert torch.equal(memory.token_ids, ids[:, -model.config.memory_length:])
    # The band matters: with a longer memory the reference itself changes.
    with torch.no_grad():
        assert (banded(model, ids, length, 3 * length) - reference).abs().max() > MOVED


@pytest.mark.parametrize("kind", ["rotary", "rotary-partial"])
def test_cropped_rotary_keys_need_their_re_base(kind, monkeypatch):
    """The control of the banded test: rotary keys left at the positions they were made at read other numbers."""
    length = 6
    model = build(kind, memory_length=length)
    ids = random_ids(2, 3 * length)
    with torch.no_grad():
        reference = banded(model, ids, length, length)
        monkeypatch.setattr(VaswaniSegmentMemory, "_rebase", staticmethod(lambda keys, dropped, rotary: keys))
        unturned = segments(model, ids, length, VaswaniSegmentMemory(model.config))
    assert (unturned - reference).abs().max() > MOVED


def test_no_gradient_flows_into_the_memory():
    model = build("rotary", memory_length=6).train()  # dropout is 0: training changes nothing else
    a, b = random_ids(2, 6), random_ids(2, 5)
    embeds_a = model.get_input_embeddings()(a).detach().requires_grad_()
    memory = VaswaniSegmentMemory(model.config)
    model(inputs_embeds=embeds_a, memory=memory)
    for layer in memory.layers:
        assert layer.keys.grad_fn is None and layer.values.grad_fn is None
        assert not layer.keys.requires_grad and not layer.values.requires_grad
    assert memory.token_ids is None  # segment A came as embeddings
    loss = model(b, labels=b, memory=memory).loss
    loss.backward()
    assert embeds_a.grad is None
    assert model.model.decoder.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    # The control: in one pass over A + B, B's loss does reach A's embeddings.
    joint = torch.cat((embeds_a, model.get_input_embeddings()(b)), dim=1)
    labels = torch.cat((torch.full_like(a, -100), b), dim=1)
    model(inputs_embeds=joint, labels=labels).loss.backward()
    assert embeds_a.grad is not None and embeds_a.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_reset_row_reads_as_a_fresh_stream(kind):
    model = build(kind, memory_length=6)
    a, b, c = random_ids(2, 6), random_ids(2, 6), random_ids(2, 6)
    memory = VaswaniSegmentMemory(model.config)
    with torch.no_grad():
        model(a, memory=memory)
        kept = copy.deepcopy(memory)
        memory.reset_rows([1])
        after_reset = model(b, memory=memory).logits
        after_c = model(c, memory=memory).logits
        fresh = model(torch.cat((b[1:], c[1:]), dim=1)).logits
        remembered = model(b, memory=kept).logits
        row0 = model(torch.cat((a[:1], b[:1]), dim=1)).logits[:, 6:]
    torch.testing.assert_close(after_reset[1:], fresh[:, :6], atol=ATOL, rtol=0)
    torch.testing.assert_close(after_c[1:], fresh[:, 6:], atol=ATOL, rtol=0)  # and its memory restarts from B
    torch.testing.assert_close(after_reset[:1], row0, atol=ATOL, rtol=0)  # the other row keeps its memory
    assert (remembered[1:] - fresh[:, :6]).abs().max() > MOVED  # without the reset row 1 reads A's memory


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_absolute_positions_are_refused_by_name(kind):
    with pytest.raises(ValueError, match=f"memory_length=8.*'{kind}'.*rotary"):
        tiny_config(position_embedding_type=kind, memory_length=8)


@pytest.mark.parametrize(
    "settings, words",
    [
        (dict(memory_length=-1), "non-negative"),
        (dict(memory_length=True), "non-negative"),
        (dict(memory_length=2.0, position_embedding_type="alibi"), "non-negative"),
        (dict(memory_length=8, position_embedding_type="rotary",
              rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0}), "'dynamic'"),
    ],
)
def test_bad_memory_lengths_are_refused_by_name(settings, words):
    with pytest.raises(ValueError, match=f"memory_length.*{words}|{words}.*memory_length"):
        tiny_config(**settings)


def test_a_memory_needs_a_decoder_only_model():
    config = tiny_config(position_embedding_type="alibi", memory_length=8)  # stacks default: encoder-decoder
    assert VaswaniForCausalLM(config).config.memory_length == 8
    with pytest.raises(ValueError, match="memory_length=8.*encoder-only"):
        VaswaniForMaskedLM(config)
    with pytest.raises(ValueError, match="memory_length=8.*cross-attention"):
        VaswaniForCausalLM(tiny_config(position_embedding_type="alibi", memory_length=8, add_cross_attention=True))


def test_the_forward_refuses_a_memory_it_cannot_use():
    model = build("alibi", memory_length=4)
    ids = random_ids(2, 4)
    memory = VaswaniSegmentMemory(model.config)
    with pytest.raises(ValueError, match="`memory` and `cache`"):
        model(ids, memory=memory, cache=DynamicCache())
    with pytest.raises(TypeError, match="VaswaniSegmentMemory"):
        model(ids, memory=DynamicCache())
    with pytest.raises(ValueError, match="memory_length=0"):
        build("alibi", memory_length=0)(ids, memory=VaswaniSegmentMemory(model.config))
    with pytest.raises(ValueError, match="memory_length"):
        VaswaniSegmentMemory(build("alibi", memory_length=0).config)
    model.train()
    model.activation_checkpointing_enable()
    with pytest.raises(ValueError, match="gradient checkpointing"):
        model(ids, memory=memory)
    model.activation_checkpointing_disable()
    model(ids, memory=memory)
    with pytest.raises(ValueError, match="3 rows.*has 2|2 rows.*has 3"):
        model(random_ids(3, 4), memory=memory)


def _greedy(model, prompt, **kwargs):
    return model.generate(prompt, max_new_tokens=5, min_new_tokens=5, do_sample=False,
                          return_dict_in_generate=True, output_logits=True, **kwargs)


@pytest.mark.parametrize("kind", ["rotary", "alibi", "relative"])
def test_generate_with_a_memory_continues_the_remembered_text(kind):
    model = build(kind, memory_length=8)
    a, prompt = random_ids(2, 8), random_ids(2, 3)
    memory = VaswaniSegmentMemory(model.config)
    with torch.no_grad():
        model(a, memory=memory)
    before = [(layer.keys.clone(), layer.values.clone()) for layer in memory.layers]
    with_memory = _greedy(model, prompt, memory=memory)
    reference = _greedy(model, torch.cat((a, prompt), dim=1))
    assert torch.equal(with_memory.sequences, reference.sequences[:, 8:])
    torch.testing.assert_close(torch.stack(with_memory.logits), torch.stack(reference.logits), atol=ATOL, rtol=0)
    for layer, (keys, values) in zip(memory.layers, before):  # the memory is left as it was
        assert torch.equal(layer.keys, keys) and torch.equal(layer.values, values)
    assert memory.get_seq_length() == 8 and torch.equal(memory.token_ids, a)
    alone = _greedy(model, prompt)
    assert (torch.stack(alone.logits) - torch.stack(with_memory.logits)).abs().max() > MOVED


@pytest.mark.parametrize("kind", ["rotary", "alibi"])
def test_generate_with_a_cropped_memory_equals_the_forward_with_it(kind):
    """A memory shorter than the text it read (rotary keys re-based): generate's steps are the forward's logits."""
    model = build(kind, memory_length=5)
    memory = VaswaniSegmentMemory(model.config)
    with torch.no_grad():
        for _ in range(2):
            model(random_ids(2, 4), memory=memory)
    prompt = random_ids(2, 3)
    output = _greedy(model, prompt, memory=memory)
    text = output.sequences[:, :-1]  # the prompt and every token read while generating
    with torch.no_grad():
        forward = model(text, memory=copy.deepcopy(memory)).logits[:, prompt.shape[-1] - 1:]
    torch.testing.assert_close(torch.stack(output.logits, dim=1), forward, atol=ATOL, rtol=0)


def test_generate_refuses_what_a_memory_cannot_decode():
    model = build("alibi", memory_length=4)
    memory = VaswaniSegmentMemory(model.config)
    with pytest.raises(ValueError, match="read a segment"):
        model.generate(random_ids(2, 3), memory=memory, max_new_tokens=2)
    with torch.no_grad():
        model(random_ids(2, 4), memory=memory)
    with pytest.raises(ValueError, match="`num_beams` must be 1"):
        model.generate(random_ids(2, 3), memory=memory, max_new_tokens=2, num_beams=2)
    with torch.no_grad():
        model(inputs_embeds=torch.randn(2, 4, 32), memory=memory)
    with pytest.raises(ValueError, match="inputs_embeds"):
        model.generate(random_ids(2, 3), memory=memory, max_new_tokens=2)


# -- Training and evaluation over streams -------------------------------------------------------------------------------
@pytest.mark.parametrize("world", [1, 2])
def test_each_row_continues_its_stream_from_batch_to_batch(world):
    """accelerate's round-robin sharding of in-order batches: process p's batch k row b follows its batch k - 1."""
    from accelerate.data_loader import BatchSamplerShard
    from torch.utils.data import BatchSampler, SequentialSampler

    batch, segment = 3, 4
    rows = stream_segments(list(range(200)), segment, streams=world * batch)
    seen = set()
    for process in range(world):
        sampler = BatchSamplerShard(BatchSampler(SequentialSampler(rows), batch, drop_last=True), world, process)
        batches = [[rows[i] for i in indices] for indices in sampler]
        assert len(batches) > 2
        for previous, current in zip(batches, batches[1:]):
            for before, after in zip(previous, current):
                assert after["input_ids"][0] == before["input_ids"][-1] + 1  # the next segment of the same stream
        for row in (row for rows_ in batches for row in rows_):
            assert row["shift_labels"] == [token + 1 for token in row["input_ids"]]
            seen.update(row["input_ids"])
    assert len(seen) == len(rows) * segment  # every segment read once, by one process


def _stream_trainer(model, rows, batch, tmp_path, **arguments):
    from transformers import TrainingArguments, default_data_collator

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=batch,
                             per_device_eval_batch_size=batch, report_to=[], use_cpu=True, **arguments)
    return VaswaniMemoryTrainer(model=model, args=args, train_dataset=rows, eval_dataset=rows,
                                data_collator=default_data_collator)


def test_the_memory_trainer_evaluates_a_text_in_order_with_memory(tmp_path):
    model = build("rotary", memory_length=6)
    batch, segment = 2, 5
    rows = stream_segments(random_ids(1, 81)[0].tolist(), segment, streams=batch)
    trainer = _stream_trainer(model, rows, batch, tmp_path)
    evaluated = trainer.evaluate()["eval_loss"]
    memory, losses = VaswaniSegmentMemory(model.config), []
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            step = rows[start:start + batch]
            losses.append(model(torch.tensor(step["input_ids"]), shift_labels=torch.tensor(step["shift_labels"]),
                                memory=memory).loss)
    assert evaluated == pytest.approx(torch.stack(losses).mean().item(), abs=1e-5)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(evaluated, abs=1e-6)  # each evaluation starts afresh
    model.config.memory_length = 0  # the same segments in order, without memory: the control
    assert abs(trainer.evaluate()["eval_loss"] - evaluated) > MOVED


def test_the_memory_trainer_carries_the_memory_from_step_to_step(tmp_path):
    model = build("alibi", memory_length=7)
    batch, segment = 2, 5
    ids = random_ids(1, 101)[0].tolist()
    rows = stream_segments(ids, segment, streams=batch)
    trainer = _stream_trainer(model, rows, batch, tmp_path, max_steps=3, learning_rate=1e-3, save_strategy="no")
    trainer.train()
    memory = trainer._memories["train"]
    assert memory.get_seq_length() == 7
    # After three steps each stream's memory holds its last 7 tokens read: the end of its third segment.
    last = rows[2 * batch:3 * batch]["input_ids"]
    previous = rows[batch:2 * batch]["input_ids"]
    expected = torch.tensor([p[-2:] + q for p, q in zip(previous, last)])
    assert torch.equal(memory.token_ids, expected)
    assert trainer.args.train_sampling_strategy == "sequential" and trainer.args.dataloader_drop_last


def test_pretrain_and_evaluate_with_a_memory_on_the_command_line(tmp_path):
    from test_cli import TINY, cli, ok
    from vaswani.training.data import SHAKESPEARE

    text = tmp_path / "text.txt"
    text.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:12000], encoding="utf-8")
    ok("train-tokenizer", "--data", text, "--kind", "char", "--output", tmp_path / "tokenizer")
    common = ("--data", text, "--validation-fraction", "0.2", "--block-size", "16", "--batch-size", "4")
    ok("pretrain", "--objective", "clm", "--memory-length", "16", "--positions", "alibi", "--tokenizer",
       tmp_path / "tokenizer", *common, "--steps", "20", "--lr", "3e-3", "--output", tmp_path / "model", *TINY)
    assert AutoConfig.from_pretrained(tmp_path / "model").memory_length == 16
    with_memory = ok("evaluate", "--model", tmp_path / "model", "--task", "clm", *common).metrics["loss"]
    without = ok("evaluate", "--model", tmp_path / "model", "--task", "clm", *common, "--memory-length", "0")
    assert without.metrics["loss"] != with_memory
    refused = cli("pretrain", "--objective", "clm", "--memory-length", "16", "--positions", "learned", "--tokenizer",
                  tmp_path / "tokenizer", *common, "--output", tmp_path / "other")
    assert refused.code == 2 and "--memory-length 16: add --positions rotary, alibi or relative" in refused.err
    refused = cli("pretrain", "--objective", "mlm", "--memory-length", "16", "--tokenizer", tmp_path / "tokenizer",
                  "--data", text, "--output", tmp_path / "other")
    assert refused.code == 2 and "--objective clm" in refused.err
