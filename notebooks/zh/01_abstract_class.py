# %% [markdown]
# # 01 · 抽象类 `LLMBackbone`
#
# VLA 并不直接和 Llama、Mistral 或 Qwen 打交道，它只认一个小小的接口 `LLMBackbone`，每个语言模型家族各自实现这个接口。接口本身很短：视觉-语言模型需要的几个成员（把 token 变成嵌入、运行模型、告诉 FSDP 按哪种模块分片、半精度用什么 dtype、微调时解冻哪些模块……），外加 `llm` 和 `tokenizer` 两个槽位。如果某个家族漏实现了一个成员，你希望在构造它的那一刻就知道，而不是训练跑了三个小时才发现。本 notebook 把这个类逐个拆开，看看 Python 是怎样把这份约定变成强制规则的。
#
# **你将学到**
# - `LLMBackbone` 为什么既是 `nn.Module` 又是 `ABC`，两个基类各自带来了什么；
# - 哪八个成员是抽象的，`@property` 和 `@abstractmethod` 该怎样叠加；
# - 缺少成员会在构造时就失败，报错里点名缺的是哪一个——上游 OpenVLA 的两个类恰好踩中了这个坑；
# - `__init__`、`get_tokenizer()`、`embed_dim` 和 `pad_token_id` 分别做什么，以及 `pad_token_id` 为什么要问分词器。

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

# %% [markdown]
# ## 两个基类：`nn.Module` 和 `ABC`
#
# 类的定义是 `class LLMBackbone(nn.Module, ABC)`，两个基类各司其职：
#
# - **`nn.Module`**：VLM 把骨干网络存成自己的一个属性（`self.llm_backbone = ...`）。因为它是 module，PyTorch 会把它注册为子模块：它的参数会出现在 `vlm.parameters()` 里，`vlm.to(...)` 会连带移动它、转换它的 dtype，`vlm.state_dict()` 会把它一起保存，FSDP 也能深入其中，对它的解码器层做分片。
# - **`ABC`**：它的元类 `ABCMeta` 才让 `@abstractmethod` 真正生效。只要一个类还有没实现的抽象成员，Python 就拒绝为它创建实例。
#
# 两者能混用，是因为 `nn.Module` 的元类就是普通的 `type`，`ABCMeta` 是它的子类，自然胜出，不会产生元类冲突。

# %%
from abc import ABC, ABCMeta, abstractmethod

import torch
from torch import nn

from vla_backbone.base import LLMBackbone

print("metaclass:", type(LLMBackbone).__name__)
print("MRO:", [cls.__name__ for cls in LLMBackbone.__mro__])
assert type(nn.Module) is type and type(LLMBackbone) is ABCMeta
assert issubclass(LLMBackbone, nn.Module) and issubclass(LLMBackbone, ABC)


# %% [markdown]
# 只继承 `nn.Module` 行不行？不行：没有 `ABCMeta`，`@abstractmethod` 只是个摆设。下面这个类把 `embed_input_ids` 标成了抽象方法却没有实现，Python 照样一声不吭地造出了实例——错误要等到很久以后、第一次前向传播时才会暴露。

# %%
class OnlyAModule(nn.Module):
    @abstractmethod
    def embed_input_ids(self, input_ids): ...


quietly_broken = OnlyAModule()
print("built without complaint:", type(quietly_broken).__name__)
assert type(OnlyAModule) is type and not getattr(OnlyAModule, "__abstractmethods__", None)

# %% [markdown]
# 基类里加上 `ABC` 之后，同样的疏漏立刻就会被发现：`LLMBackbone` 本身无法实例化，报错信息还列出了子类尚欠的全部成员。

# %%
from vla_backbone.notebook import expect_error

with expect_error(TypeError, match="Can't instantiate abstract class LLMBackbone") as caught:
    LLMBackbone("llama2-7b-pure")
assert all(name in str(caught[0]) for name in LLMBackbone.__abstractmethods__)

