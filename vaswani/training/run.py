"""
Training runs on `Trainer`: one function that trains, resumes, averages checkpoints and evaluates, and one that
publishes a finished model folder atomically (`write_whole` writes a file so) (the output folder is always the old one or the new one, whole: an
error, Ctrl-C or a kill at any moment loses neither). Label smoothing is a training setting: the Trainers here pass
`smoothing` to the model's forward in training steps only, so evaluation losses are never smoothed and the saved
model carries no trace of it.

A test hook: with `VASWANI_INTERRUPT_AT=PHASE[:SIGNAL]` in the environment, the process sends itself SIGNAL (default
SIGINT; SIGKILL, SIGTERM, ...) when a run reaches PHASE, so that tests can interrupt every phase of a run
deterministically. The phases: `before-training` (the Trainer is built), `training` (the first optimizer step is
done), `checkpoint` (a checkpoint is written), `saving` (the staging folder holds the weights, not yet the
tokenizer), `swap` (the staging folder is complete and about to replace the output folder), `published` (the new
folder is in place). Unset, it costs one dictionary look-up per phase.
"""

import contextlib
import functools
import inspect
import math
import os
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import Seq2SeqTrainer, Trainer, TrainerCallback, TrainingArguments

from ..hub.hub_vaswani import replace_folder, staging_folder
from .data import UsageError
from .launchers import find_unused_parameters
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
    overwrite: bool = False  # start afresh: an earlier run's checkpoints (without `resume`) are deleted
    extra: dict = field(default_factory=dict)

    @property
    def checkpoint_dir(self) -> Path:
        return checkpoint_dir_of(self.output)


def checkpoint_dir_of(output: Path) -> Path:
    """Where a run writing `output` keeps its checkpoints: `<output>.checkpoints/`."""
    return Path(str(output) + ".checkpoints")


# -- Before any work: where the run will write -------------------------------------------------------------------------
def check_writable_folder(path: Path, option: str = "--output") -> None:
    """
    Refuse, naming `option`, a path where no folder can be written: an existing file, a path below a file, or a
    place this process may not write in. A folder is written beside `path` and then put in its place, so the test
    is to make and remove a hidden folder in the nearest existing folder above `path`.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder: choose another {option}.")
    _check_writable_place(path.absolute().parent, path, option)


def _check_writable_place(folder: Path, path: Path, option: str) -> None:
    """Refuse, naming `option` and `path`, when nothing can be written in `folder` or the nearest folder above it."""
    ancestor = folder
    while not ancestor.exists():
        if ancestor.is_symlink():
            raise UsageError(f"{option} {path}: {ancestor} is a broken link: choose another {option}.")
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{option} {path}: {ancestor} is a file, not a folder: choose another {option}.")
    try:
        probe = tempfile.mkdtemp(prefix=".vaswani-probe-", dir=ancestor)
        os.rmdir(probe)
    except OSError as error:
        raise UsageError(
            f"{option} {path}: cannot write in {ancestor} ({error.strerror}): choose another {option}."
        ) from None


def check_writable_file(path: Path, option: str, overwrite: bool = False) -> None:
    """Refuse, naming `option`, a file path that cannot be written, or an existing file without `overwrite`."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder: name a file.")
    if path.exists() and not overwrite:
        raise UsageError(f"{option} {path} already exists: choose another {option} or pass --overwrite.")
    _check_writable_place(path.absolute().parent, path, option)


def check_output_free(output: Path, overwrite: bool, inputs=(), option: str = "--output") -> None:
    """
    Refuse, before any work, an --output (`option`) the run could not write or must not replace: a file or an
    unwritable place; an existing non-empty folder without `overwrite`; a folder that holds one of the run's `inputs`
    (data, tokenizer, model), or the working directory, which replacing it would delete.
    """
    output = Path(output)
    check_writable_folder(output, option)
    if output.is_dir():
        resolved = output.resolve()
        for kind, given in (("the working directory", Path.cwd()), *inputs):
            if given is None or _looks_remote(given):
                continue
            inside = Path(given).resolve()
            if inside == resolved and kind in ("--model", "--tokenizer"):
                continue  # a model fine-tuned in place: the new folder replaces the old one whole, after loading it
            if inside == resolved or resolved in inside.parents:
                raise UsageError(
                    f"{option} {output} holds {kind} ({given}): replacing the folder would delete it; choose "
                    f"another {option}."
                )
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise UsageError(f"{output} already exists and is not empty: choose another {option} or pass --overwrite.")


def _looks_remote(name) -> bool:
    return not Path(name).exists()


def check_checkpoints(output: Path, resume: bool, overwrite: bool) -> None:
    """
    Refuse, before any work, `--resume` without a complete checkpoint, and a fresh run over an earlier run's
    checkpoints without `--overwrite` (which deletes them when training starts) or `--resume`.
    """
    from .recipe import complete_checkpoints

    folder = checkpoint_dir_of(output)
    if resume:
        if not complete_checkpoints(folder):
            raise UsageError(f"--resume: no complete checkpoint in {folder}: drop --resume to start afresh.")
        return
    if folder.is_dir() and any(folder.glob("checkpoint-*")) and not overwrite:
        raise UsageError(
            f"{folder} holds checkpoints of an earlier run: pass --resume to continue it, or --overwrite to start "
            f"afresh (they are deleted)."
        )


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


