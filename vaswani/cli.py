"""
`vaswani`: the command line of the Vaswani model family: a model's life from tokenizer to the Hub.

    vaswani train-tokenizer   learn a vocabulary from text
    vaswani pretrain          train a new model: causal LM (clm), masked LM (mlm, optionally with NSP), or seq2seq
    vaswani finetune          adapt a model: sequence-classification, token-classification, question-answering,
                              seq2seq
    vaswani evaluate          measure a saved model on data
    vaswani generate          continue or translate text with a saved model
    vaswani push              upload a saved model folder to the Hugging Face Hub
    vaswani convert           turn a Hugging Face BERT, GPT-2 or Marian model into a Vaswani model folder

Every command takes local .txt, .csv, .tsv or .json files (gzipped too), a folder saved with
`datasets.Dataset.save_to_disk`, or a Hub dataset name where a network exists. `vaswani COMMAND --help` explains
each option.
"""

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import set_seed

from .configuration.configuration_vaswani import ACTIVATIONS, POSITION_EMBEDDING_TYPES, PRESETS


EXIT_USAGE = 2
DEFAULT_PRESET = "vaswani-small"  # a new model's shape when no --preset is given


# -- Argument groups shared by the commands -----------------------------------------------------------------------------
def _add_data(parser):
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=True, help="training data: a file, a saved dataset folder or a Hub name")
    group.add_argument("--split", default="train", help="rows of this split (a `split` column or dataset split)")
    group.add_argument("--eval-data", help="evaluation data (default: the --data file's --eval-split rows)")
    group.add_argument("--eval-split", default="validation", help="split to evaluate on (default: validation)")
    group.add_argument("--eval-samples", type=int, help="evaluate on at most this many rows")
    return group


def _add_task_options(group, task_names):
    """Exactly the column and size options the named tasks read (`TaskOptions`), each with its default."""
    from dataclasses import fields

    from .training.task_table import OPTION_HELP, TaskOptions, options_of

    defaults = {f.name: f.default for f in fields(TaskOptions)}
    for name in options_of(task_names):
        default = defaults[name]
        shown = f" (default {default})" if default is not None else ""
        group.add_argument("--" + name.replace("_", "-"), type=type(default) if default is not None else str,
                           default=default, help=OPTION_HELP[name] + shown)


def _add_architecture(parser):
    small = PRESETS[DEFAULT_PRESET]
    group = parser.add_argument_group(f"architecture (a new model: the {DEFAULT_PRESET!r} preset unless told)")
    group.add_argument("--preset", choices=list(PRESETS), help=f"start from a preset (default {DEFAULT_PRESET})")
    group.add_argument("--d-model", type=int, help=f"width d_model (default {small['d_model']})")
    group.add_argument("--num-heads", type=int, help=f"attention heads h (default {small['num_heads']})")
    group.add_argument("--d-ff", type=int,
                       help=f"feed-forward width d_ff (default {small['d_ff']}; 4 x --d-model when that is given)")
    group.add_argument("--layers", type=int,
                       help=f"layers in each stack N (default {small['num_encoder_layers']})")
    group.add_argument("--dropout", type=float, help=f"P_drop (default {small['dropout']})")
    group.add_argument("--positions", choices=list(POSITION_EMBEDDING_TYPES),
                       help=f"position encoding (default {_config_default('position_embedding_type')})")
    group.add_argument("--activation", choices=list(ACTIVATIONS),
                       help=f"feed-forward activation (default {_config_default('activation_function')})")
    group.add_argument("--norm-first", action="store_true", help="pre-LN instead of the paper's post-LN")
    group.add_argument("--no-embedding-scale", action="store_true",
                       help="do not multiply token embeddings by sqrt(d_model) (the paper does, 3.4; GPT-2 does not)")


def _config_default(field: str):
    """A VaswaniConfig field's default (the default preset leaves it as the config has it)."""
    from .configuration import VaswaniConfig

    return PRESETS[DEFAULT_PRESET].get(field, getattr(VaswaniConfig(), field))


