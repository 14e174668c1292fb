"""`QwenPromptBuilder`: ChatML turns, as MiniVLA (openvla-mini) uses them with Qwen-2.5."""
from vla_backbone.prompting.base_prompter import TurnPromptBuilder

# === Default system prompts (MiniVLA uses the same text for both families) ===
QWEN_SYSTEM_PROMPT = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
SYS_PROMPTS = {"prismatic": QWEN_SYSTEM_PROMPT, "openvla": QWEN_SYSTEM_PROMPT}


class QwenPromptBuilder(TurnPromptBuilder):
    bos = ""
    eos = "<|im_end|>"
    end_of_text = "<|endoftext|>"
    default_system_prompts = SYS_PROMPTS

    def wrap_human(self, message: str) -> str:
        return f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n"

    def wrap_gpt(self, message: str) -> str:
        return f"{message}<|im_end|>\n"

    def open_conversation(self, first_turn: str) -> tuple[str, str]:
        # MiniVLA puts the system block into the prompt but returns only the user turn, so labels computed from
        # add_turn's return value never cover the system block.
        return f"<|im_start|>system\n{self.system_prompt.strip()}<|im_end|>\n{first_turn}", first_turn

    def get_prompt(self) -> str:
        # After an answer, the final newline becomes <|endoftext|> so the model learns where the text stops.
        if self.turn_count > 0 and self.turn_count % 2 == 0:
            return self.prompt.removesuffix("\n") + self.end_of_text
        return self.prompt

    def finish_potential(self, prompt: str) -> str:
        # No rstrip: the newline after "assistant" is part of the template.
        return prompt
