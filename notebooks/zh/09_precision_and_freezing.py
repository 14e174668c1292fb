# %% [markdown]
# # 09 · 精度与冻结：`half_precision_dtype` 和 `last_layer_finetune_modules`
#
# `LLMBackbone` 上有两个不起眼的属性，却决定了一个 70 亿参数的 VLA 能不能装进 GPU、训练时到底学哪些参数。`half_precision_dtype` 指定混合精度训练和生成时用哪种 16 位类型做计算；`last_layer_finetune_modules` 指定语言模型其余部分被冻结时，哪几个模块仍然参与训练。本 notebook 先把前者量一量（数值范围、舍入误差、autocast），再用后者在一个玩具 VLM 上搭出 OpenVLA 的五个冻结阶段，最后用真实的梯度检查每个阶段是否恰好训练了它声称要训练的参数。
#
# **你将学到**
# - 为什么每个模型家族给出的都是 `torch.bfloat16`，以及 bf16 相比 fp16 牺牲了什么（精度）、换来了什么（数值范围）；
# - `torch.autocast` 在一次前向传播中逐个张量地改变了什么，logits 又偏离了多少；
# - `last_layer_finetune_modules` 在每个模型家族里返回哪三个模块；
# - 把 `align`、`finetune`、`full-finetune`、`last-layer-finetune` 和 `vla-sandwich-train` 这几个冻结阶段写成一个函数，统计参数、画图，并用一次反向传播加以验证；
# - 为什么绑定嵌入（tied embeddings，见于 Qwen-2.5 和 OPT）会让“训练 LM head”变成“连输入嵌入一起训练”。

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
# ## `half_precision_dtype`：所有 id 只有一个答案
#
# OpenVLA 的主权重保存在 fp32 中，计算则用 16 位类型。训练时它同时用了两套机制：训练步在 `torch.autocast("cuda", dtype=half_precision_dtype)` 下运行，FSDP 的混合精度策略则为计算保留一份 bf16 的参数副本，并以 fp32 归约梯度（见 notebook 10）。生成时同样在 `torch.autocast` 下以这个类型运行。骨干网络通过 `half_precision_dtype` 给出这个类型。这里所有模型家族都从 `FamilyBackbone` 继承了同一个答案：bfloat16。同一家族的所有 id 共用同一个类和同一个微型副本，所以我们每个家族只加载一个骨干网络，再在它上面对每个 id 的类求这个属性——这样不必加载 19 个模型，也能覆盖全部 19 个 id。

# %%
import torch
import vla_backbone
from vla_backbone.families._common import FamilyBackbone
from vla_backbone.registry import backbone_class, get_llm_backbone_and_tokenizer

FAMILY_IDS = {"llama2": "llama2-7b-pure", "mistral": "mistral-v0.1-7b-pure", "phi": "phi-2-3b", "qwen25": "qwen25-0_5b-pure", "opt": "opt-125m"}
loaded = {family: get_llm_backbone_and_tokenizer(backbone_id) for family, backbone_id in FAMILY_IDS.items()}
backbones = {family: pair[0] for family, pair in loaded.items()}
tokenizers = {family: pair[1] for family, pair in loaded.items()}

dtypes = {}
for backbone_id in vla_backbone.list_backbones():
    family_cls = backbone_class(backbone_id)
    # The property object of the id's class, evaluated on a loaded backbone of that family.
    dtypes[backbone_id] = family_cls.half_precision_dtype.fget(backbones[family_cls.family])
    print(f"{backbone_id:26s} {family_cls.__name__:20s} {dtypes[backbone_id]}")

# %%
assert len(dtypes) == 19 and set(dtypes.values()) == {torch.bfloat16}
assert all(backbone.half_precision_dtype is torch.bfloat16 for backbone in backbones.values())
# No family overrides it: every class resolves the attribute to FamilyBackbone's one property.
assert all(backbone_class(i).half_precision_dtype is FamilyBackbone.half_precision_dtype for i in dtypes)

# %% [markdown]
# ## bf16 与 fp16：范围与精度的取舍
#
# 两种类型都是 16 位，只是分法不同：fp16 有 5 位指数、10 位尾数；bf16 有 8 位指数（和 fp32 一样多）、7 位尾数。`torch.finfo` 直接给出由此带来的后果：`max`（最大的有限值）、`tiny`（最小的正规数）和 `eps`（1 与下一个可表示数之间的间隔，等于 2 的负“尾数位数”次方）。

# %%
for dtype in (torch.float32, torch.float16, torch.bfloat16):
    info = torch.finfo(dtype)
    print(f"{str(dtype):15s} bits={info.bits}  max={info.max:<12.5g} tiny={info.tiny:<12.5g} eps={info.eps:.5g}")

