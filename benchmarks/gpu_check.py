"""
The GPU check (issue 21): one script that tells, on one accelerator in under 8 minutes, whether the models work
there and how fast they are against Hugging Face's own. Every check records passed, failed (with the error) or
skipped (with the reason), its figures and its seconds; the script exits 1 when a check that ran failed.

    precision            bf16 and fp16 forward and backward of every shape (the seven pairs of bench.py, Vaswani
                         side: encoder, decoder, encoder-decoder, rotary, ALiBi, relative, ViT), weights in the
                         dtype: finite loss and gradients, loss and gradients near fp32's
    attention            eager, sdpa, flex_attention and flash_attention_2 (where installed) in bf16 on padded
                         batches: each as close to fp32 eager as bf16 eager is (bf16's own rounding sets the bound)
    generation           greedy `generate()` on the device in fp32 (TF32 off) equal to the CPU's, token for token
    compiled_generation  `compile_generation()` (static cache; CUDA graphs on a GPU) gives the uncompiled tokens, and
                         its speed against uncompiled Vaswani and against GPT-2 / Marian
    trainer              a `VaswaniTrainer` step with `bf16=True` per stack layout: the loss falls finite, the fp32
                         master weights move
    fsdp                 one process: torch's `fully_shard` (a unit per layer) gives the unsharded gradients and
                         step; and the training code's own `--fsdp` arguments through Trainer (GPU only: run.py
                         refuses --fsdp without one)
    ratios               bench.py's ratios table (its pairs, models, inputs, alternation and figures), on the
                         device, bf16 autocast on a GPU

Without a GPU it runs the same code paths on the CPU (fp16 and bf16 where torch has CPU kernels, the CPU's gloo for
FSDP), skipping what needs CUDA with the reason. `--quick` (the test suite's) uses bench.py's toy shape and compiles
with torch.compile's eager back-end (inductor's C++ build takes minutes on small CPUs). The run keeps a running total
and skips the checks that would start past `--budget` seconds (390 by default: under 8 minutes with start-up and the
longest check), ratios last.

    python benchmarks/gpu_check.py                              # on a GPU: writes benchmarks/results/gpu_check.{json,md}
    python benchmarks/gpu_check.py --quick --out /tmp/gpu.json  # the CPU fallback, ~20 s (tests)
"""

import argparse
import copy
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import transformers


sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the harness: models, inputs, alternation, figures, the ratios table)


SECTIONS = ("precision", "attention", "generation", "compiled_generation", "trainer", "fsdp", "ratios")
BUDGET_S = 390.0  # the longest check (a compile) is about a minute: the run ends under 8 minutes
IMPLEMENTATIONS = ("eager", "sdpa", "flex_attention", "flash_attention_2")
# The pair whose Vaswani model stands for each stack layout where one model a layout is enough.
LAYOUTS = {"encoder": "encoder", "decoder": "decoder", "encoder-decoder": "encoder-decoder"}
# Quick mode: bench.py's toy shape and one repeat; a full run checks at the cpu shape and times both bench shapes.
CHECK_SHAPE = {"quick": "toy", "full": "cpu"}
RATIO_SHAPES = {"quick": ("toy",), "full": ("base", "cpu")}  # the paper's base first: the budget cuts the cpu shape
RATIO_SETTINGS = {
    "quick": bench.QUICK["toy"],
    # On a GPU a forward takes milliseconds: more calls a repeat; scaling from 16 to 256 new tokens keeps decoding
    # (milliseconds a token at any size: Python and launches) within the budget.
    "full": dict(
        warmup=2, inf_repeats=5, inf_iters=5, train_warmup=3, train_repeats=5, train_iters=3,
        gen_batches=(1, 8), gen_prompt=16, gen_new=128, gen_repeats=3,
        scan_lengths=(16, 64, 256), scan_batches=(1, 8), scan_repeats=2, mem_repeats=1,
    ),
}
# Tolerances against fp32 (the models' values are of order 1): a relative loss difference, and the cosine between
# the flattened gradients.
LOSS_RTOL = {torch.bfloat16: 0.03, torch.float16: 0.01}
GRAD_COSINE = {torch.bfloat16: 0.98, torch.float16: 0.995}
BIAS_REFUSAL = "attention back-end cannot take"  # the models' own refusal of a bias for flash (positions_vaswani)


class Skip(Exception):
    """A check that cannot run here; the message is the reason the JSON records."""


def log(message: str):
    print(message, flush=True)


