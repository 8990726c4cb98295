"""
The attention explorer (`vaswani explore`, `vaswani.explore.explorer`, `vaswani.explore.space`): its callbacks on tiny
saved models (a character-level causal LM, a translation model, encoder heads), the command's errors and the Space
folder it writes, and the page itself in a real browser: headless Chromium from the system's package registry (apt),
driven by Playwright, types a sentence, chooses a layer and a head, and finds the output and the heat map the
model gives; the screenshot is kept under tests/artifacts/.
"""

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import shakespeare_lines
from vaswani import (
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMaskedLM,
    VaswaniForMultipleChoice,
    VaswaniForSequenceClassification,
    VaswaniForTokenClassification,
    VaswaniModel,
)
from vaswani.cli import main
from vaswani.explore.explorer import DEMO_MODEL, KINDS, NEW_TOKENS, Explorer, app_model
from vaswani.explore.maps import attention_maps
from vaswani.explore.space import APP, EXPLORE_REQUIREMENTS
from vaswani.tokenization import config_from_tokenizer, train_tokenizer


ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TINY = dict(d_model=32, num_heads=4, d_ff=64, num_hidden_layers=2, dropout=0.0)
SENTENCE = "To be, or not to be"


def save(head, kind: str, folder: Path) -> Path:
    tokenizer = train_tokenizer(shakespeare_lines(300), kind=kind, vocab_size=300, model_max_length=64)
    torch.manual_seed(0)
    model = head(config_from_tokenizer(tokenizer, **TINY))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("explorer")
    return {
        "clm": save(VaswaniForCausalLM, "char", root / "clm"),
        "seq2seq": save(VaswaniForConditionalGeneration, "shared-bpe", root / "seq2seq"),
    }


@pytest.fixture(scope="module")
def clm(folders):
    return Explorer(folders["clm"])


@pytest.fixture(scope="module")
def seq2seq(folders):
    return Explorer(folders["seq2seq"])


def run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


# -- The callbacks, without a browser ----------------------------------------------------------------------------------
def test_a_causal_model_continues_the_sentence_and_maps_what_it_wrote(clm):
    text, maps = clm.run(SENTENCE)
    prompt = clm.tokenizer(SENTENCE, return_tensors="pt")
    greedy = clm.model.generate(**prompt, max_new_tokens=NEW_TOKENS, do_sample=False)
    assert text == clm.tokenizer.decode(greedy[0], skip_special_tokens=True) and text.startswith(SENTENCE)
    assert maps.kinds == ("decoder",) and clm.kinds == KINDS["decoder-only"]
    assert maps.weights["decoder"].shape[-1] == greedy.shape[1]  # the prompt and the continuation
    assert maps.real_tokens("decoder") == clm.tokenizer.convert_ids_to_tokens(greedy[0].tolist())


def test_the_heat_map_is_one_heads_weights_and_changes_with_the_head(clm):
    _, maps = clm.run(SENTENCE)
    first, other = clm.draw(maps, "decoder", 1, 0), clm.draw(maps, "decoder", 1, 3)
    assert first.dtype == np.uint8 and first.ndim == 3 and first.shape[2] == 3
    assert min(first.shape[:2]) > 200 and first.std() > 10  # an image, not a blank
    assert first.shape == other.shape and not np.array_equal(first, other)
    assert not torch.equal(maps.head(1, 0)[0], maps.head(1, 3)[0])  # the heads differ, so must their pictures
    assert np.array_equal(clm.draw(maps, "decoder", 1, 0), first)  # drawn again: the same picture
    assert np.array_equal(clm.draw(maps, "decoder", 99, 99), clm.draw(maps, "decoder", 1, 3))  # past the end: the last
    assert clm.draw(None, "decoder", 0, 0) is None


