"""
`vaswani`: the command line of the Vaswani model family: a model's life from tokenizer to the Hub.

    vaswani train-tokenizer   learn a vocabulary from text
    vaswani pretrain          train a new model: causal LM (clm), masked LM (mlm, optionally with NSP), permutation
                              LM (plm, XLNet), seq2seq, or a captioner (captioning: digit-strips, mnist-strips,
                              captioned images)
    vaswani finetune          adapt a model: sequence-classification, token-classification, question-answering,
                              seq2seq, image-classification (digits, mnist, an image folder)
    vaswani evaluate          measure a saved model on data (text or images)
    vaswani generate          continue or translate text, or caption images, with a saved model
    vaswani push              upload a saved model folder to the Hugging Face Hub
    vaswani convert           turn a Hugging Face BERT, GPT-2, Marian, GPT-NeoX, BLOOM or T5 model into a Vaswani folder
    vaswani export            export a saved model as ONNX graphs or torch.export programs (generation included)
    vaswani explore           a web page (Gradio) to see a model's attention, head by head; or a Space folder of it

Every command takes local .txt, .csv, .tsv or .json files (gzipped too), a folder saved with
`datasets.Dataset.save_to_disk`, or a Hub dataset name where a network exists. `vaswani COMMAND --help` explains
each option.

Nothing is lost, nothing is silent: an option's value outside its range, or settings that do not fit together, stop
a command before any work with one line naming the option and the fix (exit code 2); a folder a command writes
appears whole or not at all, and replaces an existing one (only with --overwrite) in one step; Ctrl-C stops with
one line (exit code 130), keeping the checkpoints written so far and the output folder as it was, or whole.
"""

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import set_seed

from .configuration.configuration_vaswani import (
    ACTIVATIONS, ATTENTION_POSITIONS, ATTENTION_SCORES, POSITION_EMBEDDING_TYPES, PRESETS,
)


EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
DEFAULT_PRESET = "vaswani-small"  # a new model's shape when no --preset is given
GIVEN = "given_options"  # the Namespace attribute holding the dests of the options given on the command line


# -- Values: each option's type says what it accepts, so argparse refuses the rest in one line ------------------------
def _value_type(name: str, parse, accept, requirement: str):
    """An argparse `type=` that parses with `parse` and refuses, saying `requirement`, what `accept` rejects."""

    def convert(text: str):
        try:
            value = parse(text)
        except (TypeError, ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{requirement}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"{requirement}, got {text!r}")
        return value

    convert.__name__ = name
    convert.requirement = requirement
    return convert


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _warmup(text: str) -> float | int:
    value = _finite(text)
    if value >= 1 and value != int(value):
        raise ValueError(text)
    return int(value) if value >= 1 else value


SEED_MAX = 2**32 - 1  # numpy's seeds stop there
positive_int = _value_type("positive_int", int, lambda v: v >= 1, "must be a whole number, 1 or more")
nonnegative_int = _value_type("nonnegative_int", int, lambda v: v >= 0, "must be a whole number, 0 or more")
port_int = _value_type("port", int, lambda v: 1 <= v <= 65535, "must be a port number from 1 to 65535")
seed_int = _value_type("seed", int, lambda v: 0 <= v <= SEED_MAX, f"must be a whole number from 0 to {SEED_MAX}")
finite_float = _value_type("finite_float", _finite, lambda v: True, "must be a finite number")
positive_float = _value_type("positive_float", _finite, lambda v: v > 0, "must be a finite number above 0")
nonnegative_float = _value_type("nonnegative_float", _finite, lambda v: v >= 0, "must be a finite number, 0 or more")
fraction = _value_type("fraction", _finite, lambda v: 0 <= v < 1, "must be a number from 0 up to (not including) 1")
probability = _value_type("probability", _finite, lambda v: 0 < v <= 1, "must be a number above 0 and at most 1")
warmup_amount = _value_type("warmup", _warmup, lambda v: v >= 0,
                            "must be a fraction of the steps in [0, 1) or a whole number of steps, 1 or more")


def _recording(action_class):
    """`action_class` that also records its dest in the namespace's `GIVEN` set: the options the user gave."""

    class Recording(action_class):
        def __call__(self, parser, namespace, values, option_string=None):
            super().__call__(parser, namespace, values, option_string)
            setattr(namespace, GIVEN, frozenset(getattr(namespace, GIVEN, frozenset())) | {self.dest})

    Recording.__name__ = action_class.__name__
    return Recording


class _NegativeNumber:
    """
    What argparse takes for a negative number, a value rather than an option: any text that starts with one `-` and
    that float() reads (argparse's own pattern knows `-5` and `-.5`, not `-1e-3`, `-inf` or `-1_000`), so that
    `--lr -1e-3` is refused for its value, not as "expected one argument".
    """

    @staticmethod
    def match(text: str) -> bool:
        if not text.startswith("-") or text.startswith("--"):
            return False
        try:
            float(text)
        except ValueError:
            return False
        return True


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (exit code 2) and a record of the options given (`given(args)`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = _NegativeNumber()
        for name in (None, "store", "store_true", "append"):
            self.register("action", name, _recording(self._registry_get("action", name)))

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def given(args) -> frozenset:
    """The dests of the options given on the command line (not left to their defaults)."""
    return getattr(args, GIVEN, frozenset())


# -- Argument groups shared by the commands -----------------------------------------------------------------------------
def _add_data(parser):
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=True, help="training data: a file, a saved dataset folder or a Hub name")
    group.add_argument("--split", default="train", help="rows of this split (a `split` column or dataset split)")
    group.add_argument("--eval-data", help="evaluation data (default: the --data file's --eval-split rows)")
    group.add_argument("--eval-split", default="validation", help="split to evaluate on (default: validation)")
    group.add_argument("--max-train-samples", type=positive_int,
                       help="train on the first N rows of --data's --split (chosen before tokenization and packing)")
    group.add_argument("--max-eval-samples", "--eval-samples", type=positive_int,
                       help="evaluate on the first N rows of the evaluation data (before tokenization)")
    return group


def _add_task_options(group, task_names):
    """Exactly the column and size options the named tasks read (`TaskOptions`), each with its default."""
    from dataclasses import fields

    from .training.task_table import OPTION_HELP, TaskOptions, options_of

    sizes = {"max_length": positive_int, "block_size": positive_int, "doc_stride": nonnegative_int,
             "plm_probability": probability, "max_span_length": positive_int, "memory_length": nonnegative_int}
    defaults = {f.name: f.default for f in fields(TaskOptions)}
    for name in options_of(task_names):
        default = defaults[name]
        shown = "" if default is None else f" (default {default:.4g})" if isinstance(default, float) else (
            f" (default {default})")
        group.add_argument("--" + name.replace("_", "-"), type=sizes.get(name, str), default=default,
                           help=OPTION_HELP[name] + shown)


def _add_architecture(parser):
    small = PRESETS[DEFAULT_PRESET]
    group = parser.add_argument_group(f"architecture (a new model: the {DEFAULT_PRESET!r} preset unless told)")
    group.add_argument("--preset", choices=list(PRESETS), help=f"start from a preset (default {DEFAULT_PRESET})")
    group.add_argument("--d-model", type=positive_int, help=f"width d_model (default {small['d_model']})")
    group.add_argument("--num-heads", type=positive_int, help=f"attention heads h (default {small['num_heads']})")
    group.add_argument("--d-ff", type=positive_int,
                       help=f"feed-forward width d_ff (default {small['d_ff']}; 4 x --d-model when that is given)")
    group.add_argument("--layers", type=positive_int,
                       help=f"layers in each stack N (default {small['num_encoder_layers']})")
    group.add_argument("--dropout", type=fraction, help=f"P_drop (default {small['dropout']})")
    group.add_argument("--positions", choices=list(POSITION_EMBEDDING_TYPES),
                       help=f"position encoding (default {_config_default('position_embedding_type')})")
    group.add_argument("--attention-scores", choices=list(ATTENTION_SCORES),
                       help=f"the compatibility function of attention (paper 3.2.1): q.k / sqrt(d_k), q.k unscaled, or "
                            f"additive v^T tanh(W_q q + W_k k) (default {_config_default('attention_scores')})")
    group.add_argument("--max-positions", type=positive_int,
                       help="positions a new model is made for: with learned positions, the rows of its table "
                            "(default: the task's length, at least 64)")
    group.add_argument("--rope-theta", type=positive_float, help="rotary: the base of the frequencies (default 10000)")
    group.add_argument("--partial-rotary-factor", type=probability,
                       help="rotary: the fraction of each head's dimensions that rotate (default 1)")
    group.add_argument("--relative-buckets", type=positive_int,
                       help=f"relative: the distance buckets (default {_config_default('relative_attention_num_buckets')})")
    group.add_argument("--relative-max-distance", type=positive_int,
                       help=f"relative: the distance where the last bucket starts (default "
                            f"{_config_default('relative_attention_max_distance')})")
    group.add_argument("--activation", choices=list(ACTIVATIONS),
                       help=f"feed-forward activation (default {_config_default('activation_function')})")
    group.add_argument("--norm-first", action="store_true", help="pre-LN instead of the paper's post-LN")
    group.add_argument("--no-embedding-scale", action="store_true",
                       help="do not multiply token embeddings by sqrt(d_model) (the paper does, 3.4; GPT-2 does not)")
    return group


def _add_image_shape(group):
    """The shape of a new model that reads images (ViT): its image side and patch side."""
    group.add_argument("--image-size", type=positive_int,
                       help="a model that reads images: their side in pixels (default: the first training "
                       "image's longer side)")
    group.add_argument("--patch-size", type=positive_int,
                       help=f"a model that reads images: the side P of its patches, dividing --image-size (default "
                            f"{_config_default('patch_size')})")


def _config_default(field: str):
    """A VaswaniConfig field's default (the default preset leaves it as the config has it)."""
    from .configuration import VaswaniConfig

    return PRESETS[DEFAULT_PRESET].get(field, getattr(VaswaniConfig(), field))


# The schedules `Trainer` builds from --lr and --warmup alone (the others need settings the command line lacks).
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")


def _schedulers() -> list[str]:
    from transformers.trainer_utils import SchedulerType

    known = {kind.value for kind in SchedulerType}
    return [name for name in SCHEDULERS if name in known]


def _smoothed_tasks() -> list[str]:
    from .training.task_table import TASKS, tasks_of

    trained = dict.fromkeys(tasks_of("pretrain") + tasks_of("finetune"))
    return [name for name in trained if TASKS[name].label_smoothing]