# %% [markdown]
# ## 八个抽象成员
#
# `ABCMeta` 把子类还必须定义的名字记在 `__abstractmethods__` 里。`LLMBackbone` 一共有八个：四个抽象方法，四个抽象属性。
#
# | 成员 | 类型 | VLM 用它做什么 |
# |---|---|---|
# | `get_fsdp_wrapping_policy()` | 方法 | 决定哪些模块成为 FSDP 单元（notebook 10） |
# | `enable_gradient_checkpointing()` | 方法 | 用计算换显存（notebook 08） |
# | `forward(...)` | 方法 | 在 token id 或拼接好的嵌入上运行模型（notebook 06） |
# | `embed_input_ids(input_ids)` | 方法 | 文本嵌入，图像 patch 会被拼接进去（notebook 06、11） |
# | `prompt_builder_fn` | 属性 | 该模型使用的提示词构造器*类*（notebook 05） |
# | `transformer_layer_cls` | 属性 | 要包装、要做检查点的解码器层类（notebook 08、10） |
# | `half_precision_dtype` | 属性 | 混合精度使用的 dtype（notebook 09） |
# | `last_layer_finetune_modules` | 属性 | 只微调最后一层时仍可训练的模块（notebook 09） |

# %%
abstract = set(LLMBackbone.__abstractmethods__)
print(sorted(abstract))
assert abstract == {
    "get_fsdp_wrapping_policy",
    "enable_gradient_checkpointing",
    "forward",
    "embed_input_ids",
    "prompt_builder_fn",
    "transformer_layer_cls",
    "half_precision_dtype",
    "last_layer_finetune_modules",
}

# %% [markdown]
# 哪些是属性、哪些是方法？看类的 `__dict__` 就知道：抽象属性存成一个 `property` 对象，它的 getter 是抽象的。另外三个*非*抽象成员——`get_tokenizer`、`embed_dim`、`pad_token_id`——只在基类里实现一次，所有家族共用。

# %%
kinds = {name: type(LLMBackbone.__dict__[name]).__name__ for name in sorted(abstract)}
for name, kind in kinds.items():
    print(f"{name:30s} {kind}")

properties = {name for name, kind in kinds.items() if kind == "property"}
assert properties == {"prompt_builder_fn", "transformer_layer_cls", "half_precision_dtype", "last_layer_finetune_modules"}
assert abstract - properties == {"get_fsdp_wrapping_policy", "enable_gradient_checkpointing", "forward", "embed_input_ids"}
assert {"get_tokenizer", "embed_dim", "pad_token_id"}.isdisjoint(abstract)
assert isinstance(LLMBackbone.__dict__["embed_dim"], property) and isinstance(LLMBackbone.__dict__["pad_token_id"], property)


# %% [markdown]
# ## `@property` 在上，`@abstractmethod` 在下
#
# 装饰器从下往上依次生效。`@abstractmethod` 先给函数打上标记（设置 `__isabstractmethod__ = True`），`@property` 再把它包起来；只要 getter 是抽象的，property 就会报告自己是抽象的。基类用的正是这个顺序。

# %%
class Right(ABC):
    @property
    @abstractmethod
    def half_precision_dtype(self) -> torch.dtype: ...


print("abstract property:", Right.__dict__["half_precision_dtype"].__isabstractmethod__)
assert Right.__dict__["half_precision_dtype"].__isabstractmethod__ is True
assert Right.__abstractmethods__ == frozenset({"half_precision_dtype"})

# %% [markdown]
# 反过来写则会直接失败，而且在定义类的时候就失败：`@abstractmethod` 得把标记写到一个 `property` 对象上，而 property 的 `__isabstractmethod__` 是只读的。

# %%
with expect_error(AttributeError, match="__isabstractmethod__"):

    class Wrong(ABC):
        @abstractmethod
        @property
        def half_precision_dtype(self) -> torch.dtype: ...


# %% [markdown]
# 有一处细节要注意：`ABCMeta` 只检查*名字*，不检查种类。子类如果用普通方法去覆盖一个抽象属性，检查照样能通过，可所有读取 `backbone.half_precision_dtype` 的调用方拿到的都会是一个绑定方法，而不是 dtype。实现成员时，请保持与基类相同的种类。

