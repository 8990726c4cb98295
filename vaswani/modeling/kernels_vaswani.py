"""
Speed, not the paper: how the family's projections multiply on CPUs where PyTorch's default kernel is the slower one.

    onednn_linear_applies   the rule: which products go through oneDNN instead of PyTorch's default BLAS (MKL)
    VaswaniLinear           nn.Linear whose inference products follow that rule

The model itself (`modeling_vaswani.py`) only names `VaswaniLinear` as its learned projection; everything about the
kernel lives here. This module imports only torch and transformers (it ships with the remote code).
"""

import platform

import torch
from torch import nn


def _onednn_outruns_mkl() -> bool:
    """
    Whether oneDNN's fp32 kernels beat PyTorch's default BLAS (MKL) here: on AMD x86 CPUs, where MKL runs AVX2 code
    and oneDNN the widest vector unit the CPU has (benchmarks/README.md, finding 10). Elsewhere it is not measured.
    """
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        return False
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            return any(line.startswith("vendor_id") and "AuthenticAMD" in line for line in cpuinfo)
    except OSError:
        return "AuthenticAMD" in platform.processor()


_ONEDNN_LINEAR = _onednn_outruns_mkl()
# oneDNN costs a fixed few microseconds a call more than MKL: it pays from a weight of 2^18 entries (MKL streams such a
# weight slowly through a product with a row or a few) or from 2^22 multiply-adds a call (benchmarks/README.md,
# finding 10, has the measured grid).
_ONEDNN_MIN_WEIGHT = 1 << 18
_ONEDNN_MIN_WORK = 1 << 22


def _is_compiling() -> bool:
    # Not transformers' `is_tracing` (which also asks about CUDA and XPU stream capture): this runs for every
    # projection, and the two questions that matter on a CPU are cheap.
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def _is_dispatch_mode() -> bool:
    return torch._C._len_torch_dispatch_stack() > 0


def onednn_linear_applies(input: torch.Tensor, weight: torch.Tensor) -> bool:
    """
    Whether `VaswaniLinear` sends `input @ weight.T` (weight [out, in]) through oneDNN: without gradients, in fp32 on
    a CPU where oneDNN outruns MKL, for a product that repays oneDNN's cost a call, with oneDNN switched on and no
    autocast, tracing or dispatch mode active.
    """
    return (
        _ONEDNN_LINEAR
        and not torch.is_grad_enabled()
        and (
            weight.numel() >= _ONEDNN_MIN_WEIGHT
            or input.numel() // weight.shape[1] * weight.numel() >= _ONEDNN_MIN_WORK
        )
        and input.device.type == "cpu"
        and input.dtype == weight.dtype == torch.float32
        and type(weight) in (torch.Tensor, nn.Parameter)  # plain tensors: not quantised or other tensor subclasses
        and torch.backends.mkldnn.enabled
        and not torch.is_autocast_enabled("cpu")
        # torch.compile's inductor lowers oneDNN's linear only on frozen weights: compiled code keeps nn.Linear's.
        and not _is_compiling()
        and not _is_dispatch_mode()  # FlopCounterMode and other modes see the plain product
    )


class VaswaniLinear(nn.Linear):
    """
    `nn.Linear`, y = xW^T + b: the paper's learned projections (W^Q, W^K, W^V, W^O, W_1, W_2, the pre-softmax linear
    transformation). Same parameters, same state dict. Without gradients (inference, `generate()`) in fp32 on a CPU
    where oneDNN outruns MKL, products big enough to repay oneDNN's cost a call go through oneDNN, on the weight as
    it is: the same product to float rounding (`onednn_linear_applies` has the rule).
    `torch.backends.mkldnn.flags(enabled=False)` switches it off.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if onednn_linear_applies(input, self.weight):
            return torch.ops.mkldnn._linear_pointwise(input, self.weight, self.bias, "none", [], "")
        return super().forward(input)


def onednn_linear_on_this_cpu() -> bool:
    """Whether inference products here can go through oneDNN (the CPU is one where it outruns MKL)."""
    return _ONEDNN_LINEAR


__all__ = ["VaswaniLinear", "onednn_linear_applies", "onednn_linear_on_this_cpu"]