def _add_training(parser):
    from .training import recipe

    group = parser.add_argument_group("training")
    group.add_argument("--output", required=True, type=Path, help="folder for the finished model (Hub-ready)")
    group.add_argument("--overwrite", action="store_true",
                       help="replace an existing --output folder (and start afresh over an earlier run's checkpoints)")
    group.add_argument("--steps", type=positive_int, help="optimizer steps (instead of --epochs)")
    group.add_argument("--epochs", type=positive_float, default=1.0, help="passes over the data (default 1)")
    group.add_argument("--batch-size", type=positive_int, default=16,
                       help="examples per step and process (default 16)")
    group.add_argument("--lr", type=nonnegative_float, default=5e-4, help="peak learning rate (AdamW; default 5e-4)")
    group.add_argument("--warmup", type=warmup_amount, default=0.05,
                       help="warm-up: a fraction of the steps below 1, or a number of steps (default 0.05)")
    group.add_argument("--lr-scheduler", default="linear", choices=_schedulers(), metavar="SCHEDULER",
                       help=f"the learning rate's schedule: {', '.join(_schedulers())} (default linear)")
    group.add_argument("--weight-decay", type=nonnegative_float, default=0.01, help="AdamW weight decay (default 0.01)")
    group.add_argument("--adam-beta2", type=fraction, default=0.999, help="AdamW beta2 (default 0.999)")
    group.add_argument("--gradient-accumulation", type=positive_int, default=1, help="steps to accumulate (default 1)")
    group.add_argument(
        "--label-smoothing", type=fraction,
        help=f"epsilon_ls in [0, 1) of the training steps' loss, for token prediction ({', '.join(_smoothed_tasks())}"
        f"); evaluation losses are never smoothed (default 0, or {recipe.LABEL_SMOOTHING} with --paper-recipe)",
    )
    group.add_argument(
        "--paper-recipe",
        action="store_true",
        help=f"the paper's recipe: Adam{recipe.BETAS[0], recipe.BETAS[1], recipe.EPSILON}, lr = d_model^-0.5 "
        "min(step^-0.5, step warmup^-1.5) with a warm-up of 10%% of the steps (at most the paper's 4000), label "
        f"smoothing {recipe.LABEL_SMOOTHING} (token prediction), beam {recipe.NUM_BEAMS} with length penalty "
        f"{recipe.LENGTH_PENALTY} for evaluation",
    )
    group.add_argument("--lr-scale", type=nonnegative_float, default=1.0,
                       help="with --paper-recipe: multiplies the paper's learning rate (default 1)")
    group.add_argument("--average-last", type=nonnegative_int, default=0,
                       help="end on the average of the last N checkpoints (with --save-steps)")
    group.add_argument("--save-steps", type=positive_int,
                       help="write a checkpoint every N steps to <output>.checkpoints/")
    group.add_argument("--eval-steps", type=positive_int, help="evaluate every N steps as well as at the end")
    group.add_argument("--resume", action="store_true", help="resume from the last complete checkpoint")
    group.add_argument("--fsdp", action="store_true", help="shard with FSDP (one unit per layer) under torchrun")
    group.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    group.add_argument("--logging-steps", type=positive_int, default=50, help="log the loss every N steps (default 50)")
    group.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_generation(parser, beams_default=None):
    from .training.recipe import LENGTH_PENALTY

    group = parser.add_argument_group("generation")
    group.add_argument("--max-new-tokens", type=positive_int, default=64, help="tokens to generate (default 64)")
    group.add_argument("--num-beams", type=positive_int, default=beams_default, help="beam search width (default greedy)")
    group.add_argument("--length-penalty", type=finite_float,
                       help=f"beam length penalty alpha (with --num-beams; paper: {LENGTH_PENALTY})")
    group.add_argument("--do-sample", action="store_true", help="sample instead of searching")
    group.add_argument("--temperature", type=positive_float, help="sampling temperature (with --do-sample)")
    group.add_argument("--top-k", type=positive_int, help="sample among the k most likely tokens (with --do-sample)")
    group.add_argument("--top-p", type=probability,
                       help="sample from the smallest set with this total probability (with --do-sample)")


def _add_quantize(parser):
    from .integrations.quantization import METHODS

    parser.add_argument("--quantize", choices=list(METHODS), metavar="METHOD",
                        help="quantise the model's projections to int8 before use, on the CPU: "
                        + "; ".join(f"{name} ({text})" for name, text in METHODS.items()))