# -- The record ---------------------------------------------------------------------------------------------------------
class Checks:
    """Every check's status, reason, figures and seconds, by section; the running total against the budget."""

    def __init__(self, budget: float, sections=SECTIONS):
        self.started, self.budget = time.perf_counter(), budget
        self.sections = {name: {"checks": {}, "seconds": 0.0} for name in sections}

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def run(self, section: str, name: str, function, *args, **kwargs) -> dict:
        """Run one check: its figures when it passes, its error when it fails, the reason when it is skipped."""
        record = {"status": "skipped", "reason": None, "figures": {}, "seconds": 0.0}
        if self.elapsed() > self.budget:
            record["reason"] = f"time budget: {self.elapsed():.0f} s of --budget {self.budget:.0f} s spent"
        else:
            start = time.perf_counter()
            try:
                record["figures"] = function(*args, **kwargs) or {}
                record["status"] = "passed"
            except Skip as skip:
                record["reason"] = str(skip)
            except Exception as error:  # noqa: BLE001  (every failure is recorded, and fails the run)
                record["status"] = "failed"
                record["reason"] = f"{type(error).__name__}: {error}"
                record["traceback"] = traceback.format_exc(limit=-6)
            record["seconds"] = time.perf_counter() - start
            self.sections[section]["seconds"] += record["seconds"]
        self.sections[section]["checks"][name] = record
        note = f" ({record['reason']})" if record["reason"] else ""
        log(f"  {section}/{name}: {record['status']}{note} [{record['seconds']:.1f} s, {self.elapsed():.0f} s in all]")
        settle()
        return record

    def failed(self) -> list[str]:
        return [f"{s}/{n}" for s, sec in self.sections.items() for n, c in sec["checks"].items() if c["status"] == "failed"]


# -- Helpers ------------------------------------------------------------------------------------------------------------
def settle():
    """
    Free what the last check left, then freeze the survivors out of the collector's view: with torch, dynamo and
    transformers loaded one `gc.collect()` takes 0.4 s, and bench.alternate collects before every timed call.
    """
    gc.collect()
    gc.freeze()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def to(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def padded_inputs(pair: str, shape: dict) -> tuple[dict, torch.Tensor | None]:
    """bench.py's inputs with the last sequence's final quarter padded (masks in play); and the positions to compare."""
    inputs = bench.forward_inputs(pair, shape, labels=True)
    if "attention_mask" not in inputs:
        return inputs, None  # images: no padding
    mask = inputs["attention_mask"]
    mask[-1, -max(1, shape["seq"] // 4):] = 0
    if "labels" in inputs and bench.KIND[pair] != "encoder-decoder":
        inputs["labels"] = inputs["labels"].masked_fill(mask == 0, -100)
    # The decoder's positions of an encoder-decoder are all real (the source is what is padded).
    return inputs, (mask.bool() if bench.KIND[pair] != "encoder-decoder" else None)


def dtype_works(dtype: torch.dtype, device: torch.device) -> str | None:
    """Why `dtype` cannot run the models' operations on `device` (None when it can)."""
    try:
        x = torch.randn(4, 8, device=device, dtype=dtype, requires_grad=True)
        y = torch.nn.functional.layer_norm(x @ x.T, (4,)).softmax(-1)
        torch.nn.functional.scaled_dot_product_attention(y[None, None], y[None, None], y[None, None]).sum().backward()
    except (RuntimeError, NotImplementedError) as error:
        return f"{dtype} on {device.type}: {error}"
    return None


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0).item()


def gradients(model) -> torch.Tensor:
    return torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])


def max_difference(a: torch.Tensor, b: torch.Tensor, where: torch.Tensor | None = None) -> float:
    """The largest |a - b| (fp32), over the positions `where` marks when given."""
    difference = (a.float() - b.float()).abs()
    if where is not None:
        difference = difference[where.to(difference.device)]
    return difference.max().item()


def positions_for(shape: dict, new_tokens: int) -> int:
    return max(512, 1 << (max(shape["seq"], 16 + new_tokens) - 1).bit_length())


# -- precision -----------------------------------------------------------------------------------------------------------
def check_precision(pair: str, dtype: torch.dtype, device: torch.device, shape: dict) -> dict:
    reason = dtype_works(dtype, device)
    if reason:
        raise Skip(reason)
    model = bench.build(pair, "vaswani", shape, positions_for(shape, 0)).to(device).eval()  # eval: no dropout
    inputs, _ = padded_inputs(pair, shape)
    inputs = to(inputs, device)
    full = model(**inputs)
    full.loss.backward()
    full_grads = gradients(model)
    low_model = copy.deepcopy(model).to(dtype)
    low_model.zero_grad(set_to_none=True)
    low = low_model(**inputs)
    low.loss.backward()
    low_grads = gradients(low_model)
    if low.logits.dtype != dtype:
        raise AssertionError(f"{dtype} model gave {low.logits.dtype} logits")
    if not torch.isfinite(low.loss) or not torch.isfinite(low_grads).all():
        finite = torch.isfinite(low_grads).float().mean().item()
        raise AssertionError(f"{dtype}: loss {low.loss.item()}, a fraction {finite:.3f} of the gradients finite")
    if low_grads.numel() != full_grads.numel():
        raise AssertionError(f"{dtype}: {low_grads.numel()} gradient entries, fp32 {full_grads.numel()}")
    loss_rel = abs(low.loss.item() - full.loss.item()) / abs(full.loss.item())
    grad_cos = cosine(low_grads, full_grads)
    figures = {"loss_fp32": full.loss.item(), "loss": low.loss.item(), "loss_relative_difference": loss_rel,
               "gradient_cosine": grad_cos, "logits_max_abs_difference": max_difference(low.logits, full.logits),
               "loss_rtol": LOSS_RTOL[dtype], "gradient_cosine_min": GRAD_COSINE[dtype]}
    if loss_rel > LOSS_RTOL[dtype] or grad_cos < GRAD_COSINE[dtype]:
        raise AssertionError(f"{dtype} far from fp32: {figures}")
    return figures