def _smoothed_tasks() -> list[str]:
    from .training.task_table import TASKS, tasks_of

    trained = dict.fromkeys(tasks_of("pretrain") + tasks_of("finetune"))
    return [name for name in trained if TASKS[name].label_smoothing]


def _add_training(parser):
    from .training import recipe

    group = parser.add_argument_group("training")
    group.add_argument("--output", required=True, type=Path, help="folder for the finished model (Hub-ready)")
    group.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    group.add_argument("--steps", type=int, help="optimizer steps (default: --epochs)")
    group.add_argument("--epochs", type=float, default=1.0, help="passes over the data (default 1)")
    group.add_argument("--batch-size", type=int, default=16, help="examples per step and process (default 16)")
    group.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (AdamW; default 5e-4)")
    group.add_argument("--warmup", type=float, default=0.05, help="warm-up steps, or a fraction of them (default 0.05)")
    group.add_argument("--lr-scheduler", default="linear", help="linear, cosine, constant_with_warmup, ...")
    group.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    group.add_argument("--adam-beta2", type=float, default=0.999, help="AdamW beta2 (default 0.999)")
    group.add_argument("--gradient-accumulation", type=int, default=1, help="steps to accumulate (default 1)")
    group.add_argument(
        "--label-smoothing", type=float,
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
    group.add_argument("--lr-scale", type=float, default=1.0, help="multiplies the paper's learning rate")
    group.add_argument("--average-last", type=int, default=0, help="end on the average of the last N checkpoints")
    group.add_argument("--save-steps", type=int, help="write a checkpoint every N steps to <output>.checkpoints/")
    group.add_argument("--eval-steps", type=int, help="evaluate every N steps as well as at the end")
    group.add_argument("--resume", action="store_true", help="resume from the last complete checkpoint")
    group.add_argument("--fsdp", action="store_true", help="shard with FSDP (one unit per layer) under torchrun")
    group.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    group.add_argument("--logging-steps", type=int, default=50, help="log the loss every N steps (default 50)")
    group.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_generation(parser, beams_default=None):
    from .training.recipe import LENGTH_PENALTY

    group = parser.add_argument_group("generation")
    group.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate (default 64)")
    group.add_argument("--num-beams", type=int, default=beams_default, help="beam search width (default greedy)")
    group.add_argument("--length-penalty", type=float, help=f"beam length penalty alpha (paper: {LENGTH_PENALTY})")
    group.add_argument("--do-sample", action="store_true", help="sample instead of searching")
    group.add_argument("--temperature", type=float, help="sampling temperature")
    group.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    group.add_argument("--top-p", type=float, help="sample from the smallest set with this total probability")


def build_parser() -> argparse.ArgumentParser:
    from .training.task_table import tasks_of

    parser = argparse.ArgumentParser(
        prog="vaswani", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("train-tokenizer", help="learn a vocabulary from text",
                            description="Train a tokenizer and save it where AutoTokenizer loads it.")
    p.add_argument("--data", required=True, nargs="+", help="text files, tables or a saved dataset")
    p.add_argument("--kind", default="shared-bpe", choices=["wordpiece", "byte-bpe", "shared-bpe", "char"],
                   help="wordpiece (BERT-style), byte-bpe (GPT-style), shared-bpe (translation), char")
    p.add_argument("--columns", nargs="+", help="text columns of a table (default: text, or every text column)")
    p.add_argument("--split", help="rows of this split only")
    p.add_argument("--vocab-size", type=int, default=8000, help="vocabulary size (default 8000)")
    p.add_argument("--max-length", type=int, default=512, help="model_max_length (default 512)")
    p.add_argument("--output", required=True, type=Path, help="folder to save the tokenizer in")

    p = commands.add_parser("pretrain", help="train a new model from scratch",
                            description="Train a new model: clm (decoder-only), mlm (encoder-only, --nsp for NSP) "
                            "or seq2seq (encoder-decoder, the paper).")
    p.add_argument("--objective", required=True, choices=tasks_of("pretrain"))
    p.add_argument("--nsp", action="store_true", help="with mlm: add next-sentence prediction (VaswaniForPreTraining)")
    p.add_argument("--tokenizer", required=True, type=Path, help="a tokenizer folder (vaswani train-tokenizer)")
    _add_task_options(_add_data(p), tasks_of("pretrain"))
    p.add_argument("--validation-fraction", type=float, default=0.1,
                   help="clm on a .txt file: the last fraction of the text is for validation (default 0.1)")
    _add_architecture(p)
    _add_training(p)
    _add_generation(p)

    p = commands.add_parser("finetune", help="adapt a model to a task",
                            description="Fine-tune a saved model (or a new one with --tokenizer) on a task.")
    p.add_argument("--task", required=True, choices=tasks_of("finetune"))
    p.add_argument("--model", type=Path, help="a saved model folder to start from (e.g. from pretrain)")
    p.add_argument("--tokenizer", type=Path, help="a tokenizer folder (with a new model, or to override --model's)")
    _add_task_options(_add_data(p), tasks_of("finetune"))
    _add_architecture(p)
    _add_training(p)
    _add_generation(p)

    p = commands.add_parser("evaluate", help="measure a saved model on data",
                            description="Evaluate a saved model: loss and perplexity for language models, accuracy "
                            "and F1 for classifiers, exact match and F1 for QA, BLEU and chrF for seq2seq.")
    p.add_argument("--model", required=True, type=Path, help="a saved model folder")
    p.add_argument("--task", required=True, choices=tasks_of("evaluate"))
    group = p.add_argument_group("data")
    group.add_argument("--data", required=True, help="evaluation data: a file, a saved dataset folder or a Hub name")
    group.add_argument("--split", default="test", help="split to evaluate (default test)")
    group.add_argument("--samples", type=int, help="at most this many rows")
    _add_task_options(group, tasks_of("evaluate"))
    group.add_argument("--validation-fraction", type=float,
                       help="clm on a .txt file: evaluate on the last fraction of the text only (as pretrain holds out)")
    p.add_argument("--batch-size", type=int, default=32, help="examples per batch (default 32)")
    p.add_argument("--json", type=Path, help="also write the metrics to this JSON file")
    _add_generation(p)

    p = commands.add_parser("generate", help="continue or translate text with a saved model",
                            description="Generate from a saved causal LM (continuation) or seq2seq model "
                            "(translation).")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--prompt", required=True, action="append", help="a prompt or source text (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    _add_generation(p)

    p = commands.add_parser("push", help="upload a saved model folder to the Hub",
                            description="Upload a saved model folder, exactly as it is, to a Hub repository.")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--repo-id", required=True, help="user/name of the Hub repository")
    p.add_argument("--private", action="store_true")
    p.add_argument("--commit-message", default="Upload Vaswani model")

    p = commands.add_parser("convert", help="turn a BERT, GPT-2 or Marian model into a Vaswani model folder",
                            description="Convert a Hugging Face BertModel, BertForMaskedLM, BertForPreTraining, "
                            "GPT2Model, GPT2LMHeadModel, MarianModel or MarianMTModel (a folder or Hub name) into "
                            "the Vaswani model that computes the same numbers, and write a Hub-ready folder with "
                            "the source's tokenizer.")
    p.add_argument("--source", required=True, help="the model to convert: a checkpoint folder or a Hub name")
    p.add_argument("--architecture", help="class to load the source as (default: its config's architectures[0])")
    p.add_argument("--output", required=True, type=Path, help="folder for the converted model (Hub-ready)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output folder")
    return parser


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


def _load_model(folder: Path, auto_class):
    from .training.data import UsageError

    if not (Path(folder) / "config.json").is_file():
        raise UsageError(f"No model in {folder} (config.json missing): pass a folder a vaswani command wrote.")
    return auto_class.from_pretrained(str(folder))


def _new_config(args, tokenizer, **defaults):
    """
    A new model's config, sized to the tokenizer: the --preset (default `DEFAULT_PRESET`) with the architecture
    options over it. --layers sets the depth of each stack the preset has; without a --preset, --d-model without
    --d-ff gives d_ff = 4 x d_model.
    """
    from .configuration import VaswaniConfig
    from .tokenization import config_from_tokenizer

    preset = args.preset or DEFAULT_PRESET
    settings = dict(defaults)
    chosen = {
        "d_model": args.d_model, "num_heads": args.num_heads, "d_ff": args.d_ff, "dropout": args.dropout,
        "position_embedding_type": args.positions, "activation_function": args.activation,
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
    # A final LayerNorm follows norm_first (the config's rule) unless the preset fixes it.
    settings["final_layer_norm"] = PRESETS[preset].get("final_layer_norm")
    if args.preset is None and args.d_model is not None and args.d_ff is None:
        settings["d_ff"] = 4 * args.d_model
    return config_from_tokenizer(tokenizer, config=VaswaniConfig.from_preset(preset), **settings)


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
        label_smoothing=label_smoothing, extra={"adam_beta2": args.adam_beta2},
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
    if args.eval_samples:
        table = table.select(range(min(args.eval_samples, len(table))))
    return table


def _summary(title: str, metrics: dict, started: float, output=None):
    lines = [f"\n== {title} ({time.perf_counter() - started:.0f} s)"]
    lines += [f"   {name}: {value}" for name, value in metrics.items()]
    if output:
        lines.append(f"   model folder: {output}")
    _say("\n".join(lines))


# -- Commands -----------------------------------------------------------------------------------------------------------
def cmd_train_tokenizer(args):
    from .tokenization import train_tokenizer
    from .training.data import UsageError, load_table

    started = time.perf_counter()
    sources = []
    for item in args.data:
        path = Path(item)
        if path.suffix == ".txt" and not args.columns and path.is_file():
            sources.append(str(path))
        else:
            sources.append(load_table(item, args.split))
    texts = []
    for source in sources:
        if isinstance(source, str):
            texts.append(source)
        else:
            columns = args.columns or [c for c, f in source.features.items() if getattr(f, "dtype", "") == "string"
                                       and c not in ("split", "ref")]
            from .training.data import require_columns

            require_columns(source, columns, "the data")
            texts.extend(t for c in columns for t in source[c] if t)
    if not texts:
        raise UsageError("No text to train the tokenizer on.")
    if args.kind == "char" and all(isinstance(t, str) and Path(t).is_file() for t in texts):
        texts = [Path(t).read_text(encoding="utf-8") for t in texts]  # characters: newlines included
    tokenizer = train_tokenizer(texts, kind=args.kind, vocab_size=args.vocab_size, model_max_length=args.max_length)
    args.output.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.output)
    _summary("tokenizer", {"kind": args.kind, "vocabulary": len(tokenizer)}, started, args.output)
    return {"vocabulary": len(tokenizer)}


def _running_text(path, fraction: float | None) -> tuple[str, str | None]:
    """A .txt file's text cut in two: the first 1 - `fraction` of it, and the rest (None when empty)."""
    from .training.data import read_text

    text = read_text(path)
    cut = int(len(text) * (1 - fraction)) if fraction else len(text)
    return text[:cut], text[cut:] or None


def _train_and_record(args, task, model, tokenizer, prepared, eval_rows, procedure: str, started: float,
                      label_smoothing: float, announce: str):
    """
    Train, score on the evaluation rows, record the card, publish: what pretrain and finetune share. `announce` is
    said first, formatted with the model's class name, its parameter count and the number of training examples.
    """
    from .training.data import UsageError
    from .training.run import publish, train
    from .training.task_table import TaskOptions

    if len(prepared.train) == 0:
        raise UsageError(f"{args.data} gave no training examples.")
    _say(announce.format(model=type(model).__name__, parameters=sum(p.numel() for p in model.parameters()),
                         examples=len(prepared.train)))
    trainer, eval_loss = train(model, tokenizer, prepared, _settings(args, label_smoothing), task.trainer)
    model = trainer.model
    metrics = task.loss_metrics(eval_loss) if eval_loss is not None else {}
    examples = []
    if task.scores is not None and eval_rows is not None:
        scores, examples = task.scores(model, tokenizer, eval_rows, TaskOptions.of(args), prepared, trainer,
                                       _generation_kwargs(args, paper=args.paper_recipe))
        metrics.update(scores)
    _record_card(model, args, metrics, procedure, label_smoothing)
    publish(trainer, args.output, args.overwrite)
    _summary(procedure, metrics, started, args.output)
    return metrics, examples


def cmd_pretrain(args):
    from .training.data import load_table
    from .training.run import check_output_free
    from .training.task_table import TaskOptions, pretraining_task

    started = time.perf_counter()
    task = pretraining_task(args.objective, args.nsp)
    label_smoothing = _label_smoothing(args, task)
    check_output_free(args.output, args.overwrite)
    set_seed(args.seed)  # before the model is built: the seed fixes the initial weights too
    tokenizer = _load_tokenizer(args.tokenizer)
    options = TaskOptions.of(args)
    if task.running_text and Path(args.data).suffix == ".txt":
        train_rows, eval_rows = _running_text(args.data, args.validation_fraction)
    else:
        train_rows, eval_rows = load_table(args.data, args.split), _eval_table(args)
    config = _new_config(args, tokenizer, max_position_embeddings=task.positions(options))
    model = task.auto_class().from_config(config)
    prepared = task.prepare(options, train_rows, eval_rows, tokenizer, model=model, seed=args.seed)
    metrics, examples = _train_and_record(
        args, task, model, tokenizer, prepared, eval_rows, "pretrain " + args.objective, started, label_smoothing,
        "Training {model}: {parameters:,} parameters, {examples:,} training examples.",
    )
    for source, prediction, reference in examples:
        _say(f"   source:     {source}\n   prediction: {prediction}\n   reference:  {reference}")
    return metrics


def cmd_finetune(args):
    from .tokenization import check_tokenizer_fits
    from .training.data import UsageError, load_table
    from .training.run import check_output_free
    from .training.task_table import TASKS, TaskOptions

    started = time.perf_counter()
    task = TASKS[args.task]
    label_smoothing = _label_smoothing(args, task)
    check_output_free(args.output, args.overwrite)
    set_seed(args.seed)  # before a new model or head is built
    if args.model is None and args.tokenizer is None:
        raise UsageError("Pass --model (a saved model to fine-tune) or --tokenizer (to train a new one).")
    tokenizer = _load_tokenizer(args.tokenizer or args.model)
    options = TaskOptions.of(args)
    train_rows, eval_rows = load_table(args.data, args.split), _eval_table(args)
    prepared, labels = None, {}
    if task.labelled:  # the head's size and label names come from the data
        prepared = task.prepare(options, train_rows, eval_rows, tokenizer, seed=args.seed)
        names = prepared.label_names
        labels = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}} if names else {}
    auto = task.auto_class()
    if args.model is not None:
        from transformers import AutoConfig

        model = auto.from_pretrained(str(args.model), config=AutoConfig.from_pretrained(str(args.model), **labels))
    else:
        config = _new_config(args, tokenizer, max_position_embeddings=task.positions(options), **labels)
        model = auto.from_config(config)
    check_tokenizer_fits(model.config, tokenizer)
    if prepared is None:  # the collator may need the model (seq2seq's decoder inputs)
        prepared = task.prepare(options, train_rows, eval_rows, tokenizer, model=model, seed=args.seed)
    metrics, _ = _train_and_record(args, task, model, tokenizer, prepared, eval_rows, "finetune " + args.task,
                                   started, label_smoothing, "Fine-tuning {model} on {examples:,} examples.")
    return metrics


def _record_card(model, args, metrics: dict, procedure: str, label_smoothing: float = 0.0):
    """Training facts for the model card the saved folder carries."""
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
    data["training_procedure"] = f"{history}\n\n{line}".strip()
    held_out = getattr(args, "validation_fraction", None) if str(args.data).endswith(".txt") else None
    rows = f"the first {1 - held_out:.0%} of the text" if held_out else f"split {getattr(args, 'split', 'train')!r}"
    data["training_data"] = f"`{source}`, {rows}."
    model.config.model_card_data = data


def cmd_evaluate(args):
    from transformers import TrainingArguments

    from .tokenization import check_tokenizer_fits
    from .training.data import load_table
    from .training.run import VaswaniTrainer
    from .training.task_table import TASKS, TaskOptions

    started = time.perf_counter()
    task = TASKS[args.task]
    options = TaskOptions.of(args)
    tokenizer = _load_tokenizer(args.model)
    model = _load_model(args.model, task.auto_class()).eval()
    check_tokenizer_fits(model.config, tokenizer)
    if task.running_text and Path(args.data).suffix == ".txt":
        whole, tail = _running_text(args.data, args.validation_fraction)
        rows = (tail or "") if args.validation_fraction else whole  # the part pretrain held out, or all of it
    else:
        rows = load_table(args.data, args.split)
        if args.samples:
            rows = rows.select(range(min(args.samples, len(rows))))
    with tempfile.TemporaryDirectory() as scratch:  # Trainer makes its output_dir: nothing is written by the model
        prepared = trainer = None
        if task.scores_prepared:
            known = [str(model.config.id2label[i]) for i in range(model.config.num_labels)] if task.labelled else None
            prepared = task.prepare(options, None, rows, tokenizer, model=model, known_labels=known)
            trainer_args = TrainingArguments(output_dir=scratch, per_device_eval_batch_size=args.batch_size,
                                             report_to=[], use_cpu=not torch.cuda.is_available())
            trainer = VaswaniTrainer(model=model, args=trainer_args, data_collator=prepared.collator)  # unsmoothed
        if task.scores is None:  # a language model: its loss and perplexity say it all
            metrics = task.loss_metrics(trainer.evaluate(prepared.eval)["eval_loss"])
        else:
            metrics, _ = task.scores(model, tokenizer, rows, options, prepared, trainer, _generation_kwargs(args))
    _summary(f"evaluate {args.task} on {args.data} ({args.split})", metrics, started)
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def cmd_generate(args):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from .training.tasks import generate_texts

    config = AutoConfig.from_pretrained(str(args.model)) if (args.model / "config.json").is_file() else None
    auto = AutoModelForSeq2SeqLM if config is not None and config.is_encoder_decoder else AutoModelForCausalLM
    model = _load_model(args.model, auto)
    tokenizer = _load_tokenizer(args.model)
    torch.manual_seed(args.seed)
    texts = generate_texts(model, tokenizer, args.prompt, tokenizer.model_max_length, **_generation_kwargs(args))
    for prompt, text in zip(args.prompt, texts):
        print(f">>> {prompt}\n{text if config.is_encoder_decoder else prompt + text}\n")
    return {"generated": texts}


def cmd_push(args):
    from transformers.utils.hub import hf_api

    from .training.data import UsageError

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
    import shutil

    from transformers import AutoTokenizer

    from .convert import ConversionError, convert
    from .training.data import UsageError
    from .training.run import check_output_free

    check_output_free(args.output, args.overwrite)
    started = time.perf_counter()
    try:
        model = convert(args.source, architecture=args.architecture)
    except ConversionError as error:
        raise UsageError(str(error)) from None
    model.config.model_card_data["name"] = args.output.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(args.source)
    except Exception:  # a checkpoint without a tokenizer converts all the same
        tokenizer = None
    staging = args.output.parent / f".{args.output.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(staging)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        if args.output.exists():
            shutil.rmtree(args.output)
        os.replace(staging, args.output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    facts = {
        "source": args.source,
        "model": type(model).__name__,
        "stacks": model.config.stacks,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer": type(tokenizer).__name__ if tokenizer is not None else "none in the source",
    }
    _summary("convert", facts, started, args.output)
    return facts


COMMANDS = {
    "train-tokenizer": cmd_train_tokenizer,
    "pretrain": cmd_pretrain,
    "finetune": cmd_finetune,
    "evaluate": cmd_evaluate,
    "generate": cmd_generate,
    "push": cmd_push,
    "convert": cmd_convert,
}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # weight-loading bars; Trainer keeps its own progress bar
    logging.getLogger("datasets").setLevel(logging.ERROR)
    import datasets

    datasets.disable_progress_bars()
    import vaswani  # noqa: F401  (registers the family with the Auto classes)

    from .training.data import UsageError

    try:
        COMMANDS[args.command](args)
    except UsageError as error:
        print(f"vaswani {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as error:  # a model or tokenizer refusing bad input: still the user's to fix
        print(f"vaswani {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
