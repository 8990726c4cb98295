"""
Reading training and evaluation data: local text, CSV, TSV and JSON files (gzipped too), a dataset saved with
`save_to_disk`, or a Hub dataset name where a network exists. Problems are `UsageError`s: one line that names the
file, the column or the split, and what to do.
"""

import os
from pathlib import Path

import datasets


DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SHAKESPEARE = DATA_DIR / "tinyshakespeare.txt"
BIBLE = DATA_DIR / "bible-en-es.tsv.gz"
ROTTEN_TOMATOES = DATA_DIR / "rotten-tomatoes.csv.gz"


class UsageError(ValueError):
    """A problem with what the user asked for (a file, a column, a setting): shown as one line, exit code 2."""


def _suffixes(path: Path) -> list[str]:
    suffixes = [s.lower() for s in path.suffixes]
    return suffixes[:-1] if suffixes and suffixes[-1] in (".gz", ".bz2", ".xz", ".zst") else suffixes


def read_text(path: str | os.PathLike) -> str:
    """A whole text file as one string (for language modelling on running text)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"File not found: {path}")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise UsageError(f"{path} is empty: there is nothing to train on.")
    return text


def load_table(source: str | os.PathLike, split: str | None = None) -> datasets.Dataset:
    """
    Rows from `source`: a `.txt` file (one row per non-empty line, column `text`), `.csv`, `.tsv` or `.json`/`.jsonl`
    (optionally gzipped), a folder written by `Dataset.save_to_disk`, or a Hub dataset name. With `split`, rows are
    taken from that split: a `split` column selects them in a file; a DatasetDict or a Hub dataset is indexed.
    """
    path = Path(source)
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split is None or split not in loaded:
                raise UsageError(f"{path} holds splits {sorted(loaded)}; choose one with --split (got {split!r}).")
            return _nonempty(loaded[split], f"{path} (split {split!r})")
        return _select_split(loaded, split, path)
    if not path.is_file():
        if _looks_like_hub_name(str(source)) and not os.environ.get("HF_DATASETS_OFFLINE") == "1":
            try:
                loaded = datasets.load_dataset(str(source), split=split or "train")
            except Exception as error:  # the Hub's many failure types all mean the same to the user
                raise UsageError(f"Could not load the Hub dataset {source!r}: {error}") from None
            return _nonempty(loaded, str(source))
        raise UsageError(f"File not found: {source}")
    kind = _suffixes(path)
    kind = kind[-1] if kind else ".txt"
    try:
        if kind == ".txt":
            lines = [line.rstrip("\r\n") for line in path.open(encoding="utf-8") if line.strip()]
            table = datasets.Dataset.from_dict({"text": lines})
        elif kind in (".csv", ".tsv"):
            table = datasets.load_dataset(
                "csv", data_files=str(path), delimiter="\t" if kind == ".tsv" else ",", split="train",
                keep_default_na=False,
            )
        elif kind in (".json", ".jsonl"):
            table = datasets.load_dataset("json", data_files=str(path), split="train")
        else:
            raise UsageError(f"Unsupported file type {''.join(path.suffixes)!r} for {path}: use .txt, .csv, .tsv or .json.")
    except UsageError:
        raise
    except Exception as error:
        raise UsageError(f"Could not read {path}: {error}") from None
    return _select_split(table, split, path)


def _looks_like_hub_name(name: str) -> bool:
    return "/" in name and not name.startswith((".", "/")) and len(name.split("/")) == 2 and "." not in name


def _select_split(table: datasets.Dataset, split: str | None, where) -> datasets.Dataset:
    if split is not None and "split" in table.column_names:
        available = sorted(set(table["split"]))
        if split not in available:
            raise UsageError(f"{where} has no rows with split {split!r}; its splits are {available}.")
        table = table.filter(lambda row: row["split"] == split)
    return _nonempty(table, f"{where}" + (f" (split {split!r})" if split else ""))


def _nonempty(table: datasets.Dataset, where: str) -> datasets.Dataset:
    if len(table) == 0:
        raise UsageError(f"{where} has no rows: there is nothing to train or evaluate on.")
    return table


def require_columns(table: datasets.Dataset, columns, where: str) -> None:
    """Raise a `UsageError` naming each missing column and the columns there are."""
    missing = [column for column in columns if column and column not in table.column_names]
    if missing:
        names = ", ".join(repr(c) for c in missing)
        raise UsageError(
            f"Column {names} not found in {where}; its columns are {table.column_names}. "
            f"Choose others with the --*-column options."
        )


__all__ = ["BIBLE", "DATA_DIR", "ROTTEN_TOMATOES", "SHAKESPEARE", "UsageError", "load_table", "read_text", "require_columns"]