def test_a_translation_model_translates_and_maps_source_and_translation(seq2seq):
    text, maps = seq2seq.run(SENTENCE)
    source = seq2seq.tokenizer(SENTENCE, return_tensors="pt")
    generated = seq2seq.model.generate(**source, max_new_tokens=NEW_TOKENS, do_sample=False)
    assert text == seq2seq.tokenizer.decode(generated[0], skip_special_tokens=True) and text
    assert maps.kinds == ("encoder", "decoder", "cross") == seq2seq.kinds
    expected = attention_maps(seq2seq.model, {**source, "decoder_input_ids": generated}, seq2seq.tokenizer)
    weights, queries, keys = maps.head(1, 2, "cross")
    assert torch.equal(weights, expected.head(1, 2, "cross")[0])
    assert weights.shape == (generated.shape[1], source["input_ids"].shape[1])
    assert keys == seq2seq.tokenizer.convert_ids_to_tokens(source["input_ids"][0].tolist())
    pictures = [seq2seq.draw(maps, kind, 0, 0) for kind in maps.kinds]
    assert all(picture.std() > 10 for picture in pictures)
    assert not np.array_equal(pictures[0], pictures[2])


def test_no_sentence_no_run(clm):
    for text in ("", "   \n"):
        said, maps = clm.run(text)
        assert maps is None and "sentence" in said


def test_a_sentence_longer_than_the_positions_is_cut_and_said(clm):
    text, maps = clm.run("word " * 100)
    assert "the model saw its first" in text
    assert maps.weights["decoder"].shape[-1] <= clm.config.max_position_embeddings


@pytest.mark.parametrize("head, text, says", [
    (VaswaniForSequenceClassification, SENTENCE, "Label: LABEL_"),
    (VaswaniForMaskedLM, "to be or [MASK] to be", "Filled: "),
    (VaswaniForMaskedLM, SENTENCE, "Tokens: "),
    (VaswaniForTokenClassification, SENTENCE, "/LABEL_"),
    (VaswaniForMultipleChoice, SENTENCE, "Tokens: "),
    (VaswaniModel, SENTENCE, "its decoder reads the sentence too"),  # the bare encoder-decoder
])
def test_the_other_heads_say_what_they_predict(tmp_path, head, text, says):
    explorer = Explorer(save(head, "wordpiece", tmp_path / "model"))
    said, maps = explorer.run(text)
    assert says in said and maps.kinds == explorer.kinds == KINDS[explorer.config.stacks]
    assert all(explorer.draw(maps, kind, 1, 1).std() > 10 for kind in maps.kinds)
    if head is VaswaniForMaskedLM and "[MASK]" in text:  # the mask filled with the model's most likely token
        ids = explorer.tokenizer(text, return_tensors="pt")["input_ids"]
        where = ids[0] == explorer.tokenizer.mask_token_id
        ids[0, where] = explorer.model(input_ids=ids).logits[0, where].argmax(-1)
        assert said == "Filled: " + explorer.tokenizer.decode(ids[0], skip_special_tokens=True)


def test_a_folder_without_a_vaswani_model_is_refused(tmp_path, folders):
    with pytest.raises(ValueError, match="`model_dir`.*config.json missing"):
        Explorer(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="`model_dir`"):
        Explorer(tmp_path)
    broken = tmp_path / "no-tokenizer"
    broken.mkdir()
    shutil.copy(folders["clm"] / "config.json", broken)
    shutil.copy(folders["clm"] / "model.safetensors", broken)
    with pytest.raises(ValueError, match="Could not load the model and tokenizer in `model_dir`"):
        Explorer(broken)


def test_app_model_prefers_the_environment_then_the_space_then_the_demo(tmp_path, monkeypatch, folders):
    monkeypatch.delenv("VASWANI_MODEL", raising=False)
    with pytest.raises(ValueError, match="make demo"):
        app_model(tmp_path)
    demo = tmp_path / DEMO_MODEL
    shutil.copytree(folders["clm"], demo)
    assert app_model(tmp_path) == demo
    shutil.copytree(folders["clm"], tmp_path / "model")
    assert app_model(tmp_path) == tmp_path / "model"
    monkeypatch.setenv("VASWANI_MODEL", str(folders["seq2seq"]))
    assert app_model(tmp_path) == folders["seq2seq"]


