"""
Run the `vaswani` command line under torchrun and record, for each rank, what really happened.

    torchrun --nproc_per_node 2 tests/ddp_worker.py REPORT_DIR pretrain --objective clm ...

Everything after REPORT_DIR is passed to `vaswani.cli.main` unchanged. The worker wraps `vaswani.training.run.train`
and `publish` (the CLI imports both at call time) and each rank writes:

- REPORT_DIR/rank{r}.json: the rank and world size torch.distributed and Trainer saw, how Trainer wrapped the model
  (DDP or FSDP), whether parameters were sharded, the sha256 of the rank's weights before and after training, and
  whether this rank wrote the output folder;
- REPORT_DIR/rank{r}.txt: the final digest alone.

The digest is the sha256 of every tensor of the full (unsharded) state dict, in name order, as raw bytes.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch


WRAPPER_PREFIXES = ("module.", "_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def _clean(name: str) -> str:
    for prefix in WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


def full_state(model) -> dict:
    """The whole state dict on every rank: DTensor shards (FSDP2) are gathered; wrapper prefixes are dropped."""
    state = {}
    for name, value in model.state_dict().items():
        if hasattr(value, "full_tensor"):  # a DTensor: a collective, so every rank gathers in the same order
            value = value.full_tensor()
        state[_clean(name)] = value.detach().cpu().contiguous()
    return state


def digest(state: dict) -> str:
    hasher = hashlib.sha256()
    for name in sorted(state):
        hasher.update(name.encode())
        tensor = state[name]
        hasher.update((tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy().tobytes())
    return hasher.hexdigest()


def _sharded(model) -> bool:
    """Whether some parameter is held only in part on this rank (FSDP sharding)."""
    for parameter in model.parameters():
        if hasattr(parameter, "to_local") and tuple(parameter.to_local().shape) != tuple(parameter.shape):
            return True
        if type(parameter).__name__ == "FlatParameter":
            return True
    return False


def _fsdp_modules(model) -> list[str]:
    """Names of the modules wrapped as FSDP units (FSDP1 wrappers or FSDP2 `fully_shard` modules)."""
    found = []
    for name, module in model.named_modules():
        kind = type(module).__name__
        if kind == "FullyShardedDataParallel" or kind.startswith("FSDP"):
            found.append(_clean(name) or "<root>")
    return found


def main() -> int:
    report_dir = Path(sys.argv[1])
    argv = sys.argv[2:]
    report_dir.mkdir(parents=True, exist_ok=True)
    env_rank = int(os.environ.get("RANK", "0"))
    record = {"env_rank": env_rank, "env_world_size": int(os.environ.get("WORLD_SIZE", "1")), "published": False}

    import vaswani.training.run as run
    from vaswani import cli

    original_train, original_publish = run.train, run.publish

    def train(model, tokenizer, prepared, settings, trainer_class=None):
        record["initial_digest"] = digest(full_state(model))
        kwargs = {} if trainer_class is None else {"trainer_class": trainer_class}
        trainer, eval_loss = original_train(model, tokenizer, prepared, settings, **kwargs)
        import torch.distributed as dist

        record.update(
            dist_initialized=dist.is_available() and dist.is_initialized(),
            dist_rank=dist.get_rank() if dist.is_initialized() else None,
            dist_world_size=dist.get_world_size() if dist.is_initialized() else None,
            dist_backend=dist.get_backend() if dist.is_initialized() else None,
            trainer_world_size=trainer.args.world_size,
            trainer_process_index=trainer.args.process_index,
            parallel_mode=str(trainer.args.parallel_mode),
            args_fsdp=repr(trainer.args.fsdp),
            fsdp_plugin_args=repr(getattr(trainer.args, "fsdp_plugin_args", None)),
            is_fsdp_enabled=bool(getattr(trainer, "is_fsdp_enabled", False)),
            distributed_type=str(trainer.accelerator.distributed_type),
            accelerator_fsdp_plugin=getattr(trainer.accelerator.state, "fsdp_plugin", None) is not None,
            wrapped_type=type(trainer.model_wrapped).__name__,
            ddp_find_unused_parameters=trainer.args.ddp_find_unused_parameters,
            ddp_module_find_unused=getattr(trainer.model_wrapped, "find_unused_parameters", None),
            model_type=type(trainer.model).__name__,
            fsdp_units=_fsdp_modules(trainer.model_wrapped),
            sharded=_sharded(trainer.model_wrapped),
            global_step=trainer.state.global_step,
        )
        record["final_digest"] = digest(full_state(trainer.model))
        return trainer, eval_loss

    def publish(trainer, output, overwrite=False, companions=()):
        # Every rank takes part (FSDP gathers weights); the main process is the one that writes the folder.
        record["published"] = trainer.is_world_process_zero()
        return original_publish(trainer, output, overwrite, companions)

    run.train, run.publish = train, publish
    code = None
    try:
        code = cli.main(argv)
    finally:
        record["exit_code"] = code
        rank = record.get("dist_rank", env_rank)
        rank = env_rank if rank is None else rank
        (report_dir / f"rank{rank}.json").write_text(json.dumps(record, indent=2) + "\n")
        if "final_digest" in record:
            (report_dir / f"rank{rank}.txt").write_text(record["final_digest"] + "\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
