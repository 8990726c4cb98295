"""
PEFT on Vaswani models: peft's default target modules for model_type "vaswani" (registered when peft is imported,
without `import vaswani` importing it), LoRA, IA3 and prompt tuning trained with `Trainer`, merging, saving and
loading adapters (also onto a remote-code base in a process without the package), generation through a PEFT model,
and `vaswani finetune --lora` end to end.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from peft import (
    AutoPeftModelForSequenceClassification,
    IA3Config,
    LoraConfig,
    PeftModel,
    PromptTuningConfig,
    get_peft_model,
)
from peft.utils import constants
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

from helpers import inputs_for, main_output, random_ids, tiny_config
from test_cli import _one_thread, cli, ok  # noqa: F401  (_one_thread: one thread while this module runs)
from test_hub import run_without_vaswani
from vaswani import (
    VaswaniForCausalLM,
    VaswaniForConditionalGeneration,
    VaswaniForMaskedLM,
    VaswaniForQuestionAnswering,
    VaswaniForSequenceClassification,
    VaswaniForTokenClassification,
    VaswaniModel,
)
from vaswani.integrations import adapters
from vaswani.training.data import ROTTEN_TOMATOES
from vaswani.training.recipe import complete_checkpoints


# Each shape with the peft task types it serves, and the head modules peft trains whole for that task type.
TASKS = [
    (VaswaniForCausalLM, "CAUSAL_LM", set()),
    (VaswaniForConditionalGeneration, "SEQ_2_SEQ_LM", set()),
    (VaswaniModel, "FEATURE_EXTRACTION", set()),
    (VaswaniForSequenceClassification, "SEQ_CLS", {"classifier"}),
    (VaswaniForTokenClassification, "TOKEN_CLS", {"classifier"}),
    (VaswaniForQuestionAnswering, "QUESTION_ANS", {"qa_outputs"}),
    (VaswaniForMaskedLM, None, set()),
]
TASK_IDS = [f"{head.__name__}-{task}" for head, task, _ in TASKS]


def linears(model, names) -> dict:
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in names}


def trainable(model) -> dict:
    return {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}


def perturbed_lora(model, **kwargs):
    """LoRA with random A and B (peft starts B at zero, where merged and unmerged agree trivially)."""
    return get_peft_model(model, LoraConfig(init_lora_weights=False, **kwargs))


# -- Registration ------------------------------------------------------------------------------------------------------
def test_import_vaswani_imports_no_peft_and_peft_finds_the_defaults_once_imported(tmp_path):
    """In a fresh process: `import vaswani` leaves peft out; a mere search for peft (as transformers makes) keeps the
    hook; importing peft then registers the family's defaults, which LoraModel and IA3Model read."""
    code = """
        import importlib.util, json, sys
        import vaswani
        out = {"peft_after_import_vaswani": "peft" in sys.modules}
        importlib.util.find_spec("peft")
        from peft.tuners.ia3 import model as ia3
        from peft.tuners.lora import LoraModel
        out["lora"] = LoraModel.target_module_mapping.get("vaswani")
        out["ia3"] = ia3.TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING.get("vaswani")
        out["ia3_feedforward"] = ia3.TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING.get("vaswani")
        out["hook_left"] = [type(f).__name__ for f in sys.meta_path if type(f).__name__ == "_AfterPeftImport"]
        print(json.dumps(out))
    """
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(adapters.__file__).parents[2])}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out == {"peft_after_import_vaswani": False, "lora": ["q_proj", "v_proj"],
                   "ia3": ["k_proj", "v_proj", "fc2"], "ia3_feedforward": ["fc2"], "hook_left": []}


def test_install_registers_at_once_when_peft_is_imported(monkeypatch):
    table = constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    monkeypatch.delitem(table, "vaswani")
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    adapters.install()
    assert table["vaswani"] == ["q_proj", "v_proj"]
    assert not any(isinstance(f, adapters._AfterPeftImport) for f in sys.meta_path)  # peft is here: no hook needed


def test_the_hook_leaves_a_missing_peft_missing(monkeypatch):
    """Without peft installed, the finder finds nothing, so `import peft` fails as it would without it."""
    finder = adapters._AfterPeftImport()
    monkeypatch.setattr(sys, "meta_path", [finder])
    assert finder.find_spec("peft") is None
    assert finder.find_spec("numpy") is None  # it answers for peft only


def test_a_users_own_entry_is_kept(monkeypatch):
    table = constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING
    monkeypatch.setitem(table, "vaswani", ["o_proj"])
    adapters.register_peft_defaults()
    assert table["vaswani"] == ["o_proj"]


