"""
The tools users reach for around a model, a module each. They import their packages (peft, torchao, onnx,
onnxruntime) only when a function needs them; `import vaswani` imports `adapters` alone, which has peft's defaults
for the family registered whenever peft is imported (transformers itself imports torchao at start-up when it is
installed, and `Trainer` imports peft):

    vaswani.integrations.quantization   int8 quantisation on a CPU: torch's dynamic quantisation and torchao
    vaswani.integrations.adapters       PEFT: default target modules for model_type "vaswani", LoRA, IA3, prompt tuning
    vaswani.integrations.export         torch.export and ONNX of every head, and of generation (prefill, cached step)
"""
