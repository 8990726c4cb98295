"""
Int8 quantisation of any Vaswani model for inference on a CPU, in place, with one call:

    from vaswani.integrations.quantization import quantize
    quantize(model, "dynamic-int8")          # or "int8-weight-only", "int8-dynamic"
    model.generate(...)                      # works as before; so do the pipelines and the heads' forward

Every learned projection (attention q/k/v/o, feed-forward fc1/fc2, the heads' lm_head, classifier, pooler, ...) is
an exact `torch.nn.Linear`, so each method below reaches all of them. Embeddings and LayerNorms stay float.

    dynamic-int8       torch's `quantize_dynamic`: each nn.Linear becomes a dynamically quantised int8 Linear (packed
                       int8 weights per tensor, activations quantised per call; fbgemm/oneDNN int8 kernels)
    int8-weight-only   torchao `Int8WeightOnlyConfig`: int8 weights per output channel, float activations
    int8-dynamic       torchao `Int8DynamicActivationInt8WeightConfig`: int8 weights per output channel, activations
                       quantised per token at run time, int8 x int8 products

Tied weights: a tied output projection (lm_head and the word embeddings) gets its own int8 copy; the embedding keeps
its float table (a lookup needs float rows), so the tie is broken on purpose and the input side is unchanged. A
quantised model is for inference in this process: keep (and save) the float model, and quantise after loading it;
`save_pretrained` and `tie_weights()` (which would re-tie the float table) do not apply to it.

This module imports torchao only inside `quantize` (transformers 5.24 itself imports torchao at start-up, through
`transformers.quantizers`, whenever it is installed).
"""

import warnings

import torch
from torch import nn


METHODS = {
    "dynamic-int8": "torch.ao.quantization.quantize_dynamic, int8 weights and per-call int8 activations",
    "int8-weight-only": "torchao Int8WeightOnlyConfig, int8 weights per output channel, float activations",
    "int8-dynamic": "torchao Int8DynamicActivationInt8WeightConfig, int8 weights per channel, int8 activations per token",
}


def float_projections(model: nn.Module) -> list[str]:
    """The names of the modules that are exactly `nn.Linear` with a plain floating-point weight: what `quantize` turns
    into int8 (a torchao-quantised Linear keeps its type, its weight is then a tensor subclass)."""
    return [
        name
        for name, module in model.named_modules()
        if type(module) is nn.Linear and type(module.weight.data) is torch.Tensor and module.weight.is_floating_point()
    ]


def quantize(model: nn.Module, method: str) -> nn.Module:
    """
    Quantise every projection of `model` to int8 with `method` (one of `METHODS`), in place, and put the model in
    eval mode; returns the model. Raises ValueError for an unknown method, or for a model without float projections
    (none, or already quantised).
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not a quantisation method: choose one of {', '.join(METHODS)}.")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    names = float_projections(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no float nn.Linear to quantise (already quantised?): pass the "
                         f"float model.")
    devices = {module.weight.device.type for name, module in model.named_modules() if name in names}
    if devices != {"cpu"}:
        raise ValueError(f"quantize() makes CPU int8 models, and the model's projections are on {sorted(devices)}: "
                         f"call model.cpu() first.")
    model.eval()
    if method == "dynamic-int8":
        with warnings.catch_warnings():
            # torch deprecates its quantised tensor types in favour of torchao; they are still what this method is.
            warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*deprecated", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated", category=DeprecationWarning)
            torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)
    else:
        quantize_, configs = _torchao()
        # set_inductor_config=False: the default rewrites torch._inductor's global settings, for torch.compile only.
        config = configs[method](set_inductor_config=False)
        quantize_(model, config, filter_fn=lambda module, name: name in names)
    return model


def _torchao():
    """torchao's `quantize_` and the configs of the torchao methods (its import-time noise on a CPU build is dropped by
    `import vaswani`, which runs before this module)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_

    return quantize_, {"int8-weight-only": Int8WeightOnlyConfig, "int8-dynamic": Int8DynamicActivationInt8WeightConfig}
