"""Tiny replicas: the real classes, deterministic, built once, safe under concurrency, rebuilt when corrupt."""
import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vla_backbone import tiny

FAMILY_CLASSES = {
    "llama2": ("LlamaForCausalLM", "LlamaDecoderLayer"),
    "mistral": ("MistralForCausalLM", "MistralDecoderLayer"),
    "phi": ("PhiForCausalLM", "PhiDecoderLayer"),
    "qwen25": ("Qwen2ForCausalLM", "Qwen2DecoderLayer"),
    "opt": ("OPTForCausalLM", "OPTDecoderLayer"),
}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VLA_BACKBONE_HOME", str(tmp_path))
    return tmp_path


def digests(path):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())}


# REFERENCE §9, measured on the hub checkpoints: config vocab_size, bos/eos/pad ids, tied embeddings, stored dtype,
# then the tokenizer's len / vocab_size and "Test 123" encoded with special tokens.
HUB_FACTS = {
    "llama2": (32000, 1, 2, None, False, torch.float16, 32000, 32000, [1, 4321, 29871, 29896, 29906, 29941]),
    "mistral": (32000, 1, 2, None, False, torch.bfloat16, 32000, 32000, [1, 3735, 28705, 28740, 28750, 28770]),
    "phi": (51200, 50256, 50256, None, False, torch.float16, 50295, 50257, [14402, 17031]),
    "qwen25": (151936, 151643, 151643, None, True, torch.bfloat16, 151665, 151643, [2271, 220, 16, 17, 18]),
    "opt": (50272, 2, 2, 1, True, torch.float16, 50265, 50265, [2, 34603, 17072]),
}


@pytest.mark.parametrize("family", list(tiny.TINY_SPECS))
def test_replica_is_the_real_architecture_with_the_real_tokenizer(family, home):
    import transformers

    vocab, bos, eos, pad, tied, dtype, tokenizer_len, tokenizer_vocab, test_ids = HUB_FACTS[family]
    path = tiny.tiny_checkpoint(family)
    assert path.is_relative_to(home) and tiny.is_valid(path)
    model_name, layer_name = FAMILY_CLASSES[family]
    model = getattr(transformers, model_name).from_pretrained(path, dtype="auto")
    layers = [m for m in model.modules() if type(m).__name__ == layer_name]
    assert len(layers) == 2 and model.config.hidden_size == 64
    config = model.config
    assert (config.vocab_size, config.bos_token_id, config.eos_token_id, config.pad_token_id) == (vocab, bos, eos, pad)
    assert (model.get_input_embeddings().weight is model.get_output_embeddings().weight) == tied
    assert model.dtype == dtype
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    assert (len(tokenizer), tokenizer.vocab_size) == (tokenizer_len, tokenizer_vocab)
    assert tokenizer("Test 123").input_ids == test_ids


