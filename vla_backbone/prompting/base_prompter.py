"""`PromptBuilder` and the turn logic every concrete builder shares.

Upstream writes the same ``add_turn`` / ``get_potential_prompt`` / ``get_prompt`` five times; here the alternation,
the message clean-up and the bookkeeping live once, and a builder only states its template (REFERENCE §4).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Mapping, Optional

from vla_backbone.errors import PromptTurnError


def openvla_action_prompt(instruction: str) -> str:
    """The human turn OpenVLA trains and predicts with."""
    return f"What action should the robot take to {instruction.lower()}?"


class PromptBuilder(ABC):
    """Builds a conversation prompt turn by turn: ``add_turn``, ``get_potential_prompt``, ``get_prompt``."""

    def __init__(self, model_family: str, system_prompt: Optional[str] = None) -> None:
        self.model_family = model_family
        self.system_prompt = system_prompt

    @abstractmethod
    def add_turn(self, role: str, message: str) -> str: ...

    @abstractmethod
    def get_potential_prompt(self, message: str) -> str: ...

    @abstractmethod
    def get_prompt(self) -> str: ...


class TurnPromptBuilder(PromptBuilder):
    """The shared turn logic. A concrete builder says how it wraps a human and a gpt message, and, where its
    template has one, what the first turn adds (a system prompt, or a BOS written by hand)."""

    bos: ClassVar[str] = "<s>"
    eos: ClassVar[str] = "</s>"
    # model family -> default system prompt, for templates that have one (upstream keeps one dict per builder).
    default_system_prompts: ClassVar[Optional[Mapping[str, str]]] = None

    def __init__(self, model_family: str, system_prompt: Optional[str] = None) -> None:
        if system_prompt is None and self.default_system_prompts is not None:
            if model_family not in self.default_system_prompts:
                raise ValueError(
                    f"{type(self).__name__} has no default system prompt for model family '{model_family}' (known: "
                    f"{', '.join(sorted(self.default_system_prompts))}). Pass system_prompt=... to use your own."
                )
            system_prompt = self.default_system_prompts[model_family]
        super().__init__(model_family, system_prompt)
        self.prompt, self.turn_count = "", 0

    @abstractmethod
    def wrap_human(self, message: str) -> str: ...

    def wrap_gpt(self, message: str) -> str:
        return f"{message}{self.eos}"

    def first_human_turn(self, message: str) -> str:
        """The first human turn as both ``add_turn`` and ``get_potential_prompt`` write it (a system prompt goes here)."""
        return self.wrap_human(message)

    def open_conversation(self, first_turn: str) -> tuple[str, str]:
        """What ``add_turn`` appends to the prompt on turn 0, and what it returns; ``get_potential_prompt`` never
        sees this step (upstream's Phi and Qwen builders add their extras in ``add_turn`` only)."""
        return first_turn, first_turn

    def add_turn(self, role: str, message: str) -> str:
        expected = "human" if self.turn_count % 2 == 0 else "gpt"
        if role != expected:
            raise PromptTurnError(
                f"{type(self).__name__}: turn {self.turn_count} must come from '{expected}', got '{role}'. "
                "Roles alternate human, gpt, human, ...; start a new builder for a new conversation."
            )
        # Image placeholders never reach the text: patches are spliced in as embeddings instead.
        message = message.replace("<image>", "").strip()
        if role == "gpt":
            # An empty answer still gets a space, so the EOS after it is tokenized the same way.
            appended = returned = self.wrap_gpt(message or " ")
        elif self.turn_count == 0:
            appended, returned = self.open_conversation(self.first_human_turn(message))
        else:
            appended = returned = self.wrap_human(message)
        self.prompt += appended
        self.turn_count += 1
        return returned

    def get_potential_prompt(self, message: str) -> str:
        """The prompt if the user said ``message`` next; the builder is unchanged. As upstream (which nothing calls),
        the message is used as given: no ``<image>`` removal, no strip."""
        human = self.first_human_turn(message) if self.turn_count == 0 else self.wrap_human(message)
        return self.finish_potential(self.prompt + human)

    def get_prompt(self) -> str:
        return self.finish(self.prompt)

    def finish(self, prompt: str) -> str:
        # The tokenizer adds BOS itself, so a BOS at the start of the text would appear twice.
        return prompt.removeprefix(self.bos).rstrip()

    def finish_potential(self, prompt: str) -> str:
        return self.finish(prompt)