# %%
class MethodNotProperty(Right):
    def half_precision_dtype(self) -> torch.dtype:
        return torch.bfloat16


oops = MethodNotProperty()
print(type(oops.half_precision_dtype).__name__)
assert not MethodNotProperty.__abstractmethods__
assert not isinstance(oops.half_precision_dtype, torch.dtype)

# %% [markdown]
# ## 一个最小的具体骨干网络
#
# 为了看清基类本身做了什么，我们用尽可能简单的方式实现全部八个成员。这个子类新增的东西都只是占位；它继承下来的部分，才是每个真实家族同样会继承的。

# %%
from vla_backbone.prompting import PurePromptBuilder


class MinimalBackbone(LLMBackbone):
    def get_fsdp_wrapping_policy(self):
        return None

    def enable_gradient_checkpointing(self) -> None:
        pass

    def forward(self, input_ids=None, **kwargs):
        return self.llm(input_ids=input_ids, **kwargs)

    def embed_input_ids(self, input_ids):
        return self.llm.get_input_embeddings()(input_ids)

    @property
    def prompt_builder_fn(self):
        return PurePromptBuilder

    @property
    def transformer_layer_cls(self):
        return nn.Module

    @property
    def half_precision_dtype(self):
        return torch.bfloat16

    @property
    def last_layer_finetune_modules(self):
        return ()


assert MinimalBackbone.__abstractmethods__ == frozenset()

# %% [markdown]
# ## 漏掉的成员在构造时报错，而且点名
#
# 现在从这个命名空间里每次删掉一个成员，再重新构建类。八个变体无一例外，一调用就抛出 `TypeError`，报错信息准确指出缺的是哪个成员。

# %%
for missing in sorted(abstract):
    namespace = {name: MinimalBackbone.__dict__[name] for name in abstract if name != missing}
    Incomplete = type(f"Without_{missing}", (LLMBackbone,), namespace)
    assert Incomplete.__abstractmethods__ == frozenset({missing})
    with expect_error(TypeError, match=missing):
        Incomplete("llama2-7b-pure")

# %% [markdown]
# ## 上游的缺陷：OpenVLA 的 Mistral 和 Phi 根本构造不出来
#
# OpenVLA 为“只微调最后一层”这一训练阶段，在抽象类里新增了 `last_layer_finetune_modules`，并在 Llama-2 上实现了它。Mistral 和 Phi 两个子类却还是只有原来的三个属性，第四个始终没有补上。下面这个类仿照上游的 Mistral 骨干网络：继承 `HFCausalLLMBackbone`，和上游一样定义了 `prompt_builder_fn`、`transformer_layer_cls` 和 `half_precision_dtype`。
#
# 这个 `TypeError` 来自 `object.__new__`，发生在 `__init__` 运行*之前*：既没有读取 config，也没有加载任何权重。这正是 ABC 的意义所在——这个错误几微秒内就会暴露，不必先白白下载 14 GB。

# %%
from transformers import MistralForCausalLM
from transformers.models.mistral.modeling_mistral import MistralDecoderLayer

from vla_backbone.hf_causal import HFCausalLLMBackbone
from vla_backbone.prompting import MistralInstructPromptBuilder

init_calls = []


class UpstreamStyleMistral(HFCausalLLMBackbone):
    def __init__(self, llm_backbone_id: str, **kwargs) -> None:
        init_calls.append(llm_backbone_id)
        super().__init__(llm_backbone_id, llm_family="mistral", llm_cls=MistralForCausalLM,
                         hf_hub_path="mistralai/Mistral-7B-v0.1", **kwargs)

    @property
    def prompt_builder_fn(self):
        return MistralInstructPromptBuilder

    @property
    def transformer_layer_cls(self):
        return MistralDecoderLayer

    @property
    def half_precision_dtype(self):
        return torch.bfloat16


print("still abstract:", set(UpstreamStyleMistral.__abstractmethods__))
with expect_error(TypeError, match="last_layer_finetune_modules"):
    UpstreamStyleMistral("mistral-v0.1-7b-pure")
