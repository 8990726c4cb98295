"""
Speed and memory of the Vaswani models against Hugging Face's own, at identical shapes, in one process (issue 7).

    encoder          VaswaniForMaskedLM               vs BertForMaskedLM
    decoder          VaswaniForCausalLM               vs GPT2LMHeadModel
    encoder-decoder  VaswaniForConditionalGeneration  vs MarianMTModel
    rotary           VaswaniForCausalLM               vs GPTNeoXForCausalLM          (positions inside attention,
    alibi            VaswaniForCausalLM               vs BloomForCausalLM             issue 17; BLOOM runs eager
    relative         VaswaniForConditionalGeneration  vs T5ForConditionalGeneration   where the others run sdpa)
    vit              VaswaniForImageClassification    vs ViTForImageClassification   (images, issue 19: the
                                                                                      Vaswani side is the ViT
                                                                                      converted, same weights)

Figures, per shape and pair (every one as the median over repeats with its spread, and as a ratio where > 1 means
Vaswani is better: vaswani/reference for throughputs, reference/vaswani for memory and times):

    inference_sdpa, inference_eager   forward tokens/s (eval, no_grad), each attention implementation on both sides
    training                          tokens/s of one step: forward with labels, backward, fused AdamW (train mode)
    generation_b1, generation_b8      greedy tokens/s with the cache, 16-token prompt (or source), 128 new tokens
    memory                            MiB: peak resident memory of one training step over the process before the
                                      model was built (a fresh child process per measurement)
    mfu_*                             model FLOPs utilisation, % of the measured fp32 matmul peak (the faster of
                                      torch.mm and oneDNN's linear)
    gen_scaling_b{1,8}_{short,mid,long}, ..._growth
                                      generation time for 32, 128 and 512 new tokens, ms per new token, and the
                                      growth of the per-token time from the shortest to the longest run

Every figure alternates the two models: warm both up, then per repeat run A then B (B then A on the next repeat), so
that drift of the shared machine hits both alike. See benchmarks/README.md for the method.

    python benchmarks/bench.py                      # both shapes, writes benchmarks/results/bench.{json,md}
    python benchmarks/bench.py --shapes cpu         # the CPU-sized shape only
    python benchmarks/bench.py --quick --out /tmp/bench.json   # the same figures in about a minute (tests)
"""

import argparse
import ctypes
import datetime
import gc
import json
import multiprocessing
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BloomConfig,
    BloomForCausalLM,
    GenerationConfig,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    MarianConfig,
    MarianMTModel,
    T5Config,
    T5ForConditionalGeneration,
    ViTConfig,
    ViTForImageClassification,
)

from vaswani import VaswaniConfig, VaswaniForCausalLM, VaswaniForConditionalGeneration, VaswaniForMaskedLM
from vaswani.training.run import write_whole
from vaswani.convert import convert


RESULTS = Path(__file__).resolve().parent / "results"
THREADS = 2
SEED = 0
PAD, BOS, EOS, MASK = 0, 1, 2, 4  # special ids on both sides; sampled tokens lie in [5, vocab)

# Model shapes. The sequence and batch are the training / inference workload; generation uses its own lengths. The
# image pair reads square images of `image_size` cut into `patch_size` patches: 1 + (image/patch)^2 tokens ([CLS]
# and the patches; 17, 65 and 197, near the text pairs' lengths), and `num_labels` classes.
SHAPES = {
    "cpu": dict(d_model=256, num_heads=4, d_ff=1024, layers=4, vocab_size=8000, seq=128, batch=8,
                image_size=64, patch_size=8, num_labels=100),
    "base": dict(d_model=512, num_heads=8, d_ff=2048, layers=6, vocab_size=37000, seq=128, batch=8,
                 image_size=224, patch_size=16, num_labels=1000),  # ViT-B/16's images, the paper's base width
    "toy": dict(d_model=64, num_heads=2, d_ff=256, layers=2, vocab_size=1000, seq=16, batch=2,  # quick mode, tests
                image_size=16, patch_size=4, num_labels=10),
}

# Repeats per shape. `iters` calls are timed together as one repeat.
FULL = {
    "cpu": dict(
        warmup=1, inf_repeats=9, inf_iters=2, train_warmup=2, train_repeats=7, train_iters=1,
        gen_batches=(1, 8), gen_prompt=16, gen_new=128, gen_repeats=7,
        scan_lengths=(32, 128, 512), scan_batches=(1, 8), scan_repeats=3, mem_repeats=3,
    ),
    "base": dict(
        warmup=1, inf_repeats=5, inf_iters=1, train_warmup=3, train_repeats=7, train_iters=1,
        gen_batches=(1, 8), gen_prompt=16, gen_new=128, gen_repeats=4,
        scan_lengths=(32, 128, 512), scan_batches=(1, 8), scan_repeats=3, mem_repeats=2,
    ),
}
# Quick mode: the CPU shape, the same figures, fewer repeats and short generations (the test suite runs it).
QUICK = {
    "cpu": dict(
        warmup=1, inf_repeats=2, inf_iters=1, train_warmup=1, train_repeats=2, train_iters=1,
        gen_batches=(1, 8), gen_prompt=16, gen_new=16, gen_repeats=2,
        scan_lengths=(8, 16, 32), scan_batches=(1, 8), scan_repeats=2, mem_repeats=1,
    ),
}
# The toy shape (tests/test_bench.py): one repeat of everything, a few tokens, so that a run takes seconds.
QUICK["toy"] = dict(
    warmup=1, inf_repeats=1, inf_iters=1, train_warmup=1, train_repeats=1, train_iters=1,
    gen_batches=(1, 2), gen_prompt=4, gen_new=4, gen_repeats=1,
    scan_lengths=(2, 4, 8), scan_batches=(1, 2), scan_repeats=1, mem_repeats=1,
)

PAIRS = {
    "encoder": ("VaswaniForMaskedLM", "BertForMaskedLM"),
    "decoder": ("VaswaniForCausalLM", "GPT2LMHeadModel"),
    "encoder-decoder": ("VaswaniForConditionalGeneration", "MarianMTModel"),
    "rotary": ("VaswaniForCausalLM", "GPTNeoXForCausalLM"),
    "alibi": ("VaswaniForCausalLM", "BloomForCausalLM"),
    "relative": ("VaswaniForConditionalGeneration", "T5ForConditionalGeneration"),
    "vit": ("VaswaniForImageClassification", "ViTForImageClassification"),
}
# The layout of each pair (one stack, two, an encoder, or an encoder over image patches), which decides its inputs,
# its generation and its FLOPs.
KIND = {"encoder": "encoder", "decoder": "decoder", "encoder-decoder": "encoder-decoder",
        "rotary": "decoder", "alibi": "decoder", "relative": "encoder-decoder", "vit": "image"}
