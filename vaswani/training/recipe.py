"""
The paper's training recipe (section 5.3-5.4), as an option of every training command:

- Adam with beta1 = 0.9, beta2 = 0.98, epsilon = 1e-9;
- lrate = d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5): linear warm-up, then decay with the inverse
  square root of the step; the paper warms up for 4000 of its 100k steps; a short run warms up for 10% of its steps
  (at most 4000), since the peak rate d_model^-0.5 * warmup^-0.5 grows as the warm-up shrinks;
- label smoothing epsilon_ls = 0.1 in the training steps' loss of token prediction (`RunSettings.label_smoothing`,
  which the run's Trainer passes to the head's forward; evaluation losses are not smoothed, and the saved model
  carries no trace of it);
- beam search with beam size 4 and length penalty alpha = 0.6 for evaluation;
- the average of the last checkpoints (the paper averages the last 5 for base models, 20 for big ones).
"""

from pathlib import Path

import torch
from safetensors.torch import load_file


BETAS = (0.9, 0.98)
EPSILON = 1e-9
LABEL_SMOOTHING = 0.1
NUM_BEAMS = 4
LENGTH_PENALTY = 0.6


def warmup_steps_for(total_steps: int) -> int:
    """Warm-up for a run of `total_steps`: 10% of it, at least one step, at most the paper's 4000."""
    return max(1, min(4000, round(0.1 * total_steps)))


def paper_learning_rate(step: int, d_model: int, warmup_steps: int, scale: float = 1.0) -> float:
    """lrate = scale * d_model^-0.5 * min(step^-0.5, step * warmup_steps^-1.5) (paper eq. 3), steps from 1."""
    step = max(step, 1)
    return scale * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def paper_optimizer(model: torch.nn.Module, d_model: int, total_steps: int, scale: float = 1.0):
    """Adam and the paper's schedule, as the `(optimizer, scheduler)` pair `Trainer(optimizers=...)` takes."""
    warmup = warmup_steps_for(total_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1.0, betas=BETAS, eps=EPSILON)  # lr 1.0: the schedule gives the rate
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: paper_learning_rate(step + 1, d_model, warmup, scale)
    )
    return optimizer, scheduler


def complete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Trainer's `checkpoint-N` folders that were written to the end (a killed run can leave a partial one); a PEFT
    run's hold the adapter's weights."""
    found = []
    for folder in Path(run_dir).glob("checkpoint-*"):
        step = folder.name.split("-")[-1]
        weights = any((folder / name).is_file() for name in ("model.safetensors", "adapter_model.safetensors"))
        if step.isdigit() and (folder / "trainer_state.json").is_file() and weights:
            found.append((int(step), folder))
    return [folder for _, folder in sorted(found)]


def average_checkpoints(checkpoints: list[Path]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the checkpoints' weights (paper 6.1), summed in fp64, cast back to each dtype."""
    if not checkpoints:
        raise ValueError("No complete checkpoints to average.")
    total, dtypes = None, None
    for folder in checkpoints:
        state = load_file(str(Path(folder) / "model.safetensors"))
        if total is None:
            total, dtypes = {k: v.double() for k, v in state.items()}, {k: v.dtype for k, v in state.items()}
        else:
            if state.keys() != total.keys():
                raise ValueError(f"{folder} holds other weights than {checkpoints[0]}: cannot average them.")
            for k, v in state.items():
                total[k] += v.double()
    return {k: (v / len(checkpoints)).to(dtypes[k]) for k, v in total.items()}


__all__ = [
    "BETAS",
    "EPSILON",
    "LABEL_SMOOTHING",
    "LENGTH_PENALTY",
    "NUM_BEAMS",
    "average_checkpoints",
    "complete_checkpoints",
    "paper_learning_rate",
    "paper_optimizer",
    "warmup_steps_for",
]
