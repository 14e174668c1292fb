# %% [markdown]
# # A1 · 作业：为 GPT-2 写一个骨干网络
#
# 这个包目前支持五个模型家族：Llama-2、Mistral、Phi-2、Qwen-2.5 和 OPT，GPT-2 不在其中。拿它来练手正合适：模型小、不需要申请访问权限，而且它身上有两个坑，几乎每个新家族都会以某种形式碰到。一是模块的命名不同（叫 `transformer.h`，而不是 `model.layers`）；二是它的分词器不会添加 BOS token，所以 notebook 03 里的 BOS 检查会直接拒绝它。在这份作业里，你要写出 `GPT2LLMBackbone`，决定 BOS 的问题怎么处理，并证明 VLA 确实能用上这个结果。
#
# **你要完成的事**
# - 登记 GPT-2 的骨干网络 id，并写出 `GPT2LLMBackbone`——一个 `FamilyBackbone` 的子类（对应 notebook 01 和 12）；
# - 决定 GPT-2 的 BOS token 从哪里来，把这个决定实现出来，并说明理由（对应 notebook 03）；
# - 端到端地检查结果：加载、填充、提示词、FSDP 包装，以及一步训练。
#
# **如何评分。** 在写着 `# 在这里写你的代码` 的单元格里写代码，并删掉 `raise NotImplementedError` 那一行。每个任务后面都跟着检查单元格，记得运行它们。每个检查单元格的分值写在它上方的标题里，书面回答由老师人工评分。最后在仓库的克隆里运行评分程序：它会把这个 notebook 执行一遍，再用更多的用例测试你的代码：
#
# `.venv/bin/python -m pytest tests/assignments/test_a1_new_backbone.py --notebook path/to/A1_new_backbone.ipynb`
#
# （评分程序直接读取 `.ipynb`；用 jupytext 导出的 `.py` 也可以。）

# %%
# Set-up, the same in every notebook: on Colab install the package; everywhere print versions and seed.
import subprocess, sys
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "vla-backbone[notebooks] @ git+https://github.com/vla-backbone/vla-backbone-notebooks"], check=True)
from vla_backbone.notebook import setup
setup()

# %%
LANG = "zh"  # the language of this notebook's prose and plot labels
from vla_backbone.notebook import use_language
use_language(LANG)


# %%
def say(en: str, zh: str) -> str:
    """A check's message, in the language of this notebook."""
    return zh if LANG == "zh" else en


# %% [markdown]
# ## 包里缺的这个家族
#
# 注册表里没有任何 id 属于 GPT-2。你需要用到的 HuggingFace 类是 `GPT2LMHeadModel`（带输出头的语言模型；GPT-2 比 `*ForCausalLM` 这套命名出现得更早）和 `GPT2Block`（一个解码器层）。它们的属性名也和 Llama 不一样：各个 block 放在 `transformer.h` 里，token 嵌入叫 `transformer.wte`，输出头叫 `lm_head`。

# %%
import vla_backbone
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.models.gpt2.modeling_gpt2 import GPT2Block

assert not any(backbone_id.startswith("gpt2") for backbone_id in vla_backbone.list_backbones())
toy = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=100, bos_token_id=0, eos_token_id=0))
print([name for name, _ in toy.named_children()], [name for name, _ in toy.transformer.named_children()])
assert isinstance(toy.transformer.h[0], GPT2Block) and len(toy.transformer.h) == 2
assert toy.get_input_embeddings() is toy.transformer.wte and toy.get_output_embeddings() is toy.lm_head
del toy

# %% [markdown]
# ## 离线的微型 GPT-2
#
# 这个包只会为自己的五个家族构建微型副本。下面这个单元格教它认识第六个。GPT-2 真实的分词器现成就有：包里自带的 phi-2 分词器就是 GPT-2 的字节级 BPE（同样的 50257 个 token、50000 条合并规则），再加上 phi-2 为代码添加的 38 个空白 token；去掉这些，就是 GPT-2 的分词器。这个单元格把它写到一个目录里，往 `vla_backbone.tiny.TINY_SPECS` 里加一份 GPT-2 的 `TinySpec`（词表大小和特殊 token id 与 Hub 上的 config 一致，使用真实的模型类，隐藏维度 64，两个 block），然后把微型副本构建到缓存目录里，只需构建一次。在本 notebook 里凡是加载 GPT-2 的地方，都把 `TINY_GPT2` 作为 `hf_hub_path` 传进去。真实权重在 Hub 上的 `openai-community/gpt2`；微型副本保留了这里真正要紧的东西：模型类和分词器。