def build_parser() -> argparse.ArgumentParser:
    from .training.task_table import OPTION_HELP, tasks_of

    parser = _Parser(prog="vaswani", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("train-tokenizer", help="learn a vocabulary from text",
                            description="Train a tokenizer and save it where AutoTokenizer loads it.")
    p.add_argument("--data", required=True, nargs="+", help="text files, tables or a saved dataset")
    p.add_argument("--kind", default="shared-bpe", choices=["wordpiece", "byte-bpe", "shared-bpe", "char"],
                   help="wordpiece (BERT-style), byte-bpe (GPT-style), shared-bpe (translation), char")
    p.add_argument("--columns", nargs="+", help="text columns of a table (default: text, or every text column)")
    p.add_argument("--split", help="rows of this split only")
    p.add_argument("--vocab-size", type=positive_int, default=8000, help="vocabulary size (default 8000)")
    p.add_argument("--max-length", type=positive_int, default=512, help="model_max_length (default 512)")
    p.add_argument("--output", required=True, type=Path, help="folder to save the tokenizer in")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")

    p = commands.add_parser("pretrain", help="train a new model from scratch",
                            description="Train a new model: clm (decoder-only), mlm (encoder-only, --nsp for NSP), "
                            "plm (encoder-only, XLNet's permutation LM), seq2seq (encoder-decoder, the paper) or "
                            "captioning (an image encoder and a text decoder).")
    p.add_argument("--objective", required=True, choices=tasks_of("pretrain"))
    p.add_argument("--nsp", action="store_true", help="with mlm: add next-sentence prediction (VaswaniForPreTraining)")
    p.add_argument("--pack", action="store_true", help=OPTION_HELP["pack"])
    p.add_argument("--tokenizer", type=Path,
                   help="a tokenizer folder (vaswani train-tokenizer); captioning without it: a WordPiece tokenizer "
                        "learned from the training captions")
    _add_task_options(_add_data(p), tasks_of("pretrain"))
    p.add_argument("--validation-fraction", type=fraction, default=0.1,
                   help="clm on a .txt file: the last fraction of the text is for validation (default 0.1; 0: none)")
    group = p.add_argument_group("streaming (clm)")
    group.add_argument("--streaming", action="store_true",
                       help="read --data as it is trained on, never whole (a corpus larger than memory): a folder or "
                            "glob of .txt (a document per file), .jsonl, .json or .parquet shards (a document per "
                            "row), maybe .gz, or a Hub dataset; packed into full blocks with eos between documents, "
                            "shuffled through a buffer, shards split across processes; needs --steps; --resume "
                            "continues the stream where the checkpoint left it")
    group.add_argument("--shuffle-buffer", type=nonnegative_int, default=1000,
                       help="--streaming: blocks held to draw each batch's from at random (default 1000; 0: in order)")
    group.add_argument("--attention-within-documents", action="store_true",
                       help="--streaming: each token attends only to its own document's tokens in a block, its "
                            "positions counted from the document's start (as if trained alone); default: across the "
                            "whole block, eos marking the boundaries (GPT-2's packing)")
    _add_image_shape(_add_architecture(p))
    _add_training(p)
    _add_generation(p)

    p = commands.add_parser("finetune", help="adapt a model to a task",
                            description="Fine-tune a saved model (or a new one with --tokenizer) on a task.")
    p.add_argument("--task", required=True, choices=tasks_of("finetune"))
    p.add_argument("--model", type=Path, help="a saved model folder to start from (e.g. from pretrain)")
    p.add_argument("--tokenizer", type=Path, help="a tokenizer folder (with a new model, or to override --model's)")
    _add_task_options(_add_data(p), tasks_of("finetune"))
    _add_image_shape(_add_architecture(p))
    _add_training(p)
    group = p.add_argument_group("adapters (PEFT)")
    group.add_argument("--lora", action="store_true",
                       help="train LoRA adapters on q_proj and v_proj (and the head parts --model lacks), the rest "
                       "frozen; --output holds the adapter, and the merged model in merged/")
    group.add_argument("--lora-rank", type=positive_int, default=8, help="rank r of the adapters (default 8)")
    group.add_argument("--lora-alpha", type=positive_float, default=16.0,
                       help="the adapters' scale is alpha / r (default 16)")
    _add_generation(p)

    p = commands.add_parser("evaluate", help="measure a saved model on data",
                            description="Evaluate a saved model: loss and perplexity for language models, accuracy "
                            "and F1 for classifiers (of text or images), exact match and F1 for QA, BLEU and chrF for "
                            "seq2seq, loss, caption exact match and word accuracy for captioning.")
    p.add_argument("--model", required=True, type=Path, help="a saved model folder")
    p.add_argument("--task", required=True, choices=tasks_of("evaluate"))
    group = p.add_argument_group("data")
    group.add_argument("--data", required=True, help="evaluation data: a file, a saved dataset folder or a Hub name")
    group.add_argument("--split", default="test", help="split to evaluate (default test)")
    group.add_argument("--max-eval-samples", "--samples", type=positive_int,
                       help="evaluate on the first N rows of --split (chosen before tokenization)")
    _add_task_options(group, tasks_of("evaluate"))
    group.add_argument("--validation-fraction", type=fraction,
                       help="clm on a .txt file: evaluate on the last fraction of the text only (as pretrain holds out)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="examples per batch (default 32)")
    p.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    _add_quantize(p)
    _add_generation(p)

    p = commands.add_parser("generate", help="continue or translate text, or caption images, with a saved model",
                            description="Generate from a saved causal LM (continuation), seq2seq model "
                            "(translation) or captioner (--image: captions).")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--prompt", action="append", help="a prompt or source text (repeatable)")
    p.add_argument("--image", action="append", type=Path,
                   help="a captioner (a model that reads images): an image file to caption (repeatable)")
    p.add_argument("--seed", type=seed_int, default=0, help="random seed of sampling (default 0)")
    _add_quantize(p)
    _add_generation(p)

    p = commands.add_parser("push", help="upload a saved model folder to the Hub",
                            description="Upload a saved model folder, exactly as it is, to a Hub repository.")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--repo-id", required=True, help="user/name of the Hub repository")
    p.add_argument("--private", action="store_true")
    p.add_argument("--commit-message", default="Upload Vaswani model")

    p = commands.add_parser("convert", help="turn a BERT, GPT-2, Marian, GPT-NeoX, BLOOM, T5 or ViT model into a Vaswani "
                            "model folder",
                            description="Convert a Hugging Face BertModel, BertForMaskedLM, BertForPreTraining, "
                            "GPT2Model, GPT2LMHeadModel, MarianModel, MarianMTModel, GPTNeoXModel, GPTNeoXForCausalLM, "
                            "BloomModel, BloomForCausalLM, T5Model, T5ForConditionalGeneration, T5EncoderModel, ViTModel, "
                            "ViTForImageClassification or VisionEncoderDecoderModel (ViT + GPT-2) (a folder or Hub "
                            "name) into the Vaswani model that computes the same numbers, and write a Hub-ready folder "
                            "with the source's tokenizer and image processor.")
    p.add_argument("--source", required=True, help="the model to convert: a checkpoint folder or a Hub name")
    p.add_argument("--architecture", help="class to load the source as (default: its config's architectures[0])")
    p.add_argument("--output", required=True, type=Path, help="folder for the converted model (Hub-ready)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")

    p = commands.add_parser("export", help="export a saved model as ONNX graphs or torch.export programs",
                            description="Export a saved model folder: its forward, and for a causal LM or seq2seq "
                            "model a prefill and a cached decoding step (generation), as ONNX graphs for ONNX Runtime "
                            "or torch.export programs, with dynamic batch and lengths; the folder also holds the "
                            "tokenizer (or image processor), the config and a README saying what each file takes "
                            "and gives.")
    p.add_argument("--model", required=True, type=Path, help="a saved model folder")
    p.add_argument("--format", required=True, choices=["onnx", "torch"],
                   help="onnx (ONNX Runtime, through torch.onnx with dynamo) or torch (torch.export .pt2 programs)")
    p.add_argument("--output", required=True, type=Path, help="folder for the exported graphs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")

    p = commands.add_parser("explore", help="a web page to see a model's attention, head by head",
                            description="Serve the attention explorer (a Gradio page, on this machine only unless "
                            "--host says otherwise): type a sentence, see the model's output, pick the attention, "
                            "layer and head to see its weights as a heat map. With --space, write instead a folder "
                            "a Hugging Face Space runs as it is. Needs the explore extra (pip install "
                            "'vaswani[explore]').")
    p.add_argument("model", nargs="?", type=Path, metavar="MODEL",
                   help="a saved model folder (default: the demo's, outputs/demo/shakespeare-gpt, from `make demo`)")
    p.add_argument("--port", type=port_int, help="the page's port (default 7860, or the next free one)")
    p.add_argument("--host", help="the address to serve on (default 127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--space", type=Path, metavar="DIR",
                   help="write a Hugging Face Space folder here (app.py, requirements.txt, README.md, the model, the "
                   "package's source) instead of serving the page")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --space folder")
    return parser


# -- Settings that fit together: checked before any work ---------------------------------------------------------------
GENERATION_OPTIONS = ("max_new_tokens", "num_beams", "length_penalty", "do_sample", "temperature", "top_k", "top_p")
SAMPLING_OPTIONS = ("temperature", "top_k", "top_p")
# Each position kind's own settings: they apply only when the new model has that kind (`_check_positions`).
POSITION_OPTIONS = {"rope_theta": "rotary", "partial_rotary_factor": "rotary", "relative_buckets": "relative",
                    "relative_max_distance": "relative"}
# AdamW's settings: the paper's recipe brings its own optimiser and schedule (`recipe.paper_optimizer`).
ADAMW_OPTIONS = ("lr", "warmup", "lr_scheduler", "weight_decay", "adam_beta2")
IMAGE_OPTIONS = ("image_size", "patch_size")  # the shape of a new model that reads images
ARCHITECTURE_OPTIONS = ("preset", "d_model", "num_heads", "d_ff", "layers", "dropout", "positions", "activation",
                        "norm_first", "no_embedding_scale", *POSITION_OPTIONS, "max_positions", "attention_scores",
                        *IMAGE_OPTIONS)


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _task_of(args):
    """The task a training or evaluation command runs (None for the others)."""
    from .training.task_table import TASKS, pretraining_task

    if args.command == "pretrain":
        return pretraining_task(args.objective, args.nsp)
    if args.command in ("finetune", "evaluate"):
        return TASKS[args.task]
    return None


def validate_args(args) -> None:
    """
    Refuse, before any work, settings that do not fit together, each as a `UsageError` naming the option and the
    fix. (Each value alone was checked by its option's type while parsing.) Every command calls this first.
    """
    from .training.data import UsageError
    from .training.recipe import NUM_BEAMS

    chosen = given(args)
    command = args.command
    task = _task_of(args)
    training = command in ("pretrain", "finetune")
    generates = command == "generate" or (task is not None and task.generates)

    if command == "explore":
        if args.space is not None:
            for dest in ("port", "host"):
                if dest in chosen:
                    raise UsageError(f"{_flag(dest)} serves the page, and --space writes a folder instead: drop "
                                     f"{_flag(dest)} or --space.")
        elif args.overwrite:
            raise UsageError("--overwrite replaces an existing --space folder: add --space DIR, or drop --overwrite.")
    if command == "generate":
        if (args.prompt is None) == (args.image is None):
            raise UsageError("Pass --prompt TEXT (a text model) or --image FILE (a captioner), one of them: the "
                             "text to continue or translate, or the images to caption.")
        empty = [i + 1 for i, prompt in enumerate(args.prompt or []) if prompt == ""]
        if empty:
            raise UsageError(f"--prompt number {empty[0]} is empty: give the text to continue or translate.")
    if command == "pretrain":
        _validate_streaming(args, chosen)
    if training:
        from .training.launchers import check_launch

        check_launch(command)  # a launcher that asked for several processes and started one
        if "steps" in chosen and "epochs" in chosen:
            raise UsageError("--steps and --epochs both set the run's length: pass one of them.")
        if args.paper_recipe:
            for dest in ADAMW_OPTIONS:
                if dest in chosen:
                    raise UsageError(
                        f"{_flag(dest)} does not apply with --paper-recipe, which brings its own optimiser and "
                        f"schedule (scale its rate with --lr-scale): drop {_flag(dest)} or --paper-recipe."
                    )
        elif "lr_scale" in chosen:
            raise UsageError("--lr-scale scales the paper's schedule: add --paper-recipe, or set the rate with --lr.")
        if args.average_last > 1:
            if not args.save_steps:
                raise UsageError(f"--average-last {args.average_last} averages checkpoints: add --save-steps N "
                                 f"(a checkpoint every N steps).")
            if args.steps and args.steps // args.save_steps < args.average_last:
                raise UsageError(
                    f"--average-last {args.average_last} needs {args.average_last} checkpoints, but --steps "
                    f"{args.steps} with --save-steps {args.save_steps} writes {args.steps // args.save_steps}: lower "
                    f"--save-steps or --average-last."
                )
        for dest in ("save_steps", "eval_steps"):
            value = getattr(args, dest)
            if value and args.steps and value > args.steps:
                raise UsageError(f"{_flag(dest)} {value} is more than --steps {args.steps}, so it would never come: "
                                 f"lower {_flag(dest)}.")
        if command == "pretrain" and args.tokenizer is None and not task.reads_images:
            raise UsageError(f"--objective {args.objective} needs --tokenizer (a folder from vaswani train-tokenizer); "
                             f"only captioning learns one from its captions.")
        if command == "pretrain" and args.nsp and args.objective != "mlm":
            raise UsageError(f"--nsp adds next-sentence prediction to --objective mlm, not {args.objective}: drop "
                             f"--nsp or choose --objective mlm.")
        if command == "finetune" and args.model is not None:
            for dest in ARCHITECTURE_OPTIONS:
                if dest in chosen:
                    raise UsageError(f"{_flag(dest)} shapes a new model, and --model {args.model} has its shape: drop "
                                     f"{_flag(dest)}, or drop --model to train a new model.")
        if command == "pretrain" or (command == "finetune" and args.model is None):
            _check_heads(args)
            _check_positions(args, chosen)
            _check_memory(args, chosen, task)
        if command == "pretrain" and args.pack:
            _check_pack(args)
        if command == "finetune":
            _check_lora(args, chosen)
    if task is not None and not task.reads_images:
        for dest in IMAGE_OPTIONS:
            if dest in chosen:
                raise UsageError(f"{_flag(dest)} shapes a model that reads images, and {task.name} reads text: drop "
                                 f"{_flag(dest)}.")
    if "validation_fraction" in chosen and (task is None or task.name != "clm"):
        raise UsageError(f"--validation-fraction holds out the end of a .txt file for clm, not for {task.name}: use "
                         f"--eval-data or a split instead.")
    if task is not None and task.name == "question-answering" and args.doc_stride >= args.max_length:
        raise UsageError(f"--doc-stride {args.doc_stride} must be below --max-length {args.max_length} (the windows "
                         f"overlap by it): lower --doc-stride.")
    if command in ("pretrain", "finetune", "evaluate", "generate"):
        if not generates:
            for dest in GENERATION_OPTIONS:
                if dest in chosen:
                    raise UsageError(f"{_flag(dest)}: {command} {task.name} generates no text (only "
                                     f"{' and '.join(_generating_tasks())} are scored on generated text): drop "
                                     f"{_flag(dest)}.")
        for dest in SAMPLING_OPTIONS:
            if dest in chosen and not args.do_sample:
                raise UsageError(f"{_flag(dest)} shapes sampling: add --do-sample, or drop {_flag(dest)}.")
        beams = args.num_beams or (NUM_BEAMS if training and args.paper_recipe else 1)
        if "length_penalty" in chosen and beams < 2:
            raise UsageError("--length-penalty applies to beam search: add --num-beams N (N of 2 or more), or drop "
                             "--length-penalty.")


def _generating_tasks() -> list[str]:
    from .training.task_table import TASKS

    return [name for name, task in TASKS.items() if task.generates]


def _positions_of(args) -> str:
    """A new model's position kind: --positions, else the preset's (else the config's default)."""
    from .configuration import VaswaniConfig

    preset = PRESETS[args.preset or DEFAULT_PRESET]
    return args.positions or preset.get("position_embedding_type", VaswaniConfig().position_embedding_type)


def _check_positions(args, chosen) -> None:
    """
    Each position kind's options only with that kind, values its config accepts (buckets against the distance, the
    rotated share of a head, additive scores without rotary positions), and --max-positions that holds the task's
    inputs.
    """
    from .configuration import VaswaniConfig
    from .training.data import UsageError

    kind = _positions_of(args)
    for dest, needs in POSITION_OPTIONS.items():
        if dest in chosen and kind != needs:
            raise UsageError(f"{_flag(dest)} sets {needs} positions, but the new model has {kind} positions: add "
                             f"--positions {needs}, or drop {_flag(dest)}.")
    preset = args.preset or DEFAULT_PRESET
    shape = (("d_model", args.d_model), ("num_heads", args.num_heads), ("attention_scores", args.attention_scores))
    settings = {k: v for k, v in shape if v is not None}
    try:  # the shape alone (no tokenizer yet): what the config refuses in these options, before any work
        VaswaniConfig.from_preset(preset, **settings, position_embedding_type=kind,
                                  **_position_settings(args, VaswaniConfig.from_preset(preset)))
    except ValueError as error:
        named = (*POSITION_OPTIONS, "positions", "attention_scores")
        given_ = " ".join(f"{_flag(d)} {getattr(args, d)}" for d in named if d in chosen)
        raise UsageError(f"{given_}: {error}") from None
    task = _task_of(args)
    if args.max_positions is not None and kind == "learned" and task.reads_text:
        dest, needed = ("block_size", args.block_size + 1) if task.name == "clm" else ("max_length", args.max_length)
        if args.max_positions < needed:
            raise UsageError(f"--max-positions {args.max_positions} is fewer than the {needed} positions "
                             f"{_flag(dest)} {getattr(args, dest)} needs: raise --max-positions or lower {_flag(dest)}.")


def _check_memory(args, chosen, task) -> None:
    """--memory-length for clm only, and with positions a segment memory can take (the config's rule)."""
    from .configuration import VaswaniConfig
    from .training.data import UsageError

    length = getattr(args, "memory_length", None)
    if "memory_length" not in chosen:
        return
    if task.name != "clm":
        raise UsageError(f"--memory-length is a causal LM's segment memory (--objective clm), not {task.name}'s: drop "
                         f"--memory-length.")
    kind = _positions_of(args)
    try:
        VaswaniConfig.from_preset(args.preset or DEFAULT_PRESET, position_embedding_type=kind, memory_length=length,
                                  **_position_settings(args, VaswaniConfig.from_preset(args.preset or DEFAULT_PRESET)))
    except ValueError as error:
        fix = "" if kind in ATTENTION_POSITIONS else ": add --positions rotary, alibi or relative"
        raise UsageError(f"--memory-length {length}{fix} ({error})") from None


def _check_pack(args) -> None:
    """--pack for clm, mlm and plm: not with --nsp's sentence pairs, a segment memory's streams or a .txt file."""
    from .training.data import UsageError, is_text_file

    if args.objective not in ("clm", "mlm", "plm"):
        raise UsageError(f"--pack packs the text of --objective clm, mlm or plm, not {args.objective}'s examples: "
                         f"drop --pack.")
    if args.nsp:
        raise UsageError("--pack fills rows with many sentences, and --nsp needs a pair of sentences per row: drop "
                         "--pack or --nsp.")
    if getattr(args, "memory_length", None) is not None:
        raise UsageError("--memory-length reads the text as streams of segments, never padded: drop --pack or "
                         "--memory-length.")
    if args.objective == "clm" and is_text_file(args.data):
        raise UsageError(f"--pack packs a table's rows, and {args.data} is one running text, already cut into full "
                         f"blocks: drop --pack, or give a table (one document per row).")


def _check_heads(args) -> None:
    """A new model's width must split evenly across its heads (the preset's values where the options leave them)."""
    from .training.data import UsageError

    preset = PRESETS[args.preset or DEFAULT_PRESET]
    d_model = args.d_model or preset["d_model"]
    heads = args.num_heads or preset["num_heads"]
    if d_model % heads:
        said = " and ".join(f"{_flag(d)} {getattr(args, d)}" for d in ("d_model", "num_heads") if getattr(args, d))
        raise UsageError(f"{said}: d_model {d_model} must be a multiple of the {heads} heads: choose values that "
                         f"divide.")


def _refuse_without(chosen, dests, needed: str, what: str) -> None:
    """Refuse options (`dests`) given without the option `needed` that they belong to; `what` they do."""
    from .training.data import UsageError

    for dest in dests:
        if dest in chosen:
            raise UsageError(f"{_flag(dest)} {what}: add {needed}, or drop {_flag(dest)}.")


def _check_lora(args, chosen) -> None:
    """--lora adapts a saved model, and its companions shape --lora only."""
    from .training.data import UsageError

    if not args.lora:
        _refuse_without(chosen, ("lora_rank", "lora_alpha"), "--lora", "shapes LoRA adapters")
        return
    if args.model is None:
        raise UsageError("--lora adapts a saved model, and there is none: add --model (e.g. a pretrain folder), or "
                         "drop --lora to train a new model whole.")
    if args.average_last > 1:
        raise UsageError("--average-last averages whole-model checkpoints, and --lora's hold the adapter only: drop "
                         "--average-last or --lora.")
    if args.fsdp:
        raise UsageError("--fsdp shards whole models, and --lora trains a few small matrices (the frozen base is "
                         "not sharded for them): drop --fsdp; torchrun still trains --lora data-parallel.")


def _validate_streaming(args, chosen) -> None:
    """`pretrain --streaming`: a causal LM's corpus read as it is trained on, whose length is --steps."""
    from .training.data import UsageError

    if not args.streaming:
        _refuse_without(chosen, ("shuffle_buffer", "attention_within_documents"), "--streaming",
                        "applies to a stream's blocks")
        return
    if args.objective != "clm":
        raise UsageError(f"--streaming packs running text for a causal LM, and --objective {args.objective} reads "
                         f"whole tables: use --objective clm, or drop --streaming.")
    if args.steps is None:
        raise UsageError("--streaming reads a stream without a known end: give the run's length with --steps N "
                         "(Trainer's max_steps).")
    for dest, why in (("epochs", "a stream's passes are not counted in advance: give --steps"),
                      ("validation_fraction", "a stream has no end to hold out: give --eval-data"),
                      ("max_train_samples", "a stream is read, not cut: give --steps"),
                      ("memory_length", "the segment memory reads streams of one text in order"),
                      ("pack", "a stream is always packed")):
        if dest in chosen and getattr(args, dest) is not None:
            raise UsageError(f"{_flag(dest)} does not apply with --streaming ({why}): drop {_flag(dest)}.")


def _check_outputs(args, *inputs) -> None:
    """Before any work: the --output folder can be written and may be replaced; so may the checkpoint folder."""
    from .training.run import check_checkpoints, check_output_free

    check_output_free(args.output, args.overwrite, inputs=[(flag, value) for flag, value in inputs if value])
    if args.command in ("pretrain", "finetune"):
        check_checkpoints(args.output, args.resume, args.overwrite)


# -- Helpers ------------------------------------------------------------------------------------------------------------
def _say(*parts):
    from .training.run import is_main_process

    if is_main_process():
        print(*parts, flush=True)


def _generation_kwargs(args, paper: bool = False) -> dict:
    from .training.recipe import LENGTH_PENALTY, NUM_BEAMS

    kwargs = {"max_new_tokens": args.max_new_tokens}
    if paper:
        kwargs.update(num_beams=NUM_BEAMS, length_penalty=LENGTH_PENALTY)
    for name in ("num_beams", "length_penalty", "temperature", "top_k", "top_p"):
        if getattr(args, name, None) is not None:
            kwargs[name] = getattr(args, name)
    if args.do_sample:
        kwargs["do_sample"] = True
    return kwargs


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    from .training.data import UsageError

    if not Path(folder).is_dir():
        raise UsageError(f"Tokenizer folder not found: {folder}")
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"Could not load a tokenizer from {folder}: {first_line}") from None


def _model_folder(folder: Path) -> Path:
    """Where a folder's model is: `merged/` in an adapter folder (`finetune --lora`), else the folder itself."""
    folder = Path(folder)
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        return folder / "merged"
    return folder


def _load_model(folder: Path, auto_class):
    from .training.data import UsageError

    folder = _model_folder(folder)
    if not (folder / "config.json").is_file():
        raise UsageError(f"No model in {folder} (config.json missing): pass a folder a vaswani command wrote.")
    return auto_class.from_pretrained(str(folder))


def _quantized(model, args):
    """The model with --quantize applied (in place), said aloud; the model as it is without the option."""
    if args.quantize is None:
        return model
    from .integrations.quantization import float_projections, quantize

    count = len(float_projections(model))
    quantize(model, args.quantize)
    _say(f"--quantize {args.quantize}: the model's {count} projections are int8.")
    return model


def _new_config(args, tokenizer, **defaults):
    """
    A new model's config, sized to the tokenizer (None: a model that reads images): the --preset (default
    `DEFAULT_PRESET`) with the architecture options over it. --layers sets the depth of each stack the preset has;
    without a --preset, --d-model without --d-ff gives d_ff = 4 x d_model.
    """
    from .configuration import VaswaniConfig
    from .tokenization import config_from_tokenizer

    preset = args.preset or DEFAULT_PRESET
    settings = dict(defaults)
    chosen = {
        "d_model": args.d_model, "num_heads": args.num_heads, "d_ff": args.d_ff, "dropout": args.dropout,
        "position_embedding_type": args.positions, "activation_function": args.activation,
        "attention_scores": args.attention_scores,
    }
    settings.update({k: v for k, v in chosen.items() if v is not None})
    if args.layers is not None:
        for stack in ("num_encoder_layers", "num_decoder_layers"):
            if PRESETS[preset].get(stack) != 0:  # a stack the preset leaves out stays out
                settings[stack] = args.layers
    if args.norm_first:
        settings["norm_first"] = True
    if args.no_embedding_scale:
        settings["scale_embedding"] = False
    if args.max_positions is not None:
        settings["max_position_embeddings"] = args.max_positions
    settings.update(_position_settings(args, VaswaniConfig.from_preset(preset)))
    # A final LayerNorm follows norm_first (the config's rule) unless the preset fixes it.
    settings["final_layer_norm"] = PRESETS[preset].get("final_layer_norm")
    if args.preset is None and args.d_model is not None and args.d_ff is None:
        settings["d_ff"] = 4 * args.d_model
    if tokenizer is None:  # a model that reads images: no vocabulary to fit
        return VaswaniConfig.from_preset(preset, **settings)
    return config_from_tokenizer(tokenizer, config=VaswaniConfig.from_preset(preset), **settings)


def _position_settings(args, preset) -> dict:
    """The config fields of --positions and its kind's options, over the preset's (whose RoPE dict goes with rotary)."""
    settings = {}
    if args.positions is not None and args.positions != "rotary":
        settings["rope_parameters"] = None  # a rotary preset's RoPE parameters leave with its rotary positions
    rope = {"rope_theta": args.rope_theta, "partial_rotary_factor": args.partial_rotary_factor}
    if any(value is not None for value in rope.values()):
        base = preset.rope_parameters if preset.position_embedding_type == "rotary" else None
        settings["rope_parameters"] = {**(base or {"rope_type": "default", "rope_theta": 10000.0}),
                                       **{k: v for k, v in rope.items() if v is not None}}
    if args.relative_buckets is not None:
        settings["relative_attention_num_buckets"] = args.relative_buckets
    if args.relative_max_distance is not None:
        settings["relative_attention_max_distance"] = args.relative_max_distance
    return settings


def _fit_tokenizer_to_positions(tokenizer, config) -> None:
    """
    A new model with learned positions takes at most `max_position_embeddings` tokens: the tokenizer saved with it
    truncates there (`model_max_length`), so that no input of the saved folder runs past the positions.
    """
    positions = config.max_position_embeddings
    if config.position_embedding_type == "learned" and tokenizer.model_max_length > positions:
        _say(f"The tokenizer's model_max_length {tokenizer.model_max_length} is lowered to {positions}, the model's "
             f"learned positions (inputs are truncated there).")
        tokenizer.model_max_length = positions


# What a generate() or pipeline call without a length makes, at most: transformers' text-generation pipeline default.
DEFAULT_NEW_TOKENS = 256


def _fit_generation_config(model) -> None:
    """
    A generating model with learned positions saves a generation length (`max_new_tokens`, at most its positions), so
    that a generate() or pipeline call without one never asks for more than the positions hold (the pipelines add 256
    new tokens only where the model's generation config names no length; generate() stops a default length at the
    last learned position). A length the generation config has already is kept.
    """
    config, generation = model.config, getattr(model, "generation_config", None)
    if generation is None or not model.can_generate() or config.position_embedding_type != "learned":
        return
    if generation.max_length is None and generation.max_new_tokens is None:
        generation.max_new_tokens = min(DEFAULT_NEW_TOKENS, config.max_position_embeddings)


def _fit_lengths_to_positions(args, task, config) -> None:
    """
    A saved model with learned positions takes at most `max_position_embeddings` tokens: a --max-length or
    --block-size beyond them is refused when given, and lowered to fit (said aloud) when it is the default.
    """
    from .training.data import UsageError

    if config.position_embedding_type != "learned":
        return
    positions = config.max_position_embeddings
    dest, limit = ("block_size", positions - 1) if task.name == "clm" else ("max_length", positions)
    value = getattr(args, dest, None)
    if value is None or value <= limit:
        return
    if dest in given(args):
        raise UsageError(f"{_flag(dest)} {value} runs past the model's {positions} learned positions: pass "
                         f"{_flag(dest)} {limit} or less.")
    _say(f"{_flag(dest)} is {limit} (not the default {value}): the model has {positions} learned positions.")
    setattr(args, dest, limit)


def _label_smoothing(args, task) -> float:
    """epsilon_ls of the training steps: --label-smoothing, else the paper's under --paper-recipe for token
    prediction, else none. A positive one for a head whose loss takes none is refused."""
    from .training.data import UsageError
    from .training.recipe import LABEL_SMOOTHING
    from .training.run import check_label_smoothing

    if args.label_smoothing is None:
        return LABEL_SMOOTHING if args.paper_recipe and task.label_smoothing else 0.0
    check_label_smoothing(args.label_smoothing)
    if args.label_smoothing and not task.label_smoothing:
        raise UsageError(
            f"--label-smoothing {args.label_smoothing}: the {task.name} loss takes no label smoothing (only token "
            f"prediction does: {', '.join(_smoothed_tasks())}): drop --label-smoothing."
        )
    return args.label_smoothing


def _settings(args, label_smoothing: float):
    from .training.run import RunSettings

    return RunSettings(
        output=args.output, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        warmup_ratio=args.warmup, weight_decay=args.weight_decay, gradient_accumulation=args.gradient_accumulation,
        paper_recipe=args.paper_recipe, lr_scale=args.lr_scale, seed=args.seed, save_steps=args.save_steps,
        eval_steps=args.eval_steps, logging_steps=args.logging_steps, resume=args.resume,
        average_last=args.average_last, fsdp=args.fsdp, lr_scheduler=args.lr_scheduler, quiet=args.quiet,
        label_smoothing=label_smoothing, overwrite=args.overwrite, extra={"adam_beta2": args.adam_beta2},
    )


def _eval_table(args):
    """The evaluation rows: --eval-data, or the --eval-split of --data when it has one; None when there are none."""
    from .training.data import UsageError, load_table

    if args.eval_data:
        table = load_table(args.eval_data, args.eval_split if args.eval_split else None)
    else:
        try:
            table = load_table(args.data, args.eval_split)
        except UsageError:
            return None
        if "split" not in table.column_names and not Path(args.data).is_dir():
            return None  # a file without splits: no held-out rows
    return _first_rows(table, args.max_eval_samples, "--max-eval-samples")


def _first_rows(table, count: int | None, flag: str):
    """The first `count` rows of `table` (all of them when `count` is None; fewer rows than asked for are said)."""
    if count is None:
        return table
    if count > len(table):
        _say(f"{flag} {count}: the data has {len(table):,} rows, all of them are used.")
    return table.select(range(min(count, len(table))))


def _summary(title: str, metrics: dict, started: float, output=None):
    lines = [f"\n== {title} ({time.perf_counter() - started:.0f} s)"]
    lines += [f"   {name}: {value}" for name, value in metrics.items()]
    if output:
        lines.append(f"   model folder: {output}")
    _say("\n".join(lines))


# -- Commands -----------------------------------------------------------------------------------------------------------
def cmd_train_tokenizer(args):
    from .tokenization import train_tokenizer
    from .training.data import UsageError, is_text_file, load_table, read_text, require_columns
    from .training.run import folder_written_whole

    validate_args(args)
    _check_outputs(args, *(("--data", item) for item in args.data))
    started = time.perf_counter()
    texts = []
    for item in args.data:
        if is_text_file(item) and not args.columns:
            text = read_text(item)  # decompressed when gzipped
            # characters: the whole text, newlines included; words: one text per non-empty line
            texts.extend([text] if args.kind == "char" else [line for line in text.split("\n") if line.strip()])
            continue
        source = load_table(item, args.split)
        columns = args.columns or [c for c, f in source.features.items() if getattr(f, "dtype", "") == "string"
                                   and c not in ("split", "ref")]
        require_columns(source, columns, "the data")
        texts.extend(t for c in columns for t in source[c] if t)
    if not texts:
        raise UsageError("No text to train the tokenizer on.")
    tokenizer = train_tokenizer(texts, kind=args.kind, vocab_size=args.vocab_size, model_max_length=args.max_length)
    try:
        with folder_written_whole(args.output, args.overwrite) as staging:
            tokenizer.save_pretrained(staging)
    except FileExistsError:
        raise UsageError(f"{args.output} appeared meanwhile: choose another --output or pass --overwrite.") from None
    _summary("tokenizer", {"kind": args.kind, "vocabulary": len(tokenizer)}, started, args.output)
    return {"vocabulary": len(tokenizer)}


def _running_text(path, fraction: float | None) -> tuple[str, str | None]:
    """A .txt file's text cut in two: the first 1 - `fraction` of it, and the rest (None when empty)."""
    from .training.data import read_text

    text = read_text(path)
    cut = int(len(text) * (1 - fraction)) if fraction else len(text)
    return text[:cut], text[cut:] or None


def _training_rows(args, task) -> str:
    """What of --data a run trains on, for the model card: part or all of a running text, or a split's rows."""
    from .training.data import is_text_file

    if getattr(args, "streaming", False):
        return f"a stream of the corpus, {args.steps:,} steps of {args.batch_size:,} blocks per process"
    if not (task.running_text and is_text_file(args.data)):
        split = f"split {getattr(args, 'split', 'train')!r}"
        return f"the first {args.max_train_samples:,} rows of {split}" if args.max_train_samples else split
    if args.eval_data or not args.validation_fraction:
        return "the whole text"
    return f"the first {1 - args.validation_fraction:.0%} of the text"


def _refuse_row_options(args, dests) -> None:
    """Refuse options that choose rows (splits, counts) given for a running text, which has no rows."""
    from .training.data import UsageError

    for dest in dests:
        if dest in given(args):
            raise UsageError(f"{_flag(dest)} chooses rows of a table, and a clm's .txt file is one running text: drop "
                             f"{_flag(dest)} (--validation-fraction holds out the end of the text).")


def _pretraining_rows(args, task):
    """Training and evaluation rows: a running text cut in two (or whole, with --eval-data), or tables."""
    from .training.data import UsageError, is_text_file, read_text

    if task.running_text and is_text_file(args.data):
        if args.eval_data and "validation_fraction" in given(args):
            raise UsageError("--validation-fraction and --eval-data both choose the evaluation text: pass one.")
        evaluation_is_text = not args.eval_data or is_text_file(args.eval_data)
        _refuse_row_options(args, ["split", "max_train_samples"]
                            + (["eval_split", "max_eval_samples"] if evaluation_is_text else []))
        if args.eval_data:
            evaluation = read_text(args.eval_data) if evaluation_is_text else _eval_table(args)
            return read_text(args.data), evaluation
        return _running_text(args.data, args.validation_fraction)
    if "validation_fraction" in given(args):
        raise UsageError(f"--validation-fraction holds out the end of a .txt file, and {args.data} is a table: use "
                         f"its split column (--eval-split) or --eval-data.")
    return _training_table(args), _eval_table(args)


def _training_table(args):
    """The training rows: --data's --split, its first --max-train-samples rows when given."""
    from .training.data import load_table

    return _first_rows(load_table(args.data, args.split), args.max_train_samples, "--max-train-samples")


def _train_and_record(args, task, model, tokenizer, prepared, eval_rows, procedure: str, started: float,
                      label_smoothing: float, announce: str, companions=()):
    """
    Train, score on the evaluation rows, record the card, publish (with `companions` saved beside the model, such
    as a captioner's image processor): what pretrain and finetune share. `announce` is said first, formatted with
    the model's class name, its parameter count and the number of training examples.
    """
    from .training.data import UsageError
    from .training.run import publish, train
    from .training.task_table import TaskOptions

    streamed = isinstance(prepared.train, torch.utils.data.IterableDataset)  # a stream: no length
    if not streamed and len(prepared.train) == 0:
        raise UsageError(f"{args.data} gave no training examples.")
    if args.eval_steps and prepared.eval is None:
        raise UsageError(f"--eval-steps {args.eval_steps}: there is no evaluation data (pass --eval-data, or data "
                         f"with an --eval-split): drop --eval-steps or give some.")
    evaluation = f", {len(prepared.eval):,} evaluation examples" if prepared.eval is not None else ""
    _say(announce.format(model=type(model).__name__, parameters=sum(p.numel() for p in model.parameters()),
                         examples=prepared.train if streamed else len(prepared.train), evaluation=evaluation))
    if prepared.packing is not None:
        _say(prepared.packing)
    trainer, eval_loss = train(model, tokenizer, prepared, _settings(args, label_smoothing), task.trainer)
    model = trainer.model
    metrics = task.loss_metrics(eval_loss) if eval_loss is not None else {}
    examples = []
    if task.scores is not None and eval_rows is not None:
        scores, examples = task.scores(model, tokenizer, eval_rows, TaskOptions.of(args), prepared, trainer,
                                       _generation_kwargs(args, paper=args.paper_recipe))
        metrics.update(scores)
    _record_card(model, args, metrics, procedure, label_smoothing, _training_rows(args, task), prepared.packing)
    _fit_generation_config(model)
    publish(trainer, args.output, args.overwrite, companions)
    _summary(procedure, metrics, started, args.output)
    return metrics, examples


def cmd_pretrain(args):
    from .training.task_table import TaskOptions, pretraining_task

    validate_args(args)
    started = time.perf_counter()
    task = pretraining_task(args.objective, args.nsp)
    label_smoothing = _label_smoothing(args, task)
    _check_outputs(args, ("--data", args.data), ("--eval-data", args.eval_data), ("--tokenizer", args.tokenizer))
    set_seed(args.seed)  # before the model is built: the seed fixes the initial weights too
    options = TaskOptions.of(args)
    processor = None
    if task.reads_images:  # a captioner: an image encoder, the image processor beside the tokenizer
        from .tokenization.image_processing_vaswani import image_processor_for
        from .training.tasks import require_images

        train_rows, eval_rows = _image_rows(args)
        require_images(train_rows, options.image_column, [options.caption_column])
        tokenizer = _load_tokenizer(args.tokenizer) if args.tokenizer else _caption_tokenizer(train_rows, options)
        config = _new_image_config(args, train_rows, options.image_column, tokenizer,
                                   max_position_embeddings=task.positions(options))
        processor = image_processor_for(config)
    else:
        tokenizer = _load_tokenizer(args.tokenizer)
        train_rows, eval_rows = (None, _streaming_eval_rows(args)) if args.streaming else _pretraining_rows(args, task)
        memory = {"memory_length": options.memory_length} if getattr(options, "memory_length", None) else {}
        config = _new_config(args, tokenizer, max_position_embeddings=task.positions(options), **memory)
    _fit_tokenizer_to_positions(tokenizer, config)
    model = task.auto_class().from_config(config)
    if args.streaming:  # --data read as it is trained on (training/streaming.py)
        from .training.streaming import prepare_streaming
        from .training.task_table import _running_text

        prepared = prepare_streaming(args.data, _running_text(eval_rows, options.text_column), tokenizer,
                                     options.block_size, options.text_column, args.shuffle_buffer, args.seed,
                                     args.batch_size, split=args.split, within_documents=args.attention_within_documents)
    else:
        prepared = task.prepare(options, train_rows, eval_rows, tokenizer, processor=processor, model=model,
                                seed=args.seed)
    procedure = "pretrain " + args.objective + (" (streaming)" if args.streaming else "")
    counted = "{examples}" if args.streaming else "{examples:,} training examples"  # a stream says what it reads
    metrics, examples = _train_and_record(
        args, task, model, tokenizer, prepared, eval_rows, procedure, started, label_smoothing,
        "Training {model}: {parameters:,} parameters, " + counted + "{evaluation}.",
        companions=[processor] if processor is not None else [],
    )
    for source, prediction, reference in examples:
        _say(f"   source:     {source}\n   prediction: {prediction}\n   reference:  {reference}")
    return metrics


def cmd_finetune(args):
    from transformers import AutoConfig

    from .tokenization import check_tokenizer_fits
    from .training.data import UsageError
    from .training.task_table import TASKS, TaskOptions

    validate_args(args)
    started = time.perf_counter()
    task = TASKS[args.task]
    label_smoothing = _label_smoothing(args, task)
    if task.reads_images:
        return _finetune_on_images(args, task, started, label_smoothing)
    if args.model is None and args.tokenizer is None:
        raise UsageError("Pass --model (a saved model to fine-tune) or --tokenizer (to train a new one).")
    _check_outputs(args, ("--data", args.data), ("--eval-data", args.eval_data), ("--tokenizer", args.tokenizer),
                   ("--model", args.model))
    set_seed(args.seed)  # before a new model or head is built
    tokenizer = _load_tokenizer(args.tokenizer or args.model)
    if args.model is not None:
        if not (args.model / "config.json").is_file():
            raise UsageError(f"No model in {args.model} (config.json missing): pass a folder a vaswani command wrote.")
        _fit_lengths_to_positions(args, task, AutoConfig.from_pretrained(str(args.model)))
    options = TaskOptions.of(args)
    train_rows, eval_rows = _training_table(args), _eval_table(args)
    prepared, labels = None, {}
    if task.labelled:  # the head's size and label names come from the data
        prepared = task.prepare(options, train_rows, eval_rows, tokenizer, seed=args.seed)
        names = prepared.label_names
        labels = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}} if names else {}
    auto = task.auto_class()
    if args.model is not None:
        model, loading = auto.from_pretrained(str(args.model), config=AutoConfig.from_pretrained(str(args.model),
                                              **labels), output_loading_info=True)
    else:
        config = _new_config(args, tokenizer, max_position_embeddings=task.positions(options), **labels)
        _fit_tokenizer_to_positions(tokenizer, config)
        model = auto.from_config(config)
    check_tokenizer_fits(model.config, tokenizer)
    if prepared is None:  # the collator may need the model (seq2seq's decoder inputs)
        prepared = task.prepare(options, train_rows, eval_rows, tokenizer, model=model, seed=args.seed)
    if args.lora:
        from .integrations.adapters import lora_model

        model.name_or_path = str(args.model.resolve())  # the base the adapter folder records
        model = lora_model(model, args.lora_rank, args.lora_alpha, new_weights=loading["missing_keys"])
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        _say(f"LoRA (rank {args.lora_rank}, alpha {args.lora_alpha:g}): {trainable:,} of "
             f"{sum(p.numel() for p in model.parameters()):,} parameters train.")
    metrics, _ = _train_and_record(args, task, model, tokenizer, prepared, eval_rows, "finetune " + args.task,
                                   started, label_smoothing,
                                   "Fine-tuning {model} on {examples:,} examples{evaluation}.")
    return metrics


