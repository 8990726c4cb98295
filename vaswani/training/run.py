"""
Training runs on `Trainer`: one function that trains, resumes, averages checkpoints and evaluates, and one that
publishes a finished model folder atomically (the output folder appears complete, or not at all). Label smoothing
is a training setting: the Trainers here pass `smoothing` to the model's forward in training steps only, so
evaluation losses are never smoothed and the saved model carries no trace of it.
"""

import functools
import inspect
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import Seq2SeqTrainer, Trainer, TrainingArguments

from .data import UsageError
from .recipe import LABEL_SMOOTHING, average_checkpoints, complete_checkpoints, paper_optimizer
from .tasks import Prepared


@dataclass
class RunSettings:
    """
    How long and how to train. `steps` wins over `epochs`; checkpoints go to `<output>.checkpoints/`.
    `label_smoothing` is epsilon_ls of the training steps' loss (paper 5.4); None means the paper's
    `recipe.LABEL_SMOOTHING` with `paper_recipe` for a token-prediction head, else none. Evaluation losses are never
    smoothed.
    """

    output: Path
    steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 16
    learning_rate: float = 5e-4
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    gradient_accumulation: int = 1
    paper_recipe: bool = False
    lr_scale: float = 1.0
    seed: int = 0
    save_steps: int | None = None
    eval_steps: int | None = None
    logging_steps: int = 50
    resume: bool = False
    average_last: int = 0
    fsdp: bool = False
    max_grad_norm: float = 1.0
    lr_scheduler: str = "linear"
    quiet: bool = False
    label_smoothing: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(str(self.output) + ".checkpoints")


def check_output_free(output: Path, overwrite: bool) -> None:
    """Refuse to write over a finished model folder unless asked to."""
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise UsageError(f"{output} already exists and is not empty: choose another --output or pass --overwrite.")


class LabelSmoothingMixin:
    """
    A Trainer whose training steps' loss is label-smoothed: `compute_loss` passes `smoothing=epsilon` to the model's
    forward (the token-prediction heads take it) while the model is in training mode, and nothing in evaluation or
    prediction, so evaluation losses are the plain cross-entropy. Not `TrainingArguments.label_smoothing_factor`:
    Trainer's LabelSmoother computes its own loss from the logits and misaligns a causal LM whose head shifts the
    labels itself.
    """

    def __init__(self, *args, label_smoothing: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.label_smoothing = label_smoothing

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.label_smoothing and model.training:
            inputs = {**inputs, "smoothing": self.label_smoothing}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)


class VaswaniTrainer(LabelSmoothingMixin, Trainer):
    """`Trainer` with label smoothing in training steps only."""


class VaswaniSeq2SeqTrainer(LabelSmoothingMixin, Seq2SeqTrainer):
    """`Seq2SeqTrainer` with label smoothing in training steps only."""


@functools.cache
def with_label_smoothing(trainer_class: type) -> type:
    """`trainer_class` with `LabelSmoothingMixin` (the class itself when it has it)."""
    if issubclass(trainer_class, LabelSmoothingMixin):
        return trainer_class
    known = {Trainer: VaswaniTrainer, Seq2SeqTrainer: VaswaniSeq2SeqTrainer}
    return known.get(trainer_class) or type(trainer_class.__name__, (LabelSmoothingMixin, trainer_class), {})


def takes_label_smoothing(model) -> bool:
    """Whether the model's forward takes label smoothing, as `smoothing` (the token-prediction heads)."""
    return "smoothing" in inspect.signature(model.forward).parameters


def check_label_smoothing(epsilon: float, model=None) -> None:
    """Refuse an epsilon_ls outside [0, 1), or a positive one for a model whose loss takes none."""
    if not 0.0 <= epsilon < 1.0:
        raise UsageError(f"--label-smoothing must be at least 0 and below 1, got {epsilon}.")
    if epsilon and model is not None and not takes_label_smoothing(model):
        raise UsageError(
            f"--label-smoothing {epsilon}: the loss of {type(model).__name__} takes no label smoothing (only "
            f"token-prediction heads do): drop --label-smoothing."
        )