GENERATIVE = tuple(pair for pair, kind in KIND.items() if kind in ("decoder", "encoder-decoder"))
ROPE = {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25}  # GPT-NeoX's (Pythia's)
SCALING_NAMES = ("short", "mid", "long")


# -- Models -------------------------------------------------------------------------------------------------------------
def max_positions(settings: dict, shape: dict) -> int:
    """Position-table rows: enough for the training sequence and for the longest generation after its prompt."""
    needed = max(shape["seq"], settings["gen_prompt"] + max(settings["scan_lengths"] + (settings["gen_new"],)))
    return max(512, 1 << (needed - 1).bit_length())


def build(pair: str, side: str, shape: dict, positions: int):
    """One model of a pair, fp32, seeded; both sides make the same choices (activation, positions, norms, dropout)."""
    d, h, f, n, v = shape["d_model"], shape["num_heads"], shape["d_ff"], shape["layers"], shape["vocab_size"]
    torch.manual_seed(SEED)
    if pair == "encoder":
        # BERT: post-LN, learned positions, segment embeddings, a LayerNorm on the embeddings, exact GELU, no
        # embedding scale, eps 1e-12.
        if side == "vaswani":
            config = VaswaniConfig(
                vocab_size=v, d_model=d, num_heads=h, d_ff=f, num_hidden_layers=n, dropout=0.1,
                attention_dropout=0.0, activation_function="gelu", position_embedding_type="learned",
                max_position_embeddings=positions, type_vocab_size=2, scale_embedding=False, layer_norm_eps=1e-12,
                embedding_layer_norm=True, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
            )
            model = VaswaniForMaskedLM(config)
        else:
            config = BertConfig(
                vocab_size=v, hidden_size=d, num_attention_heads=h, intermediate_size=f, num_hidden_layers=n,
                hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.0,
                max_position_embeddings=positions, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=PAD,
            )
            model = BertForMaskedLM(config)
    elif pair == "decoder":
        # GPT-2: pre-LN with a final LayerNorm, learned positions, tanh GELU ("gelu_new"), no embedding scale.
        if side == "vaswani":
            config = VaswaniConfig(
                vocab_size=v, d_model=d, num_heads=h, d_ff=f, num_hidden_layers=n, dropout=0.1,
                attention_dropout=0.0, activation_function="gelu_new", position_embedding_type="learned",
                max_position_embeddings=positions, norm_first=True, scale_embedding=False, layer_norm_eps=1e-5,
                pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
            )
            model = VaswaniForCausalLM(config)
        else:
            config = GPT2Config(
                vocab_size=v, n_embd=d, n_head=h, n_inner=f, n_layer=n, n_positions=positions,
                activation_function="gelu_new", resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.0,
                layer_norm_epsilon=1e-5, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
            )
            model = GPT2LMHeadModel(config)
    elif pair == "rotary":
        # GPT-NeoX (Pythia): pre-LN, attention and MLP in parallel off one residual, rotary positions on a quarter of
        # each head, exact GELU, biases everywhere, a final LayerNorm, an untied output projection.
        if side == "vaswani":
            config = VaswaniConfig(
                vocab_size=v, d_model=d, num_heads=h, d_ff=f, num_hidden_layers=n, dropout=0.1,
                attention_dropout=0.0, activation_function="gelu", position_embedding_type="rotary",
                rope_parameters=dict(ROPE), max_position_embeddings=positions, norm_first=True,
                parallel_residual=True, scale_embedding=False, tie_word_embeddings=False, layer_norm_eps=1e-5,
                pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
            )
            model = VaswaniForCausalLM(config)
        else:
            config = GPTNeoXConfig(
                vocab_size=v, hidden_size=d, num_attention_heads=h, intermediate_size=f, num_hidden_layers=n,
                hidden_act="gelu", rope_parameters=dict(ROPE), max_position_embeddings=positions,
                use_parallel_residual=True, attention_bias=True, hidden_dropout=0.1, attention_dropout=0.0,
                tie_word_embeddings=False, layer_norm_eps=1e-5, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
            )
            model = GPTNeoXForCausalLM(config)
    elif pair == "alibi":
        # BLOOM: pre-LN, ALiBi, a LayerNorm on the embeddings, tanh GELU, d_ff = 4 d_model (BLOOM's fixed width),
        # tied output projection. Dropout 0 on both sides: BLOOM has none on the embeddings (and 0 is its default).
        if f != 4 * d:
            raise ValueError(f"the alibi pair needs d_ff = 4 d_model (BLOOM's MLP), got d_ff {f}, d_model {d}")
        if side == "vaswani":
            config = VaswaniConfig(
                vocab_size=v, d_model=d, num_heads=h, d_ff=f, num_hidden_layers=n, dropout=0.0,
                attention_dropout=0.0, activation_function="gelu_pytorch_tanh", position_embedding_type="alibi",
                max_position_embeddings=positions, norm_first=True, embedding_layer_norm=True, scale_embedding=False,
                tie_word_embeddings=True, layer_norm_eps=1e-5, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
            )
            model = VaswaniForCausalLM(config)
        else:
            config = BloomConfig(
                vocab_size=v, hidden_size=d, n_head=h, n_layer=n, hidden_dropout=0.0, attention_dropout=0.0,
                layer_norm_epsilon=1e-5, tie_word_embeddings=True, pad_token_id=PAD, bos_token_id=BOS,
                eos_token_id=EOS,
            )
            model = BloomForCausalLM(config)
    elif pair == "relative":
        # T5 (v1.0 layout, ReLU): pre-LN with RMS norms, T5's bucketed relative bias in each stack's self-attention,
        # no biases, no embedding scale, a final norm per stack, one tied vocabulary. Dropout 0 on both sides: T5's
        # one rate also drops attention probabilities and the FFN's inner activations, which Vaswani does not.
        if side == "vaswani":
            config = VaswaniConfig(
                vocab_size=v, d_model=d, num_heads=h, d_ff=f, num_hidden_layers=n, dropout=0.0,
                attention_dropout=0.0, activation_function="relu", position_embedding_type="relative",
                relative_attention_num_buckets=32, relative_attention_max_distance=128, rms_norm=True,
                projection_bias=False, norm_first=True, final_layer_norm=True, scale_embedding=False,
                tie_word_embeddings=True, layer_norm_eps=1e-6, max_position_embeddings=positions,
                pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, decoder_start_token_id=BOS,
            )
            model = VaswaniForConditionalGeneration(config)
        else:
            config = T5Config(
                vocab_size=v, d_model=d, d_kv=d // h, d_ff=f, num_layers=n, num_decoder_layers=n, num_heads=h,
                relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
                layer_norm_epsilon=1e-6, feed_forward_proj="relu", pad_token_id=PAD, eos_token_id=EOS,
                bos_token_id=BOS, decoder_start_token_id=BOS,
            )
            # T5 v1.0 scales the decoder output by d_model^-0.5 before its tied projection; Vaswani does not.
            config.scale_decoder_outputs = False
            model = T5ForConditionalGeneration(config)
    elif pair == "vit":
        # ViT: pre-LN with a final LayerNorm, learned positions over [CLS] and the patches, exact GELU, biases
        # everywhere, eps 1e-12, dropout 0 (ViT's default). The Vaswani side is this very ViT converted
        # (`vaswani.convert`): the same weights, so `bench_pair` can check that the logits agree.
        config = ViTConfig(
            hidden_size=d, num_attention_heads=h, intermediate_size=f, num_hidden_layers=n, hidden_act="gelu",
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, layer_norm_eps=1e-12,
            image_size=shape["image_size"], patch_size=shape["patch_size"], num_channels=3,
            num_labels=shape["num_labels"], qkv_bias=True,
        )
        model = ViTForImageClassification(config)
        if side == "vaswani":
            model = convert(model)
    else:
        # Marian (the paper's layout): post-LN, sinusoidal positions, embeddings x sqrt(d_model), ReLU (paper eq. 2),
        # one shared vocabulary for source, target and the output projection.
        if side == "vaswani":
            config = VaswaniConfig(
                vocab_size=v, d_model=d, num_heads=h, d_ff=f, num_hidden_layers=n, dropout=0.1,
                attention_dropout=0.0, activation_function="relu", position_embedding_type="sinusoidal",
                max_position_embeddings=positions, norm_first=False, scale_embedding=True, layer_norm_eps=1e-5,
                pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS, decoder_start_token_id=BOS,
            )
            model = VaswaniForConditionalGeneration(config)
        else:
            config = MarianConfig(
                vocab_size=v, d_model=d, encoder_attention_heads=h, decoder_attention_heads=h, encoder_ffn_dim=f,
                decoder_ffn_dim=f, encoder_layers=n, decoder_layers=n, activation_function="relu", dropout=0.1,
                attention_dropout=0.0, activation_dropout=0.0, max_position_embeddings=positions,
                scale_embedding=True, share_encoder_decoder_embeddings=True, tie_word_embeddings=True,
                pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS, decoder_start_token_id=BOS,
                forced_eos_token_id=None,
            )
            model = MarianMTModel(config)
    return model.float()


