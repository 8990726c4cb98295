"""
Captioning on the command line (issue 19): `vaswani pretrain --objective captioning` on digit strips writes a folder
that AutoModelForImageTextToText and the vaswani-image-to-text pipeline load at once (its image processor and the
tokenizer it learned from the captions beside the model), whose captions are the scores it printed; `vaswani
evaluate` scores captioners and image classifiers on images, `vaswani generate --image` captions files; a captioned
image folder trains too; bad data and options are refused by name.
"""

import json

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForImageClassification, AutoModelForImageTextToText, AutoTokenizer
from transformers import pipeline

import vaswani  # noqa: F401  (registers the family with the Auto classes)
from test_cli import cli, ok
from vaswani import VaswaniConfig, VaswaniForSequenceClassification
from vaswani.training import images
from vaswani.training.evaluation import caption_metrics


TINY = ["--image-size", "24", "--patch-size", "8", "--d-model", "32", "--num-heads", "4", "--d-ff", "64", "--layers",
        "1", "--positions", "learned", "--norm-first", "--quiet"]
EVAL_STRIPS, NEW_TOKENS = 12, 4


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains faster on one thread where cores are shared
    output = tmp_path_factory.mktemp("captioner") / "strips"
    run = ok("pretrain", "--objective", "captioning", "--data", "digit-strips", "--eval-split", "test",
             "--max-train-samples", "64", "--max-eval-samples", EVAL_STRIPS, "--steps", "4", "--batch-size", "16",
             "--lr", "3e-3", "--max-new-tokens", NEW_TOKENS, *TINY, "--output", output)
    yield output, run
    torch.set_num_threads(threads)  # later tests compare this process's numbers with other processes' exactly


def strips(count: int = EVAL_STRIPS):
    return images.load_images("digit-strips", "test", count)


def test_the_folder_loads_through_the_auto_class_and_the_pipeline_and_captions_as_it_printed(captioner):
    folder, run = captioner
    assert "learned from the 64 training captions" in run.out  # no --tokenizer: one from the captions, said aloud
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.tokenize("three one four") == ["three", "one", "four"]  # whole words: the captions' vocabulary
    assert AutoImageProcessor.from_pretrained(folder).size == {"height": 24, "width": 24}  # 8 x 24 strips, stretched
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    assert type(model).__name__ == "VaswaniForConditionalGeneration" and model.config.image_size == 24
    table = strips()
    processor = AutoImageProcessor.from_pretrained(folder)
    with torch.no_grad():
        ids = model.generate(**processor(list(table["image"]), return_tensors="pt"), max_new_tokens=NEW_TOKENS)
    expected = tokenizer.batch_decode(ids, skip_special_tokens=True)
    caption = pipeline("vaswani-image-to-text", model=str(folder))
    got = [answer["generated_text"] for answer in caption(list(table["image"]), max_new_tokens=NEW_TOKENS)]
    assert got == expected
    for text, reference in zip(got[:3], table["caption"]):  # the examples it printed: the folder's own captions
        assert f"prediction: {text}\n   reference:  {reference}\n" in run.out
    scores = caption_metrics(got, list(table["caption"]))
    assert {k: run.metrics[k] for k in scores} == pytest.approx(scores)  # what it printed is what the folder does
    assert run.metrics["loss"] > 0


def test_evaluate_scores_the_captioner_as_pretrain_did(captioner, tmp_path):
    folder, run = captioner
    evaluated = ok("evaluate", "--model", folder, "--task", "captioning", "--data", "digit-strips",
                   "--max-eval-samples", EVAL_STRIPS, "--max-new-tokens", NEW_TOKENS, "--json", tmp_path / "m.json")
    for name in ("exact_match", "word_accuracy"):
        assert evaluated.metrics[name] == pytest.approx(run.metrics[name])
    assert evaluated.metrics["loss"] == pytest.approx(run.metrics["loss"], abs=1e-3)
    assert json.loads((tmp_path / "m.json").read_text())["exact_match"] == evaluated.metrics["exact_match"]


def test_generate_captions_image_files_as_the_pipeline_does(captioner, tmp_path):
    folder, _ = captioner
    table = strips(2)
    paths = []
    for i, image in enumerate(table["image"]):
        paths.append(tmp_path / f"strip-{i}.png")
        image.save(paths[-1])
    caption = pipeline("vaswani-image-to-text", model=str(folder))
    for search in ([], ["--num-beams", "3"]):
        run = ok("generate", "--model", folder, "--image", paths[0], "--image", paths[1], "--max-new-tokens",
                 NEW_TOKENS, *search)
        kwargs = {"num_beams": 3} if search else {}
        for path in paths:
            text = caption(str(path), max_new_tokens=NEW_TOKENS, **kwargs)[0]["generated_text"]
            assert f">>> {path}\n{text}\n" in run.out


