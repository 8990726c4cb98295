"""
The main job (`make demo`): a GPT-style Vaswani model learns Shakespeare character by character on 2 CPU cores.

1. trains a character tokenizer on Tiny Shakespeare (shipped with the package);
2. trains a decoder-only model (pre-LN, learned positions) on the first 90% of the text with `vaswani pretrain`;
3. reports its validation loss on the last 10%, beside nanoGPT's reported 1.88 for its smaller CPU model;
4. writes a Hub-ready folder (weights, config, code, tokenizer, model card), reloads it through
   `AutoModelForCausalLM` / `AutoTokenizer`, and shows what it writes (greedy and sampled).

    python -m vaswani.demo [--output-dir outputs/demo] [--steps 2500] [--quick]
"""

import argparse
import os
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/demo"), help="where the folders go")
    parser.add_argument("--steps", type=int, default=2500, help="training steps (default 2500, ~8 min)")
    parser.add_argument("--quick", action="store_true", help="a tiny model and 120 steps (enough to learn which characters are common): checks the pipeline only")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from . import cli
    from .training.data import SHAKESPEARE

    started = time.perf_counter()
    tokenizer_dir, model_dir = args.output_dir / "tokenizer", args.output_dir / "shakespeare-gpt"
    width, heads, layers, block, steps = (32, 4, 2, 64, 120) if args.quick else (192, 6, 4, 128, args.steps)

    print("== 1. A character tokenizer for Tiny Shakespeare")
    code = cli.main(["train-tokenizer", "--kind", "char", "--data", str(SHAKESPEARE), "--max-length", "1024",
                     "--output", str(tokenizer_dir), "--overwrite"])
    if code:
        return code

    positions = "learned"  # nanoGPT's; `--positions` also takes sinusoidal, rotary, alibi and relative
    print(f"\n== 2. A decoder-only Transformer: d_model {width}, {heads} heads, {layers} layers, blocks of {block} "
          f"characters, {steps} steps")
    print(f"   positions: {positions} (one trained vector per position, as nanoGPT; `vaswani pretrain --positions` "
          f"also takes sinusoidal, rotary, alibi and relative)")
    code = cli.main([
        "pretrain", "--objective", "clm", "--tokenizer", str(tokenizer_dir), "--data", str(SHAKESPEARE),
        "--validation-fraction", "0.1", "--block-size", str(block), "--d-model", str(width), "--num-heads",
        str(heads), "--layers", str(layers), "--positions", positions, "--activation", "gelu", "--norm-first",
        "--no-embedding-scale", "--dropout", "0", "--adam-beta2", "0.99", "--steps", str(steps), "--batch-size", "16",
        "--lr", "1e-3", "--lr-scheduler", "cosine", "--warmup", "100", "--weight-decay", "0.1", "--logging-steps", "250", "--output", str(model_dir),
        "--overwrite",
    ])
    if code:
        return code

    print("\n== 3. The Hub-ready folder, reloaded through the Auto classes")
    print("   files:", ", ".join(sorted(p.name for p in model_dir.iterdir())))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    card = (model_dir / "README.md").read_text()
    loss = next((r["value"] for r in model.config.model_card_data["results"] if r["metric"] == "loss"), None)
    print(f"   {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters; "
          f"model card: {len(card.splitlines())} lines")
    print(f"   validation loss {loss} nats per character (nanoGPT's reported figure for its 4x128 CPU model: 1.88)")

    print("\n== 4. What it writes")
    prompt = tokenizer("ROMEO:\n", return_tensors="pt")
    room = block - prompt["input_ids"].shape[1]  # stay inside the window the positions were trained on
    greedy = model.generate(**prompt, max_new_tokens=min(room, 150), do_sample=False)
    torch.manual_seed(0)
    sampled = model.generate(**prompt, max_new_tokens=room, do_sample=True, temperature=0.8, top_k=40)
    print("-- greedy --\n" + tokenizer.decode(greedy[0], skip_special_tokens=True))
    print("\n-- sampled (temperature 0.8, top-k 40) --\n" + tokenizer.decode(sampled[0], skip_special_tokens=True))
    print(f"\nDone in {time.perf_counter() - started:.0f} s. The model folder is {model_dir}: push it with "
          f"`vaswani push --model {model_dir} --repo-id you/shakespeare-gpt`, load it anywhere with "
          f"`AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True)`.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