def set_attention(model, implementation: str) -> str:
    """
    Switch every module of the model to `implementation`, or to eager where the model has no sdpa back-end (BLOOM
    computes its attention itself); returns the one its modules now use.
    """
    if implementation == "sdpa" and not model._supports_sdpa:
        implementation = "eager"
    model.set_attn_implementation(implementation)
    found = {m.config._attn_implementation for m in model.modules() if hasattr(m, "config")}
    if found != {implementation}:
        raise RuntimeError(f"{type(model).__name__}: asked for {implementation}, modules use {found}")
    return implementation


def count_parameters(model) -> int:
    """Trainable parameters, each shared (tied) one once; Marian's fixed sinusoid table is not one."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


# -- Inputs -------------------------------------------------------------------------------------------------------------
def tokens(generator, batch: int, length: int, vocab: int) -> torch.Tensor:
    return torch.randint(MASK + 1, vocab, (batch, length), generator=generator)


def sequence_length(pair: str, shape: dict) -> int:
    """Tokens a sequence: `seq`, or for images [CLS] and the patches."""
    if KIND[pair] == "image":
        return 1 + (shape["image_size"] // shape["patch_size"]) ** 2
    return shape["seq"]


def forward_inputs(pair: str, shape: dict, labels: bool) -> dict:
    """Inputs of one forward (labels for a training step): the same tensors for both models of a pair."""
    generator = torch.Generator().manual_seed(SEED)
    b, t, v = shape["batch"], shape["seq"], shape["vocab_size"]
    if KIND[pair] == "image":
        # Images as an image processor gives them (mean/std 0.5: values in [-1, 1]); a class id each to train on.
        size = shape["image_size"]
        inputs = {"pixel_values": torch.rand(b, 3, size, size, generator=generator) * 2 - 1}
        if labels:
            inputs["labels"] = torch.randint(0, shape["num_labels"], (b,), generator=generator)
        return inputs
    ids = tokens(generator, b, t, v)
    inputs = {"input_ids": ids, "attention_mask": torch.ones(b, t, dtype=torch.long)}
    if KIND[pair] == "encoder":
        if labels:
            # BERT's objective: 15% of positions are masked and predicted, the rest ignored (-100).
            chosen = torch.rand(b, t, generator=generator) < 0.15
            inputs["labels"] = ids.masked_fill(~chosen, -100)
            inputs["input_ids"] = ids.masked_fill(chosen, MASK)
    elif KIND[pair] == "decoder":
        if labels:
            inputs["labels"] = ids  # shifted inside both models
    else:
        target = tokens(generator, b, t, v)  # source and target both `seq` long
        if labels:
            inputs["labels"] = target  # both models shift it right behind the start token
        else:
            decoder_ids = target.clone()
            decoder_ids[:, 0] = BOS
            inputs["decoder_input_ids"] = decoder_ids
    return inputs


def generation_inputs(pair: str, batch: int, prompt: int, vocab: int) -> dict:
    generator = torch.Generator().manual_seed(SEED + batch)
    ids = tokens(generator, batch, prompt, vocab)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def generation_config(pair: str, new_tokens: int) -> GenerationConfig:
    # Exactly `new_tokens` greedy tokens on both sides: no end-of-sequence token, no forced or banned tokens.
    return GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=new_tokens, min_new_tokens=new_tokens, eos_token_id=None,
        pad_token_id=PAD, bos_token_id=BOS, decoder_start_token_id=BOS if KIND[pair] == "encoder-decoder" else None,
        forced_eos_token_id=None, forced_bos_token_id=None, use_cache=True,
    )


# -- Analytic FLOPs -----------------------------------------------------------------------------------------------------
# Matmul FLOPs only (2 per multiply-add); embeddings, norms, softmax and activations are not counted. Attention counts
# QK^T and AV over every key position (causal masks included, as the PaLM/Megatron MFU convention does).
def _layer_linear(shape) -> int:
    d, f = shape["d_model"], shape["d_ff"]
    return 2 * (4 * d * d + 2 * d * f)  # q, k, v, o projections and the two FFN matrices, per token


def forward_flops(pair: str, shape: dict, batch: int, length: int) -> int:
    """
    One forward over `batch` sequences of `length` tokens (encoder-decoder: source and target both `length`; images:
    [CLS] and `length - 1` patches).
    """
    d, n, v = shape["d_model"], shape["layers"], shape["vocab_size"]
    t = length
    if KIND[pair] == "image":
        # The patch projection (a convolution: 3 P^2 inputs per patch), the encoder, the classifier on [CLS] only.
        patch = 2 * (t - 1) * 3 * shape["patch_size"] ** 2 * d
        per_seq = patch + t * n * (_layer_linear(shape) + 4 * t * d) + 2 * d * shape["num_labels"]
    elif KIND[pair] == "encoder":
        per_seq = t * n * (_layer_linear(shape) + 4 * t * d) + t * (2 * d * d + 2 * d * v)  # + MLM head on all
    elif KIND[pair] == "decoder":
        per_seq = t * n * (_layer_linear(shape) + 4 * t * d) + t * 2 * d * v
    else:
        encoder = t * n * (_layer_linear(shape) + 4 * t * d)
        cross = t * n * (4 * d * d + 4 * t * d) + t * n * 4 * d * d  # q, o and attention per target; k, v per source
        decoder = t * n * (_layer_linear(shape) + 4 * t * d) + cross + t * 2 * d * v
        per_seq = encoder + decoder
    return batch * per_seq


def generation_flops(pair: str, shape: dict, batch: int, prompt: int, new_tokens: int) -> int:
    """Greedy generation with a cache: the prompt (or the source through the encoder) once, then one token a step."""
    d, n, v = shape["d_model"], shape["layers"], shape["vocab_size"]
    lin = _layer_linear(shape)
    if KIND[pair] == "decoder":
        total = prompt * n * (lin + 4 * prompt * d) + 2 * d * v  # prefill; logits of the last position only
        for step in range(1, new_tokens):
            context = prompt + step
            total += n * (lin + 4 * context * d) + 2 * d * v
    else:
        s = prompt
        total = s * n * (lin + 4 * s * d) + s * n * 4 * d * d  # encoder, and cross-attention keys/values once
        for step in range(new_tokens):
            context = step + 1
            total += n * (lin + 4 * context * d + 4 * d * d + 4 * s * d) + 2 * d * v
    return batch * total


def counted_forward_flops(model, inputs: dict) -> int:
    """
    Cross-check: the matmul FLOPs torch actually ran in one forward (torch.utils.flop_counter), with eager attention
    (the counter does not see inside the CPU sdpa kernel).
    """
    from torch.utils.flop_counter import FlopCounterMode

    set_attention(model, "eager")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs)
    return counter.get_total_flops()


# -- Timing -------------------------------------------------------------------------------------------------------------
class Contention:
    """
    How much CPU other processes take, from /proc/stat (all busy time) minus this process's own (/proc/self/stat).
    On a shared 2-core machine another busy process preempts one of the two OpenMP threads, and every parallel
    region then waits for it: small operations (decoding) slow down many times over, unevenly. So each repeat pair
    is watched; a pair run while others used more than `threshold` cores is run again after waiting for quiet (at
    most `max_wait` seconds a figure, `budget` seconds a run), and every figure records what it saw.
    """

    def __init__(self, threshold: float = 0.5, max_wait: float = 0.0, budget: float = 0.0):
        self.threshold, self.max_wait, self.budget = threshold, max_wait, budget
        self.hz = os.sysconf("SC_CLK_TCK")
        self.waited_total = 0.0

    def sample(self) -> tuple[float, float, float]:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:9]]
        busy = sum(fields) - fields[3] - fields[4]  # all but idle and iowait
        with open("/proc/self/stat") as own:
            parts = own.read().rsplit(")", 1)[1].split()
        mine = int(parts[11]) + int(parts[12])  # utime + stime of every thread
        return time.monotonic(), busy, mine

    def others(self, start, end) -> float:
        """Cores used by other processes between two samples."""
        elapsed = max(end[0] - start[0], 1e-9)
        return max(0.0, ((end[1] - start[1]) - (end[2] - start[2])) / self.hz / elapsed)

    def wait_for_quiet(self, already: float = 0.0) -> float:
        """
        Sleep in 1 s windows until two in a row are quiet, within what is left of the per-figure allowance (the
        figure has waited `already` seconds) and of the per-run budget.
        """
        allowed = min(self.max_wait - already, self.budget - self.waited_total)
        waited, quiet = 0.0, 0
        while waited < allowed and quiet < 2:
            start = self.sample()
            time.sleep(1.0)
            quiet = quiet + 1 if self.others(start, self.sample()) < self.threshold else 0
            waited += 1.0
        self.waited_total += waited
        return waited


CONTENTION = Contention()


def alternate(run_a, run_b, repeats: int, warmup: int) -> tuple[list[float], list[float], dict]:
    """
    Seconds per repeat of A and of B, alternating A-B, B-A, ... after `warmup` calls of each; with what other
    processes took meanwhile (see `Contention`).
    """
    waited = CONTENTION.wait_for_quiet() if CONTENTION.max_wait > 0 else 0.0
    for _ in range(warmup):
        run_a()
        run_b()
    times_a, times_b, loads, rerun = [], [], [], 0
    i = 0
    while i < repeats:
        order = [(run_a, times_a), (run_b, times_b)]
        pair = []
        start_sample = CONTENTION.sample()
        for run, times in order if i % 2 == 0 else order[::-1]:
            gc.collect()
            start = time.perf_counter()
            run()
            pair.append((times, time.perf_counter() - start))
        load = CONTENTION.others(start_sample, CONTENTION.sample())
        if load > CONTENTION.threshold and CONTENTION.max_wait > 0 and rerun < repeats:
            rerun += 1
            waited += CONTENTION.wait_for_quiet(waited)
            continue  # the same repeat again, in the same order
        for times, seconds in pair:
            times.append(seconds)
        loads.append(load)
        i += 1
    if waited > 2 or rerun:  # two quiet seconds are the least wait
        log(f"    (waited {waited:.0f} s for other processes; {rerun} repeat pairs re-run; others took up to "
            f"{max(loads):.2f} cores in the kept ones)")
    info = {"other_cores_median": statistics.median(loads), "other_cores_max": max(loads),
            "repeats_rerun": rerun, "waited_s": waited}
    return times_a, times_b, info


def stats(values: list[float]) -> dict:
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "median": statistics.median(ordered), "q1": q1, "q3": q3, "min": ordered[0], "max": ordered[-1],
        "values": list(values),
    }


def figure(unit: str, higher_is_better: bool, vaswani: list[float], reference: list[float], **extra) -> dict:
    """Medians, spreads and the ratio (> 1 = Vaswani better) of one figure; also the median of the paired ratios."""
    v, r = stats(vaswani), stats(reference)
    if higher_is_better:
        ratio, paired, definition = v["median"] / r["median"], [a / b for a, b in zip(vaswani, reference)], "vaswani/reference"
    else:
        ratio, paired, definition = r["median"] / v["median"], [b / a for a, b in zip(vaswani, reference)], "reference/vaswani"
    return {
        "unit": unit, "higher_is_better": higher_is_better, "vaswani": v, "reference": r, "ratio": ratio,
        "ratio_definition": definition, "paired_ratio_median": statistics.median(paired), **extra,
    }


def matmul_peak(repeats: int) -> dict:
    """
    The faster fp32 product of two 2048 x 2048 matrices on this machine, GFLOP/s per repeat (the median is the MFU
    denominator): torch.mm (MKL) and oneDNN's linear, both in every PyTorch CPU build. On AMD CPUs MKL runs AVX2 code
    and oneDNN the widest vector unit, about twice as fast (benchmarks/README.md, finding 10): the peak is what the
    machine can do, whichever kernel reaches it. Both kernels' figures are kept.
    """
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    kernels = {"torch.mm": lambda: torch.mm(a, b)}
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        kernels["oneDNN linear"] = lambda: torch.ops.mkldnn._linear_pointwise(a, b, None, "none", [], "")
    measured = {}
    for name, kernel in kernels.items():
        for _ in range(2):
            kernel()
        values = []
        for _ in range(repeats):
            start = time.perf_counter()
            kernel()
            values.append(2 * 2048**3 / (time.perf_counter() - start) / 1e9)
        measured[name] = stats(values)
    best = max(measured, key=lambda name: measured[name]["median"])
    return {**measured[best], "kernel": best, "kernels": measured}


# -- Memory: one child process per measurement ----------------------------------------------------------------------
def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(pair: str, side: str, shape: dict, positions: int, threads: int = THREADS) -> dict:
    """
    In a fresh process: peak resident memory of one steady-state training step, over the resident memory before
    the model was built. Large blocks are mmapped (fixed glibc threshold), so freed tensors leave the resident set
    at once and it follows live memory.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 * 1024)  # M_MMAP_THRESHOLD: fixed, so glibc does not raise it after frees
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
        malloc_fixed = True
    except (OSError, AttributeError):
        malloc_fixed = False
    torch.set_num_threads(threads)
    inputs = forward_inputs(pair, shape, labels=True)
    gc.collect()
    base = _rss_kib("VmRSS")
    model = build(pair, side, shape, positions)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def step():
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # creates the optimizer state; the measured step is the second
    gc.collect()
    before = _rss_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset the high-water mark VmHWM to the current resident set
        reset = True
    except OSError:
        reset = False  # VmHWM then covers the whole child; the training steps still dominate it
    step()
    peak = _rss_kib("VmHWM")
    return {
        "peak_mib": (peak - base) / 1024,
        "resident_before_step_mib": (before - base) / 1024,
        "step_increase_mib": (peak - before) / 1024,
        "hwm_reset": reset,
        "malloc_mmap_threshold_fixed": malloc_fixed,
    }


