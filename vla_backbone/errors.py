"""Errors a user can act on: each message says what went wrong and what to do next."""
from __future__ import annotations


class BackboneError(Exception):
    """Base class of every error this package raises on purpose."""


class UnknownBackboneError(BackboneError, ValueError):
    """An id that no family registers."""


class BackboneLoadError(BackboneError, OSError):
    """Weights, config or tokenizer could not be loaded from the chosen source."""


class FlashAttentionUnavailableError(BackboneError, RuntimeError):
    """``use_flash_attention_2=True`` on a machine without flash-attn or a CUDA GPU."""


class TokenizerBOSError(BackboneError, ValueError, AssertionError):
    """A tokenizer that does not prepend BOS exactly when special tokens are requested.

    An AssertionError too, as upstream's `assert` raised: code written against upstream still catches it.
    """


class PromptTurnError(BackboneError, ValueError):
    """A conversation turn from the wrong role (roles alternate human, gpt, human, ...)."""


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced, so a token never reaches a message or a log."""
    return text.replace(secret, "***") if secret else text
