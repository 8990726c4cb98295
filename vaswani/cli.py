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
import time
from pathlib import Path

import torch
from transformers import set_seed


EXIT_USAGE = 2


# -- Argument groups shared by the commands -----------------------------------------------------------------------------
def _add_data(parser, text_column=True):
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=True, help="training data: a file, a saved dataset folder or a Hub name")
    group.add_argument("--split", default="train", help="rows of this split (a `split` column or dataset split)")
    group.add_argument("--eval-data", help="evaluation data (default: the --data file's --eval-split rows)")
    group.add_argument("--eval-split", default="validation", help="split to evaluate on (default: validation)")
    group.add_argument("--eval-samples", type=int, help="evaluate on at most this many rows")
    if text_column:
        group.add_argument("--text-column", default="text", help="column holding the text (default: text)")
    return group


def _add_architecture(parser):
    group = parser.add_argument_group("architecture (a new model)")
    group.add_argument("--preset", help="start from a preset: transformer-base, transformer-big, bert-base, gpt2-small")
    group.add_argument("--d-model", type=int, help="width d_model (default 256)")
    group.add_argument("--num-heads", type=int, help="attention heads h (default 4)")
    group.add_argument("--d-ff", type=int, help="feed-forward width d_ff (default 4 x d_model)")
    group.add_argument("--layers", type=int, help="layers in each stack N (default 4)")
    group.add_argument("--dropout", type=float, help="P_drop (default 0.1)")
    group.add_argument("--positions", choices=["sinusoidal", "learned"], help="position encoding (default sinusoidal)")
    group.add_argument("--activation", choices=["relu", "gelu", "gelu_new"], help="feed-forward activation")
    group.add_argument("--norm-first", action="store_true", help="pre-LN instead of the paper's post-LN")
    group.add_argument("--no-embedding-scale", action="store_true",
                       help="do not multiply token embeddings by sqrt(d_model) (the paper does, 3.4; GPT-2 does not)")