# -- attention -----------------------------------------------------------------------------------------------------------
def implementation_unavailable(implementation: str, device: torch.device) -> str | None:
    if implementation == "flash_attention_2":
        if device.type != "cuda":
            return "flash-attention runs on CUDA only"
        if not transformers.utils.is_flash_attn_2_available():
            return "the flash_attn package is not installed (pip install flash-attn)"
    return None


def check_attention(pair: str, device: torch.device, shape: dict, low: torch.dtype, flex: bool = True) -> dict:
    """Each implementation in `low` precision against fp32 eager, bounded by what `low` eager itself is off by."""
    model = bench.build(pair, "vaswani", shape, positions_for(shape, 0)).to(device).eval()
    inputs, where = padded_inputs(pair, shape)
    inputs = to({k: v for k, v in inputs.items() if k != "labels"}, device)
    if bench.KIND[pair] == "encoder-decoder":
        target = bench.forward_inputs(pair, shape, labels=False)["decoder_input_ids"]
        inputs["decoder_input_ids"] = target.to(device)
    with torch.no_grad():
        model.set_attn_implementation("eager")
        exact = model(**inputs).logits
        low_model = copy.deepcopy(model).to(low)
        results, skipped = {}, {}
        for implementation in IMPLEMENTATIONS:
            reason = implementation_unavailable(implementation, device)
            if implementation == "flex_attention" and not flex:
                reason = ("the quick CPU run checks flex_attention on one pair: transformers compiles its kernel with "
                          "inductor, about 10 s a shape on a small CPU")
            if reason:
                skipped[implementation] = reason
                continue
            low_model.set_attn_implementation(implementation)
            try:
                logits = low_model(**inputs).logits
            except ValueError as error:
                if BIAS_REFUSAL not in str(error):
                    raise
                skipped[implementation] = f"refused by the model: {error}"
                continue
            results[implementation] = max_difference(logits, exact, where)
    floor = results["eager"]
    scale = exact.abs().max().item()
    bound = 2 * floor + 1e-3 * scale
    figures = {"dtype": str(low).removeprefix("torch."), "max_abs_difference_to_fp32_eager": results,
               "bound": bound, "logits_scale": scale, "skipped": skipped}
    far = {name: d for name, d in results.items() if d > bound}
    if far:
        raise AssertionError(f"{far} beyond {bound:.3g} (2 x {str(low)} eager's {floor:.3g} + 1e-3 x {scale:.3g})")
    return figures


# -- generation ----------------------------------------------------------------------------------------------------------
def check_generation(pair: str, device: torch.device, shape: dict, new_tokens: int, batch: int) -> dict:
    positions = positions_for(shape, new_tokens)
    cpu_model = bench.build(pair, "vaswani", shape, positions).eval()
    model = copy.deepcopy(cpu_model).to(device)
    inputs = bench.generation_inputs(pair, batch, 16, shape["vocab_size"])
    config = bench.generation_config(pair, new_tokens)
    config.output_scores, config.return_dict_in_generate = True, True
    with torch.no_grad():
        expected = cpu_model.generate(**inputs, generation_config=config)
        got = model.generate(**to(inputs, device), generation_config=config)
    cpu_tokens, tokens = expected.sequences, got.sequences.cpu()
    scores = torch.stack(expected.scores, 1)  # (batch, new, vocab) on the CPU
    top2 = scores.topk(2, dim=-1).values
    margins = top2[..., 0] - top2[..., 1]
    figures = {"new_tokens": new_tokens, "batch": batch, "device": device.type,
               "smallest_top2_margin_cpu": margins.min().item(),
               "scores_max_abs_difference": max_difference(torch.stack(got.scores, 1).cpu(), scores, scores.isfinite())}
    if device.type == "cpu":
        figures["note"] = "no accelerator: the CPU against itself (the same code path)"
    if cpu_tokens.shape != tokens.shape or not torch.equal(cpu_tokens, tokens):
        same = (cpu_tokens == tokens).all(0) if cpu_tokens.shape == tokens.shape else torch.zeros(1, dtype=torch.bool)
        first = int((~same).nonzero()[0]) if (~same).any() else -1
        step = first - (cpu_tokens.shape[1] - new_tokens)
        margin = margins[:, step].min().item() if 0 <= step < margins.shape[1] else float("nan")
        raise AssertionError(f"{device.type} tokens differ from the CPU's from position {first} (CPU top-2 margin there "
                             f"{margin:.3g}): {tokens.tolist()} vs {cpu_tokens.tolist()}")
    return figures