# %%
import json
import os

import torch

from vla_backbone.tiny import TINY_SPECS, TinySpec, tiny_checkpoint, tiny_home, tokenizer_files

# In the package's cache, next to the replica built from it. Each file is written under a hidden name and renamed,
# so a copy of this notebook running at the same time never reads half a file.
gpt2_files = tiny_home() / "A1" / "gpt2-tokenizer"
gpt2_files.mkdir(parents=True, exist_ok=True)


def write_tokenizer_file(name: str, data: dict) -> None:
    hidden = gpt2_files / f".{name}.{os.getpid()}"
    hidden.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    os.replace(hidden, gpt2_files / name)


phi = json.loads((tokenizer_files(TINY_SPECS["phi"]) / "tokenizer.json").read_text(encoding="utf-8"))
phi["added_tokens"] = [token for token in phi["added_tokens"] if token["content"] == "<|endoftext|>"]
write_tokenizer_file("tokenizer.json", phi)
special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
write_tokenizer_file("tokenizer_config.json", {"model_max_length": 1024, **special})

TINY_SPECS.setdefault("gpt2", TinySpec(
    "gpt2", "GPT2Config", "GPT2LMHeadModel",
    {"vocab_size": 50257, "bos_token_id": 50256, "eos_token_id": 50256, "n_positions": 1024, "tie_word_embeddings": True},
    torch.float32, {"n_embd": 64, "n_layer": 2, "n_head": 4}, tokenizer_dir=gpt2_files,
))
TINY_GPT2 = str(tiny_checkpoint("gpt2"))
print("tiny GPT-2 at", TINY_GPT2)
assert len(phi["model"]["vocab"]) == 50257 and len(phi["model"]["merges"]) == 50000

# %% [markdown]
# 它只有一个特殊 token `<|endoftext|>`（id 50256），同时充当 BOS、EOS 和 UNK；它没有 PAD token；而且无论是否要求添加特殊 token，它都不会在文本前面加 BOS。

# %%
from transformers import AutoTokenizer

gpt2_tokenizer = AutoTokenizer.from_pretrained(TINY_GPT2)
eot = gpt2_tokenizer.convert_tokens_to_ids("<|endoftext|>")
with_special = gpt2_tokenizer("Test 123", add_special_tokens=True).input_ids
print("<|endoftext|> id:", eot, "| 'Test 123' ->", with_special)
assert gpt2_tokenizer.bos_token_id == gpt2_tokenizer.eos_token_id == gpt2_tokenizer.unk_token_id == eot == 50256
assert gpt2_tokenizer.pad_token is None
assert with_special == gpt2_tokenizer("Test 123", add_special_tokens=False).input_ids and eot not in with_special

# %% [markdown]
# 因此，每个骨干网络在构造时都会执行的 BOS 检查（notebook 03）会拒绝它，报错信息里也点明了两条出路：

# %%
from vla_backbone.errors import TokenizerBOSError
from vla_backbone.hf_causal import check_bos
from vla_backbone.notebook import expect_error

with expect_error(TokenizerBOSError, match="does not prepend BOS"):
    check_bos(gpt2_tokenizer, "gpt2-124m")

