"""
Export (vaswani.integrations.export, `vaswani export`): torch.export programs and ONNX graphs in ONNX Runtime give the
eager model's outputs within 1e-4, at a shape other than the export example's (the dimensions are dynamic), for every
head; exported generation (prefill and cached decoding step) gives `generate()`'s greedy tokens, token for token.
Models that read pixels too: the image classifier (pixel_values -> logits, dynamic batch) and the captioner (a prefill
of pixel_values), from folders that carry the image processor.

ONNX export with dynamo takes seconds per graph: each model is exported once per module (fixtures), most with one
layer, and the forwards of the heads beyond seq2seq, masked LM and sequence classification run under `-m slow` (the
causal LM's forward runs unmarked from its exported folder, with the generation checks).
"""

import json

import pytest
import torch

from helpers import HEAD_CLASSES, inputs_for, random_ids, shakespeare_lines, tiny_config
from test_cli import _one_thread, cli, ok  # noqa: F401  (_one_thread: autouse, one thread in this module too)
from test_hub import run_without_vaswani
from vaswani import (
    VaswaniConfig,
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForImageClassification,
    VaswaniForMaskedLM,
    image_processor_for,
)
from vaswani.integrations import export as ex

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

TOLERANCE = 1e-4  # float32 kernels of ORT and torch differ in summation order; far below any real disagreement
FAST_HEADS = {"VaswaniForConditionalGeneration", "VaswaniForMaskedLM", "VaswaniForSequenceClassification"}


def _model(head, **overrides):
    torch.manual_seed(0)
    return head(tiny_config(**overrides)).eval()


# Half the graph, half the export time: every export but one (two layers, the cache of each) has one layer.
ONE_LAYER = {"num_hidden_layers": 1}


def _other_shape(model) -> dict:
    """Inputs of another batch size and length than the export example's (2 x 7, target 5)."""
    torch.manual_seed(1)
    return inputs_for(model, batch=3, length=11, target_length=4)


def _eager(model, inputs: dict) -> dict:
    with torch.no_grad():
        output = model(**inputs, use_cache=False)
    return {name: value for name, value in output.items() if name not in ("cache", "loss") and value is not None}


def _assert_close(got: dict, expected: dict):
    assert set(got) == set(expected) and all(value.numel() > 0 for value in expected.values())
    for name, value in expected.items():
        assert got[name].shape == value.shape, name
        assert (got[name] - value).abs().max().item() <= TOLERANCE, name


# -- Every head's forward -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def forward_exports(tmp_path_factory):
    """head name -> (model, ExportedProgram, ONNX path), exported once each."""
    made = {}

    def get(head):
        if head.__name__ not in made:
            model = _model(head, **ONE_LAYER)
            inputs = inputs_for(model)
            program = ex.export_forward(model, inputs)
            names = ex.HeadForward.of(model, inputs).output_names
            path = tmp_path_factory.mktemp("forward") / f"{head.__name__}.onnx"
            ex.to_onnx(program, path, list(inputs), names, ex.forward_dynamic_shapes(model, inputs))
            made[head.__name__] = (model, program, path)
        return made[head.__name__]

    return get


HEAD_PARAMS = [
    pytest.param(head, id=head.__name__, marks=() if head.__name__ in FAST_HEADS else pytest.mark.slow)
    for head in HEAD_CLASSES
]


@pytest.mark.parametrize("head", HEAD_PARAMS)
def test_torch_export_of_every_head_takes_other_shapes(forward_exports, head):
    model, program, _ = forward_exports(head)
    inputs = _other_shape(model)
    _assert_close(program.module()(**inputs), _eager(model, inputs))


@pytest.mark.parametrize("head", HEAD_PARAMS)
def test_onnx_runtime_gives_the_logits_of_every_head(forward_exports, head):
    model, _, path = forward_exports(head)
    inputs = _other_shape(model)
    _assert_close(ex.run_onnx(path, inputs), _eager(model, inputs))


def test_an_export_that_disagrees_with_its_model_is_not_written(forward_exports, tmp_path):
    _, program, _ = forward_exports(VaswaniForMaskedLM)
    torch.manual_seed(1)
    other = VaswaniForMaskedLM(tiny_config(**ONE_LAYER)).eval()  # the same shapes, other weights
    with pytest.raises(RuntimeError, match="differs from the model"):
        ex.check_export(other, tmp_path, "torch", {"model": program})