def _streaming_eval_rows(args):
    """A streaming run's evaluation text: --eval-data read whole (a text, or a table's text column), or none."""
    from .training.data import is_text_file, read_text

    if not args.eval_data:
        return None
    return read_text(args.eval_data) if is_text_file(args.eval_data) else _eval_table(args)


def _image_rows(args):
    """The training and evaluation images: --data's --split, and --eval-data's or --data's --eval-split (None when
    --data lacks that split, said aloud)."""
    from .training.data import UsageError
    from .training.images import load_images

    train = _first_rows(load_images(args.data, args.split, args.max_train_samples), args.max_train_samples,
                        "--max-train-samples")
    if args.eval_data:
        evaluation = load_images(args.eval_data, args.eval_split, args.max_eval_samples)
    else:
        try:
            evaluation = load_images(args.data, args.eval_split, args.max_eval_samples)
        except UsageError as error:
            _say(f"No evaluation ({error}).")
            return train, None
    return train, _first_rows(evaluation, args.max_eval_samples, "--max-eval-samples")


def _new_image_config(args, rows, image_column: str, tokenizer=None, **defaults):
    """
    A new model that reads images: the architecture options over the preset, an encoder over the patches; with a
    `tokenizer`, the preset's decoder after it (a captioner), sized to the tokenizer. The image processor resizes
    every image to --image-size square (default: the first training image's side, or its longer side, said aloud,
    for an image that is not square).
    """
    from .training.data import UsageError
    from .training.tasks import require_images

    require_images(rows, image_column)
    side = args.image_size
    if side is None:
        width, height = rows[0][image_column].size
        side = max(width, height)
        if width != height:
            _say(f"The first training image is {width} x {height} pixels: every image is resized to {side} x {side} "
                 f"(--image-size {side}).")
    patch = args.patch_size or _config_default("patch_size")
    shape = dict(image_size=side, patch_size=patch, num_channels=3, type_vocab_size=0, **defaults)
    try:
        if tokenizer is not None:
            return _new_config(args, tokenizer, **shape)
        return _new_config(args, None, stacks="encoder-only", pad_token_id=None, bos_token_id=None, eos_token_id=None,
                           decoder_start_token_id=None, **shape)
    except ValueError as error:
        raise UsageError(f"--image-size {side} --patch-size {patch}: {error}") from None


