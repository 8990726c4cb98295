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

    python benchmarks/quality.py [--only shakespeare translation sentiment lora positions] [--work-dir outputs/quality]

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

from vaswani.cli import COMMANDS, build_parser, write_whole
from vaswani.training.data import BIBLE, ROTTEN_TOMATOES, SHAKESPEARE


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=["shakespeare", "translation", "sentiment", "lora", "positions"])
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/quality"))
    parser.add_argument("--translation-steps", type=int, default=2000)
    parser.add_argument("--mlm-steps", type=int, default=2000)
    parser.add_argument("--finetune-epochs", type=float, default=3)
    parser.add_argument("--positions-steps", type=int, default=2000)
    parser.add_argument("--positions-kinds", nargs="+", choices=POSITION_KINDS, default=list(POSITION_KINDS),
                        help="the kinds to (re)measure; the others' figures already in --results are kept")
    parser.add_argument("--positions-data", type=Path, default=SHAKESPEARE, help="the text (a toy run: a slice)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON file the figures go in")
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
        print(f"\n### {name}: " + json.dumps({k: v for k, v in figures.items() if k != "commands"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
