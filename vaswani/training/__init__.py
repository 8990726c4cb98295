"""
Training and evaluation on Trainer: data reading (`data.py`), what each task feeds the model (`tasks.py`), the one
table of tasks the command line looks up (`task_table.py`), the paper's recipe (`recipe.py`), runs and publishing
(`run.py`, with `VaswaniTrainer`: label smoothing in training steps only), metrics (`evaluation.py`) and
the offline images (`images.py`: digits, an MNIST sample, captioned strips).
"""

from .data import UsageError, load_table, read_text, require_columns
from .recipe import average_checkpoints, paper_learning_rate, paper_optimizer, warmup_steps_for
from .run import RunSettings, VaswaniSeq2SeqTrainer, VaswaniTrainer, publish, train


__all__ = [
    "RunSettings",
    "UsageError",
    "VaswaniSeq2SeqTrainer",
    "VaswaniTrainer",
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