def _arguments(settings: RunSettings, has_eval: bool, trainer_class, layer_classes=()) -> TrainingArguments:
    save_steps = settings.save_steps
    kwargs = dict(
        output_dir=str(settings.checkpoint_dir),
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation,
        learning_rate=settings.learning_rate,
        weight_decay=settings.weight_decay,
        warmup_steps=settings.warmup_ratio,
        lr_scheduler_type=settings.lr_scheduler,
        max_grad_norm=settings.max_grad_norm,
        max_steps=settings.steps if settings.steps else -1,
        num_train_epochs=settings.epochs,
        logging_steps=settings.logging_steps,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        save_total_limit=max(settings.average_last, 2) if save_steps else None,
        eval_strategy="steps" if has_eval and settings.eval_steps else "no",
        eval_steps=settings.eval_steps,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to=[],
        disable_tqdm=settings.quiet,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        optim="adamw_torch_fused" if torch.cuda.is_available() else "adamw_torch",
        **settings.extra,
    )
    if settings.fsdp:
        if not torch.cuda.is_available():
            # accelerate keeps FSDP settings only for GPU back-ends: on CPU the run would silently be plain DDP.
            raise UsageError(
                "--fsdp shards the model across GPUs, and this machine has none (accelerate would quietly run plain "
                "data parallelism instead): drop --fsdp; torchrun still trains data-parallel on CPU."
            )
        # Shard parameters, gradients and optimizer state, one FSDP unit per encoder or decoder layer.
        kwargs["fsdp"] = "full_shard auto_wrap"
        kwargs["fsdp_config"] = {"transformer_layer_cls_to_wrap": layer_classes}
    if issubclass(trainer_class, Seq2SeqTrainer):
        from transformers import Seq2SeqTrainingArguments

        return Seq2SeqTrainingArguments(**kwargs)
    return TrainingArguments(**kwargs)


def train(model, tokenizer, prepared: Prepared, settings: RunSettings, trainer_class=VaswaniTrainer):
    """
    Train `model` on `prepared` with `settings`; resume from the last complete checkpoint with `settings.resume`;
    with `settings.average_last`, end on the average of the last checkpoints. The training steps' loss is smoothed
    by `settings.label_smoothing` (`trainer_class` gains `LabelSmoothingMixin`); the evaluation loss is not.
    Returns the trainer, whose model is the final one, and the evaluation loss when there is an evaluation set.
    """
    label_smoothing = settings.label_smoothing
    if label_smoothing is None:
        label_smoothing = LABEL_SMOOTHING if settings.paper_recipe and takes_label_smoothing(model) else 0.0
    check_label_smoothing(label_smoothing, model)
    trainer_class = with_label_smoothing(trainer_class)
    resume_from = None
    if settings.resume:
        checkpoints = complete_checkpoints(settings.checkpoint_dir)
        if not checkpoints:
            raise UsageError(f"--resume: no complete checkpoint in {settings.checkpoint_dir}.")
        resume_from = str(checkpoints[-1])
    layer_classes = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Layer")
                            and type(m).__name__.startswith("Vaswani")})
    arguments = _arguments(settings, prepared.eval is not None, trainer_class, layer_classes)
    optimizers = (None, None)
    if settings.paper_recipe:
        world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
        per_step = settings.batch_size * settings.gradient_accumulation * world
        total = settings.steps or math.ceil(settings.epochs * math.ceil(len(prepared.train) / per_step))
        optimizers = paper_optimizer(model, model.config.d_model, total, settings.lr_scale)
    trainer = trainer_class(
        model=model,
        args=arguments,
        train_dataset=prepared.train,
        eval_dataset=prepared.eval,
        data_collator=prepared.collator,
        processing_class=tokenizer,
        optimizers=optimizers,
        label_smoothing=label_smoothing,
    )
    trainer.train(resume_from_checkpoint=resume_from)
    if settings.average_last > 1:
        checkpoints = complete_checkpoints(settings.checkpoint_dir)[-settings.average_last :]
        if len(checkpoints) > 1:
            trainer.model.load_state_dict(average_checkpoints(checkpoints), strict=False)
    eval_loss = None
    if prepared.eval is not None:
        eval_loss = trainer.evaluate()["eval_loss"]
    return trainer, eval_loss


def publish(trainer, output: Path, overwrite: bool = False) -> Path:
    """
    Write the finished model folder (weights, config, code, card, tokenizer) beside `output`, then move it into
    place, so that `output` appears complete or not at all. Every process calls this (under FSDP the weights are
    gathered from all of them); the main process writes.
    """
    output = Path(output)
    staging = output.parent / f".{output.name}.partial"
    main = trainer.is_world_process_zero()
    if main:
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    try:
        trainer.save_model(str(staging))
        if main:
            (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle: not for a Hub folder
            if output.exists():
                if any(output.iterdir()) and not overwrite:
                    raise UsageError(f"{output} appeared while training: choose another --output or pass --overwrite.")
                shutil.rmtree(output)
            os.replace(staging, output)
    finally:
        if main and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return output


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


__all__ = [
    "LabelSmoothingMixin",
    "RunSettings",
    "VaswaniSeq2SeqTrainer",
    "VaswaniTrainer",
    "check_label_smoothing",
    "check_output_free",
    "is_main_process",
    "publish",
    "takes_label_smoothing",
    "train",
    "with_label_smoothing",
]