assert init_calls == [], "__init__ never ran: nothing was loaded"
assert UpstreamStyleMistral.__abstractmethods__ == frozenset({"last_layer_finetune_modules"})

# %% [markdown]
# 我们的 `MistralLLMBackbone` 和 `PhiLLMBackbone` 都定义了这个属性（和其他家族一样：输入嵌入、最后一个解码器层、LM head），所以能正常构造（这里用的是微型副本），并返回模型中真实存在的三个模块。

# %%
from vla_backbone import get_llm_backbone_and_tokenizer
from vla_backbone.families import MistralLLMBackbone, PhiLLMBackbone

for cls, backbone_id in ((MistralLLMBackbone, "mistral-v0.1-7b-instruct"), (PhiLLMBackbone, "phi-2-3b")):
    assert cls.__abstractmethods__ == frozenset()
    backbone, _ = get_llm_backbone_and_tokenizer(backbone_id)
    modules = backbone.last_layer_finetune_modules
    print(f"{type(backbone).__name__:20s}", [type(m).__name__ for m in modules])
    assert isinstance(backbone, cls) and len(modules) == 3
    assert modules[0] is backbone.llm.get_input_embeddings() and modules[1] is backbone.llm.model.layers[-1]
    assert modules[2] is backbone.llm.lm_head

# %% [markdown]
# ## `__init__`：一个标识符，两个空槽位
#
# 基类的构造函数只做三件事：调用 `nn.Module.__init__`（少了它，给属性赋子模块时会报错）；把骨干网络的 id 存为 `identifier`；把 `llm` 和 `tokenizer` 设为 `None`。填充这两个槽位是子类的事——`HFCausalLLMBackbone` 会把两者都加载好（notebook 02）。`get_tokenizer()` 只是原样返回那个槽位。

# %%
minimal = MinimalBackbone("my-backbone-v0")
print("identifier:", minimal.identifier, "| llm:", minimal.llm, "| tokenizer:", minimal.get_tokenizer())
assert minimal.identifier == "my-backbone-v0"
assert minimal.llm is None and minimal.tokenizer is None and minimal.get_tokenizer() is None
assert list(minimal.children()) == []

# %% [markdown]
# 槽位填上之前，具体属性无从读取：`embed_dim` 要访问 `self.llm.config`，而 `None` 没有 `config`。不过请留意报错信息。`nn.Module` 的 property 一旦抛出 `AttributeError`，Python 就会退回到 `nn.Module.__getattr__`，后者去找同名的参数或子模块，找不到，于是报告说 `embed_dim` 这个属性本身不存在。真正的原因——`llm` 仍是 `None`——从信息里消失了。以后遇到 module 上的某个 property“凭空消失”，不妨先想到这一点。

# %%
with expect_error(AttributeError, match="has no attribute 'embed_dim'"):
    minimal.embed_dim
assert "embed_dim" in dir(minimal) and minimal.llm is None

# %% [markdown]
# 用 Llama 微型副本手动填上两个槽位：真实的 Llama-2 分词器，加一个微型的 `LlamaForCausalLM`。我们和骨干网络一样显式指定 float32：checkpoint 以 float16 存储，不指定的话，transformers 5 会按存储的 dtype 加载。把一个 module 赋给 `self.llm`，它就成了已注册的子模块（这是 `nn.Module.__setattr__` 在起作用）；`get_tokenizer()` 返回的也正是存进去的那个对象。

# %%
from transformers import AutoTokenizer, LlamaForCausalLM

from vla_backbone.tiny import tiny_checkpoint

llama_dir = tiny_checkpoint("llama2")
minimal.llm = LlamaForCausalLM.from_pretrained(llama_dir, dtype=torch.float32)
minimal.tokenizer = AutoTokenizer.from_pretrained(llama_dir)

print("children:", [name for name, _ in minimal.named_children()], "| embed_dim:", minimal.embed_dim)
assert [name for name, _ in minimal.named_children()] == ["llm"]
assert minimal.get_tokenizer() is minimal.tokenizer and minimal.llm.dtype == torch.float32
assert sum(p.numel() for p in minimal.parameters()) == sum(p.numel() for p in minimal.llm.parameters())


