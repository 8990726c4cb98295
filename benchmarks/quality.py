"""
The README's quality figures, measured with the `vaswani` command line on the shipped corpora (CPU, 2 cores):

    shakespeare  GPT-style, Tiny Shakespeare at character level with nanoGPT's CPU settings (4 layers, 4 heads,
                 width 128, block 64, batch 12, 2000 iterations, dropout 0, lr 1e-3): validation loss, beside
                 nanoGPT's reported 1.88
    translation  English to Spanish (Bible verse pairs), the paper's recipe: BLEU and chrF on the test split
    sentiment    Rotten Tomatoes: accuracy on the test split after MLM pre-training then fine-tuning, and from scratch
    lora         Rotten Tomatoes: the sentiment entry's MLM model fine-tuned whole and with LoRA (`finetune --lora`),
                 the same data and epochs: accuracy, trainable parameters, minutes
    positions    the shakespeare model trained once per position kind (sinusoidal, learned, rotary, alibi, relative)
                 at block 64, then its validation loss on held-out windows of 64, 128, 256 and 512 characters
    scores       paper 3.2.1: a small character-level decoder trained with scaled dot-product, unscaled dot-product
                 and additive attention at d_k 16 and 128 (d_model 128, 8 or 1 heads), each at the package's init
                 and with unit-variance q and k: validation loss, training speed, kept activations, score spread.
                 Its own training loop (every run from the same weights, on the same batches, in lockstep), not the
                 command line; the table also goes to benchmarks/results/quality_scores.md
    digits       a small ViT (`finetune --task image-classification --data digits`, patches of 2 x 2 on the 8x8
                 digits) and, in the same run, scikit-learn's logistic regression on the same pixels and split: both
                 test accuracies. One torch thread, as the scores entry
    captions     a small captioner (`pretrain --objective captioning --data digit-strips`: strips of three 8x8
                 digits, captioned with their words, resized to 24 x 24) trained on strips of the digits' train
                 split: caption exact match and word accuracy on 500 strips of the test split. One torch thread
    memory       issue 20: the shakespeare model with ALiBi positions trained on segments of 64 characters, the rows
                 of a batch continuing the same streams of the text, with a 64-token Transformer-XL memory and
                 without (`--memory-length 64` and `0`), each scored over the whole held-out text in order, one
                 stream (every held-out character a target once, the same targets for both)
    permutation  issue 20: Rotten Tomatoes accuracy fine-tuned from a PLM-pretrained encoder (XLNet's objective,
                 `pretrain --objective plm`), from the sentiment entry's MLM-pretrained one (same tokenizer,
                 architecture, data and steps) and from scratch, in one run
    streaming    issue 21: the shakespeare model trained with `pretrain --streaming` on the same 90% of the text
                 cut into 100 .txt shards (a document each, eos after it), shuffled through a buffer, beside the
                 same model trained in memory in the same run: the validation loss of both on the same held-out 10%

    python benchmarks/quality.py [--only shakespeare translation sentiment lora positions scores digits captions
                                  memory permutation streaming]
                                 [--work-dir outputs/quality]

Each figure is written to benchmarks/results/quality.json with the exact command lines that produced it.
"""

import argparse
import json
import math
import platform
import shlex
import time
from pathlib import Path

import torch

from vaswani.cli import COMMANDS, build_parser
from vaswani.training.data import BIBLE, ROTTEN_TOMATOES, SHAKESPEARE
from vaswani.training.run import write_whole


RESULTS = Path(__file__).resolve().parent / "results" / "quality.json"
REPOSITORY = Path(__file__).resolve().parent.parent


def run(command: list[str], log: list[str]) -> dict:
    """Run one `vaswani` command in-process and return its metrics; the command line is logged."""
    log.append("vaswani " + shlex.join(command).replace(f"{REPOSITORY}/", ""))  # repository-relative paths
    print("\n$ " + log[-1], flush=True)
    args = build_parser().parse_args(command)
    return COMMANDS[args.command](args)


def char_tokenizer(work: Path, log: list[str], data: Path = SHAKESPEARE) -> Path:
    run(["train-tokenizer", "--overwrite", "--kind", "char", "--data", str(data), "--max-length", "1024",
         "--output", str(work / "char-tokenizer")], log)
    return work / "char-tokenizer"


def shakespeare_pretrain(work: Path, output: Path, positions: str, steps: int = 2000,
                         data: Path = SHAKESPEARE) -> list[str]:
    """nanoGPT's CPU settings for Tiny Shakespeare at character level, with `positions` (block 64, last 10% held out)."""
    return [
        "pretrain", "--objective", "clm", "--tokenizer", str(work / "char-tokenizer"), "--data", str(data),
        "--validation-fraction", "0.1", "--block-size", "64", "--d-model", "128", "--num-heads", "4", "--layers", "4",
        "--d-ff", "512", "--positions", positions, "--activation", "gelu", "--norm-first", "--no-embedding-scale",
        "--dropout", "0", "--adam-beta2", "0.99",
        "--steps", str(steps), "--batch-size", "12", "--lr", "1e-3", "--lr-scheduler", "cosine", "--warmup", "100",
        "--weight-decay", "0.1", "--logging-steps", "500", "--quiet", "--output", str(output),
        "--overwrite",
    ]


