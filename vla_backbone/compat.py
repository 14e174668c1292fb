"""Every difference between the transformers versions we support, in one place.

Supported: transformers 4.57 to 5.x. Each helper below names the version that changed the behaviour, so the rest
of the package (and the notebooks) can stay version-free.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from typing import TYPE_CHECKING, Iterator

import transformers
from packaging.version import Version

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

TRANSFORMERS_VERSION: str = transformers.__version__
IS_V5: bool = int(TRANSFORMERS_VERSION.split(".")[0]) >= 5

# 4.57.3 to 4.57.x look for a Mistral regex bug in every tokenizer of more than 100k tokens whose checkpoint config was
# written by 4.57.3 or later, and warn for Qwen too (a config re-saved here is such a config). Passing
# fix_mistral_regex=False says no fix is wanted and silences the false warning; 5.x checks Mistral models only.
FALSE_MISTRAL_REGEX_WARNING: bool = not IS_V5 and Version(TRANSFORMERS_VERSION) >= Version("4.57.3")

# 5.x renamed gradient checkpointing to activation checkpointing, made it non-reentrant by default, and (in the
# versions tested, 5.0 to 5.24) has it register the input-grad hook by itself; 4.57 does neither. Notebook 07 shows
# it; enable_checkpointing() below checks the model instead of relying on this.
CHECKPOINTING_REGISTERS_INPUT_HOOK: bool = IS_V5


def pretrained_kwargs(*, dtype: "torch.dtype", attn_implementation: str | None, token: str | None) -> dict:
    """Keyword arguments for ``*ForCausalLM.from_pretrained`` that mean the same on 4.57 and 5.x.

    5.x loads a checkpoint in its stored dtype (``dtype="auto"``); 4.57 loaded fp32. An explicit dtype gives the
    same model on both. ``use_flash_attention_2=`` was removed in 4.53: ``attn_implementation`` replaces it.
    ``do_sample``/``temperature``/``top_p`` are rejected by 5.x: see :func:`set_greedy_generation`.
    """
    kwargs: dict = {"dtype": dtype, "token": token}
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    return kwargs


def set_greedy_generation(model: "PreTrainedModel") -> None:
    """Greedy decoding set on the generation config after loading (4.40 took these as ``from_pretrained`` kwargs)."""
    model.generation_config.do_sample = False
    model.generation_config.temperature = 1.0
    model.generation_config.top_p = 1.0


def enable_checkpointing(model: "PreTrainedModel", use_reentrant: bool = False) -> None:
    """Turn on activation (gradient) checkpointing without the 5.x deprecation warning, keeping the input-grad hook.

    Afterwards a model that had the hook has exactly one. 5.x registers a hook of its own while enabling (and
    remembers only the newest handle), 4.57 does not; rather than trust either, remove ours first and check after.
    """
    had_hook = has_input_grad_hook(model)
    for handle in input_grad_hooks(model):
        handle.remove()
    kwargs = {"use_reentrant": use_reentrant}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if had_hook and not has_input_grad_hook(model):
        model.enable_input_require_grads()


def disable_checkpointing(model: "PreTrainedModel") -> None:
    """Turn activation (gradient) checkpointing off again."""
    if hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


def is_checkpointing(model: "PreTrainedModel") -> bool:
    """Whether activation (gradient) checkpointing is on."""
    if hasattr(model, "is_activation_checkpointing"):
        return bool(model.is_activation_checkpointing)
    return bool(model.is_gradient_checkpointing)


def input_grad_hooks(model: "PreTrainedModel") -> list:
    """The handles ``enable_input_require_grads`` registered (5.x keeps a list, 4.57 a single handle)."""
    if hasattr(model, "_require_grads_hooks"):
        return list(model._require_grads_hooks)
    handle = getattr(model, "_require_grads_hook", None)
    return [handle] if handle is not None else []


def has_input_grad_hook(model: "PreTrainedModel") -> bool:
    """Whether the model's *current* input-embedding module still carries the input-grad hook."""
    embeddings = model.get_input_embeddings()
    live = {handle.id for handle in input_grad_hooks(model)}
    return any(hook_id in live for hook_id in embeddings._forward_hooks)


