"""Training and evaluation on Trainer: data reading, task preparation, the paper's recipe, runs and metrics."""

from .data import UsageError, load_table, read_text, require_columns
from .recipe import average_checkpoints, paper_learning_rate, paper_optimizer, warmup_steps_for
from .run import RunSettings, publish, train


__all__ = [
    "RunSettings",
    "UsageError",
    "average_checkpoints",
    "load_table",
    "paper_learning_rate",
    "paper_optimizer",
    "publish",
    "read_text",
    "require_columns",
    "train",
    "warmup_steps_for",
]