def shakespeare(work: Path, log: list[str]) -> dict:
    char_tokenizer(work, log)
    metrics = run(shakespeare_pretrain(work, work / "shakespeare-char", "learned"), log)
    return {"validation_loss": metrics["loss"], "nanogpt_reported": 1.88}


# The positions entry: the shakespeare model trained once per position kind at block 64, then scored on the held-out
# text in non-overlapping windows of each length (the same windows for every kind).
POSITION_KINDS = ("sinusoidal", "learned", "rotary", "alibi", "relative")
CONTEXT_LENGTHS = (64, 128, 256, 512)
# Learned positions get a table for the longest window (its input is length + 1 tokens); training at block 64 only
# ever reaches rows 0-64, so the rows past them keep their initial values.
LEARNED_POSITIONS = max(CONTEXT_LENGTHS) + 1


def positions_commands(work: Path, steps: int = 2000, data: Path = SHAKESPEARE, kinds=POSITION_KINDS,
                       lengths=CONTEXT_LENGTHS):
    """(kind, pretrain command, {length: evaluate command}) for each position kind."""
    for kind in kinds:
        output = work / f"positions-{kind}"
        pretrain = shakespeare_pretrain(work, output, kind, steps, data)
        if kind == "learned":
            pretrain += ["--max-positions", str(LEARNED_POSITIONS)]
        evaluate = {
            length: ["evaluate", "--task", "clm", "--model", str(output), "--data", str(data),
                     "--validation-fraction", "0.1", "--block-size", str(length), "--batch-size", "16"]
            for length in lengths
        }
        yield kind, pretrain, evaluate


def positions(work: Path, log: list[str], steps: int, data: Path = SHAKESPEARE, kinds=POSITION_KINDS,
              lengths=CONTEXT_LENGTHS, machine: dict | None = None) -> dict:
    """Each kind's losses by window length, with its own minutes and commands (kinds can be run apart and merged)."""
    char_tokenizer(work, log, data)
    figures = {}
    for kind, pretrain, evaluate in positions_commands(work, steps, data, kinds, lengths):
        started, kind_log = time.perf_counter(), []
        trained = run(pretrain, kind_log)
        losses = {str(length): run(command, kind_log)["loss"] for length, command in evaluate.items()}
        figures[kind] = {"validation_loss": losses, "training_validation_loss": trained["loss"], "steps": steps,
                         "minutes": round((time.perf_counter() - started) / 60, 1), "machine": machine,
                         "commands": log[:1] + kind_log}
        log.extend(kind_log)
    figures.update(trained_block_size=64, learned_max_positions=LEARNED_POSITIONS, nanogpt_reported=1.88)
    return figures


