"""`PhiPromptBuilder`: phi-2's tokenizer adds no BOS, so the template writes it."""
from vla_backbone.prompting.base_prompter import TurnPromptBuilder


class PhiPromptBuilder(TurnPromptBuilder):
    bos = eos = "<|endoftext|>"

    def wrap_human(self, message: str) -> str:
        return f"Input: {message}\nOutput: "

    def wrap_gpt(self, message: str) -> str:
        return f"{message}\n{self.eos}"

    def open_conversation(self, first_turn: str) -> tuple[str, str]:
        # The BOS the tokenizer will not add; the VLM splices image patches in right after it. Upstream writes it
        # in add_turn only, so get_potential_prompt on an empty builder starts without it.
        return self.bos + first_turn, self.bos + first_turn

    def finish(self, prompt: str) -> str:
        # The hand-written BOS stays: only trailing whitespace goes.
        return prompt.rstrip()
