"""`MistralInstructPromptBuilder`: [INST] turns without a system prompt."""
from vla_backbone.prompting.base_prompter import TurnPromptBuilder


class MistralInstructPromptBuilder(TurnPromptBuilder):
    def wrap_human(self, message: str) -> str:
        return f"[INST] {message} [/INST] "
