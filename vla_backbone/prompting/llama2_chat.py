"""`LLaMa2ChatPromptBuilder`: Llama-2-chat's [INST] template with a <<SYS> block."""
from vla_backbone.prompting.base_prompter import TurnPromptBuilder


class LLaMa2ChatPromptBuilder(TurnPromptBuilder):
    def wrap_human(self, message: str) -> str:
        return f"[INST] {message} [/INST] "

    def first_human_turn(self, message: str) -> str:
        # Upstream writes "<<SYS>" with a single ">"; checkpoints were trained on exactly this string.
        system = f"<<SYS>\n{self.default_system_prompt().strip()}\n<</SYS>>\n\n"
        return self.wrap_human(system + message)