def steady_allocator() -> str:
    """
    Keep freed memory in glibc's heap for reuse instead of handing it back to the OS: no mmap for large blocks, no
    trimming (what `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...` would set). Otherwise each large tensor (the
    150 MB logits of the base shape) is a fresh mmap whose pages fault in again at every step, and step times jump by
    a third from one repeat to the next, on both sides (benchmarks/README.md, findings). Both models of a pair share
    this process; memory is measured in separate processes with glibc's defaults.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        done = libc.mallopt(-4, 0) == 1 and libc.mallopt(-1, 1 << 30) == 1  # M_MMAP_MAX, M_TRIM_THRESHOLD (1 GiB)
    except (OSError, AttributeError):
        done = False
    return "glibc heap only (M_MMAP_MAX 0, M_TRIM_THRESHOLD 1 GiB)" if done else "default (mallopt unavailable)"


def memory_pool():
    """A forkserver with torch, transformers and the models imported: each measurement forks a fresh child fast."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "transformers", "vaswani", "transformers.models.bert.modeling_bert",
                                    "transformers.models.gpt2.modeling_gpt2", "transformers.models.marian.modeling_marian",
                                    "transformers.models.gpt_neox.modeling_gpt_neox",
                                    "transformers.models.bloom.modeling_bloom", "transformers.models.t5.modeling_t5",
                                    "transformers.models.vit.modeling_vit"])
    return context.Pool(1, maxtasksperchild=1)