def test_a_captioned_image_folder_trains_with_a_given_tokenizer(captioner, tmp_path):
    folder, _ = captioner
    data = tmp_path / "photos"
    data.mkdir()
    rows = []
    for i, row in enumerate(strips(8)):
        row["image"].save(data / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": row["caption"]}))
    (data / "metadata.jsonl").write_text("\n".join(rows) + "\n")  # datasets' imagefolder: more columns per image
    run = ok("pretrain", "--objective", "captioning", "--data", data, "--caption-column", "text", "--tokenizer",
             folder, "--steps", "1", *TINY, "--output", tmp_path / "out")
    assert "learned from" not in run.out
    assert AutoTokenizer.from_pretrained(tmp_path / "out").get_vocab() == AutoTokenizer.from_pretrained(
        folder).get_vocab()
    assert (tmp_path / "out" / "preprocessor_config.json").is_file()


def test_evaluate_scores_an_image_classifier_on_an_image_folder(tmp_path):
    ok("finetune", "--task", "image-classification", "--data", "digits", "--steps", "2", *TINY[2:], "--image-size",
       "8", "--patch-size", "4", "--output", tmp_path / "vit")
    test = images.digits("test").select(range(20))
    for i, row in enumerate(test):
        (tmp_path / "data" / str(row["label"])).mkdir(parents=True, exist_ok=True)
        row["image"].save(tmp_path / "data" / str(row["label"]) / f"{i}.png")
    run = ok("evaluate", "--model", tmp_path / "vit", "--task", "image-classification", "--data", tmp_path / "data",
             "--split", "train")
    model = AutoModelForImageClassification.from_pretrained(tmp_path / "vit").eval()
    classify = pipeline("image-classification", model=str(tmp_path / "vit"))
    predicted = [int(answer[0]["label"]) for answer in classify(list(test["image"]), top_k=1)]
    assert model.config.id2label[0] == "0"
    assert run.metrics["accuracy"] == pytest.approx(np.mean(np.asarray(predicted) == np.asarray(test["label"])))


def test_caption_metrics_count_whole_captions_and_words_in_place():
    scores = caption_metrics(["three one four", "One two", "five six seven eight"],
                             ["three one four", "one two three", "five six seven"])
    assert scores == {"exact_match": round(1 / 3, 4), "word_accuracy": round((3 + 2 + 3) / (3 + 3 + 4), 4)}


def test_bad_data_and_options_are_refused_by_name(captioner, tmp_path):
    folder, _ = captioner
    (tmp_path / "text.csv").write_text("text,caption\nhello,world\n")
    text_model = tmp_path / "text-model"
    VaswaniForSequenceClassification(VaswaniConfig(vocab_size=16, d_model=32, num_heads=4, d_ff=64,
                                                   num_encoder_layers=1, num_decoder_layers=1)).save_pretrained(text_model)
    base = ["pretrain", "--objective", "captioning", "--steps", "1", *TINY]
    cases = [
        ([*base, "--data", tmp_path / "text.csv"], "--image-column"),
        ([*base, "--data", "digit-strips", "--max-train-samples", "4", "--image-column", "photo"], "'photo'"),
        ([*base, "--data", "digit-strips", "--max-train-samples", "4", "--caption-column", "words"], "'words'"),
        ([*base, "--data", "digit-strips", "--split", "validation"], "splits ['train', 'test']"),
        ([*base, "--data", "nosuch"], "digit-strips or mnist-strips"),
        (["pretrain", "--objective", "clm", "--data", "d"], "needs --tokenizer"),
        (["pretrain", "--objective", "clm", "--tokenizer", folder, "--data", "d", "--image-size", "8"],
         "--image-size shapes a model that reads images"),
        (["generate", "--model", folder, "--prompt", "three"], "pass --image FILE"),
        (["generate", "--model", folder, "--prompt", "three", "--image", "a.png"], "one of them"),
        (["generate", "--model", folder, "--image", tmp_path / "text.csv"], "--image"),
        (["evaluate", "--model", text_model, "--task", "captioning", "--data", "digit-strips"], "reads tokens"),
        (["evaluate", "--model", folder, "--task", "seq2seq", "--data", "d"], "reads images"),
        (["evaluate", "--model", folder, "--task", "image-classification", "--data", "digits", "--num-beams", "2"],
         "--num-beams"),
    ]
    for number, (argv, message) in enumerate(cases):
        output = ["--output", tmp_path / f"out-{number}"] if argv[0] == "pretrain" else []
        run = cli(*argv, *output)
        assert run.code == 2 and message in run.err, (argv, run.err)
        assert run.err.count("\n") == 1, run.err
        assert not (tmp_path / f"out-{number}").exists()


def test_the_strip_sets_are_seeded_prefixes_made_of_their_splits_digits():
    few, more = images.load_images("digit-strips", "test", 3), images.load_images("digit-strips", "test", 5)
    assert few["caption"] == more["caption"][:3]  # the first N strips are the same for any count
    train_digits = {np.asarray(image).tobytes() for image in images.digits("train")["image"]}
    for strip in images.load_images("digit-strips", "train", 20)["image"]:
        pixels = np.asarray(strip)
        assert all(np.ascontiguousarray(pixels[:, 8 * i: 8 * i + 8]).tobytes() in train_digits for i in range(3))