def fp32_exact():
    """
    fp32 as fp32 on a GPU: no TF32 in matrix products or convolutions (what the token-for-token check needs); left
    so for the rest of the run (the ratios run under bf16 autocast).
    """
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


# -- compiled generation -------------------------------------------------------------------------------------------------
def timed(function, device):
    def call():
        function()
        sync(device)
    return call


def check_compiled(pair: str, batch: int, device: torch.device, shape: dict, new_tokens: int, repeats: int,
                   backend: str | None) -> dict:
    positions = positions_for(shape, new_tokens)
    plain = bench.build(pair, "vaswani", shape, positions).to(device).eval()
    compiled = bench.build(pair, "vaswani", shape, positions).to(device).eval().compile_generation()
    if backend:
        compiled.generation_config.compile_config.backend = backend
    reference = bench.build(pair, "reference", shape, positions).to(device).eval()
    inputs = to(bench.generation_inputs(pair, batch, 16, shape["vocab_size"]), device)
    config = bench.generation_config(pair, new_tokens)

    def runner(model):
        def call():
            with torch.no_grad():
                return model.generate(**inputs, generation_config=config)
        return call

    expected = runner(plain)()
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    start = time.perf_counter()
    first = runner(compiled)()
    sync(device)
    compile_s = time.perf_counter() - start
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    if graphs < 1:
        raise AssertionError("generate() ran no compiled graph")
    if not torch.equal(first, expected) or not torch.equal(runner(compiled)(), expected):
        raise AssertionError(f"compiled generation gave other tokens than uncompiled: {first.tolist()} vs "
                             f"{expected.tolist()}")
    rate = lambda seconds: [batch * new_tokens / s for s in seconds]  # noqa: E731
    c, r, load = bench.alternate(timed(runner(compiled), device), timed(runner(reference), device), repeats, warmup=1)
    c2, p, load2 = bench.alternate(timed(runner(compiled), device), timed(runner(plain), device), repeats, warmup=1)
    compile_config = compiled.generation_config.compile_config
    return {
        "batch": batch, "new_tokens": new_tokens, "compile_and_first_call_s": compile_s, "unique_graphs": graphs,
        "backend": compile_config.backend, "mode": compile_config.mode,
        "cudagraph_skips": dict(torch._dynamo.utils.counters["inductor"]).get("cudagraph_skips", 0),
        "vs_reference": bench.figure("new tokens/s", True, rate(c), rate(r), reference_model=bench.PAIRS[pair][1],
                                     contention=load),
        "vs_uncompiled_vaswani": bench.figure("new tokens/s", True, rate(c2), rate(p), contention=load2),
    }


def check_cuda_graphs(results: list[dict], device: torch.device) -> dict:
    """compile_generation() on a GPU compiles with mode "reduce-overhead": CUDA graphs, none skipped."""
    if device.type != "cuda":
        raise Skip("CUDA graphs need a CUDA device; off GPUs compile_generation() compiles with mode 'default'")
    ran = [r["figures"] for r in results if r["status"] == "passed"]
    if not ran:
        raise Skip("no compiled generation passed to look at")
    for figures in ran:
        if figures["mode"] != "reduce-overhead" or figures["cudagraph_skips"]:
            raise AssertionError(f"CUDA graphs not used: mode {figures['mode']}, skips {figures['cudagraph_skips']}")
    return {"checked": len(ran), "mode": "reduce-overhead", "cudagraph_skips": 0}


# -- trainer -------------------------------------------------------------------------------------------------------------
def layout_dataset(pair: str, shape: dict, copies: int = 2):
    from datasets import Dataset

    inputs = bench.forward_inputs(pair, shape, labels=True)
    return Dataset.from_dict({k: v.repeat(copies, *([1] * (v.dim() - 1))).tolist() for k, v in inputs.items()})


