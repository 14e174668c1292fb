"""`LLaMa2ChatPromptBuilder`: Llama-2-chat's [INST] template with a <<SYS> block on the first turn."""
from vla_backbone.prompting.base_prompter import TurnPromptBuilder

# === Default system prompts (Prismatic and OpenVLA use the same text) ===
LLAMA2_CHAT_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. "
    "You are able to understand the visual content that the user provides, "
    "and assist the user with a variety of tasks using natural language."
)
SYS_PROMPTS = {"prismatic": LLAMA2_CHAT_SYSTEM_PROMPT, "openvla": LLAMA2_CHAT_SYSTEM_PROMPT}


class LLaMa2ChatPromptBuilder(TurnPromptBuilder):
    default_system_prompts = SYS_PROMPTS

    def wrap_human(self, message: str) -> str:
        return f"[INST] {message} [/INST] "

    def first_human_turn(self, message: str) -> str:
        # Upstream writes "<<SYS>" with a single ">"; checkpoints were trained on exactly this string.
        return self.wrap_human(f"<<SYS>\n{self.system_prompt.strip()}\n<</SYS>>\n\n{message}")
