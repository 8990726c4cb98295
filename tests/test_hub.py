"""
Self-contained Hub folders: what `save_pretrained` writes, loading it in a fresh process where `vaswani` cannot be
imported (remote code), `push_to_hub` without a network, and Trainer checkpoints.
"""

import ast
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import Trainer, TrainingArguments

from helpers import ENCODER_HEADS, GENERATIVE_HEADS, HEADS, inputs_for, main_output, random_ids, tiny_config
from vaswani import (
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMaskedLM,
    VaswaniForSequenceClassification,
    config_from_tokenizer,
    train_tokenizer,
)
from vaswani.configuration.configuration_vaswani import ATTENTION_SCORES
from vaswani.hub import AUTO_MAP, CUSTOM_PIPELINES


REMOTE_FILES = {
    "configuration_vaswani.py",
    "modeling_vaswani.py",
    "modeling_vaswani_heads.py",
    "cache_vaswani.py",
    "positions_vaswani.py",
    "vision_vaswani.py",
    "validation_vaswani.py",
    "pipeline_vaswani.py",
    "hub_vaswani.py",
}
BASE_FILES = REMOTE_FILES | {"config.json", "model.safetensors", "README.md"}
# What remote code may import: torch, transformers, the standard library, and its flat siblings.
ALLOWED_IMPORTS = {"torch", "transformers"} | set(sys.stdlib_module_names)


def expected_files(model) -> set[str]:
    return BASE_FILES | ({"generation_config.json"} if model.can_generate() else set())


def run_without_vaswani(code: str, tmp_path) -> dict:
    """Run `code` in a fresh interpreter where `import vaswani` fails; it prints one JSON line, returned here."""
    prelude = textwrap.dedent(
        """
        import sys
        sys.modules["vaswani"] = None  # any import of the package now fails
        try:
            import vaswani
            raise SystemExit("vaswani is importable: the test would prove nothing")
        except ImportError:
            pass
        import json, torch, transformers
        transformers.logging.set_verbosity_error()
        """
    )
    # The threads of this process: results are compared exactly, and a matmul split otherwise can round otherwise.
    env = {"HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PATH": "/usr/bin:/bin",
           "OMP_NUM_THREADS": str(torch.get_num_threads())}
    result = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("head", [h for h, _ in HEADS], ids=lambda h: h.__name__)
def test_saved_folder_is_self_contained(head, tmp_path):
    model = head(tiny_config())
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == expected_files(model)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"] == AUTO_MAP
    assert config["custom_pipelines"] == CUSTOM_PIPELINES
    assert config["architectures"] == [head.__name__]


def test_auto_map_names_every_auto_class_of_the_family():
    import vaswani

    registered = {auto.__name__: model.__name__ for auto, model in vaswani.AUTO_CLASSES.items()}
    assert {k: v.split(".")[1] for k, v in AUTO_MAP.items() if k != "AutoConfig"} == registered
    assert AUTO_MAP["AutoConfig"] == "configuration_vaswani.VaswaniConfig"