@functools.lru_cache(maxsize=None)
def _cache_argument(model_cls: type) -> str:
    # Recent 5.x releases renamed the forward argument `past_key_values` to `cache` (the old name warns).
    return "cache" if "cache" in inspect.signature(model_cls.forward).parameters else "past_key_values"


def forward_kwargs(model: "PreTrainedModel", **kwargs) -> dict:
    """The upstream forward arguments, renamed for this version, with unset (None) ones left to the model.

    Left-out arguments take the model's own defaults, which is what passing None meant on 4.40; passing them
    explicitly makes recent 5.x warn about deprecated names.
    """
    kwargs = {name: value for name, value in kwargs.items() if value is not None}
    if "past_key_values" in kwargs:
        kwargs[_cache_argument(type(model))] = kwargs.pop("past_key_values")
    return kwargs


def output_cache(output):
    """The KV cache of a model output (``.cache`` on recent 5.x, ``.past_key_values`` before)."""
    fields = getattr(type(output), "__dataclass_fields__", {})
    return output.cache if "cache" in fields else output.past_key_values


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """No progress bars inside the block (5.x draws one per load and save, even for a tiny local checkpoint)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def split_text_as_file_says(tokenizer, tokenizer_json: str) -> None:
    """Make a 5.x ``tokenizer`` split text exactly as the ``tokenizer.json`` it came from says, as 4.x did.

    5.x rebuilds some tokenizers from their class (Llama's with a Metaspace pre-tokenizer of its own) instead of
    reading the file's pipeline. Only the backend that turns text into ids is replaced; the wrapper's settings
    (special tokens, padding side, maximum length) stay. Passing ``tokenizer_object=`` to ``from_pretrained`` gives
    the same ids but takes more than twice as long (it builds the class's own backend first, then deep-copies ours).
    """
    from tokenizers import Tokenizer

    tokenizer._tokenizer = Tokenizer.from_file(tokenizer_json)


def split_text_as_4x_converted(tokenizer, sentencepiece_model: str) -> None:
    """Give a 5.x Llama ``tokenizer`` the backend 4.x built from a checkpoint that ships only ``tokenizer.model``.

    4.x converted the SentencePiece model with ``LlamaConverter`` (the converter that wrote Llama-2's hub
    tokenizer.json): BPE merges ranked by the SentencePiece score of the merged piece, and "▁" added by a normalizer.
    5.x ranks the merges by the merged piece's id instead, so "▁▁" (id 259, the lowest score) merges first
    ("a  leading" -> 263, 259, 25369 instead of 263, 29871, 8236), and it splits with a Metaspace pre-tokenizer,
    which loses a space at the start of the text (" leading" -> 8236 instead of 29871, 8236). 4.57 still converts as
    4.x always did and needs none of this.
    """
    import sentencepiece
    from tokenizers import normalizers
    from tokenizers.models import BPE

    pieces = sentencepiece.SentencePieceProcessor(model_file=sentencepiece_model)
    vocab = {pieces.id_to_piece(piece_id): piece_id for piece_id in range(pieces.get_piece_size())}
    merges = []
    for piece, piece_id in vocab.items():
        splits = [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
        splits.sort(key=lambda pair: (vocab[pair[0]], vocab[pair[1]]))
        merges += [(left, right, pieces.get_score(piece_id)) for left, right in splits]
    # A stable sort, as 4.x's: merges of equal score keep the order above.
    merges.sort(key=lambda merge: merge[2], reverse=True)
    backend = tokenizer.backend_tokenizer
    backend.model = BPE(vocab, [(left, right) for left, right, _ in merges],
                        unk_token=pieces.id_to_piece(pieces.unk_id()), fuse_unk=True, byte_fallback=True)
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None


def decode_kwargs(tokenizer) -> dict:
    """``decode`` arguments that give the same text without 5.x's warning about a clean-up it will not do.

    phi-2's config asks for the WordPiece-style space clean-up; 5.x never applies it to a BPE tokenizer and warns
    each time it is asked. Asking for what 5.x does anyway keeps the text; 4.57 applies the clean-up, as upstream's
    4.40 did.
    """
    if (
        IS_V5
        and getattr(tokenizer, "clean_up_tokenization_spaces", False)
        and type(tokenizer.backend_tokenizer.model).__name__ == "BPE"
        and not getattr(tokenizer, "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False)
    ):
        return {"clean_up_tokenization_spaces": False}
    return {}