fp16, bf16, fp32 = torch.finfo(torch.float16), torch.finfo(torch.bfloat16), torch.finfo(torch.float32)

# %% [markdown]
# fp16 的上限是 65504，正规数的下限约为 6e-5。bf16 的上限和 fp32 一样是 3.4e38，下限也同为 1.2e-38，但它的步长比 fp16 粗 8 倍（eps 为 2^-7，fp16 为 2^-10）。

# %%
assert fp16.max == 65504 and fp16.tiny == 2**-14 and fp16.eps == 2**-10
assert bf16.eps == 2**-7 and bf16.tiny == fp32.tiny == 2**-126
assert bf16.max > 3.38e38 and bf16.max / fp32.max > 0.99

# %% [markdown]
# 用三个数来具体感受一下。70000 超过了 fp16 的最大值，变成 `inf`；bf16 把它存成 70144（舍入误差 0.2%，但仍是有限值）。1e-8 比 fp16 最小的次正规数（2^-24，约 6e-8）还小，直接变成 0；bf16 则能保住它。1 + 2^-9 在 fp16 中可以精确表示，在 bf16 中却落在两个相邻可表示数之间，被舍入回 1。

# %%
values = torch.tensor([70000.0, 1e-8, 1 + 2**-9])
as_fp16, as_bf16 = values.to(torch.float16), values.to(torch.bfloat16)
for value, a, b in zip(values.tolist(), as_fp16.tolist(), as_bf16.tolist()):
    print(f"{value:<14.8g} fp16 -> {a:<12.8g} bf16 -> {b:.8g}")

# %%
assert torch.isinf(as_fp16[0]) and as_bf16[0].item() == 70144
assert as_fp16[1].item() == 0 and abs(as_bf16[1].item() - 1e-8) / 1e-8 < bf16.eps
assert as_fp16[2].item() == 1 + 2**-9 and as_bf16[2].item() == 1.0

# %% [markdown]
# 溢出在网络内部并不罕见。两个元素全为 40 的 64 维向量（维度只有 Llama-2-7B 隐藏维度的 1/64），点积就已经是 102400，超出了 fp16 的范围。这些模型里没有任何机制保证激活值低于 65504，而 bf16 拥有和 fp32 一样的范围，这就是各个模型家族都选 bf16、OpenVLA 也用 bf16 训练的原因。

# %%
x = torch.full((64,), 40.0)
dot_fp16, dot_bf16 = x.half() @ x.half(), x.bfloat16() @ x.bfloat16()
print("fp16:", dot_fp16.item(), " bf16:", dot_bf16.item())
assert torch.isinf(dot_fp16) and dot_bf16.item() == 102400

# %% [markdown]
# ### 舍入误差随数值大小的变化
#
# 按“舍入到最近”的规则，在一个类型的正规数范围内，相对误差最多是半个 `eps`（称为*单位舍入误差*）。下图把从 1e-9 到 1e6 的 4000 个 fp32 数值分别舍入到两种类型，画出相对误差。bf16 的误差带高出 8 倍，但在整个区间上都是平的；fp16 的误差带更低，两端却都断掉了：低于 `tiny` 后，次正规数逐渐丢失有效位，直到下溢为 0（误差为 1）；高于 `max` 后，一切都成了 `inf`。

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"title": "Relative rounding error of fp16 and bf16", "x": "magnitude |x|", "y": "relative error |round(x) − x| / |x|",
           "half_eps": "eps/2", "overflow": "fp16 overflows to inf"},
    "zh": {"title": "fp16 与 bf16 的相对舍入误差", "x": "数值大小 |x|", "y": "相对误差 |round(x) − x| / |x|",
           "half_eps": "eps/2", "overflow": "fp16 溢出为 inf"},
}[LANG]

magnitudes = torch.logspace(-9, 6, 4000, dtype=torch.float32)
exact = magnitudes.double()
rel_error = {dtype: ((magnitudes.to(dtype).double() - exact).abs() / exact) for dtype in (torch.float16, torch.bfloat16)}

fig, ax = plt.subplots(figsize=(8, 4))
for dtype, color in ((torch.float16, "tab:blue"), (torch.bfloat16, "tab:orange")):
    shown = rel_error[dtype].clamp(min=1e-9).masked_fill(rel_error[dtype].isinf(), float("nan"))
    ax.loglog(exact, shown, ".", markersize=1.5, color=color, label=str(dtype).replace("torch.", ""))
    ax.axhline(torch.finfo(dtype).eps / 2, color=color, linestyle="--", linewidth=1, label=f"{TEXT['half_eps']} ({str(dtype).replace('torch.', '')})")
