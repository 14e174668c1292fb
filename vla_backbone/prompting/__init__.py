"""Prompt builders: the exact strings each backbone family was trained with."""
from vla_backbone.prompting.base_prompter import PromptBuilder, TurnPromptBuilder, openvla_action_prompt
from vla_backbone.prompting.llama2_chat import LLaMa2ChatPromptBuilder
from vla_backbone.prompting.mistral_instruct import MistralInstructPromptBuilder
from vla_backbone.prompting.phi import PhiPromptBuilder
from vla_backbone.prompting.pure import PurePromptBuilder
from vla_backbone.prompting.qwen import QwenPromptBuilder
from vla_backbone.prompting.vicuna_v15 import VicunaV15ChatPromptBuilder

__all__ = [
    "LLaMa2ChatPromptBuilder",
    "MistralInstructPromptBuilder",
    "PhiPromptBuilder",
    "PromptBuilder",
    "PurePromptBuilder",
    "QwenPromptBuilder",
    "TurnPromptBuilder",
    "VicunaV15ChatPromptBuilder",
    "openvla_action_prompt",
]