def check_trainer(pair: str, device: torch.device, shape: dict, steps: int) -> dict:
    from transformers import TrainingArguments

    from vaswani.training.run import VaswaniTrainer

    reason = dtype_works(torch.bfloat16, device)
    if reason:
        raise Skip(reason)
    model = bench.build(pair, "vaswani", shape, positions_for(shape, 0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with tempfile.TemporaryDirectory() as folder:
        arguments = TrainingArguments(
            output_dir=folder, max_steps=steps, per_device_train_batch_size=shape["batch"], learning_rate=1e-3,
            bf16=True, use_cpu=device.type == "cpu", report_to=[], save_strategy="no", logging_steps=1,
            disable_tqdm=True, dataloader_num_workers=0, seed=bench.SEED,
            optim="adamw_torch_fused" if device.type == "cuda" else "adamw_torch",
        )
        trainer = VaswaniTrainer(model=model, args=arguments, train_dataset=layout_dataset(pair, shape))
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    moved = sum(not torch.equal(before[n], p.detach().cpu()) for n, p in model.named_parameters())
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    figures = {"mixed_precision": str(trainer.accelerator.mixed_precision), "steps": trainer.state.global_step,
               "losses": losses, "train_loss": result.training_loss,
               "parameters_moved": moved, "parameters": len(before), "parameter_dtypes": dtypes,
               "device": str(next(model.parameters()).device), "seconds": seconds,
               "tokens_per_s": steps * shape["batch"] * bench.sequence_length(pair, shape) / seconds}
    finite = bool(losses) and bool(torch.isfinite(torch.tensor(losses)).all())
    if figures["mixed_precision"] != "bf16" or trainer.state.global_step != steps or not finite:
        raise AssertionError(f"bf16 Trainer: {figures}")
    if moved < len(before) // 2 or dtypes != ["torch.float32"]:
        raise AssertionError(f"bf16 Trainer did not update its fp32 master weights: {figures}")
    return figures


# -- fsdp ----------------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def layers_of(model) -> list:
    """The encoder and decoder layers: FSDP's units, as the training code wraps them (run.py's layer classes)."""
    return [m for m in model.modules() if type(m).__name__.startswith("Vaswani") and type(m).__name__.endswith("Layer")]


def check_fully_shard(pair: str, device: torch.device, shape: dict) -> dict:
    """One process, a unit per layer: the sharded model's loss, gradients and AdamW step are the unsharded one's."""
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_available() or not dist.is_backend_available(backend):
        raise Skip(f"torch.distributed's {backend} back-end is not available in this build")
    if dist.is_initialized():
        raise Skip("a process group is already initialised in this process")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    dist.init_process_group(backend, rank=0, world_size=1)
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        plain = bench.build(pair, "vaswani", shape, positions_for(shape, 0)).to(device).eval()
        sharded = copy.deepcopy(plain)
        units = layers_of(sharded)
        for layer in units:
            fully_shard(layer)
        fully_shard(sharded)
        inputs = to(bench.forward_inputs(pair, shape, labels=True), device)
        optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (plain, sharded)]
        losses = []
        for model, optimizer in zip((plain, sharded), optimizers):
            loss = model(**inputs).loss
            loss.backward()
            losses.append(loss.item())
        grads = dict((n, p.grad) for n, p in plain.named_parameters() if p.grad is not None)
        grad_diff = max(max_difference(p.grad.full_tensor(), grads[n]) for n, p in sharded.named_parameters()
                        if p.grad is not None)
        for optimizer in optimizers:
            optimizer.step()
        plain_weights = dict(plain.named_parameters())
        weight_diff = max(max_difference(p.detach().full_tensor(), plain_weights[n].detach())
                          for n, p in sharded.named_parameters())
        kinds = {type(p).__name__ for p in sharded.parameters()}
    finally:
        dist.destroy_process_group()
    figures = {"backend": backend, "units": len(units), "loss": losses[0], "loss_sharded": losses[1],
               "gradient_max_abs_difference": grad_diff, "weights_after_step_max_abs_difference": weight_diff,
               "parameter_types": sorted(kinds)}
    if kinds != {"DTensor"} or not units:
        raise AssertionError(f"the model was not sharded: {figures}")
    if abs(losses[0] - losses[1]) > 1e-5 * abs(losses[0]) or grad_diff > 1e-5 or weight_diff > 1e-5:
        raise AssertionError(f"sharded and unsharded steps differ: {figures}")
    return figures


def trainer_fsdp_arguments(output: Path, batch: int, steps: int, layer_classes: list[str]):
    """The training code's own TrainingArguments for `--fsdp` (vaswani/training/run.py), bf16."""
    from vaswani.training.run import RunSettings, VaswaniTrainer, _arguments

    settings = RunSettings(output=output, steps=steps, batch_size=batch, logging_steps=1, quiet=True, fsdp=True,
                           warmup_ratio=0.0, extra={"bf16": True})
    return _arguments(settings, False, VaswaniTrainer, layer_classes)


def check_trainer_fsdp(pair: str, device: torch.device, shape: dict, steps: int, quick: bool) -> dict:
    """`--fsdp`'s arguments through Trainer in a child process launched as torchrun would (rank 0 of 1)."""
    from vaswani.training.data import UsageError

    if device.type != "cuda":
        try:
            trainer_fsdp_arguments(Path(tempfile.gettempdir()) / "gpu_check_fsdp", shape["batch"], steps, [])
        except UsageError as refusal:
            raise Skip(f"the training code refuses --fsdp here: {refusal}") from None
        raise AssertionError("run.py accepted --fsdp without a GPU, where accelerate silently runs plain DDP")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "child.json"
        env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "RANK": "0",
               "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1"}
        command = [sys.executable, __file__, "--fsdp-child", str(out), "--pairs", pair] + (["--quick"] if quick else [])
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not out.exists():
            raise AssertionError(f"the FSDP child exited {done.returncode}: {(done.stdout + done.stderr)[-2000:]}")
        figures = json.loads(out.read_text())
    if not figures["fsdp_enabled"] or figures["steps"] != steps or not figures["losses_finite"]:
        raise AssertionError(f"Trainer with --fsdp: {figures}")
    return figures