# -- The command and the Space folder ----------------------------------------------------------------------------------
def test_without_a_model_the_command_asks_for_the_demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["explore"])
    assert code == 2 and "make demo" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, says", [
    (["explore", "missing"], "config.json missing"),
    (["explore", "{clm}", "--overwrite"], "--overwrite replaces an existing --space folder"),
    (["explore", "{clm}", "--space", "s", "--port", "8000"], "--port serves the page"),
    (["explore", "{clm}", "--space", "s", "--host", "0.0.0.0"], "--host serves the page"),
    (["explore", "{clm}", "--port", "70000"], "--port: must be a port number"),
    (["explore", "{clm}", "--space", "{clm}"], "--space {clm} holds the model"),
])
def test_the_command_refuses_in_one_line(tmp_path, monkeypatch, folders, argv, says):
    monkeypatch.chdir(tmp_path)
    argv = [part.format(clm=folders["clm"]) for part in argv]
    code, _, err = run_cli(argv)
    assert code == 2 and says.format(clm=folders["clm"]) in err and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


def test_a_taken_port_is_refused_in_one_line(folders):
    pytest.importorskip("gradio", reason="the explorer needs gradio: pip install 'vaswani[explore]'")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run_cli(["explore", str(folders["clm"]), "--port", str(port)])
    assert code == 2 and f"Could not serve on 127.0.0.1:{port}" in err and err.count("\n") == 1, err


def test_without_gradio_the_command_says_which_extra_to_install(folders, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "gradio" else
                        find_spec(name, *rest))
    code, _, err = run_cli(["explore", str(folders["clm"])])
    assert code == 2 and "pip install 'vaswani[explore]'" in err and err.count("\n") == 1, err


def test_the_space_folder_is_written_whole(tmp_path, folders):
    space = tmp_path / "space"
    code, _, err = run_cli(["explore", str(folders["clm"]), "--space", str(space)])
    assert code == 0, err
    assert (space / "app.py").read_text() == APP == (ROOT / "app.py").read_text()  # the repository's app.py too
    model_files = {path.name for path in folders["clm"].iterdir() if path.is_file()}
    assert {path.name for path in (space / "model").iterdir()} == model_files
    import vaswani

    package = Path(vaswani.__file__).parent
    sources = {path.relative_to(package) for path in package.rglob("*.py") if "__pycache__" not in path.parts}
    copied = {path.relative_to(space / "vaswani") for path in (space / "vaswani").rglob("*") if path.is_file()}
    assert sources <= copied and not any("__pycache__" in path.parts for path in copied)
    card = (space / "README.md").read_text()
    front = card.split("---\n")[1]
    assert "sdk: gradio\n" in front and "app_file: app.py\n" in front
    requirements = (space / "requirements.txt").read_text().split()
    assert set(EXPLORE_REQUIREMENTS) <= set(requirements) and any(line.startswith("torch") for line in requirements)
    assert not list(tmp_path.glob(".space.partial-*"))  # no staging folder left behind

    before = (space / "app.py").stat().st_mtime_ns
    code, _, err = run_cli(["explore", str(folders["clm"]), "--space", str(space)])
    assert code == 2 and "already exists" in err and (space / "app.py").stat().st_mtime_ns == before
    code, _, err = run_cli(["explore", str(folders["seq2seq"]), "--space", str(space), "--overwrite"])
    assert code == 0, err
    assert (space / "model" / "config.json").read_bytes() == (folders["seq2seq"] / "config.json").read_bytes()