def _caption_tokenizer(rows, options, vocab_size: int = 8000):
    """A WordPiece tokenizer (at most `vocab_size` tokens, train-tokenizer's default) learned from the captions."""
    from .tokenization import train_tokenizer
    from .training.data import UsageError, require_columns

    require_columns(rows, [options.caption_column], "the training data")
    captions = [str(caption) for caption in rows[options.caption_column] if str(caption).strip()]
    if not captions:
        raise UsageError(f"Column {options.caption_column!r} holds no captions to learn a tokenizer from.")
    tokenizer = train_tokenizer(captions, kind="wordpiece", vocab_size=vocab_size, model_max_length=options.max_length)
    _say(f"No --tokenizer: a WordPiece tokenizer of {len(tokenizer):,} tokens learned from the {len(captions):,} "
         f"training captions (saved with the model).")
    return tokenizer


def _finetune_on_images(args, task, started: float, label_smoothing: float):
    """`finetune` for a task that reads images: the image processor plays the tokenizer's part (saved beside the
    model, so AutoImageProcessor and the image pipelines load the folder)."""
    from transformers import AutoConfig

    from .tokenization.image_processing_vaswani import image_processor_for
    from .training.data import UsageError
    from .training.task_table import TaskOptions

    for dest in ("tokenizer", "lora"):
        if getattr(args, dest):
            raise UsageError(f"{_flag(dest)}: {task.name} reads images (no tokens, no LoRA here yet): drop "
                             f"{_flag(dest)}.")
    _check_outputs(args, ("--data", args.data), ("--eval-data", args.eval_data), ("--model", args.model))
    set_seed(args.seed)  # before a new model or head is built
    options = TaskOptions.of(args)
    train_rows, eval_rows = _image_rows(args)
    if args.model is not None:
        folder = _model_folder(args.model)
        if not (folder / "config.json").is_file():
            raise UsageError(f"No model in {args.model} (config.json missing): pass a folder a vaswani command wrote.")
        config = AutoConfig.from_pretrained(str(folder))
        if getattr(config, "image_size", None) is None:
            raise UsageError(f"--model {args.model} reads tokens (its config has no image_size), and {task.name} "
                             f"reads images: pass a model that reads pixels, or drop --model to train a new one "
                             f"(--image-size, --patch-size).")
        processor = _image_processor_in(folder, config)
    else:
        config = _new_image_config(args, train_rows, options.image_column)
        processor = image_processor_for(config)
    prepared = task.prepare(options, train_rows, eval_rows, None, processor=processor, seed=args.seed)
    names = prepared.label_names
    config.id2label, config.label2id = dict(enumerate(names)), {name: i for i, name in enumerate(names)}
    auto = task.auto_class()
    model = auto.from_pretrained(str(folder), config=config) if args.model is not None else auto.from_config(config)
    metrics, _ = _train_and_record(args, task, model, processor, prepared, eval_rows, "finetune " + args.task,
                                   started, label_smoothing,
                                   "Fine-tuning {model} ({parameters:,} parameters) on {examples:,} "
                                   "images{evaluation}.")
    return metrics


