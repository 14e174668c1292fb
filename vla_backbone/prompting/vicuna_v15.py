"""`VicunaV15ChatPromptBuilder`: USER/ASSISTANT turns after a plain system sentence."""
from vla_backbone.prompting.base_prompter import TurnPromptBuilder


class VicunaV15ChatPromptBuilder(TurnPromptBuilder):
    def wrap_human(self, message: str) -> str:
        return f"USER: {message} ASSISTANT: "

    def first_human_turn(self, message: str) -> str:
        return self.default_system_prompt().strip() + " " + self.wrap_human(message)