ax.axvspan(fp16.max, exact.max().item(), color="tab:blue", alpha=0.12, label=TEXT["overflow"])
ax.set(title=TEXT["title"], xlabel=TEXT["x"], ylabel=TEXT["y"], ylim=(1e-6, 3))
ax.legend(loc="upper center", fontsize=8)
plt.show()

# %% [markdown]
# 逐条核对图中的结论：在各自的正规数范围内，误差从不超过 `eps/2`；在整个横轴上 bf16 都处于正规数范围内；fp16 在 65504 以上溢出，最小的那些值下溢为 0；在两者都能正规表示的区间里，bf16 的典型误差约为 fp16 的 8 倍。

# %%
in_fp16_range = (exact >= fp16.tiny) & (exact <= fp16.max)
assert rel_error[torch.float16][in_fp16_range].max() <= fp16.eps / 2
assert rel_error[torch.bfloat16].max() <= bf16.eps / 2
assert rel_error[torch.float16][exact > 65520].isinf().all()
assert (rel_error[torch.float16][exact < 2**-25] == 1).all()
ratio = rel_error[torch.bfloat16][in_fp16_range].median() / rel_error[torch.float16][in_fp16_range].median()
print(f"median bf16 error / median fp16 error on fp16's normal range: {ratio:.1f}")
assert 4 < ratio < 16

# %% [markdown]
# ## Autocast：bf16 前向传播里哪些计算真的用了 bf16
#
# `torch.autocast("cpu", dtype=torch.bfloat16)`（或 `"cuda"`，OpenVLA 的训练步和它的 `generate` 用的就是这个）不改动权重，仍保持 fp32，而是按算子逐个转换：矩阵乘法用 bf16 计算，需要数值范围或精度的运算（归约、损失里的 softmax、显式在 fp32 中做的归一化）留在 fp32。我们在微型 Llama-2 的每个模块上挂前向钩子，记录一次 autocast 前向传播中各模块输出的 dtype。

# %%
backbone, tokenizer = backbones["llama2"], tokenizers["llama2"]
PROMPT = "In: What action should the robot take to slide the yellow lid off the pot near the stove?\nOut: "
batch = tokenizer([PROMPT] * 2, return_tensors="pt")

output_dtypes = {}
def record_dtype(name):
    def hook(module, inputs, output):
        tensor = output[0] if isinstance(output, tuple) else output
        if torch.is_tensor(tensor):
            output_dtypes[name] = tensor.dtype
    return hook

handles = [module.register_forward_hook(record_dtype(name)) for name, module in backbone.llm.named_modules() if name]
with torch.no_grad():
    reference = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.input_ids)
    output_dtypes.clear()
    with torch.autocast("cpu", dtype=backbone.half_precision_dtype):
        mixed = backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.input_ids)
for handle in handles:
    handle.remove()

for name in ("model.embed_tokens", "model.layers.1.input_layernorm", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn",
             "model.layers.1.mlp", "model.layers.1", "model.norm", "lm_head"):
    print(f"{name:36s} {output_dtypes[name]}")
print(f"{'logits':36s} {mixed.logits.dtype}\n{'loss':36s} {mixed.loss.dtype}")

# %% [markdown]
# 规律如下：所有 `nn.Linear`（注意力投影、MLP、`lm_head`）都输出 bf16。嵌入查表不是矩阵乘法，仍是 fp32。Llama 的 RMSNorm 在 fp32 中计算，并返回与输入相同的 dtype；每个解码器层把 bf16 的更新量加到 fp32 的残差流上，所以层与层之间的残差流保持 fp32。在当前版本中 logits 以 bf16 输出（4.57 和 5.x 行为一致；一些更早的版本会在 `forward` 里把 logits 升为 fp32，所以请自己检查，不要想当然），损失则在 fp32 中计算。

# %%
linears = [name for name, module in backbone.llm.named_modules() if isinstance(module, torch.nn.Linear)]
assert linears and all(output_dtypes[name] == torch.bfloat16 for name in linears)
assert output_dtypes["model.embed_tokens"] == torch.float32 and output_dtypes["model.norm"] == torch.float32
assert all(output_dtypes[f"model.layers.{i}"] == torch.float32 for i in range(backbone.llm.config.num_hidden_layers))
assert mixed.logits.dtype == torch.bfloat16 and mixed.loss.dtype == torch.float32
assert reference.logits.dtype == torch.float32
assert all(p.dtype == torch.float32 for p in backbone.parameters()), "autocast never touches the stored weights"