@pytest.mark.slow  # a fresh process importing torch, transformers and gradio: about 10 s
def test_the_space_folder_runs_as_a_space(tmp_path, folders):
    """The Space's own way in: `python app.py` from the folder, on its copies of the package and the model."""
    space = tmp_path / "space"
    assert run_cli(["explore", str(folders["clm"]), "--space", str(space)])[0] == 0
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VASWANI_MODEL")}
    probe = ("import sys, vaswani.explore.explorer; assert 'gradio' not in sys.modules, 'gradio imported early'; "
             "import app, vaswani; print(app.demo.explorer.folder); print(vaswani.__file__)")
    shown = subprocess.run([sys.executable, "-c", probe], cwd=space, env=env, capture_output=True, text=True,
                           timeout=120)
    assert shown.returncode == 0, shown.stderr
    served, package_file = shown.stdout.split()[-2:]
    assert Path(served).resolve() == (space / "model").resolve()
    assert Path(package_file).resolve().is_relative_to(space.resolve())


def test_the_explore_extra_is_what_a_space_installs():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["optional-dependencies"]["explore"] == list(EXPLORE_REQUIREMENTS)
    assert "playwright" in " ".join(pyproject["project"]["optional-dependencies"]["dev"])


# -- The page in a real browser ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium() -> str:
    """The system's Chromium, installed from the package registry (apt) when missing."""
    found = shutil.which("chromium")
    if found:
        return found
    if not shutil.which("apt-get"):
        pytest.skip("the browser test needs Chromium: not installed, and no apt-get to install it with")
    if os.geteuid() != 0:
        pytest.skip("the browser test needs Chromium: not installed, and installing it (apt-get install chromium) "
                    "needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for step in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode:
            last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
            pytest.skip(f"the browser test needs Chromium, and `{' '.join(step)}` failed: {' '.join(last)}")
    return shutil.which("chromium") or pytest.skip("apt-get installed chromium, but it is not on PATH")


@pytest.fixture
def served(folders, tmp_path, monkeypatch):
    """The explorer page on the tiny causal LM, served from this process on a free port: (url, its Explorer)."""
    pytest.importorskip("gradio", reason="the explorer needs gradio: pip install 'vaswani[explore]'")
    from vaswani.explore.explorer import build_explorer

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    page = build_explorer(folders["clm"])
    page.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", page.explorer
    finally:
        page.close()


def test_the_page_in_a_browser_shows_the_output_and_the_chosen_heads_heat_map(chromium, served):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test drives Chromium with playwright")
    from PIL import Image

    url, explorer = served
    expected_text, maps = explorer.run(SENTENCE)
    expected_image = explorer.draw(maps, "decoder", 1, 2)
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: Chromium refuses to sandbox itself as root, which the apt install needs anyway
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.get_by_label("Sentence").fill(SENTENCE)
            page.get_by_role("button", name="Run").click()
            output = page.get_by_label(explorer.output_label)
            sync_api.expect(output).to_have_value(expected_text, timeout=30_000)
            heat_map = page.locator("#heat-map img")
            sync_api.expect(heat_map).to_have_count(1, timeout=30_000)
            first = heat_map.get_attribute("src")
            for label, value in (("Layer", "1"), ("Head", "2")):
                page.get_by_label(label).click()
                page.get_by_role("option", name=value, exact=True).click()
            sync_api.expect(page.get_by_label("Head")).to_have_value("2")
            sync_api.expect(heat_map).not_to_have_attribute("src", first, timeout=30_000)
            sync_api.expect(page.locator("#heat-map .progress-text")).to_have_count(0, timeout=30_000)
            natural = heat_map.evaluate("image => [image.complete, image.naturalWidth, image.naturalHeight]")
            assert natural == [True, expected_image.shape[1], expected_image.shape[0]]
            shown = Image.open(io.BytesIO(page.request.get(heat_map.get_attribute("src")).body()))
            assert np.array_equal(np.asarray(shown.convert("RGB")), expected_image)  # layer 1, head 2, exactly
            ARTIFACTS.mkdir(exist_ok=True)
            screenshot = ARTIFACTS / "explorer.png"
            page.screenshot(path=str(screenshot), full_page=True)
            print(f"screenshot: {screenshot}")
        finally:
            browser.close()