# -- Default targets: only the adapters (and the task's head) train ----------------------------------------------------
@pytest.mark.parametrize("head, task_type, head_modules", TASKS, ids=TASK_IDS)
def test_lora_default_targets_train_only_the_adapters(head, task_type, head_modules):
    base = head(tiny_config())
    targets = linears(base, {"q_proj", "v_proj"})
    config = base.config
    attentions = {"encoder-only": config.num_encoder_layers, "decoder-only": config.num_decoder_layers,
                  "encoder-decoder": config.num_encoder_layers + 2 * config.num_decoder_layers}[config.stacks]
    model = get_peft_model(base, LoraConfig(task_type=task_type, r=4))
    assert len(targets) == 2 * attentions > 0  # every attention's query and value, cross-attention included
    expected = sum(4 * (m.in_features + m.out_features) for m in targets.values())
    wrapped = {n.removeprefix("base_model.model.") for n, m in model.named_modules() if hasattr(m, "lora_A")}
    assert wrapped == set(targets)
    counted = trainable(model)
    lora = {n: c for n, c in counted.items() if ".lora_" in n}
    assert sum(lora.values()) == expected
    saved_heads = {n.split(".")[2] for n in counted if ".modules_to_save." in n}
    assert saved_heads == head_modules
    assert set(counted) == set(lora) | {n for n in counted if ".modules_to_save." in n}


@pytest.mark.parametrize("head, task_type", [(VaswaniForCausalLM, "CAUSAL_LM"),
                                             (VaswaniForConditionalGeneration, "SEQ_2_SEQ_LM"),
                                             (VaswaniForSequenceClassification, "SEQ_CLS")])
def test_ia3_default_targets_scale_keys_values_and_the_feed_forward(head, task_type):
    base = head(tiny_config())
    keys_values, feed_forward = linears(base, {"k_proj", "v_proj"}), linears(base, {"fc2"})
    model = get_peft_model(base, IA3Config(task_type=task_type))
    vectors = {n: c for n, c in trainable(model).items() if ".ia3_l." in n}
    # IA3 scales the outputs of keys and values, and the input of the feed-forward's second projection.
    expected = sum(m.out_features for m in keys_values.values()) + sum(m.in_features for m in feed_forward.values())
    assert len(vectors) == len(keys_values) + len(feed_forward) and sum(vectors.values()) == expected


@pytest.mark.parametrize("method", ["LoHaConfig", "LoKrConfig", "AdaLoraConfig", "VeraConfig", "OFTConfig"])
def test_the_lora_like_tuners_find_the_same_defaults(method):
    import peft

    base = VaswaniForConditionalGeneration(tiny_config())
    expected = set(linears(base, {"q_proj", "v_proj"}))
    extra = {"AdaLoraConfig": {"total_step": 10}}.get(method, {})
    model = get_peft_model(base, getattr(peft, method)(task_type="SEQ_2_SEQ_LM", **extra))
    assert set(model.base_model.targeted_module_names) == expected and len(expected) == 12


# -- Training with Trainer ---------------------------------------------------------------------------------------------
class _Rows(torch.utils.data.Dataset):
    """A few fixed rows for a head: token ids with labels the head's loss takes."""

    def __init__(self, model, count=8, length=10):
        generator = torch.Generator().manual_seed(0)
        ids = random_ids(count, length, generator=generator)
        self.rows = []
        for row in ids:
            item = {"input_ids": row, "attention_mask": torch.ones_like(row)}
            if isinstance(model, VaswaniForSequenceClassification):
                item["labels"] = torch.tensor(int(row[0]) % 2)
            else:
                item["labels"] = row.clone()
            self.rows.append(item)

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]


