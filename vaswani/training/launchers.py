"""
Several processes: what the launcher really started, and what DDP must know of the model.

    check_launch            refuse, before any work, a launch that asked for several processes and started this
                            one alone (`accelerate launch --num_processes 2` without --multi_gpu: accelerate's rule),
                            naming the command that does start them
    unused_parameters       the trainable parameters one real training batch leaves without a gradient: a probe
                            forward and backward, with the random state and the gradients put back as they were
    find_unused_parameters  DDP's `find_unused_parameters` from that probe, under several processes only (a single
                            process pays nothing); None where Trainer's own choice stands (FSDP, checkpointing)

Trainer's default for a `PreTrainedModel` is True, which costs DDP a traversal of the autograd graph every step and
makes torch warn when nothing was unused; False where something is unused stops the run at its second step.
"""

import inspect
import itertools
import os
import random
import sys
from pathlib import Path

from .data import UsageError


# What `accelerate launch` puts in the environment of whatever it starts, with one process or many.
ACCELERATE_LAUNCH_MARKERS = ("ACCELERATE_MIXED_PRECISION", "ACCELERATE_DYNAMO_BACKEND")
# The world size MPI launchers (mpirun, which accelerate runs for CPUs given --mpirun_hostfile) give each process.
MPI_WORLD_SIZES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _int(value, default: int = 1) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _parent_command_line() -> list[str] | None:
    """The launcher's command line: the parent process's (Linux's /proc), None where it cannot be read."""
    try:
        raw = Path(f"/proc/{os.getppid()}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _asked_processes(command_line: list[str] | None) -> int | None:
    """`--num_processes N` (or `--num-processes`, `=N`) on an `accelerate launch` command line; None if not there."""
    if not command_line or "launch" not in command_line or not any("accelerate" in part for part in command_line):
        return None
    for index, part in enumerate(command_line):
        name, equals, value = part.partition("=")
        if name in ("--num_processes", "--num-processes"):
            value = value if equals else (command_line[index + 1] if index + 1 < len(command_line) else "")
            return _int(value, default=0) or None
    return None


def launch_mismatch(environ=None, command_line=None) -> int | None:
    """
    The number of processes `accelerate launch` was asked for when it started this process alone (0: several, how
    many unknown), else None. accelerate starts one process (its "simple launcher") unless given --multi_gpu, a
    config asking for multi-GPU, several GPUs or an MPI host file; it still sets MASTER_ADDR then, never WORLD_SIZE.
    The number comes from the launcher's command line (the parent process), `command_line` for tests.
    """
    environ = os.environ if environ is None else environ
    if not all(marker in environ for marker in ACCELERATE_LAUNCH_MARKERS):
        return None  # not started by accelerate launch
    if _int(environ.get("WORLD_SIZE")) > 1 or any(_int(environ.get(name)) > 1 for name in MPI_WORLD_SIZES):
        return None  # several processes did start
    asked = _asked_processes(_parent_command_line() if command_line is None else command_line)
    if asked is None:  # not on the command line (a config file): accelerate sets MASTER_ADDR only when asked for more
        return 0 if "MASTER_ADDR" in environ else None
    return asked if asked > 1 else None


def check_launch(command: str, environ=None, command_line=None) -> None:
    """Refuse, before any work, a launch that asked for several processes and started this one alone."""
    asked = launch_mismatch(environ, command_line)
    if asked is None:
        return
    count = str(asked) if asked else "N"
    said = f"--num_processes {asked}" if asked else "several processes"
    raise UsageError(
        f"accelerate launch was asked for {said} and started only this one (it starts several only with "
        f"--multi_gpu, a config that asks for it, or several GPUs): run `torchrun --nproc_per_node {count} -m "
        f"vaswani.cli {command} ...`, or `accelerate launch --multi_gpu --num_processes {count} -m vaswani.cli "
        f"{command} ...` (gloo on CPUs), with the same options."
    )


# -- DDP's find_unused_parameters --------------------------------------------------------------------------------------
def _first_rows(dataset, count: int) -> list[dict]:
    """The first `count` rows of a map-style or iterable dataset (a fresh iterator: the run's own reading is untouched)."""
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        return [dataset[index] for index in range(min(count, len(dataset)))]
    return list(itertools.islice(iter(dataset), count))


def _forward_inputs(model, label_names=()) -> set[str]:
    """The columns Trainer keeps for `model`: its forward's arguments (a PEFT model's base's) and the label columns
    (`shift_labels` too: the segment memory's Trainer names it its label)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    labels = {"label", "label_ids", "labels", "shift_labels", *(label_names or ())}
    return set(inspect.signature(inner.forward).parameters) | labels


def unused_parameters(model, dataset, collator, batch_size: int, label_names=()) -> list[str] | None:
    """
    Names of the trainable parameters that get no gradient from the loss of one training batch (the first
    `batch_size` rows of `dataset`, with the columns Trainer would keep, batched by `collator`) in training mode;
    None when the batch gives no loss (nothing to tell). The probe leaves no trace: gradients, training mode and the
    random states (torch, CUDA, numpy, Python's) are as they were.
    """
    import numpy
    import torch
    from transformers import default_data_collator

    keep = _forward_inputs(model, label_names)
    rows = [{key: value for key, value in row.items() if key in keep} for row in _first_rows(dataset, batch_size)]
    if not rows:
        return None
    trainable = [(name, parameter) for name, parameter in model.named_parameters() if parameter.requires_grad]
    grads = [parameter.grad for _, parameter in trainable]
    states = (random.getstate(), numpy.random.get_state(), torch.random.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    was_training = model.training
    try:
        batch = (collator or default_data_collator)(rows)
        device = next(model.parameters()).device
        batch = {key: value.to(device) if hasattr(value, "to") else value for key, value in batch.items()}
        for _, parameter in trainable:
            parameter.grad = None
        model.train()
        outputs = model(**batch)
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs[0]
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            return None
        loss.backward()
        return [name for name, parameter in trainable if parameter.grad is None]
    finally:
        for (_, parameter), grad in zip(trainable, grads):
            parameter.grad = grad
        model.train(was_training)
        random.setstate(states[0])
        numpy.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])


def _any_rank(flag: bool) -> bool:
    """`flag` on any process (all of them must give DDP the same setting), where torch.distributed is set up."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag  # every process probed the same first rows
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def find_unused_parameters(model, dataset, collator, batch_size: int, fsdp: bool = False,
                           label_names=()) -> bool | None:
    """
    DDP's `find_unused_parameters` for training `model` on `dataset`: False when every trainable parameter gets a
    gradient from a training batch's loss, True when some do not (their names said once, on the main process).
    None, leaving Trainer's choice, for a single process (no DDP, no probe), FSDP (no such setting), gradient
    checkpointing (Trainer turns it off) or no training data; True, as Trainer would, when the batch gives no loss.
    `label_names` are Trainer's, for the columns it keeps.
    """
    if _int(os.environ.get("WORLD_SIZE")) <= 1 or fsdp or dataset is None:
        return None
    checkpointing = getattr(model, "is_activation_checkpointing", None)
    if checkpointing if checkpointing is not None else getattr(model, "is_gradient_checkpointing", False):
        return None
    unused = unused_parameters(model, dataset, collator, batch_size, label_names)
    if unused and _int(os.environ.get("RANK"), 0) == 0:
        print(f"DDP: {len(unused)} trainable parameter(s) get no gradient from this task's loss, so DDP looks for "
              f"unused parameters each step: {', '.join(unused)}", file=sys.stderr, flush=True)
    return _any_rank(unused is None or bool(unused))  # no loss to tell from: True, Trainer's own default


__all__ = ["check_launch", "find_unused_parameters", "launch_mismatch", "unused_parameters"]