def test_shipped_tokenizer_files_are_the_recorded_originals():
    """Every file in vla_backbone/tokenizers/ matches the sha256 its provenance records (SHA256SUMS)."""
    recorded = dict(
        reversed(line.split()) for line in (tiny.TOKENIZERS / "SHA256SUMS").read_text().splitlines() if line.strip()
    )
    shipped = {
        str(p.relative_to(tiny.TOKENIZERS)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in tiny.TOKENIZERS.glob("*/*")
    }
    assert shipped == recorded
    assert set(tiny.TINY_SPECS) == {path.split("/")[0] for path in shipped}
    assert "LLAMA 2 Community License" in (tiny.TOKENIZERS / "NOTICE").read_text()


def test_replica_tokenizer_files_are_copied_byte_for_byte(home):
    for family in tiny.TINY_SPECS:
        path = tiny.tiny_checkpoint(family)
        for original in (tiny.TOKENIZERS / family).iterdir():
            assert (path / original.name).read_bytes() == original.read_bytes()


def test_builds_are_deterministic(tmp_path, monkeypatch):
    built = []
    for name in ("a", "b"):
        monkeypatch.setenv("VLA_BACKBONE_HOME", str(tmp_path / name))
        built.append({family: digests(tiny.tiny_checkpoint(family)) for family in tiny.TINY_SPECS})
    assert built[0] == built[1]


def test_built_once_then_reused(home):
    path = tiny.tiny_checkpoint("opt")
    stamp = (path / tiny.MANIFEST).stat().st_mtime_ns
    assert tiny.tiny_checkpoint("opt") == path
    assert (path / tiny.MANIFEST).stat().st_mtime_ns == stamp


@pytest.mark.parametrize("damage", ["truncate_weights", "drop_manifest", "garble_tokenizer"])
def test_corrupt_cache_is_rebuilt(home, damage):
    path = tiny.tiny_checkpoint("llama2")
    good = digests(path)
    if damage == "truncate_weights":
        (path / "model.safetensors").write_bytes(b"")
    elif damage == "drop_manifest":
        (path / tiny.MANIFEST).unlink()
    else:
        (path / "tokenizer_config.json").write_text("{")
    assert not tiny.is_valid(path)
    assert tiny.tiny_checkpoint("llama2") == path
    assert digests(path) == good


# Each child imports the package, says it is ready, then waits for the go file, so all four build at the same moment.
# Fresh interpreters, not fork: a fork after torch has run its thread pool can deadlock the child.
_BUILD_IN_CHILD = """
import os, sys, time
from pathlib import Path
from vla_backbone import tiny
import transformers
Path(sys.argv[1] + f".ready{os.getpid()}").touch()
while not Path(sys.argv[1]).exists():
    time.sleep(0.01)
print(tiny.tiny_checkpoint("qwen25"))
"""


def test_concurrent_builds_are_safe(tmp_path):
    go = tmp_path / "go"
    env = {**os.environ, "VLA_BACKBONE_HOME": str(tmp_path)}
    workers = [
        subprocess.Popen([sys.executable, "-c", _BUILD_IN_CHILD, str(go)], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    deadline = time.monotonic() + 300
    while len(list(tmp_path.glob("go.ready*"))) < len(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outputs = [worker.communicate(timeout=300)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0, 0]
    paths = {output.strip() for output in outputs}
    assert len(paths) == 1
    assert tiny.is_valid(Path(paths.pop()))
    leftovers = [p.name for p in (tmp_path / "tiny").rglob(".*")]
    assert leftovers == [], f"staging directories left behind: {leftovers}"


def test_manifest_records_every_file(home):
    path = tiny.tiny_checkpoint("phi")
    manifest = json.loads((path / tiny.MANIFEST).read_text())
    assert set(manifest["files"]) == {p.name for p in path.iterdir()} - {tiny.MANIFEST}
    assert manifest["family"] == "phi"


def test_unknown_family_is_a_clear_error(home):
    with pytest.raises(ValueError, match="Families with one: llama2"):
        tiny.tiny_checkpoint("gpt2")


def test_same_logits_every_run(home):
    import transformers

    path = tiny.tiny_checkpoint("mistral")
    ids = torch.tensor([[1, 5, 9, 200]])
    first = transformers.MistralForCausalLM.from_pretrained(path)(input_ids=ids).logits
    second = transformers.MistralForCausalLM.from_pretrained(path)(input_ids=ids).logits
    torch.testing.assert_close(first, second, rtol=0, atol=0)


def test_a_replica_missing_its_weights_is_not_valid(home):
    path = tiny.tiny_checkpoint("opt")
    manifest = json.loads((path / tiny.MANIFEST).read_text())
    del manifest["files"]["model.safetensors"]
    (path / "model.safetensors").unlink()
    (path / tiny.MANIFEST).write_text(json.dumps(manifest))
    assert not tiny.is_valid(path)
    assert tiny.is_valid(tiny.tiny_checkpoint("opt"))


def test_a_changed_spec_never_reuses_another_specs_replica(home, monkeypatch, tmp_path):
    base = tiny.TINY_SPECS["opt"]
    original = tiny.tiny_checkpoint("opt")
    shallower_spec = dataclasses.replace(base, layers={**base.layers, "num_hidden_layers": 1})
    monkeypatch.setitem(tiny.TINY_SPECS, "opt", shallower_spec)
    shallower = tiny.tiny_checkpoint("opt")
    assert shallower != original and tiny.is_valid(original) and tiny.is_valid(shallower)
    assert json.loads((shallower / "config.json").read_text())["num_hidden_layers"] == 1
    # The same settings with one tokenizer file edited: a replica of its own, holding the edited file.
    edited = tmp_path / "opt-tokenizer"
    shutil.copytree(tiny.tokenizer_files(base), edited)
    config = json.loads((edited / "tokenizer_config.json").read_text())
    (edited / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 7}))
    monkeypatch.setitem(tiny.TINY_SPECS, "opt", dataclasses.replace(base, tokenizer_dir=edited))
    rebuilt = tiny.tiny_checkpoint("opt")
    assert rebuilt not in (original, shallower)
    assert json.loads((rebuilt / "tokenizer_config.json").read_text())["model_max_length"] == 7


def test_tokenizer_dir_may_be_a_string_beside_jupyterlab_checkpoints(home, monkeypatch, tmp_path):
    """JupyterLab writes `.ipynb_checkpoints/` into a folder whose files a learner opened: neither copied nor hashed."""
    base = tiny.TINY_SPECS["opt"]
    folder = tmp_path / "opt-tokenizer"
    shutil.copytree(tiny.tokenizer_files(base), folder)
    monkeypatch.setitem(tiny.TINY_SPECS, "opt", dataclasses.replace(base, tokenizer_dir=str(folder)))
    plain = tiny.tiny_checkpoint("opt")
    (folder / ".ipynb_checkpoints").mkdir()
    (folder / ".ipynb_checkpoints" / "tokenizer_config-checkpoint.json").write_text("{}")
    assert tiny.tiny_checkpoint("opt") == plain
    assert not any(path.name.startswith(".") for path in plain.iterdir())


def test_a_missing_tokenizer_dir_is_a_clear_error(home, monkeypatch, tmp_path):
    monkeypatch.setitem(tiny.TINY_SPECS, "opt", dataclasses.replace(tiny.TINY_SPECS["opt"], tokenizer_dir=tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="point TinySpec\\(tokenizer_dir=...\\) at the folder"):
        tiny.tiny_checkpoint("opt")


def test_layer_keys_the_config_ignores_are_refused_before_a_full_size_build(home, monkeypatch):
    """GPT-2's width and depth keys in an OPT spec: OPTConfig keeps its 125M defaults for the real ones."""
    base = tiny.TINY_SPECS["opt"]
    monkeypatch.setitem(tiny.TINY_SPECS, "opt", dataclasses.replace(base, layers={"n_embd": 64, "n_layer": 2, "n_head": 4}))
    with pytest.raises(ValueError, match=r"would build 1\d\dM parameters, not a toy: OPTConfig ignored some of"):
        tiny.tiny_checkpoint("opt")
    assert not list((home / "tiny").rglob("model.safetensors"))
