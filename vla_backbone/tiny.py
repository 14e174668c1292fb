"""Offline tiny replicas: each family's real tokenizer and real model class, at toy width and depth.

Each spec gets one checkpoint directory under ``$VLA_BACKBONE_HOME/tiny/`` (default ``~/.cache/vla_backbone``),
built on first use and reused afterwards. A replica is the family's genuine tokenizer files (shipped in
``vla_backbone/tokenizers/``) beside a randomly initialised ``*ForCausalLM`` whose config has the hub checkpoint's
vocabulary size, special ids, embedding tying and stored dtype; only width and depth shrink (hidden size 64,
2 layers). BOS behaviour, PAD ids, resizes and action-token ids are therefore the real ones: nothing about them is
written here by hand.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from vla_backbone import compat

FORMAT_VERSION = 5
MANIFEST = "tiny_manifest.json"
REQUIRED_FILES = {"config.json", "model.safetensors", "tokenizer_config.json"}
SEED = 0
# The largest replica is Qwen's: its 151936-row vocabulary makes about 10M parameters at width 64.
MAX_PARAMETERS = 50_000_000
TOKENIZERS = Path(__file__).resolve().parent / "tokenizers"


@dataclass(frozen=True)
class TinySpec:
    """How to build one family's replica: the hub config's identity, at toy size."""

    family: str
    config_cls: str
    model_cls: str
    hub_config: dict  # vocab_size, special ids, tying: as in the hub checkpoint's config.json (REFERENCE §9)
    stored_dtype: torch.dtype  # the dtype the hub checkpoint is stored in
    layers: dict  # the toy width and depth
    tokenizer_dir: Optional[Path] = None  # the real tokenizer files; default: vla_backbone/tokenizers/<family>


_SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}

# === The five families (hub repo whose config is mirrored, in the comment) ===
TINY_SPECS = {
    # meta-llama/Llama-2-7b-hf
    "llama2": TinySpec(
        "llama2", "LlamaConfig", "LlamaForCausalLM",
        {"vocab_size": 32000, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None, "tie_word_embeddings": False,
         "max_position_embeddings": 4096},
        torch.float16, {**_SMALL, "intermediate_size": 128, "num_key_value_heads": 2},
    ),
    # mistralai/Mistral-7B-v0.1
    "mistral": TinySpec(
        "mistral", "MistralConfig", "MistralForCausalLM",
        {"vocab_size": 32000, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None, "tie_word_embeddings": False,
         "max_position_embeddings": 32768, "sliding_window": 4096},
        torch.bfloat16, {**_SMALL, "intermediate_size": 128, "num_key_value_heads": 2},
    ),
    # microsoft/phi-2
    "phi": TinySpec(
        "phi", "PhiConfig", "PhiForCausalLM",
        {"vocab_size": 51200, "bos_token_id": 50256, "eos_token_id": 50256, "pad_token_id": None,
         "tie_word_embeddings": False, "max_position_embeddings": 2048, "partial_rotary_factor": 0.4},
        torch.float16, {**_SMALL, "intermediate_size": 256},
    ),
    # Qwen/Qwen2.5-0.5B
    "qwen25": TinySpec(
        "qwen25", "Qwen2Config", "Qwen2ForCausalLM",
        {"vocab_size": 151936, "bos_token_id": 151643, "eos_token_id": 151643, "pad_token_id": None,
         "tie_word_embeddings": True, "max_position_embeddings": 32768},
        torch.bfloat16, {**_SMALL, "intermediate_size": 128, "num_key_value_heads": 2},
    ),
    # facebook/opt-125m
    "opt": TinySpec(
        "opt", "OPTConfig", "OPTForCausalLM",
        {"vocab_size": 50272, "bos_token_id": 2, "eos_token_id": 2, "pad_token_id": 1, "tie_word_embeddings": True,
         "max_position_embeddings": 2048},
        torch.float16, {**_SMALL, "ffn_dim": 128, "word_embed_proj_dim": 64},
    ),
}


def tokenizer_files(spec: TinySpec) -> Path:
    """The directory of the real tokenizer files a replica is built around."""
    return Path(spec.tokenizer_dir) if spec.tokenizer_dir else TOKENIZERS / spec.family


def _tokenizer_sources(spec: TinySpec) -> list[Path]:
    """The tokenizer files to copy: regular files only, so that JupyterLab's ``.ipynb_checkpoints/`` or an editor's
    hidden files beside them are neither copied nor hashed."""
    directory = tokenizer_files(spec)
    if not directory.is_dir():
        raise FileNotFoundError(f"The tokenizer files of the tiny {spec.family} replica should be in {directory}, "
                                "which is not a directory: point TinySpec(tokenizer_dir=...) at the folder that "
                                "holds tokenizer_config.json.")
    return [path for path in sorted(directory.iterdir()) if path.is_file() and not path.name.startswith(".")]


def tiny_home() -> Path:
    """Where replicas live: ``$VLA_BACKBONE_HOME`` or ``~/.cache/vla_backbone`` (XDG cache dir respected)."""
    if os.environ.get("VLA_BACKBONE_HOME"):
        return Path(os.environ["VLA_BACKBONE_HOME"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "vla_backbone"


def spec_fingerprint(spec: TinySpec) -> str:
    """A short hash of everything a replica is built from, the tokenizer files' bytes included."""
    files = {path.name: _sha256(path) for path in _tokenizer_sources(spec)}
    recipe = [spec.family, spec.config_cls, spec.model_cls, spec.hub_config, str(spec.stored_dtype), spec.layers, files]
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def tiny_dir(family: str) -> Path:
    """Where the replica of ``TINY_SPECS[family]`` lives (whether or not it is built yet)."""
    # Keyed by transformers version: a checkpoint written by one version is rebuilt, not trusted, by another. Keyed by
    # the spec: two specs registered under one name (a notebook's and an assignment's) never share a replica.
    version_dir = tiny_home() / "tiny" / f"v{FORMAT_VERSION}-transformers-{compat.TRANSFORMERS_VERSION}"
    return version_dir / f"{family}-{spec_fingerprint(TINY_SPECS[family])}"