# %% [markdown]
# ## 身为 module，在 VLM 里就有了回报
#
# 下面是一个 VLM 的骨架：它拥有一个骨干网络和一个投影器。因为骨干网络是 `nn.Module`，VLM 能看到它的参数，以 `llm_backbone.` 为前缀保存它们，对 VLM 调用一次 `.to(torch.bfloat16)`，语言模型也会一并转换。FSDP 找到解码器层，靠的也是同样的注册机制（notebook 10）。

# %%
class ToyVLM(nn.Module):
    def __init__(self, llm_backbone: LLMBackbone, vision_dim: int = 1024) -> None:
        super().__init__()
        self.llm_backbone = llm_backbone
        self.projector = nn.Linear(vision_dim, llm_backbone.embed_dim)


vlm = ToyVLM(minimal)
n_llm = sum(p.numel() for p in minimal.parameters())
n_vlm = sum(p.numel() for p in vlm.parameters())
print(f"VLM parameters: {n_vlm} = {n_llm} (backbone) + {n_vlm - n_llm} (projector)")
assert n_vlm == n_llm + 1024 * 64 + 64
assert any(key.startswith("llm_backbone.llm.model.layers.0.") for key in vlm.state_dict())

vlm.to(torch.bfloat16)
assert minimal.llm.dtype == torch.bfloat16
vlm.to(torch.float32)

# %% [markdown]
# ## `embed_dim`：投影器要对准的宽度
#
# `embed_dim` 就是 `llm.config.hidden_size`。投影器唯一的任务，是把每个视觉 patch 的特征（这里宽 1024，和 ViT-L 一样）映射到恰好这个宽度，这样投影后的 patch 和文本嵌入才能并排放进同一个序列。下面让 256 个 patch 经过投影器，再放到 BOS 嵌入之后；形状之所以能对上，完全是因为两端对 `embed_dim` 达成了一致。

# %%
patch_features = torch.randn(1, 256, 1024)
patches = vlm.projector(patch_features)

ids = minimal.tokenizer("What action should the robot take to pick up the cup?", return_tensors="pt").input_ids
text = minimal.embed_input_ids(ids)
sequence = torch.cat([text[:, :1], patches, text[:, 1:]], dim=1)

print("patches", tuple(patches.shape), "| text", tuple(text.shape), "| spliced", tuple(sequence.shape))
assert minimal.embed_dim == minimal.llm.config.hidden_size == 64
assert patches.shape == (1, 256, minimal.embed_dim) and text.shape[-1] == minimal.embed_dim
assert sequence.shape == (1, 256 + ids.shape[1], minimal.embed_dim)

# %% [markdown]
# 如果投影器是按另一个宽度构建的，恰恰会在这次拼接时失败——所以 VLM 要向骨干网络询问宽度，而不是把 4096 写死。

# %%
wrong_projector = nn.Linear(1024, 4096)
with expect_error(RuntimeError, match="Sizes of tensors must match"):
    torch.cat([text[:, :1], wrong_projector(patch_features), text[:, 1:]], dim=1)

# %% [markdown]
# ## `pad_token_id` 来自分词器，而不是 config
#
# 有两个对象都带着 pad id：分词器（`tokenizer.pad_token_id`）和模型 config（`llm.config.pad_token_id`）。collator 按*分词器*给出的 id 做填充，所以真正出现在填充后 `input_ids` 里的是这个 id，基类返回的也是它。
#
# Llama-2 说明了两者为什么可能不一致。它的分词器发布时就没有 PAD token。直接从 checkpoint 读出来，两个 id 都是 `None`：

# %%
from transformers import AutoConfig

raw_tokenizer = AutoTokenizer.from_pretrained(llama_dir)
raw_config = AutoConfig.from_pretrained(llama_dir)
print("checkpoint: tokenizer pad =", raw_tokenizer.pad_token_id, "| config pad =", raw_config.pad_token_id)
assert raw_tokenizer.pad_token_id is None and raw_config.pad_token_id is None