# -- Interrupts --------------------------------------------------------------------------------------------------------
INTERRUPT_AT = "VASWANI_INTERRUPT_AT"  # the test hook's environment variable (the module's docstring)
PHASES = ("before-training", "training", "checkpoint", "saving", "swap", "published")


def interruption_point(phase: str) -> None:
    """The test hook: send this process the signal `VASWANI_INTERRUPT_AT` names for `phase` (nothing when unset)."""
    wanted = os.environ.get(INTERRUPT_AT)
    if not wanted:
        return
    name, _, signal_name = wanted.partition(":")
    if name == phase:
        os.kill(os.getpid(), getattr(signal, signal_name or "SIGINT"))


class _InterruptionPoints(TrainerCallback):
    """The test hook's `training` phase (after the first optimizer step) and `checkpoint` phase (after a checkpoint
    is written); added to the Trainer only when the hook is set."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:
            interruption_point("training")

    def on_save(self, args, state, control, **kwargs):
        interruption_point("checkpoint")


@contextlib.contextmanager
def interrupts_deferred():
    """
    Hold Ctrl-C (SIGINT) until the block is done, then act on it: for steps that must not be cut in two (putting a
    finished folder in place). Only the main thread can; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if callable(previous):
            previous(signal.SIGINT, None)
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt


def write_whole(path: Path, text: str) -> None:
    """Write `text` to `path` whole or not at all (a temporary file beside it, then one rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".partial",
                                         delete=False, encoding="utf-8")
    try:
        with handle:
            handle.write(text)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def folder_written_whole(target: Path, overwrite: bool):
    """
    `hub_vaswani.atomic_folder` with Ctrl-C held while the finished folder is put in place: yields a staging folder
    beside `target`, which then replaces it (`replace_folder`); an error or Ctrl-C before that deletes the staging
    folder and leaves `target` as it was. Without `overwrite`, a non-empty `target` is a `FileExistsError`.
    """
    staging = staging_folder(target)
    try:
        yield staging
        with interrupts_deferred():
            replace_folder(staging, target, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def _interruption_point_in_tokenizer_save(trainer):
    """The test hook's `saving` phase: just before the Trainer saves the tokenizer beside the weights."""
    tokenizer = trainer.processing_class
    if not os.environ.get(INTERRUPT_AT) or tokenizer is None:
        yield
        return
    save = tokenizer.save_pretrained

    def save_pretrained(*args, **kwargs):
        interruption_point("saving")
        return save(*args, **kwargs)

    tokenizer.save_pretrained = save_pretrained
    try:
        yield
    finally:
        del tokenizer.save_pretrained


def _remove_if_empty(folder: Path) -> None:
    """Remove `folder` when it holds no file at any depth (what Trainer makes before it saves anything)."""
    if folder.is_dir() and not any(path.is_file() or path.is_symlink() for path in folder.rglob("*")):
        shutil.rmtree(folder, ignore_errors=True)


def train(model, tokenizer, prepared: Prepared, settings: RunSettings, trainer_class=VaswaniTrainer):
    """
    Train `model` on `prepared` with `settings`; resume from the last complete checkpoint with `settings.resume`;
    with `settings.average_last`, end on the average of the last checkpoints. The training steps' loss is smoothed
    by `settings.label_smoothing` (`trainer_class` gains `LabelSmoothingMixin`); the evaluation loss is not.
    Returns the trainer, whose model is the final one, and the evaluation loss when there is an evaluation set.

    The checkpoint folder (`settings.checkpoint_dir`) exists only while it holds checkpoints: a run that saves none,
    or stops before its first, leaves none behind; an interrupted run keeps the checkpoints it wrote. With
    `settings.overwrite` and without `settings.resume`, an earlier run's checkpoints are deleted first.
    """
    created = not settings.checkpoint_dir.exists()
    try:
        return _train(model, tokenizer, prepared, settings, trainer_class)
    except BaseException:
        if (created or settings.overwrite) and is_main_process():
            _remove_if_empty(settings.checkpoint_dir)
        raise


