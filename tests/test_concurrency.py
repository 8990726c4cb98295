"""
Saving is whole or nothing, also with company: several processes saving one folder while others load it. Every load
sees the complete folder of one writer (its exact weights), nothing raises inside `save_pretrained`, and a writer
killed in the middle of a save leaves a folder that loads.
"""

import multiprocessing
import os
import signal
import time

import pytest
import torch

from helpers import tiny_config

WRITERS, SAVES, READERS = 3, 6, 2


def _model(seed: int):
    from vaswani import VaswaniForCausalLM

    torch.manual_seed(seed)
    return VaswaniForCausalLM(tiny_config(d_model=32, num_hidden_layers=1))


def _fingerprint(model) -> float:
    return float(sum(p.detach().double().sum() * (i + 1) for i, p in enumerate(model.parameters())))


def _write(folder: str, seed: int, saves: int, errors):
    try:
        torch.set_num_threads(1)
        model = _model(seed)
        for _ in range(saves):
            model.save_pretrained(folder)
    except BaseException as error:  # noqa: BLE001 -- reported to the test
        errors.put(f"writer {seed}: {type(error).__name__}: {error}")


def _read(folder: str, stop, seen, errors):
    from transformers import AutoModelForCausalLM

    import vaswani  # noqa: F401

    torch.set_num_threads(1)
    while not stop.is_set():
        if not os.path.isdir(folder):
            time.sleep(0.01)
            continue
        try:
            seen.put(_fingerprint(AutoModelForCausalLM.from_pretrained(folder)))
        except BaseException as error:  # noqa: BLE001
            errors.put(f"reader: {type(error).__name__}: {error}")


def test_concurrent_saves_and_loads_see_whole_folders_of_one_writer(tmp_path):
    context = multiprocessing.get_context("fork")
    folder = str(tmp_path / "shared")
    expected = {_fingerprint(_model(seed)) for seed in range(WRITERS)}
    assert len(expected) == WRITERS
    errors, seen, stop = context.Queue(), context.Queue(), context.Event()
    readers = [context.Process(target=_read, args=(folder, stop, seen, errors)) for _ in range(READERS)]
    writers = [context.Process(target=_write, args=(folder, seed, SAVES, errors)) for seed in range(WRITERS)]
    for process in readers + writers:
        process.start()
    for process in writers:
        process.join(timeout=240)
    stop.set()
    for process in readers:
        process.join(timeout=60)
    problems = []
    while not errors.empty():
        problems.append(errors.get())
    fingerprints = []
    while not seen.empty():
        fingerprints.append(seen.get())
    assert not problems, problems[:5]
    assert fingerprints, "the readers loaded nothing"
    assert set(fingerprints) <= expected, "a load saw weights of no single writer"
    assert _fingerprint(_load(folder)) in expected
    leftovers = [name for name in os.listdir(tmp_path) if name != "shared"]
    assert not leftovers, leftovers  # every staging folder was renamed into place or removed


def _load(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)


@pytest.mark.parametrize("delay", [0.3, 0.8, 1.5])
def test_a_writer_killed_mid_save_leaves_a_folder_that_loads(tmp_path, delay):
    context = multiprocessing.get_context("fork")
    folder = str(tmp_path / "model")
    _model(0).save_pretrained(folder)  # the old folder
    expected = {_fingerprint(_model(0)), _fingerprint(_model(1))}
    errors = context.Queue()
    writer = context.Process(target=_write, args=(folder, 1, 1000, errors))
    writer.start()
    time.sleep(delay)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    assert _fingerprint(_load(folder)) in expected  # the old model or the new one, whole


def test_a_later_save_removes_the_staging_folder_a_killed_writer_left(tmp_path):
    context = multiprocessing.get_context("fork")
    folder = tmp_path / "model"
    _model(0).save_pretrained(folder)
    writer = context.Process(target=lambda: time.sleep(60))
    writer.start()
    dead = tmp_path / f".model.partial-{writer.pid}-0123456789ab"
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"half a file")
    alive = tmp_path / f".model.partial-{os.getpid()}-ba9876543210"  # a save in progress in a running process
    alive.mkdir()
    _model(1).save_pretrained(folder)
    assert not dead.exists() and alive.exists()
    assert _fingerprint(_load(str(folder))) == _fingerprint(_model(1))
