"""
PEFT for Vaswani models: peft's default target modules for `model_type="vaswani"`, so that
`get_peft_model(model, LoraConfig(task_type=...))` (and IA3, LoHa, LoKr, AdaLoRA, ...) needs no `target_modules` on
any of the three shapes, as for BERT, GPT-2 or BART.

peft finds a model family's defaults in its tables (`peft.utils.constants.TRANSFORMERS_MODELS_TO_*_MAPPING`, which
its tuners hold as `target_module_mapping`), looked up by `config.model_type`; `register_peft_defaults` adds the
family's entries to those very tables. `import peft` takes seconds, so `import vaswani` does not import it: it calls
`install()`, which registers at once when peft is already imported, and otherwise when peft's own import is done
(a one-shot finder on `sys.meta_path`; nothing happens when peft is not installed).

The defaults follow peft's for BART, Llama and BERT, whose projections have the same roles: LoRA adapts the query and
value projections (as the LoRA paper does) of every attention, self- and cross-; IA3 rescales keys, values and the
input of the feed-forward's second projection (the IA3 paper's l_k, l_v, l_ff).

`lora_model` and `save_merged` are what `vaswani finetune --lora` uses: LoRA on those defaults plus the head parts the
base lacked, and the merged model written beside the adapter.
"""

import sys

MODEL_TYPE = "vaswani"
LORA_TARGET_MODULES = ["q_proj", "v_proj"]
IA3_TARGET_MODULES = ["k_proj", "v_proj", "fc2"]
IA3_FEEDFORWARD_MODULES = ["fc2"]

# peft's tables and the family's entry in each; the LoRA-like tuners whose tables peft copies from LoRA's get LoRA's.
_LORA_LIKE = ("LORA", "ADALORA", "LOHA", "LOKR", "BOFT", "OFT", "HRA", "MISS", "RANDLORA", "ROAD", "VERA")
DEFAULTS = {
    **{f"TRANSFORMERS_MODELS_TO_{name}_TARGET_MODULES_MAPPING": LORA_TARGET_MODULES for name in _LORA_LIKE},
    "TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING": IA3_TARGET_MODULES,
    "TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING": IA3_FEEDFORWARD_MODULES,
}


def register_peft_defaults() -> None:
    """Add model_type "vaswani" to peft's default-target tables (imports peft; an entry already there is kept)."""
    from peft.utils import constants

    for table_name, modules in DEFAULTS.items():
        table = getattr(constants, table_name, None)  # a table another peft version lacks is skipped
        if table is not None:
            table.setdefault(MODEL_TYPE, list(modules))


class _AfterPeftImport:
    """
    A `sys.meta_path` finder that asks the finders after it for `peft` and has its import, once done, register the
    defaults. A search alone (`importlib.util.find_spec`, as transformers' `is_peft_available` does) imports nothing,
    so the finder stays until an import has run.
    """

    def find_spec(self, name, path=None, target=None):
        if name != "peft":
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else getattr(finder, "find_spec", lambda *_: None)(name, path, target)
            if spec is not None:
                break
        else:
            return None  # peft is not installed: the import fails as it would without this finder
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            register_peft_defaults()

        spec.loader.exec_module = exec_module  # this spec's own loader: no other module is touched
        return spec


# peft's task type for each head that has one (the others get a plain `PeftModel`).
TASK_TYPES = {
    "VaswaniForCausalLM": "CAUSAL_LM",
    "VaswaniForConditionalGeneration": "SEQ_2_SEQ_LM",
    "VaswaniForSequenceClassification": "SEQ_CLS",
    "VaswaniForTokenClassification": "TOKEN_CLS",
    "VaswaniForQuestionAnswering": "QUESTION_ANS",
    "VaswaniModel": "FEATURE_EXTRACTION",
}


def lora_model(model, rank: int = 8, alpha: float = 16.0, new_weights=()):
    """
    `model` with LoRA adapters of rank `rank` and scale `alpha / rank` on the default target modules, everything
    else frozen, except the modules that hold `new_weights` (the parameter names loading left newly initialised,
    e.g. a classifier and pooler on top of a masked LM), which train whole and are saved with the adapter.
    """
    from peft import LoraConfig, get_peft_model

    new_modules = sorted({name.split(".")[0] for name in new_weights})
    config = LoraConfig(task_type=TASK_TYPES.get(type(model).__name__), r=rank, lora_alpha=alpha,
                        modules_to_save=new_modules or None)
    return get_peft_model(model, config)


def save_merged(model, tokenizer, folder) -> None:
    """Write the model a PEFT model computes, with its adapters merged in (`merge_and_unload`, in place), to `folder`."""
    merged = model.merge_and_unload()
    merged.save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


def install() -> None:
    """Register now if peft is imported, else when it is (`import vaswani` calls this; calling it again is harmless)."""
    if sys.modules.get("peft") is not None:
        register_peft_defaults()
    elif not any(isinstance(finder, _AfterPeftImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterPeftImport())


__all__ = [
    "DEFAULTS",
    "IA3_FEEDFORWARD_MODULES",
    "IA3_TARGET_MODULES",
    "LORA_TARGET_MODULES",
    "MODEL_TYPE",
    "TASK_TYPES",
    "install",
    "lora_model",
    "register_peft_defaults",
    "save_merged",
]