def _record_card(model, args, metrics: dict, procedure: str, label_smoothing: float = 0.0,
                 rows: str | None = None, packing=None):
    """Training facts for the model card the saved folder carries (`rows`: what of the data it trained on;
    `packing`: what --pack made of it)."""
    from .training import recipe

    data = dict(model.config.model_card_data or {})
    data["name"] = args.output.name
    data.setdefault("datasets", [])
    source = Path(str(args.data)).name
    if source not in data["datasets"]:
        data["datasets"].append(source)
    split = getattr(args, "eval_split", None) or "validation"
    data["results"] = [
        {"task": procedure, "dataset": source, "split": split, "metric": name, "value": value}
        for name, value in metrics.items()
    ]
    history = data.get("training_procedure", "")
    if args.paper_recipe:
        beta1, beta2 = recipe.BETAS
        recipe_used = f"the paper's recipe (Adam {beta1}/{beta2}/{recipe.EPSILON:g}, inverse-sqrt schedule)"
    else:
        recipe_used = f"AdamW, peak learning rate {args.lr}, {args.lr_scheduler} schedule"
    if label_smoothing:
        recipe_used += f", label smoothing {label_smoothing}"
    length = f"{args.steps} steps" if args.steps else f"{args.epochs} epoch(s)"
    line = f"`vaswani {procedure}`: {length}, batch {args.batch_size}, {recipe_used}, seed {args.seed}."
    if packing is not None:
        line += f" {packing}"
    data["training_procedure"] = f"{history}\n\n{line}".strip()
    data["training_data"] = f"`{source}`, {rows or 'split ' + repr(getattr(args, 'split', 'train'))}."
    model.config.model_card_data = data