def test_forward_export_refuses_what_it_cannot_export():
    model = _model(VaswaniForCausalLM)
    with pytest.raises(ValueError, match="at least 2"):
        ex.export_forward(model, {"input_ids": random_ids(1, 5)})
    with pytest.raises(TypeError, match="dict of example tensors"):
        ex.export_forward(model, random_ids(2, 5))
    with pytest.raises(ValueError, match="position_ids"):
        ex.export_forward(model, {**inputs_for(model), "position_ids": torch.arange(7).expand(2, -1)})
    with pytest.raises(ValueError, match="eval"):
        ex.export_forward(model.train(), inputs_for(model))
    with pytest.raises(ValueError, match="format"):
        ex.write_export(model.eval(), ".", "tflite")


# -- Generation: prefill and cached decoding step ---------------------------------------------------------------------
def _source(ids=None, mask=None, pixel_values=None) -> dict:
    """What generate() and greedy_generate take: token ids and their mask (all ones by default), or images."""
    if pixel_values is not None:
        return {"pixel_values": pixel_values}
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids) if mask is None else mask}


def _generate(model, source: dict, **kwargs) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(**source, do_sample=False, **kwargs)


def _check_decoding(graphs, model, ids=None, mask=None, pixel_values=None):
    """
    Exported greedy decoding equals generate()'s: 9 new tokens exactly (min_new_tokens = max_new_tokens), then with
    an eos that the model makes mid-way for one sequence, which then pads while the others go on, until all stop.
    A captioner's source is images (`pixel_values`).
    """
    config = model.config
    source = _source(ids, mask, pixel_values)
    ids_of = {"eos_token_id": config.eos_token_id, "pad_token_id": config.pad_token_id,
              "decoder_start_token_id": config.decoder_start_token_id}
    prompt = 0 if config.is_encoder_decoder else ids.shape[1]
    expected = _generate(model, source, max_new_tokens=9, min_new_tokens=9)
    new = expected[:, -9:]
    assert expected.shape == (len(next(iter(source.values()))), (1 if config.is_encoder_decoder else prompt) + 9)
    assert torch.equal(ex.greedy_generate(graphs, **source, max_new_tokens=9, min_new_tokens=9, **ids_of), expected)

    # An eos the first sequence says at its 3rd new token (and, where another sequence says it too, wherever that is).
    eos = int(new[0, 2])
    stopping = dict(ids_of, eos_token_id=eos)
    expected = _generate(model, source, max_new_tokens=9, eos_token_id=eos, pad_token_id=config.pad_token_id)
    assert (expected[0, -expected.shape[1] + prompt:] == eos).any()
    assert torch.equal(ex.greedy_generate(graphs, **source, max_new_tokens=9, **stopping), expected)


# The saved folders below cover learned positions (causal, ONNX) and sinusoidal ones (seq2seq, torch); these the rest.
def test_exported_causal_programs_with_sinusoidal_positions_decode_as_generate():
    model = _model(VaswaniForCausalLM, position_embedding_type="sinusoidal")
    programs = ex.export_generation(model)
    graphs = ex.ExportedGeneration.from_programs(programs["prefill"], programs["decode"], False)
    _check_decoding(graphs, model, random_ids(3, 6))  # the example had batch 2 and 3 tokens


def _check_programs_and_onnx(model, folder):
    """The exported programs, then their ONNX graphs, decode as generate() does (a captioner: on 3 images)."""
    programs = ex.export_generation(model)
    source = {"pixel_values": _images(3)} if model.config.image_size else {"ids": random_ids(3, 6)}
    seq2seq = model.config.is_encoder_decoder
    _check_decoding(ex.ExportedGeneration.from_programs(programs["prefill"], programs["decode"], seq2seq), model,
                    **source)
    paths = []
    for name in ("prefill", "decode"):
        inputs, outputs = ex.graph_names(model, name)
        paths.append(ex.to_onnx(programs[name], folder / f"{name}.onnx", inputs, outputs))
    _check_decoding(ex.ExportedGeneration.from_onnx(*paths), model, **source)


def test_exported_seq2seq_graphs_with_learned_positions_decode_as_generate(tmp_path):
    _check_programs_and_onnx(
        _model(VaswaniForConditionalGeneration, position_embedding_type="learned", **ONE_LAYER), tmp_path
    )