# %% [markdown]
# bf16 的 logits 偏离了多少？每次舍入到 bf16，数值的相对变化最多是单位舍入误差 u = 2^-8。logits 在前面各层误差的基础上，还要再经过几次这样的舍入（矩阵乘法的输入、权重、输出），因此误差预计为几个 u 乘以 logits 的量级；我们允许的误差上限是 8u 乘以 fp32 logits 的最大绝对值。损失等于 log-sum-exp 减去一个 logit，所以它的变化最多是 logit 最大误差的两倍。同时，这个差异必须明显大于 fp32 的噪声——计算确实变了。

# %%
u = bf16.eps / 2
scale = reference.logits.abs().max()
diff = (mixed.logits.float() - reference.logits).abs().max()
print(f"largest logit {scale:.4f}, largest difference {diff:.5f} = {diff / (u * scale):.2f} u x scale")
print(f"loss fp32 {reference.loss:.5f}, loss under autocast {mixed.loss:.5f}")
torch.testing.assert_close(mixed.logits.float(), reference.logits, atol=(8 * u * scale).item(), rtol=0)
assert abs(mixed.loss - reference.loss) <= 2 * 8 * u * scale
assert diff > 2**-20 * scale

# %% [markdown]
# ### 像 OpenVLA 那样在 autocast 下生成
#
# 开启混合精度时，OpenVLA 的 `generate` 把语言模型放在 `torch.autocast("cuda", dtype=llm_backbone.half_precision_dtype)` 中运行：权重保持原样，每一步解码中的每次矩阵乘法都用 bf16。同样的调用在 CPU 上也能运行，只要 autocast 指定的设备就是模型所在的设备（这里是 `"cpu"`）。在 LM head 上挂一个钩子即可看出 autocast 在每一步都生效了（每生成一个新 token 调用一次前向传播，每次都产生 bf16 的 logits）。不过 `generate` 返回的 logits 却是 fp32：在当前版本中，它会先把每一步最后一个位置的 logits 复制成 fp32，再选择下一个 token。

# %%
device_type = backbone.llm.device.type  # autocast must name the device the model runs on
prompt = tokenizer(["In: What action should the robot take to stack the purple spoon onto the green tray?\nOut: "], return_tensors="pt")
head_dtypes = []
handle = backbone.llm.get_output_embeddings().register_forward_hook(lambda module, inputs, output: head_dtypes.append(output.dtype))
with torch.no_grad(), torch.autocast(device_type, dtype=backbone.half_precision_dtype):
    generated = backbone.llm.generate(**prompt, max_new_tokens=5, min_new_tokens=5, output_logits=True,
                                      return_dict_in_generate=True, pad_token_id=backbone.pad_token_id)
handle.remove()
print("new token ids:", generated.sequences[0, prompt.input_ids.shape[1]:].tolist())
print("LM head output per step:", head_dtypes, "| returned logits:", generated.logits[0].dtype)
assert generated.sequences.shape[1] == prompt.input_ids.shape[1] + 5
assert head_dtypes == [torch.bfloat16] * 5
assert all(step_logits.dtype == torch.float32 for step_logits in generated.logits)


# %% [markdown]
# **动手试试：** 在上面的 autocast 单元格里，把 `backbone.half_precision_dtype` 换成 `torch.float16` 再运行。微型副本的数值远小于 65504，所以 fp16 在这里没有问题，而且它的 logits 更接近 fp32（尾数位更多）；fp16 的范围真正不够用，是在真实的 7B 模型上。
#
# ## `last_layer_finetune_modules`：嵌入、最后一个解码器层、LM head
#
# 当某个阶段冻结了语言模型、却仍希望它做一点适应时，OpenVLA 会解冻三个模块：输入嵌入（图像 patch 和文本都从这里进入）、最后一个解码器层，以及 LM head（动作 token 从这里输出）。每个模型家族都按这个顺序返回它们。找到它们并不需要了解家族内部的布局：`get_input_embeddings()`、类型为 `transformer_layer_cls` 的最后一个模块，以及 `get_output_embeddings()`。唯一路径不同的是 OPT：它的各层位于 `llm.model.decoder` 之下。

# %%
def qualified_names(model, modules):
    names = {id(module): name for name, module in model.named_modules()}
    return [names[id(module)] for module in modules]

for family, family_backbone in backbones.items():
    print(f"{family:8s}", qualified_names(family_backbone, family_backbone.last_layer_finetune_modules))

# %%
for family, family_backbone in backbones.items():
    llm = family_backbone.llm
    embeddings, last_layer, head = family_backbone.last_layer_finetune_modules
    decoder_layers = [module for module in llm.modules() if isinstance(module, family_backbone.transformer_layer_cls)]
    assert embeddings is llm.get_input_embeddings(), family
    assert last_layer is decoder_layers[-1] and len(decoder_layers) == llm.config.num_hidden_layers, family
    assert head is llm.get_output_embeddings(), family