def _write_json(path: Path, content) -> None:
    """Write `content` as JSON to `path` whole or not at all."""
    from .training.run import write_whole

    write_whole(path, json.dumps(content, indent=2) + "\n")


def cmd_evaluate(args):
    from transformers import TrainingArguments

    from .tokenization import check_tokenizer_fits
    from .training.data import UsageError, is_text_file, load_table
    from .training.run import VaswaniTrainer, check_writable_file
    from .training.task_table import TASKS, TaskOptions

    validate_args(args)
    started = time.perf_counter()
    task = TASKS[args.task]
    if args.json:
        check_writable_file(args.json, "--json", args.overwrite)
    running_text = task.running_text and is_text_file(args.data)
    if running_text:
        _refuse_row_options(args, ["split", "max_eval_samples"])
    _check_reads(args.model, task)
    tokenizer = _load_tokenizer(args.model) if task.reads_text else None
    model = _quantized(_load_model(args.model, task.auto_class()).eval(), args)
    processor = _image_processor_in(_model_folder(args.model), model.config) if task.reads_images else None
    if tokenizer is not None:
        check_tokenizer_fits(model.config, tokenizer)
    _fit_lengths_to_positions(args, task, model.config)
    options = _with_model_memory(TaskOptions.of(args), model)
    if running_text:
        whole, tail = _running_text(args.data, args.validation_fraction)
        rows = (tail or "") if args.validation_fraction else whole  # the part pretrain held out, or all of it
    elif task.reads_images:
        from .training.images import load_images

        rows = _first_rows(load_images(args.data, args.split, args.max_eval_samples), args.max_eval_samples,
                           "--max-eval-samples")
    else:
        rows = _first_rows(load_table(args.data, args.split), args.max_eval_samples, "--max-eval-samples")
    with tempfile.TemporaryDirectory() as scratch:  # Trainer makes its output_dir: nothing is written by the model
        prepared = trainer = None
        if task.scores_prepared:
            known = [str(model.config.id2label[i]) for i in range(model.config.num_labels)] if task.labelled else None
            prepared = task.prepare(options, None, rows, tokenizer, processor=processor, model=model,
                                    known_labels=known)
            # A quantised model is a CPU int8 model: the Trainer must not move it to a GPU.
            trainer_args = TrainingArguments(output_dir=scratch, per_device_eval_batch_size=args.batch_size, report_to=[],
                                             use_cpu=args.quantize is not None or not torch.cuda.is_available())
            trainer = (prepared.trainer or VaswaniTrainer)(model=model, args=trainer_args,
                                                           data_collator=prepared.collator)  # unsmoothed
        metrics = {}
        if task.scores is None or task.reports_loss:  # a language model: its loss and perplexity say it all
            metrics = task.loss_metrics(trainer.evaluate(prepared.eval)["eval_loss"])
        if task.scores is not None:
            scores, _ = task.scores(model, tokenizer, rows, options, prepared, trainer, _generation_kwargs(args))
            metrics.update(scores)
    rows_used = args.split if running_text else f"{args.split}, {len(rows):,} rows"
    _summary(f"evaluate {args.task} on {args.data} ({rows_used})", metrics, started)
    if args.json:
        _write_json(args.json, metrics)
    return metrics


def _reads_images(folder: Path) -> bool | None:
    """Whether the saved model in `folder` reads pixels (its config has an image_size); None where there is none."""
    from transformers import AutoConfig

    folder = _model_folder(folder)
    if not (folder / "config.json").is_file():
        return None  # loading it says so
    return getattr(AutoConfig.from_pretrained(str(folder)), "image_size", None) is not None


def _check_reads(folder: Path, task) -> None:
    """A model that reads images for a task that reads images, and one that reads tokens for the others."""
    from .training.data import UsageError

    reads_images = _reads_images(folder)
    if reads_images is not None and reads_images != task.reads_images:
        reads, other = ("images", "tokens") if reads_images else ("tokens", "images")
        raise UsageError(f"--model {folder} reads {reads} (its config {'has' if reads_images else 'lacks'} "
                         f"image_size), and {task.name} reads {other}: pass a model that reads {other}, or another "
                         f"--task.")


def _image_processor_in(folder: Path, config):
    """The image processor saved in `folder` (preprocessor_config.json), else the one `image_processor_for` makes."""
    from transformers import AutoImageProcessor

    from .tokenization.image_processing_vaswani import image_processor_for

    if (Path(folder) / "preprocessor_config.json").is_file():
        return AutoImageProcessor.from_pretrained(str(folder))
    return image_processor_for(config)


def _with_model_memory(options, model):
    """
    The evaluation's segment memory: --memory-length (0: the same in-order segments without memory), else the
    model's own `memory_length` when it has one; the model is set to read with it.
    """
    import copy
    import dataclasses

    from .training.data import UsageError

    length = getattr(options, "memory_length", None)
    if length is None:
        length = getattr(model.config, "memory_length", 0) or None
    if length is None:
        return options
    try:
        config = copy.deepcopy(model.config)
        config.memory_length = length
        config.check_stacks()
    except ValueError as error:
        raise UsageError(f"--memory-length {length}: {error}") from None
    model.config.memory_length = length
    return dataclasses.replace(options, memory_length=length)


def _fit_generation_to_positions(args, model, tokenizer) -> int:
    """
    Prompts and --max-new-tokens that the model can take, checked before generating: a prompt longer than the
    tokenizer's `model_max_length` is refused (truncating would silently drop its end); with learned positions, a
    causal prompt and its continuation must fit in `max_position_embeddings`, and so must a seq2seq source and its
    translation, each. A --max-new-tokens that cannot fit is refused when given, and lowered (said aloud) when it is
    the default. Returns the prompts' truncation length.
    """
    from .training.data import UsageError

    config = model.config
    limit = tokenizer.model_max_length
    # A captioner's prompts are images: its decoder starts from one token, as a seq2seq model's does.
    lengths = [len(ids) for ids in tokenizer(args.prompt, add_special_tokens=True)["input_ids"]] if args.prompt else [0]
    if max(lengths) > limit:  # truncating would drop the end of the prompt, the part a continuation follows
        number = lengths.index(max(lengths)) + 1
        raise UsageError(f"--prompt number {number} has {max(lengths)} tokens, more than the {limit} the model's "
                         f"tokenizer takes (model_max_length): shorten it.")
    if config.position_embedding_type != "learned":
        return limit
    positions = config.max_position_embeddings
    longest = max(lengths)
    if config.is_encoder_decoder:  # the source has the encoder's positions; the decoder starts from one token
        if longest > positions:
            raise UsageError(f"--prompt of {longest} tokens runs past the model's {positions} learned positions: "
                             f"shorten it.")
        room, longest = positions - 1, 0
    else:
        room = positions - longest
        if room < 1:
            raise UsageError(f"--prompt of {longest} tokens fills the model's {positions} learned positions: shorten "
                             f"it, leaving room for --max-new-tokens.")
    if args.max_new_tokens > room:
        prompt = f" after a prompt of {longest} tokens" if longest else ""
        if "max_new_tokens" in given(args):
            raise UsageError(f"--max-new-tokens {args.max_new_tokens} runs past the model's {positions} learned "
                             f"positions{prompt}: pass --max-new-tokens {room} or less.")
        _say(f"--max-new-tokens is {room} (not the default {args.max_new_tokens}): the model has {positions} learned "
             f"positions{prompt}.")
        args.max_new_tokens = room
    return limit


def cmd_generate(args):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from .training.data import UsageError
    from .training.tasks import generate_texts

    validate_args(args)
    folder = _model_folder(args.model)
    config = AutoConfig.from_pretrained(str(folder)) if (folder / "config.json").is_file() else None
    reads_images = getattr(config, "image_size", None) is not None
    if reads_images != (args.image is not None) and config is not None:
        raise UsageError(f"--model {args.model} reads {'images' if reads_images else 'text'}: pass "
                         f"{'--image FILE (the images to caption)' if reads_images else '--prompt TEXT'} instead of "
                         f"{'--prompt' if reads_images else '--image'}.")
    auto = AutoModelForSeq2SeqLM if config is not None and config.is_encoder_decoder else AutoModelForCausalLM
    model = _quantized(_load_model(args.model, auto), args)
    tokenizer = _load_tokenizer(args.model)
    if reads_images:
        return _caption_images(args, model, tokenizer, folder)
    for number, ids in enumerate(tokenizer(args.prompt, add_special_tokens=False)["input_ids"], 1):
        if not ids:
            raise UsageError(f"--prompt number {number} ({args.prompt[number - 1]!r}) gives no tokens: give some text.")
    limit = _fit_generation_to_positions(args, model, tokenizer)
    torch.manual_seed(args.seed)
    texts = generate_texts(model, tokenizer, args.prompt, limit, **_generation_kwargs(args))
    for prompt, text in zip(args.prompt, texts):
        print(f">>> {prompt}\n{text if config.is_encoder_decoder else prompt + text}\n")
    return {"generated": texts}


