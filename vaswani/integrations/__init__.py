"""
The tools users reach for around a model, a module each; none is imported by `import vaswani`, so their packages
(peft, torchao, onnx, onnxruntime) load only when used:

    vaswani.integrations.quantization   int8 quantisation on a CPU: torch's dynamic quantisation and torchao
    vaswani.integrations.adapters       PEFT: default target modules for model_type "vaswani", LoRA, IA3, prompt tuning
    vaswani.integrations.export         torch.export and ONNX of every head, and of generation (prefill, cached step)
"""