assert backbones["opt"].last_layer_finetune_modules[1] is backbones["opt"].llm.model.decoder.layers[-1]
assert not hasattr(backbones["opt"].llm.model, "layers")

# %% [markdown]
# 不在列表里的：最后一层之后的最终归一化层（Llama 中是 `model.norm`），以及前面所有的层。所以“最后一层”微调会训练最后一个解码器层，却不训练紧随其后的归一化层。
#
# 在微型副本上，这三个模块几乎就是整个模型：词表在输入嵌入里有 32064 行、每行宽 64，在不绑定的 LM head 里又有同样多，远远大于两个 64 维的小层。真实的 Llama-2-7B 则恰好相反。它的结构可以构建在 PyTorch 的 `meta` 设备上——只记录形状、不分配内存——从而精确计数。

# %%
from transformers import LlamaConfig, LlamaForCausalLM

llama2_7b = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                        num_key_value_heads=32, vocab_size=32064)
with torch.device("meta"):
    full_size = LlamaForCausalLM(llama2_7b)
last_layer_modules = (full_size.model.embed_tokens, full_size.model.layers[-1], full_size.lm_head)
last_layer_numel = sum(p.numel() for module in last_layer_modules for p in module.parameters())
total_numel = sum(p.numel() for p in full_size.parameters())
tiny = backbones["llama2"]
tiny_share = sum(p.numel() for m in tiny.last_layer_finetune_modules for p in m.parameters()) / sum(p.numel() for p in tiny.parameters())
print(f"Llama-2-7B: {last_layer_numel / 1e6:.0f} M of {total_numel / 1e9:.2f} B parameters ({last_layer_numel / total_numel:.1%})")
print(f"tiny replica: {tiny_share:.1%}")
assert 6.7e9 < total_numel < 6.8e9 and 0.06 < last_layer_numel / total_numel < 0.08
assert tiny_share > 0.95

# %% [markdown]
# ## 在玩具 VLM 上演示冻结阶段
#
# VLA 有三个可训练的部分：视觉编码器、投影器和语言模型。为了在真实模块上观察各个阶段，我们围绕一个微型骨干网络搭一个尽可能小的 VLA：视觉编码器把 32×32 的图像切成 16 个 8×8 的 patch 并做嵌入；投影器是两层 GELU MLP（即 OpenVLA 的 `gelu-mlp`），把 patch 特征映射到骨干网络的 `embed_dim`；前向传播把投影后的 patch 拼接在 BOS 之后，每个 patch 的注意力掩码为 1、标签为 -100（notebook 11 会把这一步拆开细讲）。

# %%
from torch import nn

class ToyVisionEncoder(nn.Module):
    def __init__(self, patch=8, width=48):
        super().__init__()
        self.patch = patch
        self.patch_embed = nn.Linear(3 * patch * patch, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU()) for _ in range(2))
        self.embed_dim = width

    def forward(self, pixels):
        p = self.patch
        patches = pixels.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).flatten(1, 2).flatten(2)
        features = self.patch_embed(patches)
        for block in self.blocks:
            features = features + block(features)
        return features


class ToyProjector(nn.Module):
    def __init__(self, vision_dim, llm_dim):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(vision_dim, llm_dim), nn.GELU(), nn.Linear(llm_dim, llm_dim)

    def forward(self, features):
        return self.fc2(self.act(self.fc1(features)))


class ToyVLM(nn.Module):
    def __init__(self, llm_backbone):
        super().__init__()
        self.vision_backbone = ToyVisionEncoder()
        self.projector = ToyProjector(self.vision_backbone.embed_dim, llm_backbone.embed_dim)
        self.llm_backbone = llm_backbone

    def forward(self, pixel_values, input_ids, attention_mask, labels):
        patches = self.projector(self.vision_backbone(pixel_values))
        batch_size, num_patches = patches.shape[:2]
        text = self.llm_backbone.embed_input_ids(input_ids)
        embeds = torch.cat([text[:, :1], patches, text[:, 1:]], dim=1)
        mask = torch.cat([attention_mask[:, :1], attention_mask.new_ones(batch_size, num_patches), attention_mask[:, 1:]], dim=1)
        labels = torch.cat([labels[:, :1], labels.new_full((batch_size, num_patches), -100), labels[:, 1:]], dim=1)
        return self.llm_backbone(input_ids=None, inputs_embeds=embeds, attention_mask=mask, labels=labels)


torch.manual_seed(0)
vlm = ToyVLM(backbones["llama2"])
pixels = torch.randn(2, 3, 32, 32)
out = vlm(pixels, batch.input_ids, batch.attention_mask, batch.input_ids)
print("logits:", tuple(out.logits.shape), "loss:", round(out.loss.item(), 4))
assert out.logits.shape[1] == batch.input_ids.shape[1] + 16

