"""`HFCausalLLMBackbone`: `LLMBackbone` for any HuggingFace ``*ForCausalLM`` model."""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import socket
import threading
from abc import ABC
from typing import TYPE_CHECKING, Callable, ClassVar, Iterator, Optional, Sequence
from urllib.parse import urlparse

import torch

from vla_backbone import compat
from vla_backbone.base import LLMBackbone
from vla_backbone.errors import BackboneLoadError, FlashAttentionUnavailableError, TokenizerBOSError, redact

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase
    from transformers.modeling_outputs import CausalLMOutputWithPast

# Backbones whose tokenizer adds no BOS by design; their prompt builders supply the first token themselves.
# phi-2 comes from OpenVLA, the Qwen-2.5 ids from MiniVLA (Qwen has no BOS token at all).
SPECIAL_CASES = {
    "phi-2-3b",
    "qwen25-0_5b-pure",
    "qwen25-0_5b-extra",
    "qwen25-1_5b-pure",
    "qwen25-3b-pure",
    "qwen25-7b-pure",
}

BOS_PROBE_TEXT = "Test 123"


def check_bos(tokenizer: "PreTrainedTokenizerBase", llm_backbone_id: str) -> None:
    """Raise unless ``tokenizer`` prepends BOS with special tokens and only then.

    The VLM splices image patches in at position 1, right after BOS; without a BOS they would land after a word.
    An explicit ``raise`` instead of ``assert`` keeps the check alive under ``python -O``.
    """
    bos = tokenizer.bos_token_id
    with_special = tokenizer(BOS_PROBE_TEXT, add_special_tokens=True).input_ids
    without_special = tokenizer(BOS_PROBE_TEXT, add_special_tokens=False).input_ids
    adds_bos = bos is not None and with_special[:1] == [bos]
    plain_starts_with_bos = bos is not None and without_special[:1] == [bos]
    if adds_bos and not plain_starts_with_bos:
        return
    if not adds_bos:
        problem = "it does not prepend BOS when add_special_tokens=True"
        fix = (
            "make its post-processor prepend BOS (e.g. a TemplateProcessing with the BOS token; a tokenizer class "
            "that rebuilds its post-processor from add_bos_token, such as GPTNeoXTokenizer, needs add_bos_token=True "
            "in the family's tokenizer_kwargs instead), or, if this family "
            f"has no BOS by design, add '{llm_backbone_id}' to vla_backbone.hf_causal.SPECIAL_CASES and let its "
            "prompt builder write the first token"
        )
    else:
        problem = "it starts with BOS even when add_special_tokens=False"
        fix = (
            "BOS must come only from the special-token step, so remove whatever else writes it (a normalizer, a "
            "pre-tokenizer, or text that already starts with the BOS string)"
        )
    raise TokenizerBOSError(
        f"{type(tokenizer).__name__} for '{llm_backbone_id}' fails the BOS check: {problem}. "
        f"{BOS_PROBE_TEXT!r} -> {with_special} with special tokens, {without_special} without; "
        f"bos_token_id = {bos}. The VLM inserts image patches right after BOS. To fix it, {fix}."
    )


def attn_implementation_for(use_flash_attention_2: bool) -> Optional[str]:
    """Map upstream's boolean flag onto ``attn_implementation`` (None keeps the library default, SDPA)."""
    if not use_flash_attention_2:
        return None
    missing = []
    if importlib.util.find_spec("flash_attn") is None:
        missing.append("the flash-attn package")
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU")
    if missing:
        raise FlashAttentionUnavailableError(
            f"use_flash_attention_2=True needs flash-attn on a CUDA GPU, and this machine lacks {' and '.join(missing)}. "
            "Pass use_flash_attention_2=False (PyTorch SDPA attention, the default), or on a GPU machine run "
            "`pip install flash-attn --no-build-isolation`."
        )
    return "flash_attention_2"


def looks_like_local_path(path: str) -> bool:
    return os.path.isabs(path) or path.startswith(("./", "../", "~")) or os.path.exists(path)