# -- The figures of one pair ----------------------------------------------------------------------------------------
def log(message: str):
    print(message, flush=True)


def bench_pair(pair: str, shape_name: str, shape: dict, settings: dict, peak: float, pool) -> dict:
    positions = max_positions(settings, shape)
    models = {side: build(pair, side, shape, positions) for side in ("vaswani", "reference")}
    v_model, r_model = models["vaswani"], models["reference"]
    b, t = shape["batch"], sequence_length(pair, shape)
    figures = {}
    info = {
        "load_average_at_start": os.getloadavg(),
        "vaswani": PAIRS[pair][0], "reference": PAIRS[pair][1], "max_position_embeddings": positions,
        "parameters": {side: count_parameters(m) for side, m in models.items()},
        "config": {side: {k: v for k, v in m.config.to_diff_dict().items() if not isinstance(v, (dict, list))}
                   for side, m in models.items()},
    }
    # A guard on the configs: the two models of a pair must be the same network, weight for weight.
    if len(set(info["parameters"].values())) != 1:
        raise RuntimeError(f"{pair}: the two models differ in size: {info['parameters']}")
    log(f"  {pair:16s} {info['parameters']['vaswani']:,} trainable parameters on both sides")
    if pair == "vit":
        # The Vaswani side is the reference converted: the same weights, so the same logits (to fp32 rounding).
        with torch.no_grad():
            v_logits, r_logits = (m.eval()(**forward_inputs(pair, shape, labels=False)).logits for m in (v_model, r_model))
        difference = (v_logits - r_logits).abs().max().item()
        if not torch.allclose(v_logits, r_logits, rtol=1e-4, atol=1e-4):
            raise RuntimeError(f"{pair}: the converted model's logits differ from the reference's by up to {difference}")
        info["logits_max_abs_difference"] = difference
        log(f"  {pair:16s} logits agree with the reference's (max |difference| {difference:.2e})")

    # 1. Inference forward, eval and no_grad, with each attention implementation on both sides.
    inputs = forward_inputs(pair, shape, labels=False)
    fwd_flops = forward_flops(pair, shape, b, t)
    one = {k: x[:1] for k, x in inputs.items()}
    info["forward_flops_per_token"] = {
        "analytic": forward_flops(pair, shape, 1, t) / t,
        **{side: counted_forward_flops(m.eval(), one) / t for side, m in models.items()},
    }
    for implementation in ("sdpa", "eager"):
        backends = {side: set_attention(m.eval(), implementation) for side, m in models.items()}

        def runner(model):
            def run():
                with torch.no_grad():
                    for _ in range(settings["inf_iters"]):
                        model(**inputs)
            return run

        tv, tr, load = alternate(runner(v_model), runner(r_model), settings["inf_repeats"], settings["warmup"])
        work = b * t * settings["inf_iters"]
        v_tps, r_tps = [work / x for x in tv], [work / x for x in tr]
        figures[f"inference_{implementation}"] = figure(
            "tokens/s", True, v_tps, r_tps, attn_implementation=implementation, backends=backends, contention=load
        )
        per_token = fwd_flops / (b * t)
        figures[f"mfu_inference_{implementation}"] = figure(
            "% of peak", True, [100 * x * per_token / peak / 1e9 for x in v_tps],
            [100 * x * per_token / peak / 1e9 for x in r_tps], flops_per_token=per_token, contention=load,
        )
        log(f"  {pair:16s} inference {implementation}: {_brief(figures[f'inference_{implementation}'])}")
    backends = {side: set_attention(m, "sdpa") for side, m in models.items()}  # training and generation

    # 2. Training step: forward with labels, backward, fused AdamW (what Trainer uses), train mode (dropout 0.1).
    train_inputs = forward_inputs(pair, shape, labels=True)
    optimizers = {}
    for side, m in models.items():
        m.train()
        optimizers[side] = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=True)

    def trainer(side):
        model, optimizer = models[side], optimizers[side]

        def run():
            for _ in range(settings["train_iters"]):
                model(**train_inputs).loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        return run

    # More warm-up steps than the other figures: the first steps after the optimizer's state appears run slower
    # while the allocator settles (seen at the base shape: a rising series of step times over 4 repeats).
    tv, tr, load = alternate(
        trainer("vaswani"), trainer("reference"), settings["train_repeats"], settings["train_warmup"]
    )
    work = b * t * settings["train_iters"]
    v_tps, r_tps = [work / x for x in tv], [work / x for x in tr]
    figures["training"] = figure("tokens/s", True, v_tps, r_tps, attn_implementation="sdpa", backends=backends,
                                 contention=load)
    per_token = 3 * fwd_flops / (b * t)
    figures["mfu_training"] = figure(
        "% of peak", True, [100 * x * per_token / peak / 1e9 for x in v_tps],
        [100 * x * per_token / peak / 1e9 for x in r_tps], flops_per_token=per_token, contention=load,
    )
    log(f"  {pair:16s} training: {_brief(figures['training'])}")
    if KIND[pair] == "encoder":
        # The same step with `sparse_prediction` (an option of VaswaniForMaskedLM): only the labelled 15% of the
        # positions go through the MLM head; same loss, logits only where there are labels. BERT as above.
        def sparse():
            v_model.config.sparse_prediction = True
            try:
                trainer("vaswani")()
            finally:
                v_model.config.sparse_prediction = False

        tv, tr, load = alternate(sparse, trainer("reference"), settings["train_repeats"], settings["train_warmup"])
        figures["training_sparse_mlm"] = figure(
            "tokens/s", True, [work / x for x in tv], [work / x for x in tr], attn_implementation="sdpa",
            sparse_prediction=True, contention=load,
        )
        log(f"  {pair:16s} training, sparse MLM prediction: {_brief(figures['training_sparse_mlm'])}")
    optimizers.clear()
    for m in models.values():
        m.eval()
    gc.collect()

    # 3 and 6. Greedy generation with the cache.
    if pair in GENERATIVE:
        prompt, vocab = settings["gen_prompt"], shape["vocab_size"]

        def generator(model, batch, new_tokens):
            gen_inputs = generation_inputs(pair, batch, prompt, vocab)
            config = generation_config(pair, new_tokens)
            expected = (prompt if KIND[pair] == "decoder" else 1) + new_tokens

            def run():
                with torch.no_grad():
                    out = model.generate(**gen_inputs, generation_config=config)
                if out.shape != (batch, expected):
                    raise RuntimeError(f"{type(model).__name__} generated {tuple(out.shape)}, expected {(batch, expected)}")
            return run

        new = settings["gen_new"]
        for batch in settings["gen_batches"]:
            tv, tr, load = alternate(generator(v_model, batch, new), generator(r_model, batch, new),
                               settings["gen_repeats"], settings["warmup"])
            v_tps, r_tps = [batch * new / x for x in tv], [batch * new / x for x in tr]
            name = f"generation_b{batch}"
            figures[name] = figure("new tokens/s", True, v_tps, r_tps, batch=batch, prompt_tokens=prompt,
                                   new_tokens=new, attn_implementation="sdpa", backends=backends, contention=load)
            flops = generation_flops(pair, shape, batch, prompt, new)
            figures[f"mfu_{name}"] = figure(
                "% of peak", True, [100 * flops / x / peak / 1e9 for x in tv],
                [100 * flops / x / peak / 1e9 for x in tr], flops_per_call=flops, contention=load,
            )
            log(f"  {pair:16s} generation batch {batch}: {_brief(figures[name])}")

        for batch in settings["scan_batches"]:
            per_token, loads = {}, {}
            for label, length in zip(SCALING_NAMES, settings["scan_lengths"]):
                tv, tr, load = alternate(generator(v_model, batch, length), generator(r_model, batch, length),
                                   settings["scan_repeats"], settings["warmup"] if label == "short" else 0)
                per_token[label] = ([1000 * x / length for x in tv], [1000 * x / length for x in tr])
                loads[label] = load
                figures[f"gen_scaling_b{batch}_{label}"] = figure(
                    "ms per new token", False, *per_token[label], batch=batch, new_tokens=length,
                    prompt_tokens=prompt, seconds={"vaswani": statistics.median(tv), "reference": statistics.median(tr)},
                    contention=load,
                )
            (vs, rs), (vl, rl) = per_token["short"], per_token["long"]
            figures[f"gen_scaling_b{batch}_growth"] = figure(
                "x (ms/token long / short)", False, [l / s for l, s in zip(vl, vs)], [l / s for l, s in zip(rl, rs)],
                batch=batch, new_tokens=[settings["scan_lengths"][0], settings["scan_lengths"][-1]],
                contention=max((loads["short"], loads["long"]), key=lambda x: x["other_cores_max"]),
            )
            log(f"  {pair:16s} scaling batch {batch}: "
                + ", ".join(f"{settings['scan_lengths'][i]}: {_brief(figures[f'gen_scaling_b{batch}_{lb}'])}"
                            for i, lb in enumerate(SCALING_NAMES)))
    models.clear()
    v_model = r_model = None
    gc.collect()

    # 4. Memory of one training step, each model in fresh child processes, alternating.
    results = {"vaswani": [], "reference": []}
    for i in range(settings["mem_repeats"]):
        for side in ("vaswani", "reference") if i % 2 == 0 else ("reference", "vaswani"):
            results[side].append(pool.apply(memory_child, (pair, side, shape, positions, torch.get_num_threads())))
    figures["memory"] = figure(
        "MiB", False, [x["peak_mib"] for x in results["vaswani"]], [x["peak_mib"] for x in results["reference"]],
        detail={side: {key: statistics.median(x[key] for x in runs) for key in ("resident_before_step_mib", "step_increase_mib")}
                | {"hwm_reset": all(x["hwm_reset"] for x in runs),
                   "malloc_mmap_threshold_fixed": all(x["malloc_mmap_threshold_fixed"] for x in runs)}
                for side, runs in results.items()},
    )
    log(f"  {pair:16s} memory: {_brief(figures['memory'])}")
    return {**info, "figures": figures}