# %% [markdown]
# ### 一个函数覆盖所有阶段
#
# 每个阶段针对每个组件规定它是否参与训练：视觉编码器和投影器要么全训、要么全冻；语言模型则是全训、全冻，或者只训练 `last_layer_finetune_modules`。一个阶段所做的，仅仅是给每个参数设置 `requires_grad`；之后优化器只会拿到需要梯度的参数。OpenVLA 的 VLA 训练脚本用 `vla-train`、`vla-full-train` 和 `vla-last-layer-train` 这几个名字，它们分别与 `finetune`、`full-finetune` 和 `last-layer-finetune` 的设置相同（上游的 `PrismaticVLM.freeze_backbones` 两种名字都接受），由别名表做映射。注意 `apply_stage` 里的顺序：先冻结整个语言模型，再解冻最后一层的那几个模块。

# %%
STAGES = {  # stage -> (vision encoder trains, projector trains, language model: "all", "none" or "last")
    "align": (False, True, "none"),
    "finetune": (False, True, "all"),
    "full-finetune": (True, True, "all"),
    "last-layer-finetune": (False, False, "last"),
    "vla-sandwich-train": (True, True, "last"),
}
ALIASES = {"vla-train": "finetune", "vla-full-train": "full-finetune", "vla-last-layer-train": "last-layer-finetune"}


def apply_stage(vlm, stage):
    stage = ALIASES.get(stage, stage)
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; known stages: {', '.join([*STAGES, *ALIASES])}")
    vision, projector, llm = STAGES[stage]
    vlm.vision_backbone.requires_grad_(vision)
    vlm.projector.requires_grad_(projector)
    vlm.llm_backbone.requires_grad_(llm == "all")
    if llm == "last":
        for module in vlm.llm_backbone.last_layer_finetune_modules:
            module.requires_grad_(True)


COMPONENTS = ("vision_backbone", "projector", "llm_backbone")

def trainable_counts(vlm):
    return {c: sum(p.numel() for p in getattr(vlm, c).parameters() if p.requires_grad) for c in COMPONENTS}

sizes = {c: sum(p.numel() for p in getattr(vlm, c).parameters()) for c in COMPONENTS}
last_layer_size = sum(p.numel() for p in {id(p): p for m in vlm.llm_backbone.last_layer_finetune_modules for p in m.parameters()}.values())
counts = {}
for stage in STAGES:
    apply_stage(vlm, stage)
    counts[stage] = trainable_counts(vlm)
    print(f"{stage:20s}", "  ".join(f"{c}={counts[stage][c]:>7,}" for c in COMPONENTS))
print(f"{'(sizes)':20s}", "  ".join(f"{c}={sizes[c]:>7,}" for c in COMPONENTS))

# %%
V, P, L = (sizes[c] for c in COMPONENTS)
expected = {
    "align": (0, P, 0),
    "finetune": (0, P, L),
    "full-finetune": (V, P, L),
    "last-layer-finetune": (0, 0, last_layer_size),
    "vla-sandwich-train": (V, P, last_layer_size),
}
assert {stage: tuple(c.values()) for stage, c in counts.items()} == expected
apply_stage(vlm, "vla-last-layer-train")
assert trainable_counts(vlm) == counts["last-layer-finetune"]
from vla_backbone.notebook import expect_error
with expect_error(ValueError, match="known stages"):
    apply_stage(vlm, "lora")

# %% [markdown]
# 把同一张表画成图：每个阶段一根柱子，按组件堆叠。虚线表示整个模型的参数量。

# %%
TEXT = {
    "en": {"title": "Trainable parameters per freeze stage (toy VLM, tiny Llama-2)", "y": "trainable parameters",
           "vision_backbone": "vision encoder", "projector": "projector", "llm_backbone": "language model", "total": "whole model"},
    "zh": {"title": "各冻结阶段的可训练参数量（玩具 VLM，微型 Llama-2）", "y": "可训练参数量",
           "vision_backbone": "视觉编码器", "projector": "投影器", "llm_backbone": "语言模型", "total": "整个模型"},
}[LANG]

fig, ax = plt.subplots(figsize=(8, 4))
bottom = [0] * len(STAGES)
for component, color in zip(COMPONENTS, ("tab:green", "tab:orange", "tab:blue")):
    heights = [counts[stage][component] for stage in STAGES]
    ax.bar(list(STAGES), heights, bottom=bottom, color=color, label=TEXT[component])
    bottom = [b + h for b, h in zip(bottom, heights)]
ax.axhline(V + P + L, color="black", linestyle="--", linewidth=1, label=TEXT["total"])
ax.set(title=TEXT["title"], ylabel=TEXT["y"])
ax.tick_params(axis="x", labelsize=8)
ax.legend(fontsize=8)
plt.show()