def _caption_images(args, model, tokenizer, folder: Path) -> dict:
    """`generate --image`: each image's caption, with the generation options as for text."""
    from PIL import Image, UnidentifiedImageError

    from .training.data import UsageError
    from .training.tasks import generate_captions

    images = []
    for path in args.image:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (FileNotFoundError, IsADirectoryError, UnidentifiedImageError, OSError) as error:
            raise UsageError(f"--image {path}: not an image file this machine can read ({_one_line(error)}): pass "
                             f"a .png, .jpg or other image file.") from None
    _fit_generation_to_positions(args, model, tokenizer)
    torch.manual_seed(args.seed)
    captions = generate_captions(model, tokenizer, _image_processor_in(folder, model.config), images,
                                 **_generation_kwargs(args))
    for path, caption in zip(args.image, captions):
        print(f">>> {path}\n{caption}\n")
    return {"generated": captions}


def cmd_push(args):
    from transformers.utils.hub import hf_api

    from .training.data import UsageError

    validate_args(args)
    if not (args.model / "config.json").is_file():
        raise UsageError(f"No model in {args.model} (config.json missing).")
    api = hf_api()
    try:
        repo_id = api.create_repo(args.repo_id, private=args.private, exist_ok=True).repo_id
        api.upload_folder(repo_id=repo_id, folder_path=str(args.model), commit_message=args.commit_message)
    except Exception as error:  # offline, no token, no permission: the Hub's errors, as one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"Could not upload to {args.repo_id}: {type(error).__name__}: {first_line}") from None
    print(f"Uploaded {args.model} to {repo_id}")
    return {"repo_id": repo_id}


def cmd_convert(args):
    from transformers import AutoTokenizer

    from .convert import ConversionError, convert, copy_sentence_transformers_modules, sentence_transformers_modules
    from .training.data import UsageError
    from .training.run import folder_written_whole

    validate_args(args)
    _check_outputs(args, ("--source", args.source))
    started = time.perf_counter()
    try:
        model = convert(args.source, architecture=args.architecture)
        sentence_modules = sentence_transformers_modules(args.source)  # pooling, normalisation, max length
    except ConversionError as error:
        raise UsageError(str(error)) from None
    model.config.model_card_data["name"] = args.output.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.source)
    except Exception:  # a checkpoint without a tokenizer converts all the same
        tokenizer = None
    if tokenizer is not None:
        _fit_tokenizer_to_positions(tokenizer, model.config)
    image_processor, made = _image_processor_of(args.source, model.config)
    _fit_generation_config(model)
    try:
        with folder_written_whole(args.output, args.overwrite) as staging:
            model.save_pretrained(staging)
            if tokenizer is not None:
                tokenizer.save_pretrained(staging)
            if image_processor is not None:
                image_processor.save_pretrained(staging)
            if sentence_modules is not None:
                copy_sentence_transformers_modules(*sentence_modules, staging)
    except FileExistsError:
        raise UsageError(f"{args.output} appeared meanwhile: choose another --output or pass --overwrite.") from None
    facts = {
        "source": args.source,
        "model": type(model).__name__,
        "stacks": model.config.stacks,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer": type(tokenizer).__name__ if tokenizer is not None else "none in the source",
    }
    if image_processor is not None:
        facts["image processor"] = type(image_processor).__name__ + (
            " (made: the source had none; mean and std 0.5, check they are the source's)" if made else ""
        )
    if sentence_modules is not None:
        facts["sentence-transformers"] = ", ".join(sentence_modules[1])
    _summary("convert", facts, started, args.output)
    return facts


def _image_processor_of(source, config):
    """
    The image processor a converted image model needs: the source's own (its resizing and normalisation are what
    the weights expect), or for a source without one `image_processor_for(config)`; None for a model of tokens.
    Returns (processor, whether it was made here).
    """
    if getattr(config, "image_size", None) is None:
        return None, False
    from transformers import AutoImageProcessor

    try:
        return AutoImageProcessor.from_pretrained(str(source)), False
    except Exception:  # a model object's checkpoint without preprocessor_config.json
        from .tokenization import image_processor_for

        return image_processor_for(config), True


def cmd_export(args):
    import vaswani

    from .integrations.export import write_export
    from .training.data import UsageError
    from .training.run import folder_written_whole

    validate_args(args)
    if args.output.resolve() == args.model.resolve():
        raise UsageError(f"--output {args.output} is the --model folder, which the export would replace: choose "
                         f"another --output.")
    _check_outputs(args, ("--model", args.model))
    started = time.perf_counter()
    if not (args.model / "config.json").is_file():
        raise UsageError(f"No model in {args.model} (config.json missing): pass a folder a vaswani command wrote.")
    architecture = (json.loads((args.model / "config.json").read_text(encoding="utf-8")).get("architectures") or [""])[0]
    if architecture not in vaswani.HEADS:
        raise UsageError(f"{args.model} holds a {architecture or 'model of no named architecture'}, not a Vaswani "
                         f"model: convert it first (vaswani convert).")
    model = _load_model(args.model, getattr(vaswani, architecture)).eval()
    tokenizer = _load_tokenizer(args.model) if (args.model / "tokenizer_config.json").is_file() else None
    processor = None
    if (args.model / "preprocessor_config.json").is_file():  # a model that reads pixels: its image processor
        from transformers import AutoImageProcessor

        processor = AutoImageProcessor.from_pretrained(str(args.model))
    try:
        with folder_written_whole(args.output, args.overwrite) as staging:
            manifest = write_export(model, staging, args.format, tokenizer, processor)
    except FileExistsError:
        raise UsageError(f"{args.output} appeared meanwhile: choose another --output or pass --overwrite.") from None
    facts = {"model": architecture, "format": args.format,
             "graphs": ", ".join(graph["file"] for graph in manifest["graphs"].values()),
             "max abs difference from the model": f"{manifest['checked']['forward_max_abs_difference']:.1e}",
             "tokenizer": type(tokenizer).__name__ if tokenizer is not None else "none in the folder"}
    if processor is not None:
        facts["image processor"] = type(processor).__name__
        if tokenizer is None and not model.config.has_decoder:
            facts["tokenizer"] = "none (the model reads images only)"
    _summary("export", facts, started, args.output)
    return facts


def cmd_explore(args):
    import importlib.util

    from .explore.explorer import DEMO_MODEL
    from .training.data import UsageError

    validate_args(args)
    if args.model is None and not (DEMO_MODEL / "config.json").is_file():
        raise UsageError(f"No MODEL given, and the demo's model ({DEMO_MODEL}) is not there: run `make demo` first, "
                         f"or pass a saved model folder (vaswani explore MODEL).")
    folder = _model_folder(args.model or DEMO_MODEL)
    if not (folder / "config.json").is_file():
        raise UsageError(f"No model in {folder} (config.json missing): pass a folder a vaswani command wrote.")
    if args.space is not None:
        from .explore.space import write_space
        from .training.run import check_output_free

        check_output_free(args.space, args.overwrite, inputs=[("the model", folder)], option="--space")
        started = time.perf_counter()
        try:
            facts = write_space(folder, args.space, overwrite=args.overwrite)
        except FileExistsError:
            raise UsageError(f"{args.space} appeared meanwhile: choose another --space or pass --overwrite.") from None
        _summary(f"explore --space {args.space}", facts, started)
        return facts
    if importlib.util.find_spec("gradio") is None:
        raise UsageError("The explorer needs gradio: pip install 'vaswani[explore]' (or pass --space DIR, which "
                         "writes a Space folder without it).")
    from .explore.explorer import build_explorer

    page = build_explorer(folder)
    try:
        page.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True)
    except OSError as error:  # the port is taken, or the address is not this machine's
        reason = _one_line(error).split(". ")[0]  # gradio's own advice after it is about launch()
        raise UsageError(f"Could not serve on {args.host or '127.0.0.1'}:{args.port or 'a free port'} ({reason}): "
                         f"choose another --port or --host.") from None
    try:
        while True:  # serve until Ctrl-C, which then stops the command as every command stops (exit code 130)
            time.sleep(3600)
    finally:
        page.close()


COMMANDS = {
    "train-tokenizer": cmd_train_tokenizer,
    "pretrain": cmd_pretrain,
    "finetune": cmd_finetune,
    "evaluate": cmd_evaluate,
    "generate": cmd_generate,
    "push": cmd_push,
    "convert": cmd_convert,
    "export": cmd_export,
    "explore": cmd_explore,
}


def _one_line(error: BaseException) -> str:
    """An error's message as one line (a multi-line message from a library is joined)."""
    text = " ".join(part.strip() for part in str(error).strip().splitlines() if part.strip())
    return text or type(error).__name__


def _out_of_memory(error: BaseException) -> bool:
    return isinstance(error, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(error, RuntimeError) and "DefaultCPUAllocator" in str(error)
    )


def main(argv=None) -> int:
    """
    Run one command: exit code 0 when it is done, 2 (one line on stderr, nothing written) when what was asked for
    is wrong, 130 (one line) on Ctrl-C, which keeps the checkpoints written so far and leaves any output folder as
    it was, or whole.
    """
    command = "vaswani"
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as stop:  # argparse: --help (0), which exits as it does, or a usage error, said already
            if not stop.code:
                raise
            return stop.code
        command = f"vaswani {args.command}"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # weight-loading bars; Trainer keeps its own progress bar
        logging.getLogger("datasets").setLevel(logging.ERROR)
        import datasets

        datasets.disable_progress_bars()
        import vaswani  # noqa: F401  (registers the family with the Auto classes)

        COMMANDS[args.command](args)
    except KeyboardInterrupt:
        after_echo = "\n" if sys.stderr.isatty() else ""  # a terminal shows ^C where the line would start
        print(f"{after_echo}{command}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except ValueError as error:  # UsageError, or a model or tokenizer refusing bad input: the user's to fix
        print(f"{command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except (MemoryError, RuntimeError) as error:
        if not _out_of_memory(error):
            raise
        print(f"{command}: error: out of memory ({_one_line(error)[:200]}): lower --batch-size, or the model's size "
              f"(--d-model, --d-ff, --layers).", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