def test_remote_code_imports_only_torch_transformers_and_siblings(tmp_path):
    VaswaniForCausalLM(tiny_config()).save_pretrained(tmp_path)
    for name in REMOTE_FILES:
        tree = ast.parse((tmp_path / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1:  # `from .sibling import`: the sibling must be in the folder
                    assert f"{node.module}.py" in REMOTE_FILES, f"{name} imports missing sibling {node.module}"
                    continue
                assert node.level == 0, f"{name} has a `from ..` import, which transformers cannot copy"
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED_IMPORTS, f"{name} imports {roots - ALLOWED_IMPORTS}"


def test_every_head_loads_in_a_fresh_process_without_the_package(tmp_path):
    """Every Auto class loads its folder with trust_remote_code=True and gives identical outputs; generate works."""
    cases = []
    for head, auto in HEADS:
        model = head(tiny_config()).eval()
        inputs = inputs_for(model)
        folder = tmp_path / head.__name__
        model.save_pretrained(folder)
        with torch.no_grad():
            expected = main_output(model(**inputs))
        torch.save({"inputs": inputs, "expected": expected, "weights": model.state_dict()}, folder / "case.pt")
        generated = None
        if model.can_generate():
            generated = model.generate(inputs["input_ids"], max_new_tokens=4, do_sample=False).tolist()
        cases.append((str(folder), auto.__name__, head.__name__, generated))

    results = run_without_vaswani(
        f"""
        cases = {cases!r}
        out = {{}}
        for folder, auto_name, head_name, generated in cases:
            config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=True)
            model = getattr(transformers, auto_name).from_pretrained(folder, trust_remote_code=True).eval()
            case = torch.load(folder + "/case.pt")
            with torch.no_grad():
                output = model(**case["inputs"])
            main = next(getattr(output, n) for n in ("logits", "prediction_logits", "start_logits",
                        "last_hidden_state") if getattr(output, n, None) is not None)
            result = {{
                "class": type(model).__name__,
                "config_class": type(config).__name__,
                "module": type(model).__module__,
                "same_weights": model.state_dict().keys() == case["weights"].keys()
                and all(torch.equal(w, case["weights"][k]) for k, w in model.state_dict().items()),
                "output_difference": (main - case["expected"]).abs().max().item(),
            }}
            if generated is not None:
                again = model.generate(case["inputs"]["input_ids"], max_new_tokens=4, do_sample=False).tolist()
                result["generate_identical"] = again == generated
            out[head_name] = result
        print(json.dumps(out))
        """,
        tmp_path,
    )
    for head, _ in HEADS:
        result = results[head.__name__]
        assert result["class"] == head.__name__
        assert result["config_class"] == "VaswaniConfig"
        assert result["module"].startswith("transformers_modules."), "the model did not come from remote code"
        assert result["same_weights"], f"{head.__name__}: weights differ after a remote-code load"
        # The same weights, but loaded into memory at another alignment, which can pick another SIMD path for the
        # same matrix product: last-bit differences (1e-9 here with transformers 5.24), nothing more.
        assert result["output_difference"] <= 1e-6, f"{head.__name__}: outputs differ after a remote-code load"
        if head in GENERATIVE_HEADS:
            assert result["generate_identical"]


def test_tokenizer_and_config_load_with_the_model_without_the_package(tmp_path):
    texts = [f"line {i}: the quick brown fox jumps over the lazy dog number {i % 7}" for i in range(200)]
    tokenizer = train_tokenizer(texts, kind="byte-bpe", vocab_size=300, model_max_length=32)
    config = config_from_tokenizer(tokenizer, d_model=32, num_heads=4, d_ff=64, num_hidden_layers=2)
    model = VaswaniForCausalLM(config).eval()  # generate() does not switch dropout off by itself
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    sample = ["the lazy fox", "number 3 jumps"]
    expected = tokenizer(sample)["input_ids"]
    generated = model.generate(**tokenizer(sample, return_tensors="pt", padding=True), max_new_tokens=3).tolist()
    result = run_without_vaswani(
        f"""
        folder, sample = {str(tmp_path)!r}, {sample!r}
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
        config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=True)
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
        batch = tokenizer(sample, return_tensors="pt", padding=True)
        print(json.dumps({{
            "ids": tokenizer(sample)["input_ids"],
            "specials": [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id],
            "padding_side": tokenizer.padding_side,
            "config": [config.vocab_size, config.pad_token_id, config.bos_token_id, config.eos_token_id],
            "generated": model.generate(**batch, max_new_tokens=3).tolist(),
        }}))
        """,
        tmp_path,
    )
    assert result["ids"] == expected
    assert result["specials"] == [0, 1, 2] and result["padding_side"] == "left"
    assert result["config"] == [len(tokenizer), 0, 1, 2]
    assert result["generated"] == generated


def test_mlm_folder_loads_into_every_encoder_head_without_the_package(tmp_path):
    mlm = VaswaniForMaskedLM(tiny_config())
    mlm.save_pretrained(tmp_path)
    body = {k: v for k, v in mlm.state_dict().items() if k.startswith("model.")}
    torch.save(body, tmp_path / "body.pt")
    autos = {
        "VaswaniForPreTraining": "AutoModelForPreTraining",
        "VaswaniForNextSentencePrediction": "AutoModelForNextSentencePrediction",
        "VaswaniForSequenceClassification": "AutoModelForSequenceClassification",
        "VaswaniForTokenClassification": "AutoModelForTokenClassification",
        "VaswaniForQuestionAnswering": "AutoModelForQuestionAnswering",
        "VaswaniForMultipleChoice": "AutoModelForMultipleChoice",
    }
    assert set(autos) == {h.__name__ for h in ENCODER_HEADS} - {"VaswaniForMaskedLM"}
    results = run_without_vaswani(
        f"""
        folder, autos = {str(tmp_path)!r}, {autos!r}
        body = torch.load(folder + "/body.pt")
        out = {{}}
        for head, auto in autos.items():
            model, info = getattr(transformers, auto).from_pretrained(
                folder, trust_remote_code=True, output_loading_info=True)
            state = model.state_dict()
            out[head] = {{
                "class": type(model).__name__,
                "body_equal": all(torch.equal(state[k], v) for k, v in body.items()),
                "missing_outside_body": all(not k.startswith("model.") for k in info["missing_keys"]),
                "missing": sorted(info["missing_keys"]),
            }}
        print(json.dumps(out))
        """,
        tmp_path,
    )
    for head, result in results.items():
        assert result["class"] == head
        assert result["body_equal"], head
        assert result["missing"], f"{head}: its new head should be reported as initialised"
        assert result["missing_outside_body"], result["missing"]


def test_remote_loaded_model_saves_a_complete_folder(tmp_path):
    model = VaswaniForCausalLM(tiny_config())
    model.save_pretrained(tmp_path / "first")
    card = (tmp_path / "first" / "README.md").read_text()
    results = run_without_vaswani(
        f"""
        import os
        model = transformers.AutoModelForCausalLM.from_pretrained({str(tmp_path / "first")!r}, trust_remote_code=True)
        model.save_pretrained({str(tmp_path / "second")!r})
        print(json.dumps(sorted(os.listdir({str(tmp_path / "second")!r}))))
        """,
        tmp_path,
    )
    assert set(results) == expected_files(model)
    assert (tmp_path / "second" / "README.md").read_text() == card
    for name in REMOTE_FILES:
        assert (tmp_path / "second" / name).read_text() == (tmp_path / "first" / name).read_text()


@pytest.mark.parametrize("head", [h for h, _ in HEADS], ids=lambda h: h.__name__)
def test_model_card_is_valid_and_holds_the_models_facts(head, tmp_path):
    config = tiny_config(model_card_data={
        "name": "tiny-test",
        "datasets": ["tiny_shakespeare"],
        "results": [{"task": "test", "dataset": "tiny_shakespeare", "split": "validation", "metric": "loss",
                     "value": 1.5}],
        "training_data": "Tiny Shakespeare.",
    })
    model = head(config)
    model.save_pretrained(tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "transformers"
    assert data["license"] == "apache-2.0"
    assert "vaswani" in data["tags"] and "custom_code" in data["tags"]
    assert data["datasets"] == ["tiny_shakespeare"]
    assert data["metrics"] == ["loss"]
    assert card.data.eval_results[0].metric_value == 1.5
    parameters = sum(p.numel() for p in model.parameters())
    assert f"{parameters:,}" in card.text
    assert model.config.stacks in card.text
    assert head.__name__ in card.text
    assert "Tiny Shakespeare." in card.text
    assert "{{" not in card.content


@pytest.mark.parametrize("stacks", ["encoder-decoder", "encoder-only", "decoder-only"])
@pytest.mark.parametrize("with_results", [True, False], ids=["results", "no-results"])
def test_card_of_each_shape_parses_as_hub_metadata(stacks, with_results, tmp_path):
    from huggingface_hub import metadata_load
    from huggingface_hub.repocard_data import model_index_to_eval_results

    from vaswani.hub import HEADS

    head = {"encoder-decoder": VaswaniForConditionalGeneration, "encoder-only": VaswaniForSequenceClassification,
            "decoder-only": VaswaniForCausalLM}[stacks]
    results = [{"task": "translation", "dataset": "bible-en-es", "split": "test", "metric": "bleu", "value": 21.1},
               {"task": "translation", "dataset": "bible-en-es", "split": "test", "metric": "chrf", "value": 41.7}]
    config = tiny_config(
        norm_first=stacks == "decoder-only",
        model_card_data={"name": f"tiny-{stacks}", "datasets": ["bible-en-es"], **({"results": results} if with_results else {})},
    )
    model = head(config)
    model.save_pretrained(tmp_path)
    metadata = metadata_load(tmp_path / "README.md")
    assert metadata["pipeline_tag"] == HEADS[head.__name__].pipeline_tag
    assert metadata["library_name"] == "transformers" and metadata["datasets"] == ["bible-en-es"]
    if with_results:
        name, evals = model_index_to_eval_results(metadata["model-index"])
        assert name == f"tiny-{stacks}"
        assert [(e.metric_type, e.metric_value, e.dataset_split) for e in evals] == [
            ("bleu", 21.1, "test"), ("chrf", 41.7, "test")
        ]
        assert metadata["metrics"] == ["bleu", "chrf"]
    else:
        assert "model-index" not in metadata and metadata["metrics"] == []
    text = ModelCard.load(tmp_path / "README.md").text
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Model", "## How to load it", "## Intended uses and limits", "## Training data",
        "## Training procedure", "## Evaluation", "## Bias, risks and limitations", "## Citation",
    ]
    # The architecture in words names the stacks this head has, and their depth.
    layers = {"encoder-decoder": "an encoder of 2 layers", "encoder-only": "Encoder-only (BERT-style): an encoder of 2",
              "decoder-only": "Decoder-only (GPT-style): a decoder of 2"}[stacks]
    assert layers in text
    assert ("pre-LN" in text) == (stacks == "decoder-only")
    assert "@inproceedings{vaswani2017attention" in text


@pytest.mark.parametrize("scores", ATTENTION_SCORES)
def test_the_card_names_the_compatibility_function_when_it_is_not_the_papers(scores, tmp_path):
    VaswaniForCausalLM(tiny_config(attention_scores=scores)).save_pretrained(tmp_path)
    text = ModelCard.load(tmp_path / "README.md").text
    named = {"scaled_dot_product": None, "dot_product": "unscaled dot-product scores q.k",
             "additive": "additive scores v^T tanh(W_q q + W_k k)"}
    for kind, phrase in named.items():
        if phrase is not None:
            assert (phrase in text) == (kind == scores), kind
    assert ("scores" in text) == (scores != "scaled_dot_product")  # the paper's own goes unsaid


class FakeHub:
    """Stands in for huggingface_hub's HfApi: records the repository and the files a commit would send."""

    def __init__(self):
        self.repos, self.commits = [], []

    def create_repo(self, repo_id, **kwargs):
        self.repos.append(repo_id)
        return type("RepoUrl", (), {"repo_id": f"user/{repo_id}"})()

    def create_commit(self, repo_id, operations, **kwargs):
        files = {}
        for op in operations:
            with open(op.path_or_fileobj, "rb") as handle:
                files[op.path_in_repo] = handle.read()
        self.commits.append({"repo_id": repo_id, "files": files, **kwargs})
        return "commit-url"


@pytest.fixture
def fake_hub(monkeypatch):
    hub = FakeHub()
    monkeypatch.setattr("transformers.utils.hub.hf_api", lambda: hub)
    return hub


@pytest.mark.parametrize("head", [VaswaniForCausalLM, VaswaniForMaskedLM], ids=lambda h: h.__name__)
def test_push_to_hub_sends_exactly_the_saved_folder(head, fake_hub, tmp_path):
    model = head(tiny_config())
    model.save_pretrained(tmp_path)
    assert model.push_to_hub("tiny-vaswani", commit_message="first", tags=["demo-tag"]) == "commit-url"
    assert fake_hub.repos == ["tiny-vaswani"]
    (commit,) = fake_hub.commits
    assert commit["repo_id"] == "user/tiny-vaswani"
    assert commit["commit_message"] == "first"
    assert set(commit["files"]) == expected_files(model)
    # The card is ours (not a generic empty card), with the extra tag.
    card = ModelCard(commit["files"]["README.md"].decode())
    assert "demo-tag" in card.data.tags and "vaswani" in card.data.tags
    saved = {name: (tmp_path / name).read_bytes() for name in expected_files(model) - {"README.md"}}
    for name, content in saved.items():
        if name == "config.json":
            # Only the tags in model_card_data may differ from the earlier save.
            sent = json.loads(commit["files"][name])
            assert sent.pop("model_card_data") == {"tags": ["demo-tag"]}
            assert sent == {k: v for k, v in json.loads(content).items() if k != "model_card_data"}
        else:
            assert commit["files"][name] == content, name


def test_save_pretrained_with_push_to_hub_uploads_the_folder(fake_hub, tmp_path):
    model = VaswaniForCausalLM(tiny_config())
    model.save_pretrained(tmp_path / "folder", push_to_hub=True, repo_id="pushed")
    (commit,) = fake_hub.commits
    assert fake_hub.repos == ["pushed"]
    assert set(commit["files"]) == {p.name for p in (tmp_path / "folder").iterdir()} == expected_files(model)


class TokenDataset(torch.utils.data.Dataset):
    def __init__(self, n=16, length=12):
        generator = torch.Generator().manual_seed(0)
        self.ids = random_ids(n, length, generator=generator)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def train_args(output_dir, **overrides):
    settings = dict(
        output_dir=str(output_dir), max_steps=6, save_steps=3, per_device_train_batch_size=4, learning_rate=1e-3,
        report_to=[], use_cpu=True, logging_steps=1, seed=0, data_seed=0, disable_tqdm=True,
    )
    settings.update(overrides)
    return TrainingArguments(**settings)


def test_trainer_checkpoints_are_self_contained_and_resume(tmp_path):
    torch.manual_seed(0)
    start = VaswaniForCausalLM(tiny_config())
    start.save_pretrained(tmp_path / "start")
    full = Trainer(model=VaswaniForCausalLM.from_pretrained(tmp_path / "start"), args=train_args(tmp_path / "full"),
                   train_dataset=TokenDataset())
    full.train()
    checkpoint = tmp_path / "full" / "checkpoint-3"
    assert REMOTE_FILES | {"README.md", "config.json", "model.safetensors"} <= {p.name for p in checkpoint.iterdir()}

    # Resume from step 3: the same final weights as the uninterrupted run.
    resumed = Trainer(model=VaswaniForCausalLM.from_pretrained(tmp_path / "start"),
                      args=train_args(tmp_path / "full"), train_dataset=TokenDataset())
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 6
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)

    # The checkpoint loads in a fresh process without the package and gives the trained model's logits.
    final = tmp_path / "full" / "checkpoint-6"
    ids = random_ids(2, 6)
    with torch.no_grad():
        expected = VaswaniForCausalLM.from_pretrained(final)(input_ids=ids).logits
    torch.save({"ids": ids, "expected": expected}, tmp_path / "case.pt")
    result = run_without_vaswani(
        f"""
        model = transformers.AutoModelForCausalLM.from_pretrained({str(final)!r}, trust_remote_code=True).eval()
        case = torch.load({str(tmp_path / "case.pt")!r})
        with torch.no_grad():
            logits = model(input_ids=case["ids"]).logits
        print(json.dumps({{"identical": bool(torch.equal(logits, case["expected"])), "class": type(model).__name__}}))
        """,
        tmp_path,
    )
    assert result == {"identical": True, "class": "VaswaniForCausalLM"}