# %% [markdown]
# ### 用梯度来验证
#
# `requires_grad` 只是一个承诺，反向传播才是证明。对每个阶段：应用它，清空旧梯度，在玩具 VLM 上做一次前向和反向传播，然后要求每个可训练参数都拿到了梯度，而每个冻结参数都没有（`grad is None`）。梯度仍然会*穿过*冻结的模块（在 `align` 阶段，损失要穿过整个冻结的语言模型才能到达投影器），只是冻结参数不会把梯度留下来。

# %%
def gradient_report(vlm, stage):
    apply_stage(vlm, stage)
    vlm.zero_grad(set_to_none=True)
    vlm(pixels, batch.input_ids, batch.attention_mask, batch.input_ids).loss.backward()
    trainable = {name for name, p in vlm.named_parameters() if p.requires_grad}
    with_grad = {name for name, p in vlm.named_parameters() if p.grad is not None}
    return trainable, with_grad

for stage in STAGES:
    trainable, with_grad = gradient_report(vlm, stage)
    print(f"{stage:20s} {len(trainable):3d} trainable tensors, {len(with_grad):3d} with a gradient")
    assert trainable == with_grad, stage
    assert all((p.grad is None) != p.requires_grad for p in vlm.parameters()), stage

# %% [markdown]
# 在 `last-layer-finetune` 阶段，第一个解码器层和最终归一化层没有梯度，最后一层则有：

# %%
trainable, with_grad = gradient_report(vlm, "last-layer-finetune")
llm = vlm.llm_backbone.llm
assert all(p.grad is None for p in llm.model.layers[0].parameters()) and all(p.grad is None for p in llm.model.norm.parameters())
assert all(p.grad is not None for p in llm.model.layers[-1].parameters())
print(sorted({name.split(".weight")[0].split(".bias")[0] for name in with_grad}))

# %% [markdown]
# **动手试试：** 选一个阶段和一个骨干网络，下表列出玩具 VLM 每个顶层部分的可训练比例。试试在 `qwen25-0_5b-pure` 上运行 `last-layer-finetune`，把 `embed_tokens` 和 `lm_head` 的结果与 Llama-2 比较，然后接着读下一节。

# %%
from vla_backbone.notebook import explore

def show_stage(stage, backbone_id):
    model = ToyVLM(backbones[backbone_class(backbone_id).family])
    apply_stage(model, stage)
    parts = [("vision_backbone", model.vision_backbone), ("projector", model.projector)]
    parts += [(f"llm.{name}", module) for name, module in model.llm_backbone.llm.model.named_children()]
    parts += [("llm.lm_head", model.llm_backbone.llm.get_output_embeddings())]
    for name, module in parts:
        params = list(module.parameters())
        trainable = sum(p.numel() for p in params if p.requires_grad)
        print(f"{name:24s} {trainable:>8,} of {sum(p.numel() for p in params):>8,} trainable")
    return trainable_counts(model)

result = explore(show_stage, stage=list(STAGES), backbone_id=["llama2-7b-pure", "qwen25-0_5b-pure", "opt-125m", "phi-2-3b"])
assert result == counts["align"]

# %% [markdown]
# ## 绑定嵌入：一个权重，两个模块
#
# Qwen-2.5 和 OPT 设置了 `tie_word_embeddings`：LM head 没有自己的权重，而是复用输入嵌入矩阵（微型副本也保留了这一点）。两个模块是不同的对象，但它们的 `weight` 是同一个 `nn.Parameter`，位于同一块内存地址。

# %%
for family, family_backbone in backbones.items():
    embeddings, _, head = family_backbone.last_layer_finetune_modules
    shared = embeddings.weight.data_ptr() == head.weight.data_ptr()
    print(f"{family:8s} tie_word_embeddings={family_backbone.llm.config.tie_word_embeddings!s:5s} one shared weight: {shared}")
    assert shared == (family in {"qwen25", "opt"}) == family_backbone.llm.config.tie_word_embeddings
qwen = backbones["qwen25"]
q_embeddings, _, q_head = qwen.last_layer_finetune_modules
assert q_embeddings is not q_head and q_embeddings.weight is q_head.weight

# %% [markdown]
# 这对最后一层微调有三个影响：
#
# 1. **计数。** 把三个模块的参数直接相加，会把共享矩阵算两次；`parameters()` 会去重，所以应该按不重复的张量计数（前面的 `last_layer_size` 就是这样算的）。
# 2. **无法只训 head 而不训嵌入。** `requires_grad` 存在于那唯一的 Parameter 上，所以最后动的那个模块说了算：先解冻 head、再冻结嵌入，head 也跟着被冻结。
# 3. **两份梯度，一个张量。** 绑定的权重会累加两处用途的梯度。不绑定时，嵌入矩阵只有输入里出现过的 token 所在的行才有梯度（查表不会触及其他行），而且最后一个位置的 token 也没有——它的输出不对应任何标签，前面的位置也不会关注到它；绑定时则每一行都有梯度，因为 LM head 在每个位置上都要给整个词表打分。

