"""`PurePromptBuilder`: the plain In/Out template OpenVLA was trained with."""
from vla_backbone.prompting.base_prompter import TurnPromptBuilder


class PurePromptBuilder(TurnPromptBuilder):
    def wrap_human(self, message: str) -> str:
        return f"In: {message}\nOut: "