def fsdp_child(out: Path, pair: str, quick: bool):
    """The child of `check_trainer_fsdp`: a `--fsdp` Trainer run of a few steps; writes what it saw to `out`."""
    from vaswani.training.run import VaswaniTrainer

    shape, steps = bench.SHAPES[CHECK_SHAPE["quick" if quick else "full"]], 2
    model = bench.build(pair, "vaswani", shape, positions_for(shape, 0))
    classes = sorted({type(m).__name__ for m in layers_of(model)})
    with tempfile.TemporaryDirectory() as folder:
        arguments = trainer_fsdp_arguments(Path(folder) / "model", shape["batch"], steps, classes)
        trainer = VaswaniTrainer(model=model, args=arguments, train_dataset=layout_dataset(pair, shape))
        trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    report = {"fsdp_enabled": bool(trainer.is_fsdp_enabled), "wrapped": type(trainer.model_wrapped).__name__,
              "layer_classes": classes, "steps": trainer.state.global_step, "losses": losses,
              "losses_finite": bool(losses) and bool(torch.isfinite(torch.tensor(losses)).all()),
              "distributed_type": str(trainer.accelerator.distributed_type)}
    bench.write_whole(out, json.dumps(report) + "\n")


# -- ratios --------------------------------------------------------------------------------------------------------------
def ratio_pair(pair: str, shape: dict, settings: dict, device: torch.device, autocast: torch.dtype | None) -> dict:
    """bench.py's figures of one pair on `device` (inference both ways, training, generation, scaling, memory)."""
    positions = bench.max_positions(settings, shape)
    models = {side: bench.build(pair, side, shape, positions).to(device) for side in ("vaswani", "reference")}
    parameters = {side: bench.count_parameters(m) for side, m in models.items()}
    if len(set(parameters.values())) != 1:
        raise AssertionError(f"{pair}: the two models differ in size: {parameters}")
    b, t = shape["batch"], bench.sequence_length(pair, shape)
    def cast():  # bf16 autocast on a GPU, nothing on the CPU (bench.py's fp32)
        return torch.autocast(device.type, dtype=autocast) if autocast else torch.autocast(device.type, enabled=False)

    figures = {}

    def timed_pair(make, repeats, warmup):
        return bench.alternate(timed(make(models["vaswani"]), device), timed(make(models["reference"]), device),
                               repeats, warmup)

    inputs = to(bench.forward_inputs(pair, shape, labels=False), device)
    for implementation in ("sdpa", "eager"):
        backends = {side: bench.set_attention(m.eval(), implementation) for side, m in models.items()}

        def forward(model):
            def run():
                with torch.no_grad(), cast():
                    for _ in range(settings["inf_iters"]):
                        model(**inputs)
            return run

        tv, tr, load = timed_pair(forward, settings["inf_repeats"], settings["warmup"])
        work = b * t * settings["inf_iters"]
        figures[f"inference_{implementation}"] = bench.figure(
            "tokens/s", True, [work / x for x in tv], [work / x for x in tr], attn_implementation=implementation,
            backends=backends, contention=load)
    backends = {side: bench.set_attention(m, "sdpa") for side, m in models.items()}

    train_inputs = to(bench.forward_inputs(pair, shape, labels=True), device)
    optimizers = {id(m): torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True) for m in models.values()}

    def step(model):
        optimizer = optimizers[id(model)]
        model.train()

        def run():
            for _ in range(settings["train_iters"]):
                with cast():
                    loss = model(**train_inputs).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        return run

    tv, tr, load = timed_pair(step, settings["train_repeats"], settings["train_warmup"])
    work = b * t * settings["train_iters"]
    figures["training"] = bench.figure("tokens/s", True, [work / x for x in tv], [work / x for x in tr],
                                       attn_implementation="sdpa", backends=backends, contention=load)
    optimizers.clear()
    for m in models.values():
        m.eval()

    if pair in bench.GENERATIVE:
        prompt = settings["gen_prompt"]

        def generator(batch, new_tokens):
            gen_inputs = to(bench.generation_inputs(pair, batch, prompt, shape["vocab_size"]), device)
            config = bench.generation_config(pair, new_tokens)
            expected = (prompt if bench.KIND[pair] == "decoder" else 1) + new_tokens

            def make(model):
                def run():
                    with torch.no_grad(), cast():
                        out = model.generate(**gen_inputs, generation_config=config)
                    if out.shape != (batch, expected):
                        raise AssertionError(f"{type(model).__name__} generated {tuple(out.shape)}, expected "
                                             f"{(batch, expected)}")
                return run
            return make

        new = settings["gen_new"]
        for batch in settings["gen_batches"]:
            tv, tr, load = timed_pair(generator(batch, new), settings["gen_repeats"], settings["warmup"])
            figures[f"generation_b{batch}"] = bench.figure(
                "new tokens/s", True, [batch * new / x for x in tv], [batch * new / x for x in tr], batch=batch,
                prompt_tokens=prompt, new_tokens=new, attn_implementation="sdpa", backends=backends, contention=load)
        for batch in settings["scan_batches"]:
            per_token = {}
            for label, length in zip(bench.SCALING_NAMES, settings["scan_lengths"]):
                tv, tr, load = timed_pair(generator(batch, length), settings["scan_repeats"],
                                          settings["warmup"] if label == "short" else 0)
                per_token[label] = ([1000 * x / length for x in tv], [1000 * x / length for x in tr])
                figures[f"gen_scaling_b{batch}_{label}"] = bench.figure(
                    "ms per new token", False, *per_token[label], batch=batch, new_tokens=length, contention=load)
            (vs, rs), (vl, rl) = per_token["short"], per_token["long"]
            figures[f"gen_scaling_b{batch}_growth"] = bench.figure(
                "x (ms/token long / short)", False, [lo / s for lo, s in zip(vl, vs)], [lo / s for lo, s in zip(rl, rs)],
                batch=batch, new_tokens=[settings["scan_lengths"][0], settings["scan_lengths"][-1]])
    models.clear()
    gc.collect()
    if device.type == "cuda":
        # Memory: the peak of a training step over what was allocated before the model was built (one model a
        # time, the other freed); the CPU table's memory is bench.py's (fresh child processes).
        peaks = {}
        for side in ("vaswani", "reference"):
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated(device)
            model = bench.build(pair, side, shape, positions).to(device).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
            for i in range(2):  # the second step, with the optimizer's state
                if i == 1:
                    torch.cuda.reset_peak_memory_stats(device)
                with cast():
                    loss = model(**train_inputs).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            peaks[side] = [(torch.cuda.max_memory_allocated(device) - base) / 2**20]
            del model, optimizer, loss
            gc.collect()
        figures["memory"] = bench.figure("MiB", False, peaks["vaswani"], peaks["reference"],
                                         method="torch.cuda.max_memory_allocated over the allocation before the model")
    return {"vaswani": bench.PAIRS[pair][0], "reference": bench.PAIRS[pair][1], "parameters": parameters,
            "max_position_embeddings": positions, "figures": figures}


