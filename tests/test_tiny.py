"""Tiny replicas: the real classes, deterministic, built once, safe under concurrency, rebuilt when corrupt."""
import hashlib
import json
import multiprocessing
import os
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


@pytest.mark.parametrize("family", list(tiny.TINY_SPECS))
def test_replica_is_the_real_architecture_with_family_tokens(family, home):
    import transformers

    path = tiny.tiny_checkpoint(family)
    assert path.is_relative_to(home) and tiny.is_valid(path)
    model_name, layer_name = FAMILY_CLASSES[family]
    model = getattr(transformers, model_name).from_pretrained(path)
    layers = [m for m in model.modules() if type(m).__name__ == layer_name]
    assert len(layers) == 2 and model.config.hidden_size == 64
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    assert tokenizer.vocab_size == tiny.VOCAB_SIZE >= 256 + 512
    ids = tokenizer("Test 123").input_ids
    bos = tokenizer.bos_token_id
    if family in ("llama2", "mistral"):
        assert tokenizer.bos_token == "<s>" and ids[0] == bos and tokenizer.pad_token is None
    elif family == "opt":
        assert tokenizer.bos_token == "</s>" == tokenizer.eos_token and ids[0] == bos and tokenizer.pad_token == "<pad>"
    elif family == "phi":
        assert tokenizer.bos_token == tokenizer.eos_token == "<|endoftext|>" and ids[0] != bos
    else:
        assert bos is None and tokenizer.pad_token == "<|endoftext|>"
        assert {"<|im_start|>", "<|im_end|>", "<|endoftext|>"} <= set(tokenizer.get_vocab())


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
        (path / "tokenizer.json").write_text("{")
    assert not tiny.is_valid(path)
    assert tiny.tiny_checkpoint("llama2") == path
    assert digests(path) == good


def _build_in_child(home_dir, family, start, queue):
    os.environ["VLA_BACKBONE_HOME"] = home_dir
    start.wait(30)
    queue.put(str(tiny.tiny_checkpoint(family)))


def test_concurrent_builds_are_safe(tmp_path):
    # Forked workers already have transformers imported, so they reach the build at the same moment.
    context = multiprocessing.get_context("fork")
    start, queue = context.Event(), context.Queue()
    workers = [context.Process(target=_build_in_child, args=(str(tmp_path), "qwen25", start, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    paths = {queue.get(timeout=5) for _ in workers}
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