# %% [markdown]
# llama2 家族先往分词器里添加 `<PAD>`（它拿到下一个空闲 id：Llama-2 的词占用 0 到 31999，所以 `<PAD>` 是 32000），然后才把这个 id 抄进 `config.pad_token_id`。加载完成后两者一致，填充后的 batch 里出现的也正好是 `backbone.pad_token_id`。

# %%
llama, llama_tokenizer = get_llm_backbone_and_tokenizer("llama2-7b-pure")
batch = llama_tokenizer(["pick up the cup", "open the drawer next to the red block"], padding=True, return_tensors="pt")
print("backbone.pad_token_id =", llama.pad_token_id, "| config.pad_token_id =", llama.llm.config.pad_token_id)
print(batch.input_ids)

assert raw_tokenizer.vocab_size == len(raw_tokenizer) == 32000
assert llama_tokenizer.pad_token == "<PAD>" and llama.pad_token_id == llama_tokenizer.pad_token_id == 32000
assert llama.llm.config.pad_token_id == llama.pad_token_id
padded = batch.attention_mask == 0
assert padded.any() and (batch.input_ids[padded] == llama.pad_token_id).all()

# %% [markdown]
# 现在只改分词器，就像某个脚本执行了 `tokenizer.pad_token = tokenizer.eos_token` 那样。config 仍然写着 32000，但 batch 的填充位置上现在是 EOS 的 id——而 `pad_token_id` 跟随分词器，这正是需要屏蔽填充的代码所要知道的值。

# %%
drifted, drifted_tokenizer = get_llm_backbone_and_tokenizer("llama2-7b-pure")
drifted_tokenizer.pad_token = drifted_tokenizer.eos_token
sentences = ["pick up the cup", "open the drawer next to the red block"]
batch = drifted_tokenizer(sentences, padding=True, return_tensors="pt")
print("backbone.pad_token_id =", drifted.pad_token_id, "| config.pad_token_id =", drifted.llm.config.pad_token_id)

assert drifted.pad_token_id == drifted_tokenizer.eos_token_id == 2
assert drifted.llm.config.pad_token_id == 32000
assert (batch.input_ids[batch.attention_mask == 0] == drifted.pad_token_id).all()

# %% [markdown]
# ## 逐个家族、逐个成员
#
# 同样的八个成员，看五个家族各自怎么回答。有几点值得注意：所有微型副本的 `embed_dim` 都是 64（缩小的只是宽度和深度；用 `source="hub"` 运行同一段代码，打印的就是真实宽度）。PAD 的 id 都是真实的：Qwen 和 OPT 沿用分词器自带的 PAD token（`<|endoftext|>` = 151643 和 `<pad>` = 1），另外三个家族则在最后一个 token 之后追加一个（Llama-2 和 Mistral 是 `<PAD>` = 32000，phi-2 是 `<|pad|>` = 50295）。所有家族的半精度都选 bfloat16。

# %%
import functools

from vla_backbone.registry import list_backbones

REPRESENTATIVES = ["llama2-7b-pure", "mistral-v0.1-7b-instruct", "phi-2-3b", "qwen25-0_5b-pure", "opt-125m"]


@functools.lru_cache(maxsize=None)
def load(backbone_id: str):
    return get_llm_backbone_and_tokenizer(backbone_id)[0]


def members(backbone_id: str) -> dict:
    backbone = load(backbone_id)
    return {
        "class": type(backbone).__name__,
        "embed_dim": backbone.embed_dim,
        "pad_token_id": backbone.pad_token_id,
        "transformer_layer_cls": backbone.transformer_layer_cls.__name__,
        "half_precision_dtype": str(backbone.half_precision_dtype),
        "prompt_builder_fn": backbone.prompt_builder_fn.__name__,
        "last_layer_finetune_modules": [type(m).__name__ for m in backbone.last_layer_finetune_modules],
    }