def _train(model, tokenizer, prepared: Prepared, settings: RunSettings, trainer_class):
    label_smoothing = settings.label_smoothing
    if label_smoothing is None:
        label_smoothing = LABEL_SMOOTHING if settings.paper_recipe and takes_label_smoothing(model) else 0.0
    check_label_smoothing(label_smoothing, model)
    trainer_class = with_label_smoothing(prepared.trainer or trainer_class)
    resume_from = None
    if settings.resume:
        checkpoints = complete_checkpoints(settings.checkpoint_dir)
        if not checkpoints:
            raise UsageError(f"--resume: no complete checkpoint in {settings.checkpoint_dir}.")
        resume_from = str(checkpoints[-1])
    layer_classes = sorted({type(m).__name__ for m in model.modules() if type(m).__name__.endswith("Layer")
                            and type(m).__name__.startswith("Vaswani")})
    arguments = _arguments(settings, prepared.eval is not None, trainer_class, layer_classes)
    if arguments.ddp_find_unused_parameters is None:  # several processes: from what this task's loss really uses
        arguments.ddp_find_unused_parameters = find_unused_parameters(
            model, prepared.train, prepared.collator, settings.batch_size, settings.fsdp, arguments.label_names)
    optimizers = (None, None)
    if settings.paper_recipe:
        world = max(1, int(os.environ.get("WORLD_SIZE", "1")))
        per_step = settings.batch_size * settings.gradient_accumulation * world
        total = settings.steps or math.ceil(settings.epochs * math.ceil(len(prepared.train) / per_step))
        optimizers = paper_optimizer(model, model.config.d_model, total, settings.lr_scale)
    if settings.overwrite and not resume_from and is_main_process():
        for old in settings.checkpoint_dir.glob("checkpoint-*"):  # an earlier run's: this run starts afresh
            shutil.rmtree(old)
        _remove_if_empty(settings.checkpoint_dir)
    created = not settings.checkpoint_dir.exists()
    trainer = trainer_class(
        model=model,
        args=arguments,
        train_dataset=prepared.train,
        eval_dataset=prepared.eval,
        data_collator=prepared.collator,
        processing_class=tokenizer,
        optimizers=optimizers,
        label_smoothing=label_smoothing,
        callbacks=[_InterruptionPoints()] if os.environ.get(INTERRUPT_AT) else None,
    )
    if created and is_main_process():
        _remove_if_empty(settings.checkpoint_dir)  # Trainer made it; a checkpoint makes it again when one is due
    interruption_point("before-training")
    trainer.train(resume_from_checkpoint=resume_from)
    if settings.average_last > 1:
        checkpoints = complete_checkpoints(settings.checkpoint_dir)[-settings.average_last :]
        if len(checkpoints) > 1:
            trainer.model.load_state_dict(average_checkpoints(checkpoints), strict=False)
    eval_loss = None
    if prepared.eval is not None:
        eval_loss = trainer.evaluate()["eval_loss"]
    return trainer, eval_loss


def publish(trainer, output: Path, overwrite: bool = False, companions=()) -> Path:
    """
    Write the finished model folder (weights, config, code, card, tokenizer, and each of `companions` through its
    `save_pretrained`, such as a captioner's image processor; for a PEFT model, the adapter and `merged/`, the
    model with the adapter merged in) into a staging folder beside `output`,
    then put it in place in one step (`replace_folder`: an atomic exchange with an existing folder, whose old
    contents are deleted only once the new ones are in place). `output` is thus always the old folder or the new
    one, whole: an error or Ctrl-C while saving deletes the staging folder and leaves the old one; Ctrl-C during the
    exchange is held until it is done. Without `overwrite`, a folder that appeared at `output` meanwhile is kept.
    Every process calls this (under FSDP the weights are gathered from all of them); the main process writes.
    """
    output = Path(output)
    main = trainer.is_world_process_zero()
    staging = staging_folder(output) if main else None
    try:
        if trainer.accelerator.num_processes > 1:  # every process saves to the main process's staging folder
            from accelerate.utils import broadcast_object_list

            staging = broadcast_object_list([staging])[0]
        with _interruption_point_in_tokenizer_save(trainer):
            trainer.save_model(str(staging))
        if main:
            for companion in companions:
                companion.save_pretrained(str(staging))
            (staging / "training_args.bin").unlink(missing_ok=True)  # a pickle: not for a Hub folder
            if hasattr(trainer.model, "merge_and_unload"):  # a PEFT model saved its adapter: the merged model beside
                from ..integrations.adapters import save_merged

                save_merged(trainer.model, trainer.processing_class, staging / "merged")
            with interrupts_deferred():
                interruption_point("swap")
                replace_folder(staging, output, overwrite=overwrite)
            interruption_point("published")
    except FileExistsError:
        if main:
            shutil.rmtree(staging, ignore_errors=True)
        raise UsageError(f"{output} appeared while training: choose another --output or pass --overwrite.") from None
    except BaseException:
        if main and staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    trainer.accelerator.wait_for_everyone()
    return output


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


__all__ = [
    "INTERRUPT_AT",
    "LabelSmoothingMixin",
    "PHASES",
    "RunSettings",
    "VaswaniSeq2SeqTrainer",
    "VaswaniTrainer",
    "check_checkpoints",
    "check_label_smoothing",
    "check_output_free",
    "check_writable_file",
    "check_writable_folder",
    "checkpoint_dir_of",
    "folder_written_whole",
    "interruption_point",
    "interrupts_deferred",
    "is_main_process",
    "publish",
    "takes_label_smoothing",
    "train",
    "with_label_smoothing",
    "write_whole",
]
