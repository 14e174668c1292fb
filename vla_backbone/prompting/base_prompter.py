"""`PromptBuilder` and the turn logic every concrete builder shares."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Optional

from vla_backbone.errors import PromptTurnError

# Prismatic and OpenVLA use the same default system prompt.
_DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. "
    "You are able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language."
)
SYS_PROMPTS = {"prismatic": _DEFAULT_SYSTEM_PROMPT, "openvla": _DEFAULT_SYSTEM_PROMPT}


def openvla_action_prompt(instruction: str) -> str:
    """The human turn OpenVLA trains and predicts with."""
    return f"What action should the robot take to {instruction.lower()}?"


class PromptBuilder(ABC):
    """Builds a conversation prompt turn by turn: ``add_turn``, ``get_potential_prompt``, ``get_prompt``."""

    def __init__(self, model_family: str, system_prompt: Optional[str] = None) -> None:
        self.model_family = model_family
        # Only some templates use a system prompt; subclasses decide how.
        self.system_prompt = system_prompt

    @abstractmethod
    def add_turn(self, role: str, message: str) -> str: ...

    @abstractmethod
    def get_potential_prompt(self, user_msg: str) -> str: ...

    @abstractmethod
    def get_prompt(self) -> str: ...


class TurnPromptBuilder(PromptBuilder):
    """The shared turn logic: alternating roles, message clean-up, and the final strip.

    A concrete builder only says how it wraps a human and a gpt message (and, if it has one, how the system prompt
    joins the first human turn).
    """

    bos: str = "<s>"
    eos: str = "</s>"

    def __init__(self, model_family: str, system_prompt: Optional[str] = None) -> None:
        super().__init__(model_family, system_prompt)
        self.prompt, self.turn_count = "", 0

    @abstractmethod
    def wrap_human(self, message: str) -> str: ...

    def wrap_gpt(self, message: str) -> str:
        return f"{message}{self.eos}"

    def first_human_turn(self, message: str) -> str:
        """The first human turn; templates with a system prompt or a hand-written BOS override this."""
        return self.wrap_human(message)

    def default_system_prompt(self) -> str:
        """``system_prompt`` if given, else the model family's default (for templates that use one)."""
        if self.system_prompt is not None:
            return self.system_prompt
        if self.model_family not in SYS_PROMPTS:
            raise ValueError(
                f"No default system prompt for model family '{self.model_family}' (known: "
                f"{', '.join(sorted(SYS_PROMPTS))}). Pass system_prompt=... to {type(self).__name__}."
            )
        return SYS_PROMPTS[self.model_family]

    @staticmethod
    def clean(message: str) -> str:
        # Image placeholders never reach the text: patches are spliced in as embeddings instead.
        return message.replace("<image>", "").strip()

    def _human(self, message: str) -> str:
        return self.first_human_turn(message) if self.turn_count == 0 else self.wrap_human(message)

    def add_turn(self, role: str, message: str) -> str:
        expected = "human" if self.turn_count % 2 == 0 else "gpt"
        if role != expected:
            raise PromptTurnError(
                f"{type(self).__name__}: turn {self.turn_count} must come from '{expected}', got '{role}'. "
                "Roles alternate human, gpt, human, ...; start a new builder for a new conversation."
            )
        message = self.clean(message)
        # An empty answer still gets a space, so the EOS after it is tokenized the same way.
        wrapped = self._human(message) if role == "human" else self.wrap_gpt(message or " ")
        self.prompt += wrapped
        self.turn_count += 1
        return wrapped

    def get_potential_prompt(self, user_msg: str) -> str:
        """The prompt as it would read if the user said ``user_msg`` next; the builder itself is unchanged."""
        return self.finish(self.prompt + self._human(self.clean(user_msg)))

    def get_prompt(self) -> str:
        return self.finish(self.prompt)

    def finish(self, prompt: str) -> str:
        # The tokenizer adds BOS itself, so a BOS at the start of the text would appear twice.
        return prompt.removeprefix(self.bos).rstrip()