# %% [markdown]
# ## 任务 1 · BOS 怎么办
#
# 先说 BOS 为什么重要：VLM 会把图像 patch 紧接在位置 0 之后拼进去（notebook 11）。位置 0 上的 token 在训练和推理时必须一致，而且必须是一个表示序列开始的 token，而不是提示词里的某个词。要做到这一点，有两条路：
#
# - **(a) 当作特例处理，和 phi-2 一样。** 把 GPT-2 的 id 加进 `vla_backbone.hf_causal.SPECIAL_CASES`，让检查跳过它；再给 GPT-2 配一个提示词构造器，由它自己在第一个轮次的最开头写上 `<|endoftext|>`（可以参考 `PhiPromptBuilder`）。
# - **(b) 让分词器自己加上。** 同样先跳过检查；加载完成后，给分词器换一个 post-processor，让它在添加特殊 token 时往每段文本前面放一个 `<|endoftext|>`；然后自己调用一次 `check_bos`，保证骨干网络仍然会拒绝行为不对的分词器。
#
# 不管选哪条路，你登记的**每一个** GPT-2 id 都必须满足同一条规则，评分程序测的也正是这条规则：由 `prompt_builder_fn` 生成的提示词，用 `add_special_tokens=True` 分词之后，开头恰好有一个 `<|endoftext|>`（位置 0 是它，位置 1 不是）；加上一个回答轮次之后同样如此，并且回答以 `<|endoftext|>` 作为 EOS 结尾。
#
# 在下一个单元格里定义：
# - `GPT2_MODELS`：骨干网络 id → Hub 仓库，至少要有 `"gpt2-124m"` → `"openai-community/gpt2"`（更大的 `gpt2-355m`、`gpt2-774m`、`gpt2-1.5b` 分别对应 `openai-community/gpt2-medium`、`-large`、`-xl`）；
# - 你的方案需要的其他东西：`SPECIAL_CASES` 里的条目，如果选了 (a)，还要一个提示词构造器类。

# %% nbgrader={"grade": false, "grade_id": "gpt2_models_and_bos", "locked": false, "schema_version": 3, "solution": true, "task": false}
from vla_backbone.hf_causal import SPECIAL_CASES
from vla_backbone.prompting import PromptBuilder, PurePromptBuilder

### BEGIN SOLUTION
GPT2_MODELS = {
    "gpt2-124m": "openai-community/gpt2",
    "gpt2-355m": "openai-community/gpt2-medium",
    "gpt2-774m": "openai-community/gpt2-large",
    "gpt2-1.5b": "openai-community/gpt2-xl",
}
# Decision (a): GPT-2's tokenizer adds no BOS by design, so the template writes <|endoftext|> first, like phi-2's.
SPECIAL_CASES.update(GPT2_MODELS)


class GPT2PromptBuilder(PurePromptBuilder):
    bos = eos = "<|endoftext|>"

    def first_human_turn(self, message: str) -> str:
        return self.bos + self.wrap_human(message)

    def finish(self, prompt: str) -> str:
        # Keep the hand-written BOS: only trailing whitespace goes.
        return prompt.rstrip()
### END SOLUTION


# %% [markdown]
# 用两三句话回答：你选了哪个方案，为什么？如果有人用 `source="hub"` 加载真实权重，另一个方案会出什么问题？（2 分，人工评分）

# %% [markdown] nbgrader={"grade": true, "grade_id": "bos_decision", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# 方案 (a)。GPT-2 预训练时各篇文档之间就是用 `<|endoftext|>` 隔开的，所以以它开头的提示词看上去就像一篇新文档的开始；把它写进模板里，训练和推理就完全一致，而且不用动分词器。方案 (b) 在加载之后修改分词器，也能用，但这个修改只存在于我们的代码里，而不在 checkpoint 里；任何直接从 Hub 加载分词器的代码（比如 collator、推理服务）拿到的都是不加 BOS 的分词器，patch 会静默地错开一个位置。
# ### END SOLUTION

# %% [markdown]
# ## 任务 2 · `GPT2LLMBackbone`
#
# 在这个包里，一个模型家族就是一张注册表加上几个类属性，真正的加载工作由 `FamilyBackbone`（在 `vla_backbone/families/_common.py` 中）和 `HFCausalLLMBackbone` 完成。读一读 `families/opt.py` 和 `families/phi.py`，你要写的类和它们长得差不多。定义 `GPT2LLMBackbone(FamilyBackbone)`，包含：
# - `family = "gpt2"` 和 `models = GPT2_MODELS`；
# - `llm_cls_path` 和 `decoder_layer_path`：分别指向 `GPT2LMHeadModel` 和 `GPT2Block` 的点分路径；
# - `pad_token`：GPT-2 没有 PAD token，而组 batch 需要它；加一个专门的 `"<|pad|>"`（千万别拿 EOS 来填充：那样的标签会教模型过早停下）；
# - 两个 `@property` 成员：`prompt_builder_fn`（对应你在任务 1 里的决定）和 `last_layer_finetune_modules`：输入嵌入、最后一个 block、输出头，顺序和其他家族返回的一样；
# - 只有选了方案 (b) 才需要的 `__init__`：修好分词器，再重新检查一遍。
#
# 它必须能以 `GPT2LLMBackbone("gpt2-124m", hf_hub_path=TINY_GPT2)` 的方式离线加载。