def _loss(model, rows) -> float:
    batch = {k: torch.stack([row[k] for row in rows.rows]) for k in rows.rows[0]}
    model.eval()
    with torch.no_grad():
        return model(**batch).loss.item()


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt-tuning"])
def test_adapters_train_with_trainer_and_leave_the_base_unchanged(method, tmp_path):
    head, config = {
        "lora": (VaswaniForSequenceClassification, LoraConfig(task_type="SEQ_CLS")),
        "ia3": (VaswaniForConditionalGeneration, IA3Config(task_type="SEQ_2_SEQ_LM")),
        "prompt-tuning": (VaswaniForCausalLM, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)),
    }[method]
    base = head(tiny_config())
    weights = dict(base.named_parameters())  # the base's own tensors, which peft wraps but keeps
    before = {n: p.detach().clone() for n, p in weights.items()}
    model = get_peft_model(base, config)
    rows = _Rows(base)
    loss_before = _loss(model, rows)
    adapter = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    # IA3's few scales move a random model's near-uniform predictions slowly: a larger rate.
    arguments = TrainingArguments(output_dir=str(tmp_path), max_steps=12, per_device_train_batch_size=4,
                                  learning_rate=0.3 if method == "ia3" else 3e-2, report_to=[], use_cpu=True,
                                  save_strategy="no", logging_steps=100, disable_tqdm=True)
    Trainer(model=model, args=arguments, train_dataset=rows).train()
    assert _loss(model, rows) < loss_before - 1e-3
    trained = dict(model.named_parameters())
    assert adapter and all(not torch.equal(trained[n], value) for n, value in adapter.items())
    inside = {id(p) for p in model.parameters()}
    assert all(id(p) in inside for p in weights.values())
    # Every base weight is unchanged (modules_to_save train a copy: the original head stays as it was).
    changed = [n for n, p in weights.items() if not torch.equal(p, before[n])]
    assert changed == []


# -- Merging, saving, loading, generating ------------------------------------------------------------------------------
@pytest.mark.parametrize("head, task_type", [(VaswaniForCausalLM, "CAUSAL_LM"),
                                             (VaswaniForConditionalGeneration, "SEQ_2_SEQ_LM"),
                                             (VaswaniForSequenceClassification, "SEQ_CLS")])
def test_merged_logits_equal_the_peft_models_and_a_saved_adapter_reloads_exactly(head, task_type, tmp_path):
    base = head(tiny_config()).eval()
    base.save_pretrained(tmp_path / "base")
    inputs = inputs_for(base)
    with torch.no_grad():
        plain = main_output(base(**inputs)).clone()
        model = perturbed_lora(base, task_type=task_type).eval()
        if task_type == "SEQ_CLS":  # the head peft trains whole: make its copy differ from the original too
            model.base_model.model.classifier.modules_to_save["default"].weight.add_(0.5)
        adapted = main_output(model(**inputs))
        assert (adapted - plain).abs().max() > 1e-3  # the adapter changes the outputs: the checks below can fail
        model.save_pretrained(tmp_path / "adapter")
        reloaded = PeftModel.from_pretrained(head.from_pretrained(tmp_path / "base"), tmp_path / "adapter").eval()
        assert torch.equal(main_output(reloaded(**inputs)), adapted)
        merged = model.merge_and_unload()
        assert type(merged) is head and not any("lora" in n for n, _ in merged.named_parameters())
        torch.testing.assert_close(main_output(merged(**inputs)), adapted, rtol=0, atol=1e-5)


@pytest.mark.parametrize("head, task_type", [(VaswaniForCausalLM, "CAUSAL_LM"),
                                             (VaswaniForConditionalGeneration, "SEQ_2_SEQ_LM")])
def test_generate_through_the_peft_model_equals_the_merged_models(head, task_type):
    base = head(tiny_config()).eval()
    model = perturbed_lora(base, task_type=task_type, lora_alpha=256).eval()  # large enough to change greedy tokens
    ids = random_ids(2, 6)
    settings = dict(max_new_tokens=6, do_sample=False, min_new_tokens=6)
    through_peft = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **settings)
    unadapted = model.get_base_model()
    with model.disable_adapter():
        plain = unadapted.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **settings)
    merged = model.merge_and_unload()
    assert torch.equal(merged.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **settings), through_peft)
    assert not torch.equal(plain, through_peft)  # the adapter is what generated them


def test_prompt_tuning_generates_through_the_peft_model():
    base = VaswaniForCausalLM(tiny_config()).eval()
    model = get_peft_model(base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4)).eval()
    ids = random_ids(2, 6)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, min_new_tokens=5,
                         do_sample=False)
    assert out.shape == (2, 11) and torch.equal(out[:, :6], ids)