def test_generation_export_refuses_other_heads_and_bad_lengths():
    with pytest.raises(TypeError, match="export_forward"):
        ex.export_generation(_model(VaswaniForMaskedLM))
    graphs = ex.ExportedGeneration(None, None, False)
    with pytest.raises(ValueError, match="max_new_tokens"):
        ex.greedy_generate(graphs, random_ids(2, 3), max_new_tokens=0)


# -- Exported folders: `vaswani export` -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Two model folders with a character tokenizer: a causal LM (learned positions), a seq2seq model (sinusoidal)."""
    from vaswani.tokenization import config_from_tokenizer, train_tokenizer

    work = tmp_path_factory.mktemp("export")
    tokenizer = train_tokenizer(shakespeare_lines(200), kind="char", vocab_size=80, model_max_length=64)
    folders = {}
    for name, head, positions in (("causal", VaswaniForCausalLM, "learned"),
                                  ("seq2seq", VaswaniForConditionalGeneration, "sinusoidal")):
        torch.manual_seed(0)
        config = config_from_tokenizer(tokenizer, config=tiny_config(position_embedding_type=positions, **ONE_LAYER))
        head(config).save_pretrained(work / name)
        tokenizer.save_pretrained(work / name)
        folders[name] = work / name
    return work, folders


@pytest.fixture(scope="module")
def exported(saved):
    """(model, format) -> the folder `vaswani export` wrote; the seq2seq torch one over an old folder (--overwrite)."""
    work, folders = saved
    runs = {}
    for name, fmt in (("causal", "onnx"), ("seq2seq", "torch")):
        output = work / f"{name}-{fmt}"
        extra = []
        if (name, fmt) == ("seq2seq", "torch"):
            output.mkdir()
            (output / "stale.txt").write_text("from an earlier export")
            extra = ["--overwrite"]
        ok("export", "--model", folders[name], "--format", fmt, "--output", output, *extra)
        runs[name, fmt] = output
    return runs


def _load(folder):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    config = json.loads((folder / "config.json").read_text())
    auto = AutoModelForSeq2SeqLM if config.get("is_encoder_decoder") else AutoModelForCausalLM
    return auto.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


FOLDERS = [("causal", "onnx"), ("seq2seq", "torch")]


@pytest.mark.parametrize("name, fmt", FOLDERS, ids=["-".join(case) for case in FOLDERS])
def test_exported_folder_holds_what_its_readme_says(saved, exported, name, fmt):
    folder = exported[name, fmt]
    suffix = ".onnx" if fmt == "onnx" else ".pt2"
    graphs = [f"model{suffix}", f"prefill{suffix}", f"decode{suffix}"]
    files = {path.name for path in folder.iterdir()}
    assert set(graphs) | {"config.json", "generation_config.json", "tokenizer.json", "export.json", "README.md"} <= files
    assert "stale.txt" not in files and not any(path.name.endswith(".safetensors") for path in folder.iterdir())
    readme = (folder / "README.md").read_text()
    manifest = json.loads((folder / "export.json").read_text())
    assert [graph["file"] for graph in manifest["graphs"].values()] == graphs
    for graph in manifest["graphs"].values():
        assert f"`{graph['file']}`" in readme
        for tensor, shape in {**graph["inputs"], **graph["outputs"]}.items():
            assert f"| `{tensor}` | (" + ", ".join(map(str, shape)) + ") |" in readme
    assert ("onnxruntime.InferenceSession" if fmt == "onnx" else "torch.export.load") in readme
    assert manifest["graphs"]["decode"]["inputs"]["attention_mask"][0] == "batch"
    assert manifest["checked"]["forward_max_abs_difference"] <= TOLERANCE
    assert manifest["checked"]["greedy_tokens_as_generate"] == ex.CHECK_TOKENS and "gives `generate()`'s" in readme