# %%
naive = sum(p.numel() for m in qwen.last_layer_finetune_modules for p in m.parameters())
unique = sum(p.numel() for p in {id(p): p for m in qwen.last_layer_finetune_modules for p in m.parameters()}.values())
print(f"qwen25: naive count {naive:,}, unique {unique:,}, difference = embedding size {q_embeddings.weight.numel():,}")
assert naive - unique == q_embeddings.weight.numel()

q_head.requires_grad_(True)
q_embeddings.requires_grad_(False)
assert q_head.weight.requires_grad is False


# %%
def embedding_rows_with_gradient(backbone_id):
    family = backbone_class(backbone_id).family
    model, tok = ToyVLM(backbones[family]), tokenizers[family]
    apply_stage(model, "last-layer-finetune")
    model.zero_grad(set_to_none=True)
    text = tok([PROMPT] * 2, return_tensors="pt")
    model(pixels, text.input_ids, text.attention_mask, text.input_ids).loss.backward()
    grad = model.llm_backbone.llm.get_input_embeddings().weight.grad
    rows = set(torch.nonzero(grad.abs().sum(dim=1)).flatten().tolist())
    return rows, set(text.input_ids[:, :-1].flatten().tolist()), grad.shape[0]

for backbone_id in ("llama2-7b-pure", "qwen25-0_5b-pure"):
    rows, used, vocab = embedding_rows_with_gradient(backbone_id)
    print(f"{backbone_id:18s} rows with gradient: {len(rows):4d} of {vocab}; distinct tokens before the last position: {len(used)}")
    if backbone_id.startswith("llama2"):
        assert rows == used
    else:
        assert len(rows) == vocab

# %% [markdown]
# 所以在绑定权重下，“最后一层微调”会通过 head 更新输入嵌入的每一行，包括输入中从未出现过的 token 的行；你也无法在训练输出端的同时保持输入端不变。要做到这一点，得先解除绑定：给 head 一份自己的副本 `head.weight = nn.Parameter(embeddings.weight.detach().clone())`，并设置 `config.tie_word_embeddings = False`，这样保存再加载之后两者仍然是分开的（见练习 3）。
#
# ## 小结
# - 每个模型家族的 `half_precision_dtype` 都是 `torch.bfloat16`：拥有 fp32 的范围（max 3.4e38，tiny 1.2e-38），尾数只有 7 位（eps 2^-7）；fp16 的精度高 8 倍，但超过 65504 就溢出，小于 2^-25（约 3e-8，即最小次正规数的一半）的值会下溢为 0。
# - OpenVLA 训练时既在 `torch.autocast` 下以 `half_precision_dtype` 计算，又使用 FSDP 混合精度（bf16 参数用于计算，fp32 归约梯度）；生成时也用同样的 autocast。
# - 在 `torch.autocast(..., dtype=bfloat16)` 下，线性层和 logits 是 bf16，而权重、嵌入、归一化、残差流和损失保持 fp32；logits 与 fp32 结果的差距不超过其尺度的 8 个 bf16 单位舍入误差。
# - 每个模型家族的 `last_layer_finetune_modules` 都是（输入嵌入、最后一个解码器层、LM head）；在 Llama-2-7B 上这只占 7% 的参数，在微型副本上却几乎是全部。
# - 冻结阶段无非是按组件设置 `requires_grad`；一次反向传播就能证明恰好只有可训练参数收到了梯度。
# - 在绑定嵌入下，head 和输入嵌入是同一个 Parameter：它们一起训练，两处用途的梯度累加在同一个张量上。
#
# ## 练习
# 1. 增加一个阶段 `last-2-layers`，训练嵌入、LM head 和最后*两个*解码器层。扩展 `expected` 和梯度检查，让它们覆盖这个新阶段。
# 2. 在 `meta` 设备上构建 Qwen2.5-0.5B（`Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True)`），按不重复参数计算它的最后一层占比。为什么它比 Llama-2-7B 的大得多？
# 3. 按上文的方法解除微型 Qwen 副本的 head 绑定，再运行 `embedding_rows_with_gradient`。现在嵌入的哪些行有梯度？为什么？
# 4. 用 `dtype=torch.float16` 重做 autocast 对比，然后在前向传播前把嵌入权重乘以 100。哪种 dtype 先溢出？在哪里溢出（借助记录 dtype 的钩子）？
