"""
Offline evaluation metrics for the vaswani model family.

Each metric is a local `evaluate` module that ships inside this package, one folder per metric
(`<name>/<name>.py`, as `evaluate` requires), so nothing has to be downloaded from the Hub:

    >>> from vaswani.metrics import load_metric
    >>> load_metric("accuracy").compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}

`evaluate` is imported only inside `load_metric`, so `import vaswani.metrics` stays cheap.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["METRICS_DIR", "available_metrics", "load_metric", "metric_path"]

#: The folder holding one local `evaluate` module per metric.
METRICS_DIR = Path(__file__).resolve().parent


def available_metrics() -> list[str]:
    """The names of the metrics shipped in this package, sorted (folders holding a `<name>/<name>.py`)."""
    return sorted(d.name for d in METRICS_DIR.iterdir() if d.is_dir() and (d / f"{d.name}.py").is_file())


def metric_path(name: str) -> str:
    """The folder of the local `evaluate` module `name`, as a string for `evaluate.load`.

    Raises:
        ValueError: `name` is not one of the metrics this package ships; the message lists them.
    """
    available = available_metrics()
    if name not in available:
        raise ValueError(f"Unknown metric {name!r}; the available metrics are: {', '.join(available)}")
    return str(METRICS_DIR / name)


def load_metric(name: str, **kwargs):
    """Load the shipped metric `name` with `evaluate.load(metric_path(name), **kwargs)`; no network is needed.

    `kwargs` go to `evaluate.load` unchanged (for example `keep_in_memory=True`, `experiment_id=...`).
    """
    path = metric_path(name)
    import evaluate  # lazy: importing evaluate pulls in datasets, pandas and pyarrow

    return evaluate.load(path, **kwargs)