@pytest.mark.parametrize("name, fmt", FOLDERS, ids=["-".join(case) for case in FOLDERS])
def test_exported_folders_readme_examples_run(exported, name, fmt, monkeypatch, tmp_path):
    """The README's code blocks, run in order in the folder, as a user would paste them."""
    folder = exported[name, fmt]
    blocks = (folder / "README.md").read_text().split("```python\n")[1:]
    assert len(blocks) == 2  # the forward, then greedy decoding
    monkeypatch.chdir(folder)
    namespace = {}
    for block in blocks:
        exec(block.split("```")[0], namespace)
    logits = namespace["outputs"][0] if fmt == "onnx" else namespace["outputs"]["logits"]
    if fmt == "onnx":  # what ONNX is for: running without the package (the folder's config names no code to run)
        assert "auto_map" not in json.loads((folder / "config.json").read_text())
        code = f"import os\nos.chdir({str(folder)!r})\n" + blocks[0].split("```")[0]
        shape = run_without_vaswani(code + "print(json.dumps(list(outputs[0].shape)))", tmp_path)
        assert shape == list(logits.shape)
    assert tuple(logits.shape[:2]) == tuple(namespace["batch"]["decoder_input_ids" if name == "seq2seq" else "input_ids"].shape)
    start = 1 if name == "seq2seq" else namespace["source"]["input_ids"].shape[1]
    assert start < namespace["tokens"].shape[1] <= start + 20
    assert len(namespace["texts"]) == 2 and all(isinstance(text, str) for text in namespace["texts"])


@pytest.mark.parametrize("name, fmt", FOLDERS, ids=["-".join(case) for case in FOLDERS])
def test_exported_folder_runs_as_the_model(saved, exported, name, fmt):
    folder = exported[name, fmt]
    model, tokenizer = _load(saved[1][name])
    texts = ["ROMEO: a word, and", "JULIET: no"]  # two lengths: a padded batch, unlike the export example
    batch = dict(tokenizer(texts, padding=True, return_tensors="pt", return_token_type_ids=False))
    if model.config.is_encoder_decoder:
        batch["decoder_input_ids"] = tokenizer(["ROMEO", "JULIA"], return_tensors="pt")["input_ids"]
    manifest = json.loads((folder / "export.json").read_text())
    assert list(manifest["graphs"]["model"]["inputs"]) == list(batch)
    if fmt == "onnx":
        got = ex.run_onnx(folder / "model.onnx", batch)
    else:
        got = torch.export.load(str(folder / "model.pt2")).module()(**batch)
    _assert_close(got, _eager(model, batch))

    graphs = ex.ExportedGeneration.load(folder)
    ids = tokenizer(["ROMEO: a word", "JULIET: o"], padding=True, return_tensors="pt")
    if model.config.is_encoder_decoder:
        _check_decoding(graphs, model, ids["input_ids"], ids["attention_mask"])
    else:
        _check_decoding(graphs, model, ids["input_ids"][:, :8])  # full masks (left padding: the next test)


def test_exported_causal_decoding_skips_left_padding_as_generate(saved, exported):
    model, tokenizer = _load(saved[1]["causal"])
    tokenizer.padding_side = "left"
    ids = tokenizer(["ROMEO: a word", "JULIET: o"], padding=True, return_tensors="pt")
    assert not ids["attention_mask"].all()
    graphs = ex.ExportedGeneration.load(exported["causal", "onnx"])
    expected = _generate(model, _source(ids["input_ids"], ids["attention_mask"]), max_new_tokens=6, min_new_tokens=6)
    got = ex.greedy_generate(graphs, ids["input_ids"], ids["attention_mask"], max_new_tokens=6, min_new_tokens=6)
    assert torch.equal(got, expected)