# %% nbgrader={"grade": false, "grade_id": "gpt2_backbone", "locked": false, "schema_version": 3, "solution": true, "task": false}
from typing import Sequence

from torch import nn

from vla_backbone.families._common import FamilyBackbone


class GPT2LLMBackbone(FamilyBackbone):
    """GPT-2 (124M to 1.5B) as an OpenVLA language backbone."""

    ### BEGIN SOLUTION
    family = "gpt2"
    models = GPT2_MODELS
    llm_cls_path = "transformers.GPT2LMHeadModel"
    decoder_layer_path = "transformers.models.gpt2.modeling_gpt2.GPT2Block"
    pad_token = "<|pad|>"

    @property
    def prompt_builder_fn(self) -> type[PromptBuilder]:
        return GPT2PromptBuilder

    @property
    def last_layer_finetune_modules(self) -> Sequence[nn.Module]:
        return (self.llm.transformer.wte, self.llm.transformer.h[-1], self.llm.lm_head)
    ### END SOLUTION


# %% [markdown]
# ### 检查你的代码：骨干网络（4 分）
#
# 下面的检查会构造你的骨干网络，并测试上面的各条规则。任何一条失败，都会告诉你具体哪里不对。

# %% nbgrader={"grade": true, "grade_id": "check_backbone", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
import torch

backbone = GPT2LLMBackbone("gpt2-124m", hf_hub_path=TINY_GPT2)
tokenizer = backbone.get_tokenizer()
bos = tokenizer.convert_tokens_to_ids("<|endoftext|>")

assert isinstance(backbone.llm, GPT2LMHeadModel), say(f"llm is a {type(backbone.llm).__name__}, expected GPT2LMHeadModel",
                                                      f"llm 是 {type(backbone.llm).__name__}，应为 GPT2LMHeadModel")
assert backbone.transformer_layer_cls is GPT2Block, say(f"transformer_layer_cls is {backbone.transformer_layer_cls}, expected GPT2Block",
                                                        f"transformer_layer_cls 是 {backbone.transformer_layer_cls}，应为 GPT2Block")
assert backbone.pad_token_id is not None and backbone.pad_token_id != bos, say("add a PAD token of its own (pad_token)",
                                                                               "请添加一个专门的 PAD token（pad_token）")
modules = backbone.last_layer_finetune_modules
assert len(modules) == 3 and modules[0] is backbone.llm.get_input_embeddings() and modules[1] is backbone.llm.transformer.h[-1], \
    say("last_layer_finetune_modules must be (input embeddings, last block, LM head)",
        "last_layer_finetune_modules 必须是（输入嵌入、最后一个 block、输出头）")
### BEGIN HIDDEN TESTS
assert backbone.llm.get_input_embeddings().weight.shape[0] % 64 == 0
assert modules[2] is backbone.llm.get_output_embeddings()
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ### 检查你的代码：BOS 规则（4 分）
#
# 在 OpenVLA 的动作提示词上检查任务 1 的规则：无论有没有回答，位置 0 上都恰好是一个 `<|endoftext|>`。

# %% nbgrader={"grade": true, "grade_id": "check_bos_rule", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
from vla_backbone.prompting import openvla_action_prompt


def first_tokens(answer=None):
    builder = backbone.prompt_builder_fn("openvla")
    builder.add_turn("human", openvla_action_prompt("pick up the red cup"))
    if answer is not None:
        builder.add_turn("gpt", answer)
    return tokenizer(builder.get_prompt(), add_special_tokens=True).input_ids


ids = first_tokens()
print("prompt ids:", ids[:8], "...")
assert ids[0] == bos, say(f"position 0 is token {ids[0]} ({tokenizer.convert_ids_to_tokens(ids[0])!r}), expected <|endoftext|> ({bos})",
                          f"位置 0 是 token {ids[0]}（{tokenizer.convert_ids_to_tokens(ids[0])!r}），应为 <|endoftext|>（{bos}）")
assert ids[1] != bos, say("<|endoftext|> appears twice at the start: the prompt and the tokenizer both add it",
                          "开头出现了两个 <|endoftext|>：提示词和分词器各加了一个")
