"""Offline tiny replicas: the real model and decoder-layer classes at toy size, with tokenizers trained in code.

Each family gets one checkpoint directory under ``$VLA_BACKBONE_HOME/tiny/`` (default ``~/.cache/vla_backbone``),
built on first use in about a tenth of a second and reused afterwards. A replica keeps what the notebooks teach —
the ``*ForCausalLM`` class, the decoder-layer class FSDP wraps, the special tokens and the BOS behaviour — and
shrinks everything else (hidden size 64, 2 layers, a 1024-token vocabulary).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from vla_backbone import compat

FORMAT_VERSION = 3
VOCAB_SIZE = 1024
ACTION_BINS = 256  # the tail of the vocabulary is kept free of trained merges, for OpenVLA's action bins
MANIFEST = "tiny_manifest.json"
REQUIRED_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
SEED = 0

# A small English corpus in the register the notebooks use: robot instructions, prompt templates, numbers.
_OBJECTS = "cup bowl block drawer door towel sponge apple banana carrot spoon fork plate bottle lid box pot pan".split()
_COLORS = "red blue green yellow black white orange purple".split()
_PLACES = "table shelf sink counter tray basket cabinet stove floor bin".split()
_VERBS = "pick up|put|move|place|push|pull|open|close|lift|wipe|stack|slide|turn|grasp|drop".split("|")
_TEMPLATES = (
    "In: What action should the robot take to {verb} the {color} {obj}?\nOut: ",
    "USER: {verb} the {obj} on the {place} ASSISTANT: ",
    "[INST] {verb} the {color} {obj} next to the {place} [/INST] ",
    "Input: {verb} the {obj} into the {place}\nOutput: ",
    "The robot will {verb} the {obj} from the {place} in {n} steps.",
    "Test {n}: the {color} {obj} is {n} cm from the {place}.",
)


def _corpus() -> list[str]:
    lines = []
    for i, template in enumerate(_TEMPLATES):
        for j, obj in enumerate(_OBJECTS):
            verb = _VERBS[(i + j) % len(_VERBS)]
            color = _COLORS[(i * 3 + j) % len(_COLORS)]
            place = _PLACES[(i + 2 * j) % len(_PLACES)]
            lines.append(template.format(verb=verb, color=color, obj=obj, place=place, n=(7 * i + j) % 100))
    lines += [" ".join(map(str, range(k, k + 12))) for k in range(0, 200, 12)]
    return lines


@dataclass(frozen=True)
class TinySpec:
    """How to build one family's replica."""

    family: str
    config_cls: str
    model_cls: str
    style: str  # "metaspace" (SentencePiece-like: Llama, Mistral) or "bytelevel" (GPT-2-like: Phi, Qwen, OPT)
    special_tokens: tuple[str, ...]  # trained into the vocabulary first, in this order
    token_roles: dict  # bos_token / eos_token / unk_token / pad_token -> token
    prepend: Optional[str]  # the token the post-processor puts in front of every encoding, if any
    config: dict = field(default_factory=dict)


QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_LAYERS = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 2048}

TINY_SPECS = {
    "llama2": TinySpec(
        "llama2", "LlamaConfig", "LlamaForCausalLM", "metaspace", ("<unk>", "<s>", "</s>"),
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, "<s>",
        {**_LAYERS, "intermediate_size": 128, "num_key_value_heads": 2},
    ),
    "mistral": TinySpec(
        "mistral", "MistralConfig", "MistralForCausalLM", "metaspace", ("<unk>", "<s>", "</s>"),
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}, "<s>",
        {**_LAYERS, "intermediate_size": 128, "num_key_value_heads": 2, "sliding_window": 4096},
    ),
    "phi": TinySpec(
        "phi", "PhiConfig", "PhiForCausalLM", "bytelevel", ("<|endoftext|>",),
        {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, None,
        {**_LAYERS, "intermediate_size": 256, "partial_rotary_factor": 0.4},
    ),
    "qwen25": TinySpec(
        "qwen25", "Qwen2Config", "Qwen2ForCausalLM", "bytelevel", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
        {"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}, None,
        {**_LAYERS, "intermediate_size": 128, "num_key_value_heads": 2, "tie_word_embeddings": True},
    ),
    "opt": TinySpec(
        "opt", "OPTConfig", "OPTForCausalLM", "bytelevel", ("<s>", "<pad>", "</s>", "<unk>"),
        {"bos_token": "</s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}, "</s>",
        {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 2048,
         "ffn_dim": 128, "word_embed_proj_dim": 64},
    ),
}


def tiny_home() -> Path:
    """Where replicas live: ``$VLA_BACKBONE_HOME`` or ``~/.cache/vla_backbone`` (XDG cache dir respected)."""
    if os.environ.get("VLA_BACKBONE_HOME"):
        return Path(os.environ["VLA_BACKBONE_HOME"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "vla_backbone"


def tiny_dir(family: str) -> Path:
    # Keyed by transformers version: a checkpoint written by one version is rebuilt, not trusted, by another.
    return tiny_home() / "tiny" / f"v{FORMAT_VERSION}-transformers-{compat.TRANSFORMERS_VERSION}" / family


def _train_tokenizer(spec: TinySpec):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if spec.style == "metaspace":
        tokenizer = Tokenizer(models.BPE(unk_token=spec.token_roles["unk_token"]))
        tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        alphabet = []
    else:
        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        if spec.family == "qwen25":
            # Qwen2's own split (digits one by one); transformers 5 re-applies it when loading a Qwen2 tokenizer,
            # so training with it keeps the trained merges and the loaded tokenizer in agreement.
            tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated"),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
                ]
            )
        tokenizer.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE - ACTION_BINS, special_tokens=list(spec.special_tokens), initial_alphabet=alphabet, show_progress=False
    )
    tokenizer.train_from_iterator(_corpus(), trainer)

    # Fill the vocabulary up to VOCAB_SIZE with entries no merge ever produces: like the rarely used tail of a
    # real vocabulary, they are what OpenVLA overwrites with its 256 action bins. Registering them as (non-special)
    # added tokens makes their text encode back to the same id, so action text round-trips as OpenVLA expects.
    data = json.loads(tokenizer.to_str())
    vocab = data["model"]["vocab"]
    for index in range(len(vocab), VOCAB_SIZE):
        vocab[f"<unused_{index}>"] = index
        data["added_tokens"].append(
            {"id": index, "content": f"<unused_{index}>", "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": False}
        )
    if spec.prepend is not None:
        data["post_processor"] = json.loads(
            processors.TemplateProcessing(
                single=f"{spec.prepend} $A",
                pair=f"{spec.prepend} $A {spec.prepend} $B",
                special_tokens=[(spec.prepend, vocab[spec.prepend])],
            ).__getstate__()
        )
    elif spec.style == "bytelevel":
        data["post_processor"] = json.loads(processors.ByteLevel(trim_offsets=False).__getstate__())
    return Tokenizer.from_str(json.dumps(data))


def _build(spec: TinySpec, target: Path) -> None:
    import transformers

    # Only the inputs every family's model accepts: 4.57 would otherwise also return token_type_ids.
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(spec), model_input_names=["input_ids", "attention_mask"], **spec.token_roles
    )
    ids = {role: tokenizer.convert_tokens_to_ids(token) for role, token in spec.token_roles.items()}
    config = getattr(transformers, spec.config_cls)(
        vocab_size=len(tokenizer),
        bos_token_id=ids.get("bos_token"),
        eos_token_id=ids.get("eos_token"),
        pad_token_id=ids.get("pad_token"),
        **spec.config,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = getattr(transformers, spec.model_cls)(config)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
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