def test_export_help_says_what_it_writes(capsys):
    from vaswani.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["export", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exit_.value.code == 0
    for phrase in ("ONNX Runtime", "torch.export", "prefill", "--format", "--overwrite", "README"):
        assert phrase in text, phrase


def test_export_refuses_an_existing_output_and_bad_requests(saved, exported):
    work, folders = saved
    output = exported["causal", "onnx"]
    before = {path.name: path.stat().st_mtime_ns for path in output.iterdir()}
    run = cli("export", "--model", folders["causal"], "--format", "onnx", "--output", output)
    assert run.code == 2 and "already exists" in run.err and "--overwrite" in run.err
    assert {path.name: path.stat().st_mtime_ns for path in output.iterdir()} == before
    run = cli("export", "--model", folders["causal"], "--format", "onnx", "--output", folders["causal"], "--overwrite")
    assert run.code == 2 and "would replace" in run.err
    run = cli("export", "--model", folders["causal"], "--format", "tflite", "--output", work / "x")
    assert run.code == 2 and "--format" in run.err and not (work / "x").exists()
    run = cli("export", "--model", work / "missing", "--format", "torch", "--output", work / "y")
    assert run.code == 2 and "config.json missing" in run.err and not (work / "y").exists()


@pytest.mark.parametrize("head", [
    pytest.param(head, id=head.__name__,
                 marks=() if head.__name__ == "VaswaniForSequenceClassification" else pytest.mark.slow)
    for head in HEAD_CLASSES
])
def test_export_folder_of_any_head_without_a_tokenizer(head, tmp_path, monkeypatch):
    """The Python API's folder (torch format, no tokenizer): its README's example runs; it is never overwritten."""
    model = _model(head, **ONE_LAYER)
    output = tmp_path / "exported"
    manifest = ex.export_folder(model, output, "torch")
    assert list(manifest["graphs"]) == (["model", "prefill", "decode"] if model.can_generate() else ["model"])
    monkeypatch.chdir(output)
    namespace = {}
    exec((output / "README.md").read_text().split("```python\n")[1].split("```")[0], namespace)
    batch = {name: torch.as_tensor(value) for name, value in namespace["batch"].items()}
    _assert_close(namespace["outputs"], _eager(model, batch))
    with pytest.raises(FileExistsError, match="overwrite"):
        ex.export_folder(model, output, "torch")


@pytest.mark.slow  # about 20-40 s each: the positions after the paper export like the paper's
@pytest.mark.parametrize("kind", ["rotary", "alibi", "relative"])
@pytest.mark.parametrize("head", [VaswaniForCausalLM, VaswaniForConditionalGeneration])
def test_exported_generation_with_positions_inside_attention_decodes_as_generate(kind, head, tmp_path):
    _check_programs_and_onnx(_model(head, position_embedding_type=kind), tmp_path)


@pytest.mark.slow  # as the positions above: additive scores export (eager, einsum and tanh) and decode as generate
@pytest.mark.parametrize("head", [VaswaniForCausalLM, VaswaniForConditionalGeneration])
def test_exported_generation_with_additive_scores_decodes_as_generate(head, tmp_path):
    _check_programs_and_onnx(_model(head, attention_scores="additive"), tmp_path)


# -- Models that read pixels: an image classifier and a captioner -----------------------------------------------------
IMAGE = dict(vocab_size=40, d_model=32, num_heads=4, d_ff=64, num_hidden_layers=1, image_size=16, patch_size=4,
             num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def _images(count: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def image_exports(tmp_path_factory):
    """
    name -> (the saved folder, the folder `vaswani export` wrote of it): an image classifier with its image processor
    (ONNX), a captioner with its image processor and a character tokenizer (torch programs).
    """
    from vaswani.tokenization import config_from_tokenizer, train_tokenizer

    work = tmp_path_factory.mktemp("images")
    tokenizer = train_tokenizer(shakespeare_lines(200), kind="char", vocab_size=80, model_max_length=64)
    made = {}
    for name, head, fmt in (("classifier", VaswaniForImageClassification, "onnx"),
                            ("captioner", VaswaniForConditionalGeneration, "torch")):
        config = VaswaniConfig(**IMAGE)
        if name == "captioner":
            config = config_from_tokenizer(tokenizer, config)
        torch.manual_seed(0)
        head(config).save_pretrained(work / name)
        image_processor_for(config).save_pretrained(work / name)
        if name == "captioner":
            tokenizer.save_pretrained(work / name)
        ok("export", "--model", work / name, "--format", fmt, "--output", work / f"{name}-{fmt}")
        made[name] = (work / name, work / f"{name}-{fmt}")
    return made


def _load_image_model(folder):
    from transformers import AutoModelForImageClassification, AutoModelForImageTextToText

    config = json.loads((folder / "config.json").read_text())
    auto = AutoModelForImageTextToText if config.get("is_encoder_decoder") else AutoModelForImageClassification
    return auto.from_pretrained(folder).eval()


def test_exported_image_classifier_gives_the_logits_of_the_model_at_any_batch(image_exports):
    saved, folder = image_exports["classifier"]
    model = _load_image_model(saved)
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["graphs"]["model"]["inputs"] == {"pixel_values": ["batch", 3, 16, 16]}
    assert manifest["graphs"]["model"]["outputs"] == {"logits": ["batch", 3]} and manifest["image_size"] == 16
    pixels = _images(5)  # the export example had 2 images, the check when written 3
    _assert_close(ex.run_onnx(folder / "model.onnx", {"pixel_values": pixels}), _eager(model, {"pixel_values": pixels}))
    program = ex.export_forward(model, ex.example_inputs(model))
    _assert_close(program.module()(pixel_values=pixels), _eager(model, {"pixel_values": pixels}))


@pytest.mark.parametrize("name", ["classifier", "captioner"])
def test_exported_image_folder_names_pixel_values_and_carries_the_image_processor(image_exports, name, monkeypatch):
    """Its README names `pixel_values` and the image processor; its examples, run in the folder, are the model's."""
    saved, folder = image_exports[name]
    files = {path.name for path in folder.iterdir()}
    assert {"preprocessor_config.json", "export.json", "README.md", "config.json"} <= files
    assert ("tokenizer.json" in files) == (name == "captioner")
    manifest = json.loads((folder / "export.json").read_text())
    readme = (folder / "README.md").read_text()
    for phrase in ("`pixel_values`", "AutoImageProcessor.from_pretrained", "`preprocessor_config.json`",
                   "| input | `pixel_values` | (batch, 3, 16, 16) |"):
        assert phrase in readme, phrase
    blocks = (folder / "README.md").read_text().split("```python\n")[1:]
    assert len(blocks) == (2 if name == "captioner" else 1)
    monkeypatch.chdir(folder)
    namespace = {}
    for block in blocks:
        exec(block.split("```")[0], namespace)
    model = _load_image_model(saved)
    batch = {key: torch.as_tensor(value) for key, value in namespace["batch"].items()}
    assert list(batch) == list(manifest["graphs"]["model"]["inputs"]) and batch["pixel_values"].shape == (2, 3, 16, 16)
    outputs = namespace["outputs"]
    if name == "classifier":  # ONNX Runtime's list, in the order of the manifest's outputs
        outputs = dict(zip(manifest["graphs"]["model"]["outputs"], map(torch.as_tensor, outputs)))
    _assert_close(outputs, _eager(model, batch))
    if name == "captioner":
        assert manifest["graphs"]["prefill"]["inputs"].keys() == {"pixel_values", "decoder_input_ids"}
        assert list(manifest["graphs"]["decode"]["inputs"])[:3] == ["decoder_input_ids", "attention_mask",
                                                                    "encoder_hidden_states"]
        expected = _generate(model, {"pixel_values": batch["pixel_values"]}, max_new_tokens=20)
        assert torch.equal(namespace["tokens"], expected)
        assert len(namespace["texts"]) == 2 and manifest["checked"]["greedy_tokens_as_generate"] == ex.CHECK_TOKENS


def test_exported_image_classifier_runs_from_its_readme_without_the_package(image_exports, tmp_path):
    _, folder = image_exports["classifier"]
    code = (folder / "README.md").read_text().split("```python\n")[1].split("```")[0]
    code = f"import os\nos.chdir({str(folder)!r})\n{code}print(json.dumps(list(outputs[0].shape)))"
    shape = run_without_vaswani(code, tmp_path)
    assert shape == [2, 3]


def test_exported_captioner_decodes_as_generate(image_exports):
    saved, folder = image_exports["captioner"]
    _check_decoding(ex.ExportedGeneration.load(folder), _load_image_model(saved), pixel_values=_images(3))


def test_image_export_refuses_tokens_and_misplaced_images(image_exports):
    classifier = _load_image_model(image_exports["classifier"][0])
    with pytest.raises(TypeError, match="pixel_values"):
        ex.export_forward(classifier, {"input_ids": random_ids(2, 5)})
    with pytest.raises(ValueError, match="reads tokens"):
        ex.write_export(_model(VaswaniForMaskedLM), ".", "torch",
                        image_processor=image_processor_for(classifier.config))
    graphs = ex.ExportedGeneration(None, None, True)  # refused before any graph runs
    with pytest.raises(ValueError, match="one of them"):
        ex.greedy_generate(graphs, max_new_tokens=2)
    with pytest.raises(ValueError, match="without an `attention_mask`"):
        ex.greedy_generate(graphs, pixel_values=_images(2), attention_mask=torch.ones(2, 17), max_new_tokens=2)
    with pytest.raises(ValueError, match="captioner's graphs"):
        ex.greedy_generate(ex.ExportedGeneration(None, None, False), pixel_values=_images(2), max_new_tokens=2)


@pytest.mark.slow  # about 20 s: the captioner's prefill and decoding step as ONNX graphs decode as generate
def test_exported_captioner_onnx_graphs_decode_as_generate(tmp_path):
    torch.manual_seed(0)
    _check_programs_and_onnx(VaswaniForConditionalGeneration(VaswaniConfig(**IMAGE)).eval(), tmp_path)