def _brief(fig: dict) -> str:
    return (f"vaswani {_num(fig['vaswani']['median'])} reference {_num(fig['reference']['median'])} "
            f"{fig['unit']}, ratio {fig['ratio']:.2f}")


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


# -- Report -------------------------------------------------------------------------------------------------------------
def code_version() -> dict:
    """The commit measured, and whether the model code differed from it (the figures belong to the working tree)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "vaswani_modified": bool(git("status", "--porcelain", "vaswani"))}


def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "usable_cores": len(os.sched_getaffinity(0)),
        "torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(), "mkldnn": torch.backends.mkldnn.is_available(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average_start": os.getloadavg(),
    }


FIGURE_ORDER = ("inference_sdpa", "inference_eager", "training", "training_sparse_mlm", "generation_b1", "generation_b8", "memory",
                "mfu_inference_sdpa", "mfu_inference_eager", "mfu_training", "mfu_generation_b1", "mfu_generation_b8")


def ordered_figures(figures: dict) -> list[str]:
    first = [name for name in FIGURE_ORDER if name in figures]
    return first + [name for name in figures if name not in first]


SUMMARY = (("inference_sdpa", "inference sdpa"), ("inference_eager", "inference eager"), ("training", "training"),
           ("training_sparse_mlm", "training, sparse MLM"),
           ("generation_b1", "generate b1"), ("generation_b8", "generate b8"), ("memory", "train memory"),
           ("gen_scaling_b1_growth", "growth b1"), ("gen_scaling_b8_growth", "growth b8"))


def ratio_table(shapes: dict) -> list[str]:
    """The summary table's lines: one row per shape and pair, a ratio per SUMMARY column ("-" where not measured)."""
    lines = [
        "Ratios, > 1 = Vaswani better (vaswani/reference for rates, reference/vaswani for memory and growth of the "
        "per-token time from the shortest to the longest generation):",
        "",
        "| shape | pair | " + " | ".join(title for _, title in SUMMARY) + " |",
        "| --- | --- | " + " | ".join("---" for _ in SUMMARY) + " |",
    ]
    for shape_name, shape_report in shapes.items():
        for pair, pair_report in shape_report["pairs"].items():
            figures = pair_report["figures"]
            cells = [f"{figures[name]['ratio']:.2f}" if name in figures else "-" for name, _ in SUMMARY]
            lines.append(f"| {shape_name} | {pair} | " + " | ".join(cells) + " |")
    return lines


