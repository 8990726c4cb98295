"""
The README's quality figures, measured with the `vaswani` command line on the shipped corpora (CPU, 2 cores):

    shakespeare  GPT-style, Tiny Shakespeare at character level with nanoGPT's CPU settings (4 layers, 4 heads,
                 width 128, block 64, batch 12, 2000 iterations, dropout 0, lr 1e-3): validation loss, beside
                 nanoGPT's reported 1.88
    translation  English to Spanish (Bible verse pairs), the paper's recipe: BLEU and chrF on the test split
    sentiment    Rotten Tomatoes: accuracy on the test split after MLM pre-training then fine-tuning, and from scratch
    lora         Rotten Tomatoes: the sentiment entry's MLM model fine-tuned whole and with LoRA (`finetune --lora`),
                 the same data and epochs: accuracy, trainable parameters, minutes

    python benchmarks/quality.py [--only shakespeare translation sentiment lora] [--work-dir outputs/quality]

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


RESULTS = Path(__file__).resolve().parent / "results" / "quality.json"
REPOSITORY = Path(__file__).resolve().parent.parent


def run(command: list[str], log: list[str]) -> dict:
    """Run one `vaswani` command in-process and return its metrics; the command line is logged."""
    log.append("vaswani " + shlex.join(command).replace(f"{REPOSITORY}/", ""))  # repository-relative paths
    print("\n$ " + log[-1], flush=True)
    args = build_parser().parse_args(command)
    return COMMANDS[args.command](args)


def shakespeare(work: Path, log: list[str]) -> dict:
    run(["train-tokenizer", "--overwrite", "--kind", "char", "--data", str(SHAKESPEARE), "--max-length", "1024",
         "--output", str(work / "char-tokenizer")], log)
    metrics = run([
        "pretrain", "--objective", "clm", "--tokenizer", str(work / "char-tokenizer"), "--data", str(SHAKESPEARE),
        "--validation-fraction", "0.1", "--block-size", "64", "--d-model", "128", "--num-heads", "4", "--layers", "4",
        "--d-ff", "512", "--positions", "learned", "--activation", "gelu", "--norm-first", "--no-embedding-scale",
        "--dropout", "0", "--adam-beta2", "0.99",
        "--steps", "2000", "--batch-size", "12", "--lr", "1e-3", "--lr-scheduler", "cosine", "--warmup", "100",
        "--weight-decay", "0.1", "--logging-steps", "500", "--quiet", "--output", str(work / "shakespeare-char"),
        "--overwrite",
    ], log)
    return {"validation_loss": metrics["loss"], "nanogpt_reported": 1.88}


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
    parser.add_argument("--only", nargs="+", choices=["shakespeare", "translation", "sentiment", "lora"])
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/quality"))
    parser.add_argument("--translation-steps", type=int, default=2000)
    parser.add_argument("--mlm-steps", type=int, default=2000)
    parser.add_argument("--finetune-epochs", type=float, default=3)
    args = parser.parse_args(argv)
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import vaswani  # noqa: F401

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
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
    }
    for name in args.only or list(experiments):
        log, started = [], time.perf_counter()
        figures = experiments[name](log)
        figures["minutes"] = round((time.perf_counter() - started) / 60, 1)
        figures["machine"] = machine
        figures["commands"] = log
        results[name] = figures
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\n### {name}: " + json.dumps({k: v for k, v in figures.items() if k != "commands"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
