"""The main job (`make demo`) end to end, in its quick mode: tokenizer, training, Hub folder, reload, generation."""

import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from test_defaults import PROMPT, check_generated_text, first_calls
from vaswani import demo


def test_demo_quick_mode_writes_a_reloadable_hub_folder(tmp_path, capsys):
    assert demo.main(["--quick", "--output-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    folder = tmp_path / "shakespeare-gpt"
    files = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "README.md", "tokenizer.json", "modeling_vaswani.py"} <= files
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["VaswaniForCausalLM"] and "AutoModelForCausalLM" in config["auto_map"]
    assert f"positions: {config['position_embedding_type']} " in printed  # it says which kind it trained
    loss = next(r["value"] for r in config["model_card_data"]["results"] if r["metric"] == "loss")
    assert f"validation loss {loss}" in printed
    assert str(loss) in (folder / "README.md").read_text()
    # The samples it printed are what the reloaded model writes.
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    prompt = tokenizer("ROMEO:\n", return_tensors="pt")
    greedy = model.generate(**prompt, max_new_tokens=64 - prompt["input_ids"].shape[1], do_sample=False)
    assert "-- greedy --\n" + tokenizer.decode(greedy[0], skip_special_tokens=True) in printed
    # A new user's first call, in a fresh process, with no argument beyond the folder.
    [continuation], _ = first_calls([("text-generation", folder, PROMPT)], tmp_path)
    check_generated_text(continuation)