def _add_training(parser):
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
    group.add_argument("--label-smoothing", type=float, help="epsilon_ls of the loss (default: the config's)")
    group.add_argument(
        "--paper-recipe",
        action="store_true",
        help="the paper's recipe: Adam(0.9, 0.98, 1e-9), lr = d_model^-0.5 min(step^-0.5, step warmup^-1.5) with "
        "a warm-up of 10%% of the steps (at most the paper's 4000), label smoothing 0.1, beam 4 with length penalty 0.6 for evaluation",
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
    group = parser.add_argument_group("generation")
    group.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate (default 64)")
    group.add_argument("--num-beams", type=int, default=beams_default, help="beam search width (default greedy)")
    group.add_argument("--length-penalty", type=float, help="beam length penalty alpha (paper: 0.6)")
    group.add_argument("--do-sample", action="store_true", help="sample instead of searching")
    group.add_argument("--temperature", type=float, help="sampling temperature")
    group.add_argument("--top-k", type=int, help="sample among the k most likely tokens")
    group.add_argument("--top-p", type=float, help="sample from the smallest set with this total probability")


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--objective", required=True, choices=["clm", "mlm", "seq2seq"])
    p.add_argument("--nsp", action="store_true", help="with mlm: add next-sentence prediction (VaswaniForPreTraining)")
    p.add_argument("--tokenizer", required=True, type=Path, help="a tokenizer folder (vaswani train-tokenizer)")
    _add_data(p)
    p.add_argument("--source-column", default="en", help="seq2seq source column (default en)")
    p.add_argument("--target-column", default="es", help="seq2seq target column (default es)")
    p.add_argument("--validation-fraction", type=float, default=0.1,
                   help="clm on a .txt file: the last fraction of the text is for validation (default 0.1)")
    p.add_argument("--block-size", type=int, default=128, help="clm: tokens predicted per example (default 128)")
    p.add_argument("--max-length", type=int, default=128, help="longest tokenised example (default 128)")
    _add_architecture(p)
    _add_training(p)
    _add_generation(p)

    p = commands.add_parser("finetune", help="adapt a model to a task",
                            description="Fine-tune a saved model (or a new one with --tokenizer) on a task.")
    p.add_argument("--task", required=True,
                   choices=["sequence-classification", "token-classification", "question-answering", "seq2seq"])
    p.add_argument("--model", type=Path, help="a saved model folder to start from (e.g. from pretrain)")
    p.add_argument("--tokenizer", type=Path, help="a tokenizer folder (with a new model, or to override --model's)")
    _add_data(p)
    p.add_argument("--pair-column", help="sequence-classification: second text of a pair")
    p.add_argument("--label-column", default="label", help="label column (default label)")
    p.add_argument("--tokens-column", default="tokens", help="token-classification: words column (default tokens)")
    p.add_argument("--tags-column", default="tags", help="token-classification: tags column (default tags)")
    p.add_argument("--question-column", default="question")
    p.add_argument("--context-column", default="context")
    p.add_argument("--answer-column", default="answers", help="SQuAD-style answers, or the answer text")
    p.add_argument("--answer-start-column", help="character start of a plain-text answer")
    p.add_argument("--doc-stride", type=int, default=32, help="question answering: window overlap (default 32)")
    p.add_argument("--source-column", default="en")
    p.add_argument("--target-column", default="es")
    p.add_argument("--max-length", type=int, default=128, help="longest tokenised example (default 128)")
    _add_architecture(p)
    _add_training(p)
    _add_generation(p)

    p = commands.add_parser("evaluate", help="measure a saved model on data",
                            description="Evaluate a saved model: loss and perplexity for language models, accuracy "
                            "and F1 for classifiers, exact match and F1 for QA, BLEU and chrF for seq2seq.")
    p.add_argument("--model", required=True, type=Path, help="a saved model folder")
    p.add_argument("--task", required=True,
                   choices=["clm", "mlm", "sequence-classification", "token-classification", "question-answering",
                            "seq2seq"])
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument("--samples", type=int, help="at most this many rows")
    p.add_argument("--text-column", default="text")
    p.add_argument("--pair-column")
    p.add_argument("--label-column", default="label")
    p.add_argument("--tokens-column", default="tokens")
    p.add_argument("--tags-column", default="tags")
    p.add_argument("--question-column", default="question")
    p.add_argument("--context-column", default="context")
    p.add_argument("--answer-column", default="answers")
    p.add_argument("--answer-start-column")
    p.add_argument("--doc-stride", type=int, default=32)
    p.add_argument("--source-column", default="en")
    p.add_argument("--target-column", default="es")
    p.add_argument("--block-size", type=int, default=128, help="clm: tokens predicted per block (default 128)")
    p.add_argument("--validation-fraction", type=float,
                   help="clm on a .txt file: evaluate on the last fraction of the text only (as pretrain holds out)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
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
    from .configuration import VaswaniConfig
    from .tokenization import config_from_tokenizer

    base = VaswaniConfig.from_preset(args.preset) if args.preset else None
    settings = {} if base else dict(d_model=256, num_heads=4, num_hidden_layers=4, dropout=0.1)
    settings.update(defaults)
    chosen = {
        "d_model": args.d_model, "num_heads": args.num_heads, "d_ff": args.d_ff, "num_hidden_layers": args.layers,
        "dropout": args.dropout, "position_embedding_type": args.positions, "activation_function": args.activation,
    }
    settings.update({k: v for k, v in chosen.items() if v is not None})
    if args.norm_first:
        settings["norm_first"] = True
    if args.no_embedding_scale:
        settings["scale_embedding"] = False
    if base is None and "d_ff" not in settings:
        settings["d_ff"] = 4 * settings["d_model"]
    if getattr(args, "label_smoothing", None) is not None:
        settings["label_smoothing"] = args.label_smoothing
    return config_from_tokenizer(tokenizer, config=base, **settings)


def _settings(args):
    from .training.run import RunSettings

    return RunSettings(
        output=args.output, steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        warmup_ratio=args.warmup, weight_decay=args.weight_decay, gradient_accumulation=args.gradient_accumulation,
        paper_recipe=args.paper_recipe, lr_scale=args.lr_scale, seed=args.seed, save_steps=args.save_steps,
        eval_steps=args.eval_steps, logging_steps=args.logging_steps, resume=args.resume,
        average_last=args.average_last, fsdp=args.fsdp, lr_scheduler=args.lr_scheduler, quiet=args.quiet,
        extra={"adam_beta2": args.adam_beta2},
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


def cmd_pretrain(args):
    from transformers import Seq2SeqTrainer, Trainer

    from . import VaswaniForCausalLM, VaswaniForConditionalGeneration, VaswaniForMaskedLM, VaswaniForPreTraining
    from .training import evaluation, tasks
    from .training.data import UsageError, load_table, read_text
    from .training.run import check_output_free, publish, train

    started = time.perf_counter()
    check_output_free(args.output, args.overwrite)
    set_seed(args.seed)  # before the model is built: the seed fixes the initial weights too
    tokenizer = _load_tokenizer(args.tokenizer)
    trainer_class = Trainer
    if args.objective == "clm":
        if Path(args.data).suffix == ".txt":
            text = read_text(args.data)
            cut = int(len(text) * (1 - args.validation_fraction)) if args.validation_fraction else len(text)
            train_text, eval_text = text[:cut], text[cut:] or None
        else:
            table = load_table(args.data, args.split)
            from .training.data import require_columns

            require_columns(table, [args.text_column], args.data)
            train_text = "\n".join(table[args.text_column])
            evaluation_rows = _eval_table(args)
            eval_text = "\n".join(evaluation_rows[args.text_column]) if evaluation_rows is not None else None
        config = _new_config(args, tokenizer, max_position_embeddings=max(args.block_size + 1, 64))
        model = VaswaniForCausalLM(config)
        prepared = tasks.prepare_clm(train_text, eval_text, tokenizer, args.block_size)
    elif args.objective == "mlm":
        config = _new_config(args, tokenizer, max_position_embeddings=args.max_length)
        model = (VaswaniForPreTraining if args.nsp else VaswaniForMaskedLM)(config)
        prepared = tasks.prepare_mlm(
            load_table(args.data, args.split), _eval_table(args), tokenizer, args.text_column, args.max_length,
            nsp=args.nsp, seed=args.seed,
        )
    else:
        config = _new_config(args, tokenizer, max_position_embeddings=max(args.max_length, 64))
        model = VaswaniForConditionalGeneration(config)
        prepared = tasks.prepare_seq2seq(
            load_table(args.data, args.split), _eval_table(args), tokenizer, model, args.source_column,
            args.target_column, args.max_length,
        )
        trainer_class = Seq2SeqTrainer
    if len(prepared.train) == 0:
        raise UsageError(f"{args.data} gave no training examples.")
    _say(f"Training {type(model).__name__}: {sum(p.numel() for p in model.parameters()):,} parameters, "
         f"{len(prepared.train):,} training examples.")
    trainer, eval_loss = train(model, tokenizer, prepared, _settings(args), trainer_class)
    model = trainer.model
    metrics = {}
    if eval_loss is not None and args.objective == "mlm" and args.nsp:
        metrics["loss (MLM + NSP)"] = round(eval_loss, 4)  # a sum of two losses has no perplexity
    elif eval_loss is not None and args.objective != "seq2seq":
        metrics.update(evaluation.language_model_metrics(eval_loss))
    examples = []
    if args.objective == "seq2seq" and prepared.eval is not None:
        metrics["loss"] = round(eval_loss, 4)
        eval_rows = _eval_table(args)
        scores, examples = evaluation.evaluate_translation(
            model, tokenizer, eval_rows, args.source_column, args.target_column, args.max_length,
            **_generation_kwargs(args, paper=args.paper_recipe),
        )
        metrics.update(scores)
    _record_card(model, args, metrics, "pretrain " + args.objective)
    publish(trainer, args.output, args.overwrite)
    _summary(f"pretrain {args.objective}", metrics, started, args.output)
    for source, prediction, reference in examples:
        _say(f"   source:     {source}\n   prediction: {prediction}\n   reference:  {reference}")
    return metrics


def cmd_finetune(args):
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        Seq2SeqTrainer,
        Trainer,
    )

    from .tokenization import check_tokenizer_fits
    from .training import tasks
    from .training.data import UsageError, load_table
    from .training.run import check_output_free, publish, train

    started = time.perf_counter()
    check_output_free(args.output, args.overwrite)
    set_seed(args.seed)  # before a new model or head is built
    if args.model is None and args.tokenizer is None:
        raise UsageError("Pass --model (a saved model to fine-tune) or --tokenizer (to train a new one).")
    tokenizer = _load_tokenizer(args.tokenizer or args.model)
    train_rows, eval_rows = load_table(args.data, args.split), _eval_table(args)
    auto = {
        "sequence-classification": AutoModelForSequenceClassification,
        "token-classification": AutoModelForTokenClassification,
        "question-answering": AutoModelForQuestionAnswering,
        "seq2seq": AutoModelForSeq2SeqLM,
    }[args.task]
    if args.task == "sequence-classification":
        prepared = tasks.prepare_sequence_classification(
            train_rows, eval_rows, tokenizer, args.text_column, args.label_column, args.max_length, args.pair_column
        )
    elif args.task == "token-classification":
        prepared = tasks.prepare_token_classification(
            train_rows, eval_rows, tokenizer, args.tokens_column, args.tags_column, args.max_length
        )
    elif args.task == "question-answering":
        prepared = tasks.prepare_question_answering(
            train_rows, eval_rows, tokenizer, args.question_column, args.context_column, args.answer_column,
            args.answer_start_column, args.max_length, args.doc_stride,
        )
    labels = {}
    if prepared_labels := (prepared.label_names if args.task != "seq2seq" else None):
        labels = {"id2label": dict(enumerate(prepared_labels)), "label2id": {n: i for i, n in enumerate(prepared_labels)}}
    if args.model is not None:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(args.model), **labels)
        if args.label_smoothing is not None:
            config.label_smoothing = args.label_smoothing
        model = auto.from_pretrained(str(args.model), config=config)
    else:
        model = auto.from_config(_new_config(args, tokenizer, max_position_embeddings=max(args.max_length, 64), **labels))
    check_tokenizer_fits(model.config, tokenizer)
    trainer_class = Trainer
    if args.task == "seq2seq":
        prepared = tasks.prepare_seq2seq(
            train_rows, eval_rows, tokenizer, model, args.source_column, args.target_column, args.max_length
        )
        trainer_class = Seq2SeqTrainer
    _say(f"Fine-tuning {type(model).__name__} on {len(prepared.train):,} examples.")
    trainer, eval_loss = train(model, tokenizer, prepared, _settings(args), trainer_class)
    model = trainer.model
    metrics = {"loss": round(eval_loss, 4)} if eval_loss is not None else {}
    if eval_rows is not None:
        metrics.update(_task_metrics(args, model, tokenizer, eval_rows, trainer, prepared))
    _record_card(model, args, metrics, "finetune " + args.task)
    publish(trainer, args.output, args.overwrite)
    _summary(f"finetune {args.task}", metrics, started, args.output)
    return metrics


def _task_metrics(args, model, tokenizer, eval_rows, trainer=None, prepared=None) -> dict:
    """The task's headline metrics on `eval_rows` (classification reuses the prepared evaluation set)."""
    import numpy as np

    from .training import evaluation

    if args.task in ("sequence-classification", "token-classification"):
        logits, labels = evaluation.predict_logits(trainer, prepared.eval)
        return evaluation.classification_metrics(np.argmax(logits, -1), labels, model.config.num_labels)
    if args.task == "question-answering":
        return evaluation.evaluate_question_answering(
            model, tokenizer, eval_rows, args.question_column, args.context_column, args.answer_column,
            args.answer_start_column, args.max_length, args.doc_stride,
        )
    if args.task == "seq2seq":
        scores, _ = evaluation.evaluate_translation(
            model, tokenizer, eval_rows, args.source_column, args.target_column, args.max_length,
            **_generation_kwargs(args, paper=getattr(args, "paper_recipe", False)),
        )
        return scores
    return {}


def _record_card(model, args, metrics: dict, procedure: str):
    """Training facts for the model card the saved folder carries."""
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
    recipe = "the paper's recipe (Adam 0.9/0.98/1e-9, inverse-sqrt schedule, label smoothing 0.1)" if getattr(
        args, "paper_recipe", False) else f"AdamW, peak learning rate {args.lr}, {args.lr_scheduler} schedule"
    length = f"{args.steps} steps" if args.steps else f"{args.epochs} epoch(s)"
    line = f"`vaswani {procedure}`: {length}, batch {args.batch_size}, {recipe}, seed {args.seed}."
    data["training_procedure"] = f"{history}\n\n{line}".strip()
    held_out = getattr(args, "validation_fraction", None) if str(args.data).endswith(".txt") else None
    rows = f"the first {1 - held_out:.0%} of the text" if held_out else f"split {getattr(args, 'split', 'train')!r}"
    data["training_data"] = f"`{source}`, {rows}."
    model.config.model_card_data = data


def cmd_evaluate(args):
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForQuestionAnswering,
        AutoModelForSeq2SeqLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        Trainer,
        TrainingArguments,
    )

    from .tokenization import check_tokenizer_fits
    from .training import evaluation, tasks
    from .training.data import load_table, read_text

    started = time.perf_counter()
    auto = {
        "clm": AutoModelForCausalLM, "mlm": AutoModelForMaskedLM, "seq2seq": AutoModelForSeq2SeqLM,
        "sequence-classification": AutoModelForSequenceClassification,
        "token-classification": AutoModelForTokenClassification,
        "question-answering": AutoModelForQuestionAnswering,
    }[args.task]
    tokenizer = _load_tokenizer(args.model)
    model = _load_model(args.model, auto).eval()
    check_tokenizer_fits(model.config, tokenizer)
    if args.task == "clm" and Path(args.data).suffix == ".txt":
        rows = None
        text = read_text(args.data)
        if args.validation_fraction:
            text = text[int(len(text) * (1 - args.validation_fraction)) :]
    else:
        rows = load_table(args.data, args.split)
        if args.samples:
            rows = rows.select(range(min(args.samples, len(rows))))
    trainer_args = TrainingArguments(output_dir=str(args.model) + ".eval", per_device_eval_batch_size=args.batch_size,
                                     report_to=[], use_cpu=not torch.cuda.is_available())
    if args.task in ("clm", "mlm"):
        if args.task == "clm":
            if rows is not None:
                text = "\n".join(rows[args.text_column])
            prepared = tasks.prepare_clm(text, None, tokenizer, args.block_size)
        else:
            prepared = tasks.prepare_mlm(rows, None, tokenizer, args.text_column, args.max_length)
        trainer = Trainer(model=model, args=trainer_args, data_collator=prepared.collator)
        metrics = evaluation.language_model_metrics(trainer.evaluate(prepared.train)["eval_loss"])
    else:
        args.eval_split = args.split
        prepared = None
        trainer = None
        known = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]  # the model's label ids
        if args.task == "sequence-classification":
            prepared = tasks.prepare_sequence_classification(
                rows, rows, tokenizer, args.text_column, args.label_column, args.max_length, args.pair_column, known
            )
        elif args.task == "token-classification":
            prepared = tasks.prepare_token_classification(
                rows, rows, tokenizer, args.tokens_column, args.tags_column, args.max_length, known
            )
        if prepared is not None:
            trainer = Trainer(model=model, args=trainer_args, data_collator=prepared.collator)
        metrics = _task_metrics(args, model, tokenizer, rows, trainer, prepared)
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
