"""
Permutation language modelling (XLNet, Yang et al. 2019): two-stream attention in the encoder and
VaswaniForPermutationLM. The query stream at a position never sees its own token, a prediction never depends on
tokens later in the factorisation order (and does on one earlier), for every position kind; the collator's batches
train; a PLM folder loads into every encoder head; `vaswani pretrain --objective plm` runs.

Weights are drawn with init_std 0.3: at the default 0.02 attention is nearly uniform and every "unchanged" check would
pass vacuously, so each is paired with a control that a visible change moves the output.
"""

import contextlib
import csv
import io
import json

import pytest
import torch
from transformers import Trainer, TrainingArguments

from helpers import ENCODER_HEADS, VOCAB, random_ids, shakespeare_lines, tiny_config
from vaswani import VaswaniForPermutationLM, VaswaniModel, train_tokenizer
from vaswani.cli import main
from vaswani.training.data import UsageError
from vaswani.training.tasks import PermutationCollator, prepare_plm

KINDS = ["sinusoidal", "learned", "rotary", "alibi", "relative"]
LENGTH = 8
MOVED = 1e-3  # a visible change moves a logit by more than this (seen: 0.5 to 6)


def build(kind: str = "rotary", **overrides) -> VaswaniForPermutationLM:
    torch.manual_seed(0)
    config = tiny_config(init_std=0.3, position_embedding_type=kind, **overrides)
    return VaswaniForPermutationLM(config).eval()


