"""
The tools users reach for around a model, a module each; their packages (peft, torchao, onnx, onnxruntime) load
only when used. `import vaswani` imports `adapters` alone, which imports no peft: it has peft's defaults for the
family registered whenever peft is imported.

    vaswani.integrations.quantization   int8 quantisation on a CPU: torch's dynamic quantisation and torchao
    vaswani.integrations.adapters       PEFT: default target modules for model_type "vaswani", LoRA, IA3, prompt tuning
    vaswani.integrations.export         torch.export and ONNX of every head, and of generation (prefill, cached step)
"""