def translation(work: Path, log: list[str], steps: int) -> dict:
    run(["train-tokenizer", "--overwrite", "--kind", "shared-bpe", "--data", str(BIBLE), "--columns", "en", "es", "--split",
         "train", "--vocab-size", "8000", "--max-length", "128", "--output", str(work / "bible-tokenizer")], log)
    metrics = run([
        "pretrain", "--objective", "seq2seq", "--tokenizer", str(work / "bible-tokenizer"), "--data", str(BIBLE),
        "--source-column", "en", "--target-column", "es", "--eval-split", "test", "--max-length", "128",
        "--d-model", "256", "--num-heads", "4", "--d-ff", "1024", "--layers", "3", "--dropout", "0.1",
        "--paper-recipe", "--lr-scale", "0.5", "--steps", str(steps), "--batch-size", "32", "--save-steps",
        str(steps // 10), "--average-last", "5", "--max-new-tokens", "128", "--logging-steps", "200", "--quiet",
        "--output", str(work / "bible-en-es"), "--overwrite",
    ], log)
    return {"bleu": metrics["bleu"], "chrf": metrics["chrf"], "test_loss": metrics["loss"], "steps": steps}


# The sentiment entries' model: an encoder with learned positions, WordPiece 8k, MLM pre-training on the reviews.
SENTIMENT_ARCHITECTURE = ["--d-model", "256", "--num-heads", "4", "--d-ff", "1024", "--layers", "4",
                          "--positions", "learned", "--activation", "gelu", "--max-length", "96"]


def sentiment_mlm(work: Path, log: list[str], pretrain_steps: int) -> None:
    """The tokenizer and the MLM pre-training that the sentiment and lora entries fine-tune: `work/rt-mlm`."""
    run(["train-tokenizer", "--overwrite", "--kind", "wordpiece", "--data", str(ROTTEN_TOMATOES), "--columns", "text", "--split",
         "train", "--vocab-size", "8000", "--max-length", "96", "--output", str(work / "rt-tokenizer")], log)
    run(["pretrain", "--objective", "mlm", "--tokenizer", str(work / "rt-tokenizer"), "--data", str(ROTTEN_TOMATOES),
         "--eval-split", "test", "--steps", str(pretrain_steps), "--batch-size", "32", "--lr", "5e-4",
         "--logging-steps", "500", "--quiet", "--output", str(work / "rt-mlm"), "--overwrite",
         *SENTIMENT_ARCHITECTURE], log)


def sentiment_finetune(finetune_epochs: float, lr: str = "1e-4") -> list[str]:
    return ["finetune", "--task", "sequence-classification", "--data", str(ROTTEN_TOMATOES), "--eval-split",
            "test", "--epochs", str(finetune_epochs), "--batch-size", "32", "--lr", lr, "--quiet",
            "--logging-steps", "500", "--overwrite"]


def sentiment(work: Path, log: list[str], pretrain_steps: int, finetune_epochs: float) -> dict:
    sentiment_mlm(work, log, pretrain_steps)
    finetune = sentiment_finetune(finetune_epochs)
    pretrained = run([*finetune, "--model", str(work / "rt-mlm"), "--output", str(work / "rt-pretrained")], log)
    scratch = run([*finetune, "--tokenizer", str(work / "rt-tokenizer"), "--output", str(work / "rt-scratch"),
                   *SENTIMENT_ARCHITECTURE[:-2]], log)
    return {
        "accuracy_pretrained": pretrained["accuracy"],
        "accuracy_scratch": scratch["accuracy"],
        "f1_pretrained": pretrained["f1"],
        "f1_scratch": scratch["f1"],
        "mlm_steps": pretrain_steps,
        "finetune_epochs": finetune_epochs,
        "majority_class_accuracy": 0.5825,  # 731 of the 1,255 test reviews are positive
    }


def plm_pretrain(work: Path, pretrain_steps: int) -> list[str]:
    """XLNet's permutation LM on the training reviews: the MLM pre-training's tokenizer, architecture and budget."""
    return ["pretrain", "--objective", "plm", "--tokenizer", str(work / "rt-tokenizer"), "--data", str(ROTTEN_TOMATOES),
            "--eval-split", "test", "--steps", str(pretrain_steps), "--batch-size", "32", "--lr", "5e-4",
            "--logging-steps", "500", "--quiet", "--output", str(work / "rt-plm"), "--overwrite",
            *SENTIMENT_ARCHITECTURE]


def permutation(work: Path, log: list[str], pretrain_steps: int, finetune_epochs: float) -> dict:
    """
    Issue 20: the sentiment classifier fine-tuned from a PLM-pretrained encoder, from the MLM-pretrained one (the same
    tokenizer, architecture, data and steps) and from scratch, the same fine-tuning for the three, in one run.
    """
    sentiment_mlm(work, log, pretrain_steps)
    run(plm_pretrain(work, pretrain_steps), log)
    finetune = sentiment_finetune(finetune_epochs)
    starts = {"plm": ["--model", str(work / "rt-plm")], "mlm": ["--model", str(work / "rt-mlm")],
              "scratch": ["--tokenizer", str(work / "rt-tokenizer"), *SENTIMENT_ARCHITECTURE[:-2]]}
    scores = {}
    for name, start in starts.items():
        metrics = run([*finetune, *start, "--output", str(work / f"rt-from-{name}")], log)
        scores[name] = {"accuracy": metrics["accuracy"], "f1": metrics["f1"]}
    return {"finetuned_from": scores, "pretrain_steps": pretrain_steps, "finetune_epochs": finetune_epochs,
            "majority_class_accuracy": 0.5825}  # 731 of the 1,255 test reviews are positive


def _parameters(weights: Path) -> int:
    """The number of values in a safetensors file."""
    from safetensors import safe_open

    with safe_open(str(weights), "pt") as tensors:
        return sum(math.prod(tensors.get_slice(name).get_shape()) for name in tensors.keys())


def lora(work: Path, log: list[str], pretrain_steps: int, finetune_epochs: float) -> dict:
    """The sentiment entry's MLM model fine-tuned whole and with LoRA (rank 8, alpha 16), the same data and epochs."""
    sentiment_mlm(work, log, pretrain_steps)
    figures = {}
    for name, extra, lr in (("full", [], "1e-4"), ("lora", ["--lora"], "5e-4")):
        started = time.perf_counter()
        metrics = run([*sentiment_finetune(finetune_epochs, lr), "--model", str(work / "rt-mlm"), *extra,
                       "--output", str(work / f"rt-{name}")], log)
        weights = work / f"rt-{name}" / ("adapter_model.safetensors" if extra else "model.safetensors")
        figures[name] = {
            "accuracy": metrics["accuracy"], "f1": metrics["f1"], "learning_rate": float(lr),
            "trainable_parameters": _parameters(weights),  # what trains is what is saved: the adapter and new head
            "minutes": round((time.perf_counter() - started) / 60, 1),
        }
    figures["total_parameters"] = _parameters(work / "rt-full" / "model.safetensors")
    figures.update(mlm_steps=pretrain_steps, finetune_epochs=finetune_epochs)
    return figures


# The scores entry (paper 3.2.1): a small decoder trained with each compatibility function at a small and a large d_k
# (d_model fixed, the heads varied), every run from the same weights on the same batches, in lockstep (one step of
# each run in turn, so that the load of a shared machine falls on all of them alike). A second setting draws W^Q and
# W^K with std d_model^-1/2, giving q and k components of variance about 1 at init (after the LayerNorm): the
# assumption of the paper's footnote 4, under which q.k has variance d_k.
SCORE_KINDS = ("scaled_dot_product", "dot_product", "additive")
SCORE_SHAPE = dict(d_model=128, d_ff=512, layers=2, block=64, batch=12, lr=1e-3, warmup=100, seed=0)
SCORE_HEADS = (8, 1)  # d_k = 16 and 128
SCORE_INITS = {"init_std": "the package's init (normal, std 0.02)",
               "unit_qk": "W^Q, W^K with std d_model^-1/2 (unit-variance q, k at init), the rest as init_std"}
SCORE_CHECKPOINTS = 4  # evaluations on the way (the first SCORE_EVAL_WINDOWS windows), then the whole held-out text
SCORE_EVAL_WINDOWS = 256


def _windows(ids: torch.Tensor, length: int) -> torch.Tensor:
    return ids[: len(ids) // length * length].view(-1, length)


@torch.no_grad()
def _heldout_loss(model, windows: torch.Tensor, batch: int = 64) -> float:
    model.eval()
    total = sum(_lm_loss(model, windows[i : i + batch]).item() * len(windows[i : i + batch])
                for i in range(0, len(windows), batch))
    model.train()
    return total / len(windows)


def _lm_loss(model, window: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=window[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten())


@torch.no_grad()
def score_statistics(model, window: torch.Tensor, seen_from: int = 16) -> dict:
    """
    The compatibility scores every head of every layer gives (before the softmax) on `window`, recomputed from the
    query and key projections: their std over the causal (query, key) pairs, the mean over layers; and the mean
    largest softmax weight of the queries that see at least `seen_from` keys (1 = one key takes all the weight).
    """
    captured, hooks = {}, []
    attentions = [m for m in model.modules() if type(m).__name__ == "VaswaniAttention"]
    for i, attention in enumerate(attentions):
        for name in ("q_proj", "k_proj"):
            hooks.append(getattr(attention, name).register_forward_hook(
                lambda module, args, output, key=(i, name): captured.__setitem__(key, output)))
    try:
        model(input_ids=window)
    finally:
        for hook in hooks:
            hook.remove()
    stds, tops = [], []
    for i, attention in enumerate(attentions):
        q, k = (captured[i, name].unflatten(-1, (attention.num_heads, -1)).transpose(1, 2) for name in ("q_proj", "k_proj"))
        if attention.score_vector is not None:
            scores = torch.einsum("bhqkd,hd->bhqk", torch.tanh(q.unsqueeze(3) + k.unsqueeze(2)), attention.score_vector)
        else:
            scores = q @ k.transpose(-1, -2) * attention.scaling
        causal = torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
        stds.append(scores[..., causal].std().item())
        weights = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        tops.append(weights[..., seen_from:, :].amax(-1).mean().item())
    return {"score_std": sum(stds) / len(stds), "top_weight": sum(tops) / len(tops)}


def activation_bytes(model, window: torch.Tensor) -> int:
    """The bytes autograd keeps for the backward pass of one training step (each storage once, weights left out)."""
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            kept[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = _lm_loss(model, window)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(kept.values())


def _score_run(config, reference: dict, unit_qk: dict | None, steps: int):
    """A model of `config` from the `reference` weights (and `unit_qk`'s W^Q, W^K), its AdamW and cosine schedule."""
    from transformers import get_cosine_schedule_with_warmup

    from vaswani import VaswaniForCausalLM

    torch.manual_seed(SCORE_SHAPE["seed"])  # the score vector v of additive attention (the one weight not shared)
    model = VaswaniForCausalLM(config)
    missing, unexpected = model.load_state_dict({**reference, **(unit_qk or {})}, strict=False)
    assert not unexpected and all(name.endswith("score_vector") for name in missing), (missing, unexpected)
    groups = [{"params": [p for p in model.parameters() if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=SCORE_SHAPE["lr"], betas=(0.9, 0.99))
    warmup = min(SCORE_SHAPE["warmup"], steps // 10)
    return model, optimizer, get_cosine_schedule_with_warmup(optimizer, warmup, steps)


def _qk_gradient(model) -> float:
    """The norm of the gradient on every W^Q and W^K: what reaches the scores' inputs through the softmax."""
    grads = [p.grad for name, p in model.named_parameters() if name.endswith(("q_proj.weight", "k_proj.weight"))]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()


def scores(work: Path, log: list[str], steps: int, data: Path = SHAKESPEARE, machine: dict | None = None) -> dict:
    """Each (init, d_k, scores) run's held-out loss on the way and at the end, speed, kept activations, scores."""
    threads = torch.get_num_threads()
    # One thread: on cores shared with other processes two threads wait on each other (a step of the d_k 16
    # scaled run: 27 ms on one thread, 1.4 s on two, with 5 processes on 2 cores).
    torch.set_num_threads(1)
    try:
        return _scores(work, log, steps, data, machine)
    finally:
        torch.set_num_threads(threads)


def _scores(work: Path, log: list[str], steps: int, data: Path, machine: dict | None) -> dict:
    import statistics

    from transformers import AutoTokenizer

    from vaswani import VaswaniConfig, VaswaniForCausalLM
    from vaswani.tokenization import config_from_tokenizer
    from vaswani.training.data import read_text

    tokenizer = AutoTokenizer.from_pretrained(str(char_tokenizer(work, log, data)))
    ids = torch.tensor(tokenizer(read_text(data), add_special_tokens=False)["input_ids"])
    cut = int(len(ids) * 0.9)  # the last 10% held out, as --validation-fraction 0.1
    train, heldout = ids[:cut], _windows(ids[cut:], SCORE_SHAPE["block"] + 1)
    shape = SCORE_SHAPE
    generator = torch.Generator().manual_seed(shape["seed"])  # one data order for every run
    starts = torch.randint(0, len(train) - shape["block"] - 1, (steps, shape["batch"]), generator=generator)
    probe = heldout[:16, :-1]  # the scores are looked at on these windows

    def config(heads, kind):
        return config_from_tokenizer(
            tokenizer, config=VaswaniConfig(), stacks="decoder-only", num_encoder_layers=0,
            num_decoder_layers=shape["layers"], d_model=shape["d_model"], num_heads=heads, d_ff=shape["d_ff"],
            dropout=0.0, attention_dropout=0.0, activation_function="gelu", position_embedding_type="learned",
            max_position_embeddings=shape["block"], norm_first=True, scale_embedding=False, attention_scores=kind)

    torch.manual_seed(shape["seed"])
    reference = VaswaniForCausalLM(config(SCORE_HEADS[0], "scaled_dot_product")).state_dict()
    unit = torch.Generator().manual_seed(shape["seed"] + 1)
    unit_qk = {name: torch.randn(tensor.shape, generator=unit) * shape["d_model"] ** -0.5
               for name, tensor in reference.items() if name.endswith(("q_proj.weight", "k_proj.weight"))}
    runs = {}
    for init in SCORE_INITS:
        for heads in SCORE_HEADS:
            for kind in SCORE_KINDS:
                model, optimizer, schedule = _score_run(config(heads, kind), reference,
                                                        unit_qk if init == "unit_qk" else None, steps)
                runs[init, heads, kind] = dict(model=model, optimizer=optimizer, schedule=schedule, times=[],
                                               losses=[], curve={}, at_init=score_statistics(model, probe),
                                               activation_bytes=activation_bytes(model, probe[: shape["batch"]]))
    checkpoints = sorted({round(steps * i / SCORE_CHECKPOINTS) for i in range(SCORE_CHECKPOINTS)})
    started = time.perf_counter()
    for step in range(steps):
        windows = torch.stack([train[s : s + shape["block"] + 1] for s in starts[step].tolist()])
        for run_ in runs.values():
            if step in checkpoints:
                run_["curve"][step] = _heldout_loss(run_["model"], heldout[:SCORE_EVAL_WINDOWS])
            begin = time.perf_counter()
            loss = _lm_loss(run_["model"], windows)
            loss.backward()
            if step == 0:
                run_["qk_gradient_at_init"] = _qk_gradient(run_["model"])
            torch.nn.utils.clip_grad_norm_(run_["model"].parameters(), 1.0)  # as the Trainer does
            run_["optimizer"].step()
            run_["schedule"].step()
            run_["optimizer"].zero_grad(set_to_none=True)
            run_["times"].append(time.perf_counter() - begin)
            run_["losses"].append(loss.item())
        if (step + 1) % max(1, steps // 10) == 0:
            print(f"step {step + 1}/{steps}, {time.perf_counter() - started:.0f} s", flush=True)
    figures = {}
    for (init, heads, kind), run_ in runs.items():
        model = run_["model"]
        per_step = statistics.median(run_["times"])
        quarter = max(1, steps // SCORE_CHECKPOINTS)
        figures.setdefault(init, {}).setdefault(f"d_k={shape['d_model'] // heads}", {})[kind] = {
            "heads": heads,
            "validation_loss": _heldout_loss(model, heldout),
            "validation_curve": {**{str(k): v for k, v in run_["curve"].items()},
                                 str(steps): _heldout_loss(model, heldout[:SCORE_EVAL_WINDOWS])},
            "train_loss_by_quarter": [statistics.fmean(run_["losses"][i : i + quarter])
                                      for i in range(0, steps, quarter)],
            "seconds_per_step": per_step, "tokens_per_second": shape["batch"] * shape["block"] / per_step,
            "activation_mib": run_["activation_bytes"] / 2**20,
            "qk_gradient_at_init": run_["qk_gradient_at_init"],
            "at_init": run_["at_init"], "at_end": score_statistics(model, probe),
            "parameters": sum(p.numel() for p in model.parameters()),
        }
    return {**figures, "settings": SCORE_INITS, "shape": shape, "steps": steps, "heldout_windows": len(heldout),
            "curve_windows": min(SCORE_EVAL_WINDOWS, len(heldout)), "torch_threads": torch.get_num_threads(),
            "machine": machine}


def scores_table(figures: dict) -> str:
    """The scores entry as a Markdown table, one row per run."""
    rows = ["| setting | d_k | scores | validation loss | train loss, last quarter | ms/step | tokens/s | "
            "activations MiB | score std init -> end | top weight init -> end | W^Q,W^K grad at init |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for init in SCORE_INITS:
        for d_k, kinds in figures[init].items():
            for kind, f in kinds.items():
                rows.append(
                    f"| {init} | {d_k.split('=')[1]} | {kind} | {f['validation_loss']:.3f} | "
                    f"{f['train_loss_by_quarter'][-1]:.3f} | {1000 * f['seconds_per_step']:.0f} | "
                    f"{f['tokens_per_second']:,.0f} | {f['activation_mib']:.1f} | "
                    f"{f['at_init']['score_std']:.2f} -> {f['at_end']['score_std']:.2f} | "
                    f"{f['at_init']['top_weight']:.2f} -> {f['at_end']['top_weight']:.2f} | "
                    f"{f['qk_gradient_at_init']:.2g} |")
    shape = figures["shape"]
    settings = "; ".join(f"{name}: {text}" for name, text in figures["settings"].items())
    return (f"Decoder-only, d_model {shape['d_model']}, {shape['layers']} layers, block {shape['block']}, batch "
            f"{shape['batch']}, {figures['steps']} steps of AdamW (lr {shape['lr']:g}, cosine), seed {shape['seed']}; "
            f"every run from the same weights on the same batches. {settings}. Validation loss on "
            f"{figures['heldout_windows']} held-out windows.\n\n" + "\n".join(rows) + "\n")


# The digits entry: a small ViT on scikit-learn's 8x8 digits (train 1,438, test 359: vaswani.training.images), beside
# logistic regression on the flattened pixels of the same split.
DIGITS_VIT = ["--image-size", "8", "--patch-size", "2", "--d-model", "64", "--num-heads", "4", "--d-ff", "128",
              "--layers", "4", "--positions", "learned", "--norm-first", "--activation", "gelu", "--dropout", "0.1"]


def digits_finetune(work: Path, epochs: float) -> list[str]:
    return ["finetune", "--task", "image-classification", "--data", "digits", "--eval-split", "test", *DIGITS_VIT,
            "--epochs", str(epochs), "--batch-size", "32", "--lr", "1e-3", "--lr-scheduler", "cosine", "--warmup",
            "0.1", "--weight-decay", "0.05", "--logging-steps", "500", "--quiet", "--output", str(work / "digits-vit"),
            "--overwrite"]


def run_on_one_thread(command: list[str], log: list[str]) -> tuple[dict, float]:
    """`run` on one torch thread (a model this small: two threads on shared cores wait on each other, as in the
    scores entry): its metrics and minutes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        started = time.perf_counter()
        metrics = run(command, log)
        return metrics, round((time.perf_counter() - started) / 60, 1)
    finally:
        torch.set_num_threads(threads)


def logistic_regression_on_digits() -> dict:
    """scikit-learn's LogisticRegression on the pixels (0..1) of the digits' train split, scored on its test split."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from vaswani.training.images import digits

    def arrays(split):
        table = digits(split)
        pixels = np.stack([np.asarray(image)[..., 0].reshape(-1) for image in table["image"]]) / 255.0
        return pixels, np.asarray(table["label"])

    (x_train, y_train), (x_test, y_test) = arrays("train"), arrays("test")
    classifier = LogisticRegression(max_iter=5000).fit(x_train, y_train)
    return {"accuracy": round(float(classifier.score(x_test, y_test)), 4), "train_images": len(y_train),
            "test_images": len(y_test), "model": "sklearn.linear_model.LogisticRegression(max_iter=5000)"}


def digits_entry(work: Path, log: list[str], epochs: float, machine: dict | None = None) -> dict:
    """The ViT's test accuracy and F1 and the logistic regression's accuracy, on the same split."""
    vit, minutes = run_on_one_thread(digits_finetune(work, epochs), log)
    parameters = _parameters(work / "digits-vit" / "model.safetensors")
    return {"vit": {"accuracy": vit["accuracy"], "f1": vit["f1"], "test_loss": vit["loss"], "epochs": epochs,
                    "parameters": parameters, "minutes": minutes},
            "logistic_regression": logistic_regression_on_digits(), "torch_threads": 1, "machine": machine}


# The captions entry: strips of three digits from the train split (10,000) and from the test split (500: no evaluated
# strip holds a training digit), each 8 x 24 stretched to 24 x 24 by the image processor; patches of 8 x 8 make one
# column of three patches per digit.
CAPTIONER = ["--image-size", "24", "--patch-size", "8", "--d-model", "64", "--num-heads", "4", "--d-ff", "128",
             "--layers", "2", "--positions", "learned", "--norm-first", "--activation", "gelu", "--dropout", "0"]


def captions_pretrain(work: Path, epochs: float) -> list[str]:
    return ["pretrain", "--objective", "captioning", "--data", "digit-strips", "--eval-split", "test", *CAPTIONER,
            "--epochs", str(epochs), "--batch-size", "32", "--lr", "2e-3", "--lr-scheduler", "cosine", "--warmup",
            "0.05", "--weight-decay", "0.05", "--max-new-tokens", "8", "--logging-steps", "1000", "--quiet",
            "--output", str(work / "captioner"), "--overwrite"]


def captions_entry(work: Path, log: list[str], epochs: float, machine: dict | None = None) -> dict:
    """The captioner's exact match and word accuracy (greedy) on the held-out strips, beside chance."""
    from vaswani.training.images import DIGIT_WORDS, STRIP_COUNTS

    captioner, minutes = run_on_one_thread(captions_pretrain(work, epochs), log)
    words = len(DIGIT_WORDS)
    return {"captioner": {"exact_match": captioner["exact_match"], "word_accuracy": captioner["word_accuracy"],
                          "test_loss": captioner["loss"], "epochs": epochs, "minutes": minutes,
                          "parameters": _parameters(work / "captioner" / "model.safetensors")},
            "strips": {"train": STRIP_COUNTS["train"], "test": STRIP_COUNTS["test"], "digits_per_strip": 3},
            "chance": {"exact_match": round(words ** -3, 4), "word_accuracy": round(1 / words, 4)},
            "torch_threads": 1, "machine": machine}


# The memory entry: one position kind that takes a memory (ALiBi; rotary and relative would too), the shakespeare
# settings, and training and scoring both in order (--memory-length 0: the same streams without memory).
MEMORY_POSITIONS, MEMORY_LENGTHS = "alibi", (0, 64)


def memory_commands(work: Path, steps: int = 2000, data: Path = SHAKESPEARE):
    """(memory length, pretrain command, evaluate command) for the model without memory and the one with it."""
    for length in MEMORY_LENGTHS:
        output = work / f"memory-{length}"
        pretrain = shakespeare_pretrain(work, output, MEMORY_POSITIONS, steps, data) + ["--memory-length", str(length)]
        evaluate = ["evaluate", "--task", "clm", "--model", str(output), "--data", str(data), "--validation-fraction",
                    "0.1", "--block-size", "64", "--batch-size", "1", "--memory-length", str(length)]
        yield length, pretrain, evaluate


def memory_entry(work: Path, log: list[str], steps: int, data: Path = SHAKESPEARE) -> dict:
    """The held-out loss, read in order, of segment-64 models trained and scored with and without a memory."""
    char_tokenizer(work, log, data)
    figures = {"positions": MEMORY_POSITIONS, "segment": 64, "steps": steps}
    for length, pretrain, evaluate in memory_commands(work, steps, data):
        started = time.perf_counter()
        trained = run(pretrain, log)
        scored = run(evaluate, log)
        figures[f"memory_{length}"] = {"validation_loss": scored["loss"], "training_validation_loss": trained["loss"],
                                       "minutes": round((time.perf_counter() - started) / 60, 1)}
    return figures


# The streaming entry: the shakespeare settings, the training text as shards read as a stream.
STREAMING_SHARDS = 100


def streaming_corpus(work: Path, data: Path = SHAKESPEARE, shards: int = STREAMING_SHARDS) -> tuple[Path, Path]:
    """The first 90% of `data` (the cut `--validation-fraction 0.1` makes) in `shards` .txt files cut at line ends,
    and the last 10% as one file: the training corpus and the held-out text."""
    from vaswani.training.data import read_text

    text = read_text(data)
    cut = int(len(text) * 0.9)
    train, held_out = text[:cut], text[cut:]
    folder = work / "shakespeare-shards"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.txt"):
        old.unlink()
    start = 0
    for index in range(shards):
        end = len(train) if index == shards - 1 else train.find("\n", (index + 1) * len(train) // shards) + 1
        end = end if end > start else len(train)
        (folder / f"part-{index:03d}.txt").write_text(train[start:end], encoding="utf-8")
        start = end
    (work / "shakespeare-held-out.txt").write_text(held_out, encoding="utf-8")
    return folder, work / "shakespeare-held-out.txt"


def streaming_commands(work: Path, steps: int = 2000, data: Path = SHAKESPEARE):
    """(name, pretrain command) of the in-memory model and the streamed one, the shakespeare settings both."""
    in_memory = shakespeare_pretrain(work, work / "in-memory", "learned", steps, data)
    streamed = shakespeare_pretrain(work, work / "streamed", "learned", steps, data)
    streamed[streamed.index("--data") + 1] = str(work / "shakespeare-shards")
    at = streamed.index("--validation-fraction")
    streamed[at : at + 2] = ["--streaming", "--eval-data", str(work / "shakespeare-held-out.txt")]
    return [("in_memory", in_memory), ("streaming", streamed)]


def streaming_entry(work: Path, log: list[str], steps: int, data: Path = SHAKESPEARE) -> dict:
    char_tokenizer(work, log, data)
    streaming_corpus(work, data)
    figures = {"shards": STREAMING_SHARDS, "steps": steps}
    for name, command in streaming_commands(work, steps, data):
        started = time.perf_counter()
        figures[name] = {"validation_loss": run(command, log)["loss"],
                         "minutes": round((time.perf_counter() - started) / 60, 1)}
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+",
                        choices=["shakespeare", "translation", "sentiment", "lora", "positions", "scores", "digits",
                                 "captions", "memory", "permutation", "streaming"])
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/quality"))
    parser.add_argument("--translation-steps", type=int, default=2000)
    parser.add_argument("--mlm-steps", type=int, default=2000)
    parser.add_argument("--finetune-epochs", type=float, default=3)
    parser.add_argument("--positions-steps", type=int, default=2000)
    parser.add_argument("--positions-kinds", nargs="+", choices=POSITION_KINDS, default=list(POSITION_KINDS),
                        help="the kinds to (re)measure; the others' figures already in --results are kept")
    parser.add_argument("--positions-data", type=Path, default=SHAKESPEARE, help="the text (a toy run: a slice)")
    parser.add_argument("--scores-steps", type=int, default=1000)
    parser.add_argument("--scores-data", type=Path, default=SHAKESPEARE, help="the text (a toy run: a slice)")
    parser.add_argument("--digits-epochs", type=float, default=60)
    parser.add_argument("--captions-epochs", type=float, default=10)
    parser.add_argument("--memory-steps", type=int, default=2000)
    parser.add_argument("--memory-data", type=Path, default=SHAKESPEARE, help="the text (a toy run: a slice)")
    parser.add_argument("--streaming-steps", type=int, default=2000)
    parser.add_argument("--streaming-data", type=Path, default=SHAKESPEARE, help="the text (a toy run: a slice)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="the JSON file the figures go in (the scores table beside it, <name>_scores.md)")
    args = parser.parse_args(argv)
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import vaswani  # noqa: F401

    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    machine = {
        "processor": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "cpu_count": os.cpu_count(),
    }
    results.setdefault("machine", machine)  # the entries measured before the machine went into each entry
    experiments = {
        "shakespeare": lambda log: shakespeare(args.work_dir, log),
        "translation": lambda log: translation(args.work_dir, log, args.translation_steps),
        "sentiment": lambda log: sentiment(args.work_dir, log, args.mlm_steps, args.finetune_epochs),
        "lora": lambda log: lora(args.work_dir, log, args.mlm_steps, args.finetune_epochs),
        "positions": lambda log: positions(args.work_dir, log, args.positions_steps, args.positions_data,
                                           args.positions_kinds, machine=machine),
        "scores": lambda log: scores(args.work_dir, log, args.scores_steps, args.scores_data, machine=machine),
        "digits": lambda log: digits_entry(args.work_dir, log, args.digits_epochs, machine=machine),
        "captions": lambda log: captions_entry(args.work_dir, log, args.captions_epochs, machine=machine),
        "memory": lambda log: memory_entry(args.work_dir, log, args.memory_steps, args.memory_data),
        "permutation": lambda log: permutation(args.work_dir, log, args.mlm_steps, args.finetune_epochs),
        "streaming": lambda log: streaming_entry(args.work_dir, log, args.streaming_steps, args.streaming_data),
    }
    for name in args.only or list(experiments):
        log, started = [], time.perf_counter()
        figures = experiments[name](log)
        figures["minutes"] = round((time.perf_counter() - started) / 60, 1)
        figures["machine"] = machine
        figures["commands"] = log
        if name == "positions":  # kinds measured apart (--positions-kinds) join those already there
            results = json.loads(args.results.read_text()) if args.results.exists() else results
            kept = {k: v for k, v in results.get(name, {}).items() if k in POSITION_KINDS and k not in figures}
            figures = {**kept, **figures}
            figures["commands"] = list(dict.fromkeys(line for kind in POSITION_KINDS if kind in figures
                                                     for line in figures[kind]["commands"]))
            figures["minutes"] = round(sum(figures[kind]["minutes"] for kind in POSITION_KINDS if kind in figures), 1)
        results[name] = figures
        write_whole(args.results, json.dumps(results, indent=2) + "\n")  # whole or not at all
        if name == "scores":
            write_whole(args.results.with_name(f"{args.results.stem}_scores.md"), scores_table(figures))
        print(f"\n### {name}: " + json.dumps({k: v for k, v in figures.items() if k != "commands"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