ids = first_tokens(answer="move left")
assert ids[0] == bos and ids[1] != bos and ids[-1] == bos, say(
    "with an answer, the prompt must start with one <|endoftext|> and end with one",
    "加上回答之后，提示词必须以一个 <|endoftext|> 开头，并以一个 <|endoftext|> 结尾")
### BEGIN HIDDEN TESTS
assert GPT2_MODELS.get("gpt2-124m") == "openai-community/gpt2"
assert all(backbone_id.startswith("gpt2") for backbone_id in GPT2_MODELS)
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ## 让你的骨干网络干活
#
# 下面这些单元格用的都是你写的代码。先看词表：`<|pad|>` 成了词表里的最后一个 token，也就是 50257；嵌入矩阵的行数扩到了下一个 64 的倍数，即 50304 行。nanoGPT 正是为了提速把词表补齐到这个大小，这个数字也因此出了名。

# %%
import math

rows = backbone.llm.get_input_embeddings().weight.shape[0]
print("tokenizer:", len(tokenizer), "| pad id:", backbone.pad_token_id, "| embedding rows:", rows)
assert backbone.pad_token_id == len(tokenizer) - 1 == 50257
assert rows == math.ceil(len(tokenizer) / 64) * 64 == 50304

# %% [markdown]
# FSDP 会把每个 `GPT2Block` 包装成一个独立的单元（notebook 10）；嵌入、最终归一化层和输出头都留在根单元里。

# %%
from vla_backbone.fsdp import unit_parameter_counts, wrap_plan

plan = wrap_plan(backbone, backbone.get_fsdp_wrapping_policy())
counts = unit_parameter_counts(backbone, backbone.get_fsdp_wrapping_policy())
print(plan, counts)
assert plan == ["", "llm.transformer.h.0", "llm.transformer.h.1"]
assert counts[""] == sum(p.numel() for name, p in backbone.named_parameters() if ".h." not in name)

# %% [markdown]
# 最后，在 `last-layer-finetune` 阶段跑一步训练：除了 `last_layer_finetune_modules` 以外全部冻结，并打开梯度检查点。GPT-2 的 `lm_head` 和 `wte` 是绑定的（共用同一个权重矩阵），所以解冻输出头也就同时解冻了嵌入。被冻结的第一个 block 拿不到梯度，最后一个 block 能拿到。

# %%
backbone.requires_grad_(False)
for module in backbone.last_layer_finetune_modules:
    module.requires_grad_(True)
backbone.enable_gradient_checkpointing()
backbone.llm.train()

batch = torch.tensor([first_tokens(answer="move left")])
loss = backbone(input_ids=batch, attention_mask=torch.ones_like(batch), labels=batch).loss
loss.backward()
print(f"loss {loss.item():.3f}")
assert backbone.llm.lm_head.weight is backbone.llm.transformer.wte.weight
assert torch.isfinite(loss)
assert backbone.llm.transformer.h[0].attn.c_attn.weight.grad is None
assert backbone.llm.transformer.h[-1].attn.c_attn.weight.grad.abs().sum() > 0

# %% [markdown]
# ## 小结
# - 一个新家族就是一张注册表加几个类属性；只有模型类和 block 类是和架构相关的名字，各架构的属性名只会在 `last_layer_finetune_modules` 里露出来。
# - GPT-2 的分词器里没有 BOS：要么由模板写上 `<|endoftext|>`（作为特例，和 phi-2 一样），要么修改分词器让它自己加。VLM 需要的，是每一次位置 0 上都有且只有一个起始 token。
# - GPT-2 没有 PAD token：加一个专用的，嵌入就会扩到 64 的倍数（真实模型是 50304）。
#
# ## 练习
# 1. 实现另一种 BOS 方案，再跑一次评分程序：两种方案它都接受。
# 2. 用 `GPT2LLMBackbone("gpt2-124m", ..., inference_mode=True)` 加载 `TINY_GPT2`。加载流程（notebook 02）里哪些步骤被跳过了？BOS 规则是否仍然成立？
# 3. 在能联网的机器上，加载真实的 `openai-community/gpt2`（不传 `hf_hub_path`），把动作提示词的前十个 token id 和微型副本的对比一下。