def _build(spec: TinySpec, target: Path) -> None:
    import transformers

    # The tokenizer is copied, not re-saved: the files stay byte for byte the real ones.
    for source in _tokenizer_sources(spec):
        shutil.copyfile(source, target / source.name)
    config = getattr(transformers, spec.config_cls)(**spec.hub_config, **spec.layers)
    model_cls = getattr(transformers, spec.model_cls)
    # A config keeps a key it does not know and its full-size defaults: GPT-2's "n_embd" in a GPT-NeoX spec would
    # build a 20-billion-parameter "replica". Counted on the meta device first, where nothing is allocated.
    with torch.device("meta"):
        size = sum(parameter.numel() for parameter in model_cls(config).parameters())
    if size > MAX_PARAMETERS:
        raise ValueError(
            f"TinySpec('{spec.family}') would build {size / 1e6:,.0f}M parameters, not a toy: {spec.config_cls} "
            f"ignored some of {sorted(spec.layers)}. Use the key names of {spec.config_cls}().to_dict() (width and "
            "depth are named differently in each architecture)."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = model_cls(config)
    # Stored in the hub checkpoint's dtype, so loading without an explicit dtype behaves as it would on real weights.
    with compat.quiet_progress_bars():
        model.to(spec.stored_dtype).save_pretrained(target)
    files = sorted(p.name for p in target.iterdir())
    manifest = {"family": spec.family, "format": FORMAT_VERSION, "files": {name: _sha256(target / name) for name in files}}
    # Written last: a directory without a manifest was never finished.
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_valid(path: Path) -> bool:
    """Whether ``path`` holds a finished replica whose files still match their recorded hashes."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        return manifest["format"] == FORMAT_VERSION and REQUIRED_FILES <= set(manifest["files"]) and all(
            _sha256(path / name) == digest for name, digest in manifest["files"].items()
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def tiny_checkpoint(family: str) -> Path:
    """The directory of ``family``'s replica, built on first use; a corrupt one is rebuilt."""
    if family not in TINY_SPECS:
        raise ValueError(f"No tiny replica for family '{family}'. Families with one: {', '.join(TINY_SPECS)}.")
    target = tiny_dir(family)
    if is_valid(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build next to the target and rename into place: a rename is atomic, so a second process building at the
    # same time either wins the rename or finds a finished replica, never half of one.
    staging = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=target.parent))
    try:
        _build(TINY_SPECS[family], staging)
        if not is_valid(staging):
            raise RuntimeError(
                f"Building the tiny {family} replica left an incomplete checkpoint in {staging}. Inside a "
                "torch.distributed process group transformers saves model files on rank 0 only: call "
                "vla_backbone.tiny.tiny_checkpoint() before init_process_group."
            )
        if target.exists() and not is_valid(target):
            graveyard = target.with_name(f".{family}-corrupt-{uuid.uuid4().hex}")
            try:
                target.rename(graveyard)
                shutil.rmtree(graveyard, ignore_errors=True)
            except FileNotFoundError:
                pass  # another process moved it first
        try:
            staging.rename(target)
        except OSError:
            if not is_valid(target):  # lost the race to a process whose replica is fine? then use it
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