def ordered(order: list[int], targets: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """perm_mask (1, L, L) of a factorisation order (token i sees j iff j comes before i), target_mapping (1, m, L)."""
    rank = torch.empty(LENGTH, dtype=torch.long)
    rank[torch.tensor(order)] = torch.arange(LENGTH)
    perm_mask = (rank[None, :] >= rank[:, None]).float()  # 1: j is not earlier than i
    target_mapping = torch.nn.functional.one_hot(torch.tensor(targets), LENGTH).float()
    return perm_mask[None], target_mapping[None]


ORDER = [5, 2, 7, 0, 3, 6, 1, 4]  # the factorisation order: 5 first, 4 last
TARGETS = [3, 1, 4]  # predicted: ranks 4, 6 and 7 in the order


def changed(ids: torch.Tensor, positions) -> torch.Tensor:
    ids = ids.clone()
    for position in positions:
        ids[:, position] = 3 + (ids[:, position] - 3 + 1) % (VOCAB - 3)
    return ids


@torch.no_grad()
def predictions(model, ids, perm_mask, target_mapping) -> torch.Tensor:
    return model(input_ids=ids, perm_mask=perm_mask, target_mapping=target_mapping).logits


@pytest.mark.parametrize("kind", KINDS)
def test_the_query_stream_never_sees_its_own_token(kind):
    model = build(kind)
    ids = random_ids(1, LENGTH)
    perm_mask, target_mapping = ordered(ORDER, TARGETS)
    before = predictions(model, ids, perm_mask, target_mapping)
    for k, target in enumerate(TARGETS):
        own = predictions(model, changed(ids, [target]), perm_mask, target_mapping)
        assert torch.equal(own[:, k], before[:, k]), (kind, target)
        seen = ORDER[ORDER.index(target) - 1]  # the token just before it in the order
        moved = predictions(model, changed(ids, [seen]), perm_mask, target_mapping)
        assert (moved[:, k] - before[:, k]).abs().max() > MOVED, (kind, target, seen)
    # Where perm_mask would let a query see its own token (diagonal 0), it still does not attend to it. (Through
    # other tokens' content, a second layer would see it: keeping it from them is perm_mask's part, as above.)
    model, everything = build(kind, num_hidden_layers=1), torch.zeros_like(perm_mask)
    before = predictions(model, ids, everything, target_mapping)
    for k, target in enumerate(TARGETS):
        assert torch.equal(predictions(model, changed(ids, [target]), everything, target_mapping)[:, k], before[:, k])
        moved = predictions(model, changed(ids, [(target + 1) % LENGTH]), everything, target_mapping)
        assert (moved[:, k] - before[:, k]).abs().max() > MOVED, (kind, target)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_prediction_never_depends_on_later_tokens_in_the_order(kind, norm_first):
    model = build(kind, norm_first=norm_first)
    ids = random_ids(1, LENGTH)
    perm_mask, target_mapping = ordered(ORDER, TARGETS)
    before = predictions(model, ids, perm_mask, target_mapping)
    for k, target in enumerate(TARGETS):
        rank = ORDER.index(target)
        later = ORDER[rank:]  # itself and every token after it: two layers give no way round
        after = predictions(model, changed(ids, later), perm_mask, target_mapping)
        torch.testing.assert_close(after[:, k], before[:, k], rtol=0, atol=1e-6)
        earlier = predictions(model, changed(ids, [ORDER[0]]), perm_mask, target_mapping)
        assert (earlier[:, k] - before[:, k]).abs().max() > MOVED, (kind, target)


@pytest.mark.parametrize("kind", KINDS)
def test_the_query_stream_knows_its_position(kind):
    """Two predictions that see the same tokens differ only by their positions: they must differ."""
    model = build(kind)
    ids = random_ids(1, LENGTH)
    perm_mask = torch.zeros(1, LENGTH, LENGTH)
    perm_mask[:, :, [2, 5]] = 1  # nobody sees 2 or 5: both predictions see the same six tokens
    logits = predictions(model, ids, perm_mask, torch.nn.functional.one_hot(torch.tensor([[2, 5]]), LENGTH).float())
    assert (logits[:, 0] - logits[:, 1]).abs().max() > MOVED


@pytest.mark.parametrize("kind", ["rotary", "relative"])
def test_predictions_are_independent_and_the_content_stream_is_the_encoder(kind):
    """The query stream never attends to itself: one prediction alone equals it among others; with no order the
    content stream is the plain encoder (padding included)."""
    model = build(kind)
    ids = random_ids(2, LENGTH)
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    perm_mask, target_mapping = ordered(ORDER, TARGETS)
    perm_mask, target_mapping = perm_mask.expand(2, -1, -1), target_mapping.expand(2, -1, -1)
    with torch.no_grad():
        together = model(input_ids=ids, attention_mask=mask, perm_mask=perm_mask, target_mapping=target_mapping).logits
        alone = model(input_ids=ids, attention_mask=mask, perm_mask=perm_mask, target_mapping=target_mapping[:, 1:2])
        torch.testing.assert_close(alone.logits[:, 0], together[:, 1], rtol=0, atol=1e-6)
        streams = model.model.encoder(input_ids=ids, attention_mask=mask, perm_mask=torch.zeros_like(perm_mask))
        plain = model.model.encoder(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(streams.last_hidden_state, plain.last_hidden_state, rtol=0, atol=1e-5)
    # The first token of the order sees only itself in the content stream: the encoder over that token alone.
    first, positions = ORDER[0], torch.arange(LENGTH).expand(2, -1)
    with torch.no_grad():
        content = model.model.encoder(input_ids=ids, perm_mask=perm_mask, position_ids=positions).last_hidden_state
        lone = torch.nn.functional.one_hot(torch.tensor([first, first]), LENGTH)
        alone = model.model.encoder(input_ids=ids, attention_mask=lone, position_ids=positions).last_hidden_state
    torch.testing.assert_close(content[:, first], alone[:, first], rtol=0, atol=1e-5)
    assert (together[0] - together[1]).abs().max() > MOVED  # the rows' different tokens and padding matter


def test_bad_permutation_inputs_are_refused_by_name():
    model = build()
    ids = random_ids(2, LENGTH)
    perm_mask, target_mapping = ordered(ORDER, TARGETS)
    perm_mask, target_mapping = perm_mask.expand(2, -1, -1), target_mapping.expand(2, -1, -1)
    with pytest.raises(ValueError, match="`perm_mask` has shape"):
        model(input_ids=ids, perm_mask=perm_mask[:, :-1], target_mapping=target_mapping)
    with pytest.raises(ValueError, match="`perm_mask` must hold only 0s and 1s"):
        model(input_ids=ids, perm_mask=perm_mask * 2, target_mapping=target_mapping)
    with pytest.raises(ValueError, match="`target_mapping` must have exactly one 1 per row"):
        model(input_ids=ids, perm_mask=perm_mask, target_mapping=target_mapping * 0)
    with pytest.raises(ValueError, match="`target_mapping` has shape"):
        model(input_ids=ids, perm_mask=perm_mask, target_mapping=target_mapping[..., :-1])
    with pytest.raises(ValueError, match="`target_mapping` has batch size"):
        model(input_ids=ids, perm_mask=perm_mask, target_mapping=target_mapping[:1])
    with pytest.raises(ValueError, match="`labels` has shape"):
        model(input_ids=ids, perm_mask=perm_mask, target_mapping=target_mapping, labels=ids)
    with pytest.raises(ValueError, match="`query_embeds`"):
        model.model.encoder(input_ids=ids, perm_mask=perm_mask, target_mapping=target_mapping)


# -- Data, training, folders -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(shakespeare_lines(400), kind="wordpiece", vocab_size=200)


def test_the_collator_trains_the_head_and_predicts_only_targets(tokenizer, tmp_path):
    rows = [tokenizer(line, truncation=True, max_length=16) for line in shakespeare_lines(60)[:16]]
    collator = PermutationCollator(tokenizer, plm_probability=1 / 3, max_span_length=2)
    torch.manual_seed(0)
    batch = collator(rows[:4])
    length = batch["input_ids"].shape[1]
    assert length % 2 == 0 and batch["perm_mask"].shape == (4, length, length)
    assert torch.equal(batch["attention_mask"], (batch["input_ids"] != tokenizer.pad_token_id).long())
    targets = batch["target_mapping"].argmax(-1)
    labelled = batch["labels"] != -100
    # Every labelled prediction is at a masked position, and far fewer queries than positions run.
    assert bool((batch["input_ids"].gather(1, targets)[labelled] == tokenizer.mask_token_id).all())
    assert 0 < batch["labels"].shape[1] < length

    config = tiny_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, max_position_embeddings=16)
    model = VaswaniForPermutationLM(config)
    args = TrainingArguments(str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=4, report_to=[],
                             use_cpu=True, save_strategy="no", learning_rate=1e-3)
    before = model.query_embedding.detach().clone()
    trainer = Trainer(model=model, args=args, train_dataset=rows, data_collator=collator)
    result = trainer.train()
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.equal(model.query_embedding.detach(), before)  # the query stream's vector is learned


def test_prepare_plm_refuses_odd_lengths_and_tokenizers_without_a_mask(tokenizer):
    import datasets

    table = datasets.Dataset.from_dict({"text": ["a b c"]})
    with pytest.raises(UsageError, match="--max-length 15 is odd"):
        prepare_plm(table, None, tokenizer, "text", 15)
    bare = train_tokenizer(shakespeare_lines(100), kind="byte-bpe", vocab_size=300)
    assert bare.mask_token is None
    with pytest.raises(UsageError, match="mask token"):
        prepare_plm(table, None, bare, "text", 16)


def test_save_load_is_exact_and_a_plm_folder_loads_into_every_encoder_head(tmp_path):
    model = build("learned")
    assert model.lm_head.weight is model.get_input_embeddings().weight  # tied, and with a bias (XLNet's lm_loss)
    model.save_pretrained(tmp_path)
    loaded, info = VaswaniForPermutationLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values()), info
    ids = random_ids(2, LENGTH)
    perm_mask, target_mapping = ordered(ORDER, TARGETS)
    perm_mask, target_mapping = perm_mask.expand(2, -1, -1), target_mapping.expand(2, -1, -1)
    assert torch.equal(predictions(loaded.eval(), ids, perm_mask, target_mapping),
                       predictions(model, ids, perm_mask, target_mapping))
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["VaswaniForPermutationLM"]

    head_keys = {"query_embedding", "lm_head.bias"}  # lm_head.weight is the tied embedding
    encoder = {k: v for k, v in model.state_dict().items() if k.startswith("model.encoder.")}
    for head in ENCODER_HEADS + [VaswaniModel]:
        other, info = head.from_pretrained(tmp_path, output_loading_info=True)
        prefix = "" if head is VaswaniModel else "model."
        assert set(info["unexpected_keys"]) <= head_keys, (head.__name__, info["unexpected_keys"])
        assert not any(k.startswith(f"{prefix}encoder.") for k in info["missing_keys"]), head.__name__
        state = other.state_dict()
        for key, value in encoder.items():
            assert torch.equal(state[prefix + key[len("model."):]], value), (head.__name__, key)


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_pretrain_plm_then_finetune_a_classifier_from_it(tmp_path):
    data = tmp_path / "lines.csv"
    with open(data, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label", "split"])
        for i, line in enumerate(shakespeare_lines(300)[:120]):
            writer.writerow([line, i % 2, "test" if i % 6 == 0 else "train"])
    tokenizer = tmp_path / "tokenizer"
    code, _, err = _cli("train-tokenizer", "--data", data, "--kind", "wordpiece", "--columns", "text",
                        "--vocab-size", "200", "--output", tokenizer)
    assert code == 0, err[-2000:]
    tiny = ["--d-model", "32", "--num-heads", "4", "--layers", "2", "--quiet"]
    plm = tmp_path / "plm"
    code, out, err = _cli("pretrain", "--objective", "plm", "--tokenizer", tokenizer, "--data", data,
                          "--eval-split", "test", "--max-length", "32", "--plm-probability", "0.25",
                          "--max-span-length", "3", "--steps", "3", "--output", plm, *tiny)
    assert code == 0, err[-2000:]
    assert "perplexity" in out
    assert json.loads((plm / "config.json").read_text())["architectures"] == ["VaswaniForPermutationLM"]
    code, _, err = _cli("pretrain", "--objective", "plm", "--tokenizer", tokenizer, "--data", data,
                        "--max-length", "31", "--output", tmp_path / "odd", *tiny)
    assert code == 2 and "--max-length 31 is odd" in err and not (tmp_path / "odd").exists()
    classifier = tmp_path / "classifier"
    code, out, err = _cli("finetune", "--task", "sequence-classification", "--model", plm, "--data", data,
                          "--eval-split", "test", "--steps", "2", "--output", classifier, "--quiet")
    assert code == 0, err[-2000:]
    config = json.loads((classifier / "config.json").read_text())
    assert config["architectures"] == ["VaswaniForSequenceClassification"]