# -- The run -------------------------------------------------------------------------------------------------------------
def machine(device: torch.device, autocast) -> dict:
    info = bench.machine()
    info.update(device=device.type, ratios_dtype=str(autocast or torch.float32).removeprefix("torch."),
                flash_attn=_version("flash_attn"), accelerate=_version("accelerate"))
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gib=properties.total_memory / 2**30,
                    capability=f"{properties.major}.{properties.minor}", cuda=torch.version.cuda,
                    gpu_count=torch.cuda.device_count())
    return info


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def markdown(report: dict) -> str:
    m = report["machine"]
    where = f"{m['gpu']} ({m['gpu_memory_gib']:.0f} GiB, CUDA {m['cuda']})" if m["device"] == "cuda" else \
        f"CPU only ({m['cpu']}, {m['threads']} threads): the fallback, no GPU figures"
    lines = [f"GPU check: {where}; torch {m['torch']}, transformers {m['transformers']}, flash_attn "
             f"{m['flash_attn'] or 'not installed'}; {report['mode']} run, {report['wall_seconds']:.0f} s, {m['date']}, "
             f"commit {report['code']['commit'][:7]}; {report['summary']}.", "",
             "| section | check | status | seconds | reason |", "| --- | --- | --- | --- | --- |"]
    for section, content in report["sections"].items():
        for name, check in content["checks"].items():
            reason = (check["reason"] or "").replace("|", "/").replace("\n", " ")[:200]
            lines.append(f"| {section} | {name} | {check['status']} | {check['seconds']:.1f} | {reason} |")
    if report["ratios"]["shapes"]:
        lines += ["", f"bench.py's pairs on the {m['device']}, {m['ratios_dtype']}:", "",
                  *bench.ratio_table(report["ratios"]["shapes"])]
    return "\n".join(lines) + "\n"


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda when there is one, else cpu")
    parser.add_argument("--quick", action="store_true", help="bench.py's toy shape, one repeat (the tests' CPU run)")
    parser.add_argument("--out", "--output", type=Path, help="JSON path (default benchmarks/results/gpu_check.json, "
                        "for a full run on a GPU only; the Markdown goes beside it with the suffix .md)")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help=f"seconds of checks (default {BUDGET_S:.0f}); "
                        "checks past it are skipped, recorded so")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS))
    parser.add_argument("--pairs", default=",".join(bench.PAIRS), help="comma-separated: " + ", ".join(bench.PAIRS))
    parser.add_argument("--threads", type=int, help="torch threads on the CPU (default: torch's)")
    parser.add_argument("--fsdp-child", type=Path, help=argparse.SUPPRESS)  # check_trainer_fsdp's child process
    args = parser.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False)")
    args.sections = [s for s in args.sections.split(",") if s]
    args.pairs = [p for p in args.pairs.split(",") if p]
    for name in args.sections:
        if name not in SECTIONS:
            parser.error(f"--sections: unknown section {name!r}; choose from {', '.join(SECTIONS)}")
    for name in args.pairs:
        if name not in bench.PAIRS:
            parser.error(f"--pairs: unknown pair {name!r}; choose from {', '.join(bench.PAIRS)}")
    if args.budget <= 0:
        parser.error(f"--budget must be positive seconds, got {args.budget}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.out is None and args.fsdp_child is None:
        if args.quick or args.device != "cuda":
            parser.error("a --quick or CPU run needs --out: the committed gpu_check.json is a full run's on a GPU")
        args.out = bench.RESULTS / "gpu_check.json"
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    if args.fsdp_child:
        fsdp_child(args.fsdp_child, args.pairs[0], args.quick)
        return 0
    # An explicit index: torch.cuda.set_device and the memory counters refuse a bare "cuda".
    device = torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    mode = "quick" if args.quick else "full"
    shape = bench.SHAPES[CHECK_SHAPE[mode]]
    autocast = torch.bfloat16 if device.type == "cuda" else None
    checks = Checks(args.budget, args.sections)
    report = {"machine": machine(device, autocast), "code": bench.code_version(), "mode": mode,
              "budget_s": args.budget, "check_shape": CHECK_SHAPE[mode], "pairs": args.pairs,
              "sections": checks.sections, "ratios": {"shapes": {}}}
    log(f"GPU check on {report['machine'].get('gpu', device.type)}, torch {torch.__version__}, {mode} run")
    settle()
    pairs = args.pairs
    generative = [p for p in pairs if p in bench.GENERATIVE]
    new_tokens = 8 if args.quick else 32
    for section in args.sections:
        log(f"{section} ({checks.elapsed():.0f} s so far)")
        if section == "precision":
            for pair in pairs:
                for dtype in (torch.bfloat16, torch.float16):
                    name = f"{pair}_{str(dtype).removeprefix('torch.')}"
                    checks.run(section, name, check_precision, pair, dtype, device, shape)
        elif section == "attention":
            low = torch.bfloat16 if not dtype_works(torch.bfloat16, device) else torch.float32
            for i, pair in enumerate(pairs):
                flex = not (args.quick and device.type == "cpu") or i == 0
                checks.run(section, pair, check_attention, pair, device, shape, low, flex)
        elif section == "generation":
            fp32_exact()
            for pair in generative:
                checks.run(section, pair, check_generation, pair, device, shape, new_tokens, 1 if args.quick else 4)
        elif section == "compiled_generation":
            # Inductor's C++ build takes minutes on small CPUs: the quick CPU run traces with the eager back-end.
            backend = "eager" if args.quick and device.type == "cpu" else None
            results = []
            for pair in [p for p in ("decoder", "encoder-decoder") if p in pairs]:
                for batch in (1,):  # where CUDA graphs matter most; each batch size is a compile (about a minute)
                    results.append(checks.run(section, f"{pair}_b{batch}", check_compiled, pair, batch, device, shape,
                                              new_tokens if args.quick else 128, 1 if args.quick else 5, backend))
            checks.run(section, "cuda_graphs", check_cuda_graphs, results, device)
        elif section == "trainer":
            for pair in [p for p in LAYOUTS if p in pairs]:
                checks.run(section, pair, check_trainer, pair, device, shape, 2)
        elif section == "fsdp":
            pair = "decoder" if "decoder" in pairs else pairs[0]
            checks.run(section, f"fully_shard_{pair}", check_fully_shard, pair, device, shape)
            checks.run(section, f"trainer_{pair}", check_trainer_fsdp, pair, device, shape, 2, args.quick)
        elif section == "ratios":
            for shape_name in RATIO_SHAPES[mode]:
                shape_report = {"shape": bench.SHAPES[shape_name], "settings": RATIO_SETTINGS[mode], "pairs": {}}
                report["ratios"]["shapes"][shape_name] = shape_report
                for pair in pairs:
                    record = checks.run(section, f"{shape_name}_{pair}", ratio_pair, pair, bench.SHAPES[shape_name],
                                        RATIO_SETTINGS[mode], device, autocast)
                    if record["status"] == "passed":
                        shape_report["pairs"][pair] = record.pop("figures")
                        record["figures"] = {"in": f"ratios/shapes/{shape_name}/pairs/{pair}"}
        report["wall_seconds"] = checks.elapsed()
        save(report, args.out, checks)  # after every section, so an interrupted run leaves what it checked
    report["complete"] = True
    save(report, args.out, checks)
    print("\n" + markdown(report))
    failed = checks.failed()
    log(f"wrote {args.out} in {checks.elapsed():.0f} s; {report['summary']}"
        + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def save(report: dict, out: Path, checks: Checks):
    counts = {}
    for section in checks.sections.values():
        for check in section["checks"].values():
            counts[check["status"]] = counts.get(check["status"], 0) + 1
    report["counts"] = counts
    report["summary"] = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    report.setdefault("complete", False)
    report["wall_seconds"] = checks.elapsed()
    bench.write_whole(out, json.dumps(report, indent=1) + "\n")
    bench.write_whole(out.with_suffix(".md"), markdown(report))


if __name__ == "__main__":
    sys.exit(main())
