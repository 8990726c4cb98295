"""
Reading training and evaluation data: local text, CSV, TSV and JSON files (gzipped too), a dataset saved with
`save_to_disk`, or a Hub dataset name where a network exists. Problems are `UsageError`s: one line that names the
file, the column or the split, and what to do.
"""

import bz2
import gzip
import json
import lzma
import os
from pathlib import Path

import datasets


DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SHAKESPEARE = DATA_DIR / "tinyshakespeare.txt"
BIBLE = DATA_DIR / "bible-en-es.tsv.gz"
ROTTEN_TOMATOES = DATA_DIR / "rotten-tomatoes.csv.gz"


class UsageError(ValueError):
    """A problem with what the user asked for (a file, a column, a setting): shown as one line, exit code 2."""


# Compressed files are read through these (the README promises gzipped files; bzip2 and xz come free).
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def _suffixes(path: Path) -> list[str]:
    suffixes = [s.lower() for s in path.suffixes]
    return suffixes[:-1] if suffixes and suffixes[-1] in _OPENERS else suffixes


def is_text_file(path: str | os.PathLike) -> bool:
    """Whether `path` is an existing `.txt` file, compressed or not (`x.txt`, `x.txt.gz`, ...)."""
    path = Path(path)
    return path.is_file() and _suffixes(path)[-1:] == [".txt"]


def open_text(path: str | os.PathLike):
    """`path` opened for reading text (UTF-8), decompressed when its name ends in .gz, .bz2 or .xz."""
    path = Path(path)
    opener = _OPENERS.get(path.suffix.lower())
    return opener(path, "rt", encoding="utf-8") if opener else path.open(encoding="utf-8")


def _read(path: Path) -> str:
    try:
        with open_text(path) as handle:
            return handle.read()
    except UnicodeDecodeError as error:
        raise UsageError(f"{path} is not UTF-8 text (byte {error.start}): save it as UTF-8.") from None
    except (OSError, EOFError, lzma.LZMAError) as error:  # a truncated or mislabelled archive
        raise UsageError(f"Could not read {path}: {error}: is it really {path.suffix} compressed?") from None


def read_text(path: str | os.PathLike) -> str:
    """A whole text file as one string (for language modelling on running text), decompressed when gzipped."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"File not found: {path}")
    text = _read(path)
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
        try:
            loaded = datasets.load_from_disk(str(path))
        except FileNotFoundError:
            raise UsageError(
                f"{path} is a folder but not a dataset saved with `save_to_disk`: pass a data file (.txt, .csv, .tsv, "
                f".json, .jsonl) or a folder written by `Dataset.save_to_disk`."
            ) from None
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
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise UsageError(f"Could not load the Hub dataset {source!r}: {first_line}") from None
            return _nonempty(loaded, str(source))
        raise UsageError(f"File not found: {source}")
    kind = _suffixes(path)
    kind = kind[-1] if kind else ".txt"
    try:
        if kind == ".txt":
            lines = [line for line in _read(path).split("\n") if line.strip()]  # newlines are universal
            table = datasets.Dataset.from_dict({"text": lines})
        elif kind in (".csv", ".tsv"):
            table = datasets.load_dataset(
                "csv", data_files=str(path), delimiter="\t" if kind == ".tsv" else ",", split="train",
                keep_default_na=False,
            )
        elif kind in (".json", ".jsonl"):
            try:
                table = datasets.load_dataset("json", data_files=str(path), split="train")
            except Exception:
                raise UsageError(_json_problem(path) or f"Could not read {path} as JSON.") from None
            _check_one_type_per_column(table, path)
        else:
            raise UsageError(
                f"Unsupported file type {''.join(path.suffixes)!r} for {path}: use .txt, .csv, .tsv, .json or .jsonl "
                f"(gzipped too)."
            )
    except UsageError:
        raise
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"Could not read {path}: {first_line}") from None
    return _select_split(table, split, path)


def _json_problem(path: Path) -> str | None:
    """What is wrong with a JSON or JSON Lines file, as one line naming the line (None if nothing is found)."""
    text = _read(path)
    try:  # one JSON document: an array of rows, or an object
        json.loads(text)
        return None
    except ValueError:
        pass
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            return f"Line {number} of {path} is not valid JSON ({error}): write one JSON object per line."
        if not isinstance(row, dict):
            return (f"Line {number} of {path} is a JSON {type(row).__name__}, not an object: write one object per "
                    f"line, such as {{\"text\": \"...\", \"label\": 0}}.")
    return None


def _has_mixed_types(feature) -> bool:
    """Whether a datasets feature is (or holds) `Json`: what `datasets` makes of a column whose rows' types differ."""
    if isinstance(feature, datasets.features.Json):
        return True
    if isinstance(feature, dict):
        return any(_has_mixed_types(f) for f in feature.values())
    if isinstance(feature, (list, tuple)):
        return any(_has_mixed_types(f) for f in feature)
    inner = getattr(feature, "feature", None)
    return inner is not None and _has_mixed_types(inner)


def _type_name(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _check_one_type_per_column(table: datasets.Dataset, path: Path) -> None:
    """Refuse a JSON column whose rows hold values of different types (a number here, a string there)."""
    for column, feature in table.features.items():
        if not _has_mixed_types(feature):
            continue
        first, seen = None, None
        for number, value in enumerate(table[column], 1):
            if first is None:
                first = (number, _type_name(value))
            elif _type_name(value) != first[1]:
                seen = (number, _type_name(value))
                break
        where = (f" (row {first[0]} holds {first[1]}, row {seen[0]} {seen[1]})" if seen else
                 " (its nested values differ in type)")
        raise UsageError(
            f"Column {column!r} of {path} mixes types{where}: give it the same type in every row."
        )


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


__all__ = [
    "BIBLE",
    "DATA_DIR",
    "ROTTEN_TOMATOES",
    "SHAKESPEARE",
    "UsageError",
    "is_text_file",
    "load_table",
    "open_text",
    "read_text",
    "require_columns",
]
