"""`QwenPromptBuilder`: ChatML turns, as MiniVLA uses them with Qwen-2.5."""
from vla_backbone.prompting.base_prompter import TurnPromptBuilder


class QwenPromptBuilder(TurnPromptBuilder):
    bos = ""
    eos = "<|im_end|>"
    end_of_text = "<|endoftext|>"

    def wrap_human(self, message: str) -> str:
        return f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"

    def wrap_gpt(self, message: str) -> str:
        return f"{message}<|im_end|>\n"

    def first_human_turn(self, message: str) -> str:
        return f"<|im_start|>system\n{self.default_system_prompt()}<|im_end|>\n" + self.wrap_human(message)

    def finish(self, prompt: str) -> str:
        # No rstrip: the newline after "assistant" is part of the template.
        return prompt

    def get_prompt(self) -> str:
        # After an answer, the final newline becomes <|endoftext|> so the model learns where the text stops.
        if self.turn_count > 0 and self.turn_count % 2 == 0:
            return self.prompt.removesuffix("\n") + self.end_of_text
        return self.prompt
