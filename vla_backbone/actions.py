"""OpenVLA's action tokenizer, as upstream (``prismatic/vla/action_tokenizer.py``), with MiniVLA's ``use_extra``.

Each action dimension is clipped to [min_action, max_action] and cut into ``bins`` bins; bin ``d`` (1-based, what
``numpy.digitize`` returns) is written as token id ``tokenizer.vocab_size - d``: the tail of the trained vocabulary,
its least-used tokens, becomes the actions (ids 31744-31999 on Llama-2). Everything is numpy, as upstream.
"""
from __future__ import annotations

import numpy as np

from vla_backbone import compat


class ActionTokenizer:
    def __init__(self, tokenizer, bins: int = 256, min_action: int = -1, max_action: int = 1, use_extra: bool = False) -> None:
        self.tokenizer, self.n_bins, self.min_action, self.max_action = tokenizer, bins, min_action, max_action
        self.bins = np.linspace(min_action, max_action, self.n_bins)
        self.bin_centers = (self.bins[:-1] + self.bins[1:]) / 2.0
        # MiniVLA's Qwen variant: count bins down from the end of the whole tokenizer (its 256 added <|extra_i|>
        # tokens, which never merge with neighbours) instead of the end of the trained vocabulary.
        self.use_extra = use_extra
        self.tokenizer_len = len(tokenizer) if use_extra else tokenizer.vocab_size
        if self.tokenizer_len <= self.n_bins:
            raise ValueError(f"A vocabulary of {self.tokenizer_len} tokens cannot hold {self.n_bins} action bins.")
        if use_extra:
            self._check_extra_tokens()
        # One below the smallest action id: upstream's training loop masks actions with `ids > action_token_begin_idx`.
        self.action_token_begin_idx = int(self.tokenizer_len - (self.n_bins + 1))
        self.action_token_end_idx = self.tokenizer_len

    def _check_extra_tokens(self) -> None:
        # MiniVLA allows use_extra only for Qwen (a class check). What it needs is that the last n_bins ids are tokens
        # added for the actions: on a tokenizer without them, the bins would land on its own added tokens (PAD on
        # Llama-2, which a collator masks out of attention; <|endoftext|> and <|im_end|> on Qwen without -extra).
        first = self.tokenizer_len - self.n_bins
        taken = sorted(set(self.tokenizer.all_special_ids) & set(range(first, self.tokenizer_len)))
        if first < self.tokenizer.vocab_size or taken:
            clash = f"special tokens {self.tokenizer.convert_ids_to_tokens(taken)[:4]}" if taken else "the trained vocabulary"
            raise ValueError(
                f"use_extra=True writes the {self.n_bins} bins onto the last {self.n_bins} ids of the tokenizer "
                f"({first}..{self.tokenizer_len - 1}), and here they include {clash}. Add {self.n_bins} tokens "
                "for the actions first (the backbone qwen25-0_5b-extra adds <|extra_0|>..<|extra_255|>), or use "
                "use_extra=False (OpenVLA's bins at the end of the trained vocabulary)."
            )

    def token_ids(self, action: np.ndarray) -> np.ndarray:
        """Actions (any shape) -> their token ids. Upstream computes this inside ``__call__`` without returning it."""
        clipped = np.clip(action, a_min=float(self.min_action), a_max=float(self.max_action))
        return self.tokenizer_len - np.digitize(clipped, self.bins)

    def __call__(self, action: np.ndarray) -> str | list[str]:
        """Actions -> the text OpenVLA writes as the answer turn (a list of texts for a 2-D batch)."""
        ids = self.token_ids(np.asarray(action))
        decode_kwargs = compat.decode_kwargs(self.tokenizer)
        if ids.ndim == 1:
            return self.tokenizer.decode(list(ids), **decode_kwargs)
        return self.tokenizer.batch_decode(ids.tolist(), **decode_kwargs)

    def decode_token_ids_to_actions(self, action_token_ids: np.ndarray) -> np.ndarray:
        """Token ids -> the centre of their bin. There are ``bins - 1`` centres, so the top two bins share the last."""
        discretized = self.tokenizer_len - np.asarray(action_token_ids)
        discretized = np.clip(discretized - 1, a_min=0, a_max=self.bin_centers.shape[0] - 1)
        return self.bin_centers[discretized]

    @property
    def vocab_size(self) -> int:
        """The number of action bins (upstream's meaning), not the tokenizer's vocabulary size."""
        return self.n_bins
