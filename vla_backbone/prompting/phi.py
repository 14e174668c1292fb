"""`PhiPromptBuilder`: phi-2's tokenizer adds no BOS, so the template writes it."""
from vla_backbone.prompting.base_prompter import TurnPromptBuilder


class PhiPromptBuilder(TurnPromptBuilder):
    bos = eos = "<|endoftext|>"

    def wrap_human(self, message: str) -> str:
        return f"Input: {message}\nOutput: "

    def wrap_gpt(self, message: str) -> str:
        return f"{message}\n{self.eos}"

    def first_human_turn(self, message: str) -> str:
        # The BOS the tokenizer will not add; the VLM splices image patches in right after it.
        return self.bos + self.wrap_human(message)

    def finish(self, prompt: str) -> str:
        # Keep the hand-written BOS at the start: only trailing whitespace goes.
        return prompt.rstrip()
