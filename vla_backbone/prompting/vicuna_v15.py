"""`VicunaV15ChatPromptBuilder`: USER/ASSISTANT turns after Vicuna's own system sentence."""
from vla_backbone.prompting.base_prompter import TurnPromptBuilder

# === Default system prompts (Prismatic and OpenVLA use the same text) ===
VICUNA_SYSTEM_PROMPT = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
SYS_PROMPTS = {"prismatic": VICUNA_SYSTEM_PROMPT, "openvla": VICUNA_SYSTEM_PROMPT}


class VicunaV15ChatPromptBuilder(TurnPromptBuilder):
    default_system_prompts = SYS_PROMPTS

    def wrap_human(self, message: str) -> str:
        return f"USER: {message} ASSISTANT: "

    def first_human_turn(self, message: str) -> str:
        return f"{self.system_prompt.strip()} " + self.wrap_human(message)
