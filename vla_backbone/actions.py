"""OpenVLA's action tokenizer: continuous actions <-> the last 256 token ids of the vocabulary."""
from __future__ import annotations

import torch


class ActionTokenizer:
    """Clip each action dimension to [min_action, max_action], cut it into ``n_bins`` bins, and write bin ``b``
    (1-based) as token id ``vocab_size - b``: the tail of the vocabulary, the least-used tokens, becomes actions.
    """

    def __init__(self, tokenizer, n_bins: int = 256, min_action: float = -1.0, max_action: float = 1.0) -> None:
        self.tokenizer, self.n_bins = tokenizer, n_bins
        self.min_action, self.max_action = min_action, max_action
        self.bins = torch.linspace(min_action, max_action, n_bins)
        self.bin_centers = (self.bins[:-1] + self.bins[1:]) / 2.0
        # `vocab_size` counts the trained vocabulary only, not tokens added later (such as <PAD>).
        self.vocab_size = tokenizer.vocab_size
        if self.vocab_size <= n_bins:
            raise ValueError(f"A vocabulary of {self.vocab_size} tokens cannot hold {n_bins} action bins.")

    @property
    def action_token_begin_idx(self) -> int:
        """The smallest token id an action can become."""
        return self.vocab_size - self.n_bins

    def bin_index(self, actions: torch.Tensor) -> torch.Tensor:
        """1-based bin of each value (what ``numpy.digitize`` returns upstream)."""
        clipped = actions.clamp(self.min_action, self.max_action).contiguous()
        return torch.bucketize(clipped, self.bins, right=True).clamp(max=self.n_bins)

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions (any shape) -> token ids of the same shape."""
        return self.vocab_size - self.bin_index(actions)

    def decode(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Token ids -> the centre of their bin (a bin edge cannot be recovered exactly)."""
        index = (self.vocab_size - token_ids - 1).clamp(0, self.bin_centers.numel() - 1)
        return self.bin_centers[index]

    def __call__(self, actions: torch.Tensor) -> str:
        """Actions -> their text, as OpenVLA writes the answer turn. OpenVLA then tokenizes that text and labels
        its last tokens, which relies on the text encoding back to exactly :meth:`encode`'s ids: true on the tiny
        replicas (their action tail is registered as tokens), and worth checking on any new tokenizer."""
        return self.tokenizer.decode(self.encode(actions).flatten().tolist())