def markdown(report: dict) -> str:
    m, peak = report["machine"], report["peak_gflops"]
    lines = [
        f"Machine: {m['cpu']}, {m['usable_cores']} cores, torch {m['torch']}, transformers {m['transformers']}, "
        f"{m['threads']} threads, {m['date']}; fp32 2048^3 matmul peak {peak['median']:.0f} GFLOP/s "
        f"({peak.get('kernel', 'torch.mm')}; min {peak['min']:.0f}, max {peak['max']:.0f}"
        + (f"; {peak['end']['median']:.0f} at the end" if "end" in peak else "")
        + "".join(f"; {name} {k['median']:.0f}" for name, k in peak.get("kernels", {}).items() if name != peak["kernel"])
        + f"), {report['mode']} run, {report.get('wall_seconds', 0) / 60:.1f} min"
        + (f"; allocator: {m['allocator']}" if "allocator" in m else "")
        + ("." if report.get("complete") else ", INCOMPLETE (interrupted or still running)."),
    ]
    if len(report.get("runs", [])) > 1:
        lines.append("Merged from several runs (`--merge`), each pair with the peak of its own run: " + "; ".join(
            f"{run['date']} (commit {run['commit'][:7]}{', model code modified' if run.get('vaswani_modified') else ''},"
            f" peak {run['peak_gflops']:.0f} GFLOP/s): {', '.join(run['measured'])}" for run in report["runs"]
        ) + ".")
    lines += ["", *ratio_table(report["shapes"])]
    for shape_name, shape_report in report["shapes"].items():
        for pair, pair_report in shape_report["pairs"].items():
            used = {fig["backends"]["reference"] for fig in pair_report["figures"].values() if "backends" in fig
                    and fig["backends"]["reference"] != fig["backends"]["vaswani"]}
            if used:
                lines.append(f"\n{shape_name}/{pair}: {pair_report['reference']} has no sdpa back-end; it ran "
                             f"{', '.join(sorted(used))} wherever Vaswani ran sdpa (both eager in `inference eager`).")
    lines += [
        "",
        "Each cell: median [min-max] over alternating repeats. Load: the most CPU (in cores) other processes took "
        "during one repeat pair (0 on a quiet machine).",
        "",
    ]
    for shape_name, shape_report in report["shapes"].items():
        s = shape_report["shape"]
        lines += [
            f"### Shape `{shape_name}`: d_model {s['d_model']}, {s['num_heads']} heads, d_ff {s['d_ff']}, "
            f"{s['layers']} layers a stack, vocabulary {s['vocab_size']}, batch {s['batch']} x {s['seq']}"
            + (f"; images {s['image_size']} x {s['image_size']} in {s['patch_size']} x {s['patch_size']} patches "
               f"({sequence_length('vit', s)} tokens: [CLS] and the patches), {s['num_labels']} classes"
               if "image_size" in s and any(KIND.get(p) == "image" for p in shape_report["pairs"]) else ""),
            "",
            "| pair | figure | unit | Vaswani | reference | ratio | load |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for pair, pair_report in shape_report["pairs"].items():
            label = f"{pair} ({pair_report['vaswani']} vs {pair_report['reference']})"
            for name in ordered_figures(pair_report["figures"]):
                fig = pair_report["figures"][name]
                title = name
                if fig.get("backends", {}).get("reference", fig.get("attn_implementation")) != fig.get("attn_implementation"):
                    title = f"{name} (reference: {fig['backends']['reference']})"
                if name.startswith("gen_scaling") and not name.endswith("growth"):
                    title = f"{name} ({fig['new_tokens']} new)"
                cells = [_cell(fig[side]) for side in ("vaswani", "reference")]
                load = f"{fig['contention']['other_cores_max']:.2f}" if "contention" in fig else "-"
                lines.append(
                    f"| {label} | {title} | {fig['unit']} | {cells[0]} | {cells[1]} | **{fig['ratio']:.2f}** | {load} |"
                )
                label = ""
        lines.append("")
    return "\n".join(lines)


def _cell(s: dict) -> str:
    return f"{_num(s['median'])} [{_num(s['min'])}-{_num(s['max'])}]"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", help="comma-separated: cpu, base (default both); quick mode: cpu (default) or toy")
    parser.add_argument("--pairs", default=",".join(PAIRS), help="comma-separated: " + ", ".join(PAIRS))
    parser.add_argument("--quick", action="store_true", help="few repeats, short generations, the cpu shape")
    parser.add_argument("--max-wait", type=float, help="seconds a figure may wait for other processes to quieten "
                        "(default 120; quick mode 0: no waiting, no re-runs)")
    parser.add_argument("--wait-budget", type=float, default=1800, help="seconds of waiting in all (default 1800)")
    parser.add_argument("--busy-threshold", type=float, default=0.5, help="cores other processes may take during "
                        "a repeat pair before it is re-run (default 0.5)")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS}); 1 measures "
                        "more steadily on cores other processes share (each figure records it)")
    parser.add_argument("--merge", action="store_true", help="keep the pairs already in --out that this run does not "
                        "measure (e.g. re-measure one pair, or finish an interrupted run); each pair records its run")
    parser.add_argument("--out", type=Path, help="JSON path (default benchmarks/results/bench.json; the Markdown "
                        "table goes beside it with the suffix .md)")
    args = parser.parse_args(argv)
    if args.out is None:
        if args.quick:
            parser.error("--quick needs --out: the committed results are the full run's")
        args.out = RESULTS / "bench.json"
    table = FULL if not args.quick else QUICK
    shapes = [s for s in (args.shapes or ("cpu" if args.quick else "cpu,base")).split(",") if s]
    pairs = [p for p in args.pairs.split(",") if p]
    for name in shapes:
        if name not in table:
            parser.error(f"unknown shape {name!r}; choose from {sorted(table)}")
    for name in pairs:
        if name not in PAIRS:
            parser.error(f"unknown pair {name!r}; choose from {sorted(PAIRS)}")

    max_wait = args.max_wait if args.max_wait is not None else (0.0 if args.quick else 120.0)
    CONTENTION.threshold, CONTENTION.max_wait, CONTENTION.budget = args.busy_threshold, max_wait, args.wait_budget
    started = time.perf_counter()
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    pool = memory_pool()  # started before the allocator setting below, which it does not share
    report = {"machine": machine(), "code": code_version(), "mode": "quick" if args.quick else "full",
              "complete": False}
    report["machine"]["allocator"] = steady_allocator()
    existing = json.loads(args.out.read_text()) if args.merge and args.out.exists() else None
    log(f"{report['machine']['cpu']}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    if os.getloadavg()[0] > 0.5:
        log(f"warning: load average {os.getloadavg()[0]:.2f} before starting: other processes compete for the "
            f"cores, and oversubscribed OpenMP threads can slow small operations (decoding) many times over")
    if CONTENTION.max_wait > 0:
        # The MFU denominator waits for quiet cores as the figures do: measured under load it reads a third of the
        # machine's peak, and every MFU above 100% (seen at 91 GFLOP/s against 300 quiet, issue 19's vit runs).
        CONTENTION.wait_for_quiet()
    report["peak_gflops"] = {
        **matmul_peak(5 if args.quick else 10),
        "method": "the faster of fp32 torch.mm and oneDNN's linear on two 2048 x 2048 matrices ('kernels' has both), "
                  "GFLOP/s per repeat, before the figures; the median is the MFU denominator ('end' repeats it after "
                  "the figures, to show drift)",
    }
    this_run = {"date": report["machine"]["date"], "commit": report["code"]["commit"],
                "vaswani_modified": report["code"]["vaswani_modified"], "peak_gflops": report["peak_gflops"]["median"]}
    report["shapes"], report["runs"] = {}, []
    if existing:
        report["shapes"], report["runs"] = merged_shapes(existing), existing.get("runs", [])
    report["runs"].append({**this_run, "measured": [], "finished": False})
    for shape_name in shapes:
        shape, settings = SHAPES[shape_name], table[shape_name]
        log(f"shape {shape_name}: {shape}")
        shape_report = report["shapes"].setdefault(shape_name, {"shape": shape, "settings": settings, "pairs": {}})
        shape_report.update(shape=shape, settings=settings)
        for pair in pairs:
            result = bench_pair(pair, shape_name, shape, settings, report["peak_gflops"]["median"], pool)
            shape_report["pairs"][pair] = {**result, "measured": this_run}
            shape_report["pairs"] = {p: shape_report["pairs"][p] for p in PAIRS if p in shape_report["pairs"]}
            report["runs"][-1]["measured"].append(f"{shape_name}/{pair}")
            report["wall_seconds"] = time.perf_counter() - started
            save(report, args.out)  # after every pair, so that an interrupted run leaves what it measured
    pool.close()
    pool.join()
    report["peak_gflops"]["end"] = matmul_peak(5 if args.quick else 10)
    report["machine"]["load_average_end"] = os.getloadavg()
    report["wall_seconds"] = time.perf_counter() - started
    report["runs"][-1].update(finished=True, wall_seconds=report["wall_seconds"])
    # Complete: a full run has every shape for every pair it was asked for; a quick run (never committed) what it was
    # asked for.
    expected = {(s, p) for s in (shapes if args.quick else table) for p in pairs}
    present = {(s, p) for s, shape_report in report["shapes"].items() for p in shape_report["pairs"]}
    report["complete"] = expected <= present
    report["shapes"] = {s: report["shapes"][s] for s in SHAPES if s in report["shapes"]}
    save(report, args.out)
    print("\n" + markdown(report))
    log(f"wrote {args.out} and {args.out.with_suffix('.md')} in {report['wall_seconds']:.0f} s")


def merged_shapes(existing: dict) -> dict:
    """The shapes of an earlier report, each pair stamped with the run that measured it (older files lack it)."""
    stamp = {"date": existing["machine"]["date"], "commit": existing.get("code", {}).get("commit", ""),
             "vaswani_modified": existing.get("code", {}).get("vaswani_modified"),
             "peak_gflops": existing["peak_gflops"]["median"]}
    shapes = existing["shapes"]
    for shape_report in shapes.values():
        for pair_report in shape_report["pairs"].values():
            pair_report.setdefault("measured", stamp)
    if not existing.get("runs"):
        existing["runs"] = [{**stamp, "measured": [f"{s}/{p}" for s, r in shapes.items() for p in r["pairs"]],
                             "finished": bool(existing.get("complete")), "wall_seconds": existing.get("wall_seconds")}]
    return shapes


def save(report: dict, out: Path):
    report["contention"] = {"busy_threshold_cores": CONTENTION.threshold, "max_wait_per_figure_s": CONTENTION.max_wait,
                            "waited_total_s": CONTENTION.waited_total}
    write_whole(out, json.dumps(report, indent=1) + "\n")  # each file whole or not at all
    write_whole(out.with_suffix(".md"), markdown(report) + "\n")


if __name__ == "__main__":
    main()