table = {backbone_id: members(backbone_id) for backbone_id in REPRESENTATIVES}
for backbone_id, row in table.items():
    print(f"{backbone_id:26s} {row['embed_dim']:3d} {row['pad_token_id']:6d}  {row['transformer_layer_cls']:20s} "
          f"{row['half_precision_dtype']:15s} {row['prompt_builder_fn']}")

assert all(row["embed_dim"] == 64 for row in table.values())
assert [row["pad_token_id"] for row in table.values()] == [32000, 32000, 50295, 151643, 1]
assert [load(i).get_tokenizer().pad_token for i in REPRESENTATIVES] == [
    "<PAD>", "<PAD>", "<|pad|>", "<|endoftext|>", "<pad>"]
assert all(row["half_precision_dtype"] == "torch.bfloat16" for row in table.values())
assert [row["transformer_layer_cls"] for row in table.values()] == [
    "LlamaDecoderLayer", "MistralDecoderLayer", "PhiDecoderLayer", "Qwen2DecoderLayer", "OPTDecoderLayer"]
assert table["phi-2-3b"]["prompt_builder_fn"] == "PhiPromptBuilder"

# %% [markdown]
# **动手试试。** 任选一个已注册的 id——Llama-2 的 chat 版和 Vicuna 版、Qwen 的 `-extra` id——比较它们的成员。在 Jupyter 里，下面的调用会显示一个下拉菜单；作为脚本运行时，它打印第一个 id 的结果。

# %%
from vla_backbone.notebook import explore


def show_members(backbone_id: str) -> dict:
    row = members(backbone_id)
    print(f"{'backbone id':28s} {backbone_id}")
    for name, value in row.items():
        print(f"{name:28s} {value}")
    return row


choices = REPRESENTATIVES + [i for i in list_backbones() if i not in REPRESENTATIVES]
first = explore(show_members, backbone_id=choices)
assert first == table["llama2-7b-pure"]

# %% [markdown]
# ## 小结
# - `LLMBackbone` 是 `nn.Module`，所以 VLM 能注册、保存、转换并分片它；它又是 `ABC`，所以 `@abstractmethod` 会被强制执行——普通的 module 会默默接受缺失的成员。
# - 八个成员是抽象的：四个方法（`get_fsdp_wrapping_policy`、`enable_gradient_checkpointing`、`forward`、`embed_input_ids`）和四个属性（`prompt_builder_fn`、`transformer_layer_cls`、`half_precision_dtype`、`last_layer_finetune_modules`），写法是 `@property` 在 `@abstractmethod` 之上。
# - 缺少其中任何一个的子类，都会在 `__init__` 运行之前抛出点名的 `TypeError`；上游 OpenVLA 的 Mistral 和 Phi 类就因 `last_layer_finetune_modules` 栽在这里，我们的实现补上了它。
# - 基类保存 `identifier`，把 `llm` 和 `tokenizer` 留作 `None` 交给子类填充，`embed_dim` 取自 `llm.config.hidden_size`，`pad_token_id` 取自分词器。
#
# ## 练习
# 1. 重新写一个 `UpstreamStyleMistral`，这次继承我们的 `MistralLLMBackbone`，但把 `last_layer_finetune_modules` 重新声明为抽象属性。`TypeError` 会再次出现吗？`__abstractmethods__` 显示什么？
# 2. 为 `MinimalBackbone` 写出针对 Llama 微型副本的真实 `get_fsdp_wrapping_policy` 和 `transformer_layer_cls`（提示：`LlamaDecoderLayer`），并验证用 `recurse=False` 调用时，包装策略对解码器层返回 `True`，对嵌入层返回 `False`。
# 3. 加载 `qwen25-0_5b-extra`，与 `qwen25-0_5b-pure` 比较 `embed_dim`、`pad_token_id` 以及嵌入矩阵的行数。哪些不同？为什么？
# 4. 把 `vlm.projector` 换成一个两层 MLP（`Linear`、`GELU`、`Linear`），输出宽度从 `embed_dim` 读取，并验证它不加修改就能用于 `REPRESENTATIVES` 中的每个家族。