def check_local_checkpoint(path: str) -> None:
    """Raise a clear error unless ``path`` is a directory holding a saved config and tokenizer."""
    if not os.path.isdir(path):
        raise BackboneLoadError(
            f"Checkpoint directory '{path}' does not exist. Pass an existing directory written by "
            "`model.save_pretrained(dir)` and `tokenizer.save_pretrained(dir)`, or use source='tiny' / source='hub'."
        )
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise BackboneLoadError(
            f"'{path}' has no config.json, so it is not a saved HuggingFace checkpoint. Save one with "
            "`model.save_pretrained(dir)` and `tokenizer.save_pretrained(dir)`, or use source='tiny'."
        )


PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
_reachable_endpoints: set[str] = set()


def hub_endpoint() -> tuple[str, int]:
    """The host and port that huggingface_hub talks to (``HF_ENDPOINT``, default https://huggingface.co)."""
    from huggingface_hub import constants

    endpoint = urlparse(constants.ENDPOINT)
    return endpoint.hostname or "", endpoint.port or (80 if endpoint.scheme == "http" else 443)


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """Whether the HuggingFace endpoint accepts a TCP connection within ``timeout_s`` (DNS included).

    Behind a proxy the answer is always yes: only huggingface_hub, which goes through the proxy, can tell. A yes is
    remembered for the session; a no is not, so a network that comes back is noticed at the next load.
    """
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return True
    host, port = hub_endpoint()
    if f"{host}:{port}" in _reachable_endpoints:
        return True
    answers: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            answers.append(True)
        except OSError:
            answers.append(False)

    # A thread with a deadline, because a slow DNS resolver ignores the socket timeout.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout_s)
    if answers == [True]:
        _reachable_endpoints.add(f"{host}:{port}")
        return True
    return False


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from, outermost first (transformers wraps the hub's errors)."""
    chain: list[BaseException] = []
    while exc is not None and not any(exc is seen for seen in chain):
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    return chain


def load_error_message(exc: Exception, hf_hub_path: str, hf_token: Optional[str], cache_only: bool) -> Optional[str]:
    """What to tell the user when loading ``hf_hub_path`` raised ``exc``; None for errors we cannot explain.

    ``cache_only``: the load asked only the local cache, because the hub was offline or did not answer the probe.
    """
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
    from safetensors import SafetensorError

    chain = causes(exc)
    if looks_like_local_path(hf_hub_path):
        # A directory that exists but holds broken files fails in several ways: OSError (missing files, bad
        # config.json), ValueError (bad tokenizer JSON), SafetensorError (bad weights). Anything else is a bug to
        # see as it is, not a corrupt directory.
        if not isinstance(exc, (OSError, ValueError, SafetensorError)):
            return None
        return (
            f"Could not load a checkpoint from '{hf_hub_path}' ({type(exc).__name__}: {exc}). The directory looks "
            "corrupt or incomplete: save it again with `save_pretrained`, or use source='tiny'."
        )
    if any(isinstance(cause, GatedRepoError) for cause in chain):
        hint = "the token you passed has no access" if hf_token else "no token was passed"
        return (
            f"'{hf_hub_path}' is a gated repository and {hint}. Accept its licence on "
            f"https://huggingface.co/{hf_hub_path}, then pass hf_token=<your token> (or set HF_TOKEN). "
            "Offline, use source='tiny'."
        )
    if any(isinstance(cause, RepositoryNotFoundError) for cause in chain):
        return (
            f"No repository '{hf_hub_path}' on the hub (or it is private and needs hf_token). "
            "Check the id, or use vla_backbone.list_backbones() and source='tiny'."
        )
    if cache_only and isinstance(exc, OSError):
        from huggingface_hub import constants

        host, port = hub_endpoint()
        why = "HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else f"{host}:{port} accepted no connection within 2 s"
        return (
            f"Could not load '{hf_hub_path}' from the hub: it is not in the local HuggingFace cache and the hub was "
            f"not asked ({why}). Use source='tiny' (the default) for the offline replicas, or download the weights "
            "once on a machine with network access."
        )
    if any(isinstance(cause, LocalEntryNotFoundError) for cause in chain):
        return (
            f"Could not load '{hf_hub_path}': the hub did not answer and the files are not in the local HuggingFace "
            f"cache ({exc}). Check the network (and HTTPS_PROXY, if you need a proxy), or use source='tiny'."
        )
    return None


@contextlib.contextmanager
def translated_load_errors(hf_hub_path: str, hf_token: Optional[str], cache_only: bool) -> Iterator[None]:
    """Turn loading failures into errors that say what to do; never let the token through."""
    try:
        yield
    except Exception as exc:
        message = load_error_message(exc, hf_hub_path, hf_token, cache_only)
        leaks = bool(hf_token) and hf_token in str(exc)
        if message is None and not leaks:
            raise
        error = BackboneLoadError(redact(message or f"{type(exc).__name__}: {exc}", hf_token))
        # The cause stays attached for debugging unless its own text carries the token.
        raise error from (None if leaks else exc)


class HFCausalLLMBackbone(LLMBackbone, ABC):
    """Loads a ``*ForCausalLM`` and its tokenizer the way OpenVLA does, on transformers 4.57 through 5.x."""

    # Extra ``AutoTokenizer.from_pretrained`` arguments a family needs to get the ids its checkpoints were trained on.
    tokenizer_kwargs: ClassVar[dict] = {}
    # Tokenize exactly as the checkpoint's tokenizer.json says (or, without one, as 4.x converted its
    # tokenizer.model), where transformers 5 would rebuild the tokenizer otherwise.
    tokenizer_from_file: ClassVar[bool] = False

    def __init__(
        self,
        llm_backbone_id: str,
        llm_family: str,
        llm_cls: type["PreTrainedModel"],
        hf_hub_path: str,
        llm_max_length: int = 2048,
        hf_token: Optional[str] = None,
        inference_mode: bool = False,
        use_flash_attention_2: bool = False,
    ) -> None:
        super().__init__(llm_backbone_id)
        self.llm_family = llm_family
        self.llm_max_length = llm_max_length
        self.inference_mode = inference_mode
        self.hf_hub_path = hf_hub_path
        # As upstream, flash attention only when loading for training: an inference-mode architecture gets the
        # library's default attention, so a checkpoint trained with it still loads on a machine without it.
        attn_implementation = attn_implementation_for(use_flash_attention_2 and not inference_mode)

        from transformers import AutoConfig

        local = looks_like_local_path(hf_hub_path)
        if local:
            check_local_checkpoint(hf_hub_path)
        # An unreachable hub makes huggingface_hub retry for ~20 s; asking the local cache only fails in milliseconds.
        cache_only = not local and not hub_reachable()
        # Local checkpoints load in milliseconds: no progress bars (a hub download keeps its bars).
        quiet = compat.quiet_progress_bars() if local else contextlib.nullcontext()
        with translated_load_errors(hf_hub_path, hf_token, cache_only), quiet:
            if not inference_mode:
                # The concrete class, not AutoModel: the family decides exactly which architecture it gets.
                self.llm = llm_cls.from_pretrained(
                    hf_hub_path,
                    local_files_only=cache_only,
                    **compat.pretrained_kwargs(dtype=torch.float32, attn_implementation=attn_implementation, token=hf_token),
                )
                compat.set_greedy_generation(self.llm)
            else:
                # Architecture only: the VLA checkpoint supplies every weight later.
                llm_config = AutoConfig.from_pretrained(hf_hub_path, token=hf_token, local_files_only=cache_only)
                self.llm = llm_cls._from_config(llm_config, dtype=torch.float32)

            # A KV cache is useless in training and clashes with gradient checkpointing.
            self.llm.config.use_cache = inference_mode

            # If the embeddings are frozen and only weights inside the layers train (adapters, or the last layer) under
            # reentrant gradient checkpointing, nothing entering a checkpointed block requires grad, so the block's
            # backward never runs. The hook marks the embedding output as requiring grad; harmless otherwise.
            # Non-reentrant or no checkpointing avoid the failure too; `inputs_embeds` computed without the embedding
            # module bypass the hook (notebook 07).
            if not inference_mode:
                self.llm.enable_input_require_grads()

            self.tokenizer = self.load_tokenizer(hf_hub_path, llm_max_length, hf_token, cache_only)

        if self.identifier in SPECIAL_CASES:
            return
        check_bos(self.tokenizer, self.identifier)

    @classmethod
    def load_tokenizer(cls, hf_hub_path: str, llm_max_length: int = 2048, hf_token: Optional[str] = None,
                       cache_only: bool = False) -> "PreTrainedTokenizerBase":
        """The family's tokenizer as ``__init__`` loads it, before the family adds its PAD or extra tokens."""
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(
            hf_hub_path,
            model_max_length=llm_max_length,
            token=hf_token,
            padding_side="right",
            local_files_only=cache_only,
            **cls.tokenizer_kwargs,
        )
        if not compat.IS_V5:
            return tokenizer
        from transformers import LlamaTokenizer
        from transformers.utils import cached_file

        def checkpoint_file(name: str) -> Optional[str]:
            return cached_file(hf_hub_path, name, token=hf_token, local_files_only=cache_only,
                               _raise_exceptions_for_missing_entries=False)

        # 5.x loads a SentencePiece checkpoint as LlamaTokenizer when it rebuilds the backend itself (Llama-2 always;
        # Mistral when the checkpoint has no tokenizer.json). Without a tokenizer.json (Vicuna v1.5 may ship only
        # tokenizer.model), 4.x converted the model file, and the checkpoint was trained on those ids.
        rebuilt = isinstance(tokenizer, LlamaTokenizer)
        json_file = checkpoint_file("tokenizer.json") if cls.tokenizer_from_file or rebuilt else None
        if cls.tokenizer_from_file and json_file:
            compat.split_text_as_file_says(tokenizer, json_file)
        elif rebuilt and not json_file and (model_file := checkpoint_file("tokenizer.model")):
            compat.split_text_as_4x_converted(tokenizer, model_file)
        return tokenizer

    def _add_tokens_and_resize(self, pad_token: Optional[str] = None, extra_tokens: Sequence[str] = ()) -> None:
        """Add a PAD token (and any extra tokens), then grow the embeddings to a multiple of 64.

        A multiple of 64 keeps the embedding and LM-head matmuls on fast tensor-core shapes: Llama-2's 32000 words
        plus ``<PAD>`` become 32064 rows.
        """
        if pad_token is not None:
            self.tokenizer.add_special_tokens({"pad_token": pad_token})
        if extra_tokens:
            self.tokenizer.add_tokens(list(extra_tokens))
        self.llm.config.pad_token_id = self.tokenizer.pad_token_id
        self.llm.generation_config.pad_token_id = self.tokenizer.pad_token_id
        # New rows get the model's ordinary initialisation, as on the transformers 4.40 that OpenVLA and MiniVLA
        # trained with (mean_resizing arrived in 4.46; it also costs a covariance and a Cholesky per load). The
        # RNG is seeded so that every load gives the same weights.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.llm.resize_token_embeddings(len(self.tokenizer), pad_to_multiple_of=64, mean_resizing=False)

    def get_fsdp_wrapping_policy(self) -> Callable:
        # Imported on use: torch.distributed.fsdp alone costs most of a second at import time.
        from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

        return functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={self.transformer_layer_cls})

    def enable_gradient_checkpointing(self) -> None:
        compat.enable_checkpointing(self.llm, use_reentrant=False)

    def embed_input_ids(self, input_ids: torch.LongTensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(input_ids)

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values=None,
        inputs_embeds: Optional[torch.FloatTensor] = None,
        labels: Optional[torch.LongTensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ) -> "CausalLMOutputWithPast":
        return self.llm(
            **compat.forward_kwargs(
                self.llm,
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                inputs_embeds=inputs_embeds,
                labels=labels,
                use_cache=use_cache,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=return_dict,
            )
        )