def test_an_adapter_loads_onto_a_remote_code_base_without_the_package(tmp_path):
    """A base folder saved with save_pretrained (self-contained remote code) and an adapter load, in a fresh process
    where `vaswani` cannot be imported, into the same logits; so does AutoPeftModel from the adapter folder alone."""
    cases = []
    for head, auto, task_type in ((VaswaniForCausalLM, "AutoModelForCausalLM", "CAUSAL_LM"),
                                  (VaswaniForSequenceClassification, "AutoModelForSequenceClassification", "SEQ_CLS")):
        base = head(tiny_config()).eval()
        folder = tmp_path / head.__name__
        base.save_pretrained(folder / "base")
        base.name_or_path = str(folder / "base")  # what the adapter records as its base
        model = perturbed_lora(base, task_type=task_type).eval()
        model.save_pretrained(folder / "adapter")
        inputs = inputs_for(base)
        with torch.no_grad():
            expected = model(**inputs).logits
        torch.save({"inputs": inputs, "expected": expected}, folder / "case.pt")
        cases.append((str(folder), auto, task_type))
    results = run_without_vaswani(
        f"""
        import peft
        out = {{}}
        for folder, auto_name, task_type in {cases!r}:
            base = getattr(transformers, auto_name).from_pretrained(folder + "/base", trust_remote_code=True)
            model = peft.PeftModel.from_pretrained(base, folder + "/adapter").eval()
            auto_peft = getattr(peft, auto_name.replace("AutoModel", "AutoPeftModel"))
            alone = auto_peft.from_pretrained(folder + "/adapter", trust_remote_code=True).eval()
            case = torch.load(folder + "/case.pt")
            with torch.no_grad():
                out[task_type] = {{
                    "module": type(base).__module__,
                    "difference": (model(**case["inputs"]).logits - case["expected"]).abs().max().item(),
                    "alone": (alone(**case["inputs"]).logits - case["expected"]).abs().max().item(),
                }}
        print(json.dumps(out))
        """,
        tmp_path,
    )
    for result in results.values():
        assert result["module"].startswith("transformers_modules."), "the base did not come from remote code"
        # The same weights loaded at another memory alignment may take another SIMD path: last bits, no more.
        assert result["difference"] <= 1e-6 and result["alone"] <= 1e-6


# -- The command line --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A tiny MLM pre-trained on reviews, fine-tuned for sentiment with --lora."""
    import pandas as pd

    work = tmp_path_factory.mktemp("lora")
    reviews = pd.read_csv(ROTTEN_TOMATOES, keep_default_na=False)
    reviews = pd.concat([reviews[reviews.split == "train"].head(160), reviews[reviews.split == "test"].head(40)])
    reviews.to_csv(work / "reviews.csv", index=False)
    data = ["--data", work / "reviews.csv", "--eval-split", "test", "--max-length", "48", "--quiet"]
    ok("train-tokenizer", "--kind", "wordpiece", "--data", work / "reviews.csv", "--columns", "text",
       "--vocab-size", "300", "--output", work / "tokenizer")
    ok("pretrain", "--objective", "mlm", "--tokenizer", work / "tokenizer", *data, "--steps", "4",
       "--d-model", "32", "--num-heads", "4", "--layers", "2", "--output", work / "mlm")
    run = ok("finetune", "--task", "sequence-classification", "--model", work / "mlm", *data, "--steps", "20",
             "--lr", "1e-2", "--lora", "--lora-rank", "4", "--output", work / "lora")
    return work, run


def test_finetune_lora_writes_an_adapter_folder_and_the_merged_model(lora_run):
    work, run = lora_run
    folder = work / "lora"
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str((work / "mlm").resolve())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 16 and set(adapter["target_modules"]) == {"q_proj", "v_proj"}
    assert {"adapter_model.safetensors", "tokenizer.json", "README.md"} <= {p.name for p in folder.iterdir()}
    assert not (folder / "config.json").exists()  # transformers would take the folder for a whole model
    weights = load_file(str(folder / "adapter_model.safetensors"))
    # The adapters, and the head the MLM lacked (pooler and classifier), which train whole; nothing else.
    assert {name.split(".")[2] for name in weights if ".lora_" not in name} == {"pooler", "classifier"}
    assert f"{sum(t.numel() for t in weights.values()):,} of " in run.out  # the trainable count it printed

    merged, base = load_file(str(folder / "merged" / "model.safetensors")), load_file(str(work / "mlm" / "model.safetensors"))
    frozen = [n for n in base if n in merged and "q_proj" not in n and "v_proj" not in n]
    assert len(frozen) > 10 and all(torch.equal(merged[n], base[n]) for n in frozen)
    assert all(not torch.equal(merged[n], base[n]) for n in base if n.endswith(("q_proj.weight", "v_proj.weight")))

    tokens = {"input_ids": random_ids(2, 9), "attention_mask": torch.ones(2, 9, dtype=torch.long)}
    with torch.no_grad():
        from_adapter = PeftModel.from_pretrained(
            AutoModelForSequenceClassification.from_pretrained(work / "mlm"), folder).eval()(**tokens).logits
        from_merged = AutoModelForSequenceClassification.from_pretrained(folder / "merged").eval()(**tokens).logits
        # The folder alone, through the base it records: peft's AutoPeftModel and transformers' own PEFT loading.
        alone = AutoPeftModelForSequenceClassification.from_pretrained(folder).eval()(**tokens).logits
        by_transformers = AutoModelForSequenceClassification.from_pretrained(folder).eval()(**tokens).logits
    torch.testing.assert_close(from_merged, from_adapter, rtol=0, atol=1e-5)
    assert torch.equal(alone, from_adapter) and torch.equal(by_transformers, from_adapter)


def test_a_lora_runs_checkpoints_count_as_complete(tmp_path):
    """Trainer's checkpoints of a PEFT model hold the adapter: --resume finds them."""
    for step, weights in ((2, "adapter_model.safetensors"), (4, "model.safetensors"), (6, None)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text("{}")
        if weights:
            (folder / weights).write_bytes(b"")
    assert complete_checkpoints(tmp_path) == [tmp_path / "checkpoint-2", tmp_path / "checkpoint-4"]


def test_evaluate_takes_the_lora_output_folder(lora_run):
    work, run = lora_run
    evaluated = ok("evaluate", "--model", work / "lora", "--task", "sequence-classification", "--data",
                   work / "reviews.csv", "--split", "test", "--max-length", "48")
    assert evaluated.metrics == {k: v for k, v in run.metrics.items() if k != "loss"}


@pytest.mark.parametrize("argv, said", [
    (["--lora-rank", "4"], "--lora-rank shapes LoRA adapters: add --lora"),
    (["--lora", "--tokenizer", "TOKENIZER"], "--lora adapts a saved model"),
    (["--lora", "--model", "MLM", "--save-steps", "2", "--average-last", "2"], "--average-last averages whole-model"),
    (["--lora", "--model", "MLM", "--fsdp"], "--fsdp shards whole models"),
    (["--lora", "--model", "MLM", "--lora-rank", "0"], "--lora-rank: must be a whole number, 1 or more"),
])
def test_finetune_lora_refuses_settings_that_do_not_fit(argv, said, lora_run, tmp_path):
    work, _ = lora_run
    argv = [str(work / "mlm") if a == "MLM" else str(work / "tokenizer") if a == "TOKENIZER" else a for a in argv]
    run = cli("finetune", "--task", "sequence-classification", "--data", work / "reviews.csv", *argv,
              "--output", tmp_path / "out")
    assert run.code == 2 and said in run.err, run.err
    assert not (tmp_path / "out").exists()


# -- Images: a ViT classifier and a captioner take adapters the same way --------------------------------------------------
def _image_config():
    return tiny_config(image_size=16, patch_size=4, num_labels=3)


def test_lora_on_an_image_classifier_trains_the_adapters_and_the_classifier_and_merges_exactly():
    from vaswani import VaswaniForImageClassification

    torch.manual_seed(0)
    base = VaswaniForImageClassification(_image_config()).eval()
    pixel_values = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        plain = base(pixel_values=pixel_values).logits.clone()
    # As transformers' ViT guide does: no peft task type, the new classifier trained whole.
    model = perturbed_lora(base, modules_to_save=["classifier"])
    assert {n.split(".lora_")[0].split(".")[-1] for n in trainable(model) if ".lora_" in n} == {"q_proj", "v_proj"}
    assert all(".lora_" in n or ".modules_to_save." in n for n in trainable(model))
    loss = model(pixel_values=pixel_values, labels=torch.tensor([0, 2])).loss
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    with torch.no_grad():
        adapted = model(pixel_values=pixel_values).logits
        assert (adapted - plain).abs().max() > 1e-3
        merged = model.merge_and_unload()
        assert type(merged) is VaswaniForImageClassification
        torch.testing.assert_close(merged(pixel_values=pixel_values).logits, adapted, rtol=0, atol=1e-5)


def test_lora_on_a_captioner_generates_as_its_merged_model():
    torch.manual_seed(0)
    base = VaswaniForConditionalGeneration(_image_config()).eval()
    model = perturbed_lora(base, task_type="SEQ_2_SEQ_LM", lora_alpha=256).eval()
    pixel_values = torch.randn(2, 3, 16, 16)
    settings = dict(max_new_tokens=6, do_sample=False, min_new_tokens=6)
    through_peft = model.generate(pixel_values=pixel_values, **settings)
    with model.disable_adapter():
        plain = model.get_base_model().generate(pixel_values=pixel_values, **settings)
    assert torch.equal(model.merge_and_unload().generate(pixel_values=pixel_values, **settings), through_peft)
    assert not torch.equal(plain, through_peft)  # the adapter is what generated them
