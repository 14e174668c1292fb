# %% [markdown]
# # A5 · Assignment: splice image patches into the language model's input
#
# Inside OpenVLA, the language backbone never sees an image. It sees a sequence of embeddings in which the
# projected image patches have been inserted right after the BOS token, with an attention mask and labels that
# were stretched to match. Get one of the three wrong and training still runs: the model attends to padding, or
# learns to predict image patches, or learns nothing about actions. In this assignment you write the two pieces of
# that step and prove, with the backbone's own loss, that they are right.
#
# **What you will do**
# - write `action_labels`, which keeps the labels of the action tokens and EOS and masks the rest (notebook 11);
# - write `splice_patches`, which inserts patch embeddings after BOS and extends the attention mask and labels;
# - run the backbone on the result and check the loss, the padding and the gradients.
#
# **How you are graded.** Write your code where a cell says `# YOUR CODE HERE` and delete the
# `raise NotImplementedError` line. Run each check cell: it is worth the points in the heading above it. Then, from a clone of the repository, run the grader,
# which tests more cases:
#
# `.venv/bin/python -m pytest tests/assignments/test_a5_splice_patches.py --notebook path/to/A5_splice_patches.ipynb`
#
# (It reads the `.ipynb` itself; a `.py` written by jupytext works too.)

# %%
# Set-up, the same in every notebook: on Colab install the package; everywhere print versions and seed.
import subprocess, sys
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "vla-backbone[notebooks] @ git+https://github.com/vla-backbone/vla-backbone-notebooks"], check=True)
from vla_backbone.notebook import setup
setup()

# %%
LANG = "en"  # the language of this notebook's prose and plot labels
from vla_backbone.notebook import use_language
use_language(LANG)


# %%
def say(en: str, zh: str) -> str:
    """A check's message, in the language of this notebook."""
    return zh if LANG == "zh" else en


# %% [markdown]
# ## A training example, as OpenVLA builds it
#
# A training example is the inference prompt (`In: What action should the robot take to ...?\nOut:`), followed by
# the robot's action written as tokens (one per action dimension: OpenVLA maps each value to one of the 256 least
# used ids of the vocabulary, see `vla_backbone.actions.ActionTokenizer`), followed by EOS. Printed as text, the
# action tokens are whatever rarely used pieces the tail of the vocabulary holds.

# %%
import numpy as np
import torch

from vla_backbone import get_llm_backbone_and_tokenizer
from vla_backbone.actions import ActionTokenizer
from vla_backbone.prompting import PurePromptBuilder, openvla_action_prompt

backbone, tokenizer = get_llm_backbone_and_tokenizer("llama2-7b-pure")
action_tokenizer = ActionTokenizer(tokenizer)


def example_ids(instruction: str, action: list[float]) -> tuple[list[int], int]:
    """Token ids of one training example, and how many of them are action tokens."""
    builder = PurePromptBuilder("openvla")
    builder.add_turn("human", openvla_action_prompt(instruction))
    action_ids = action_tokenizer.token_ids(np.array(action)).tolist()
    return tokenizer(builder.get_prompt()).input_ids + action_ids + [tokenizer.eos_token_id], len(action_ids)


ids, n_action = example_ids("pick up the cup", [0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 1.0])
print(tokenizer.convert_ids_to_tokens(ids))
assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id and n_action == 7
assert all(i >= action_tokenizer.action_token_begin_idx for i in ids[-8:-1])

# %% [markdown]
# ## Task 1 · Labels for the actions only
#
# The model must learn to produce the action and then stop; it must not learn to produce the prompt. Write
# `action_labels(input_ids, num_action_tokens)`: for a 1-D tensor of token ids that ends with `num_action_tokens`
# action tokens and EOS, return a new tensor of the same shape and dtype that holds the ids of those last
# `num_action_tokens + 1` positions and `-100` everywhere else. Do not change `input_ids` itself.

# %% nbgrader={"grade": false, "grade_id": "action_labels", "locked": false, "schema_version": 3, "solution": true, "task": false}
IGNORE_INDEX = -100


def action_labels(input_ids: torch.Tensor, num_action_tokens: int) -> torch.Tensor:
    """Labels that supervise only the trailing action tokens and the EOS after them."""
    ### BEGIN SOLUTION
    labels = input_ids.clone()
    labels[: -(num_action_tokens + 1)] = IGNORE_INDEX
    return labels
    ### END SOLUTION


# %% [markdown]
# ### Check your work (4 points)

# %% nbgrader={"grade": true, "grade_id": "check_action_labels", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
ids_tensor = torch.tensor(ids)
labels = action_labels(ids_tensor, n_action)
assert labels.shape == ids_tensor.shape and labels.dtype == ids_tensor.dtype, \
    say("same shape and dtype as input_ids", "形状和 dtype 必须与 input_ids 相同")
assert torch.equal(ids_tensor, torch.tensor(ids)), say("action_labels changed input_ids in place", "action_labels 原地修改了 input_ids")
assert (labels[:-8] == IGNORE_INDEX).all(), say("every prompt position must be -100", "提示词的每个位置都必须是 -100")
assert torch.equal(labels[-8:], ids_tensor[-8:]), say("the 7 action tokens and EOS keep their ids", "7 个动作 token 和 EOS 保留各自的 id")
### BEGIN HIDDEN TESTS
assert torch.equal(action_labels(ids_tensor, 0)[-1:], ids_tensor[-1:]) and (action_labels(ids_tensor, 0)[:-1] == -100).all()
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ## A batch, and some patches
#
# Two examples of different lengths make a batch. The collator pads on the right with the PAD token; the attention
# mask is 0 on padding and the labels are `-100` there. The vision side is faked: 16 random patch features of
# width 32 go through a trainable projector to the backbone's width, 64, as OpenVLA's projector does with real ViT
# features. The text side is embedded with `backbone.embed_input_ids`.

# %%
from torch import nn

torch.manual_seed(0)
examples = [example_ids("pick up the cup", [0.1, -0.2, 0.3, 0.0, 0.0, 0.0, 1.0]),
            example_ids("open the drawer and put the towel in it", [0.5, -0.5, 0.3, 0.0, 0.2, 0.0, -1.0])]
length = max(len(e) for e, _ in examples)
input_ids = torch.full((2, length), tokenizer.pad_token_id)
attention_mask = torch.zeros(2, length, dtype=torch.long)
labels = torch.full((2, length), IGNORE_INDEX)
for row, (example, n) in enumerate(examples):
    input_ids[row, : len(example)] = torch.tensor(example)
    attention_mask[row, : len(example)] = 1
    labels[row, : len(example)] = action_labels(torch.tensor(example), n)

projector = nn.Linear(32, backbone.embed_dim)
patch_embeds = projector(torch.randn(2, 16, 32))
text_embeds = backbone.embed_input_ids(input_ids)
print("text", tuple(text_embeds.shape), "| patches", tuple(patch_embeds.shape), "| mask", attention_mask.tolist()[0])
assert text_embeds.shape == (2, length, 64) and patch_embeds.shape == (2, 16, 64)
assert attention_mask[0].sum() < length and attention_mask[1].sum() == length


# %% [markdown]
# ## Task 2 · `splice_patches`
#
# Write `splice_patches(input_embeds, patch_embeds, attention_mask, labels=None)`. With `B` the batch size, `T` the
# text length, `P` the number of patches and `D` the width:
#
# - `input_embeds` is `(B, T, D)`, `patch_embeds` is `(B, P, D)`, `attention_mask` is `(B, T)` (of any dtype:
#   bool or integer), `labels` is `(B, T)` or `None`;
# - return `(embeds, mask, labels)`: `embeds` is `(B, P + T, D)`, the text's first position (BOS), then the `P`
#   patches, then the rest of the text; `mask` is `(B, P + T)`, of the input mask's dtype, with every patch
#   position attended to; `labels` is `(B, P + T)` with `-100` on every patch position, or `None` when `labels`
#   was `None`;
# - raise `ValueError` with a message that names both sizes when the batch sizes or the widths of `input_embeds`
#   and `patch_embeds` differ (a projector with the wrong output width is a classic mistake);
# - do not change the inputs in place, and keep gradients flowing into `patch_embeds` (the projector trains).

# %% nbgrader={"grade": false, "grade_id": "splice_patches", "locked": false, "schema_version": 3, "solution": true, "task": false}
def splice_patches(input_embeds, patch_embeds, attention_mask, labels=None):
    """Insert ``patch_embeds`` right after BOS; stretch ``attention_mask`` and ``labels`` to match."""
    ### BEGIN SOLUTION
    if patch_embeds.shape[0] != input_embeds.shape[0]:
        raise ValueError(f"batch sizes differ: {input_embeds.shape[0]} text sequences but {patch_embeds.shape[0]} "
                         "sets of patches")
    if patch_embeds.shape[-1] != input_embeds.shape[-1]:
        raise ValueError(f"widths differ: text embeddings are {input_embeds.shape[-1]} wide, patches "
                         f"{patch_embeds.shape[-1]}; the projector must map to the backbone's embed_dim")
    batch, patches = patch_embeds.shape[:2]
    embeds = torch.cat([input_embeds[:, :1], patch_embeds, input_embeds[:, 1:]], dim=1)
    patch_mask = torch.ones(batch, patches, dtype=attention_mask.dtype, device=attention_mask.device)
    mask = torch.cat([attention_mask[:, :1], patch_mask, attention_mask[:, 1:]], dim=1)
    if labels is None:
        return embeds, mask, None
    patch_labels = torch.full((batch, patches), IGNORE_INDEX, dtype=labels.dtype, device=labels.device)
    return embeds, mask, torch.cat([labels[:, :1], patch_labels, labels[:, 1:]], dim=1)
    ### END SOLUTION


# %% [markdown]
# ### Check your work (6 points)

# %% nbgrader={"grade": true, "grade_id": "check_splice", "locked": true, "points": 6, "schema_version": 3, "solution": false, "task": false}
from vla_backbone.notebook import expect_error

embeds, mask, spliced_labels = splice_patches(text_embeds, patch_embeds, attention_mask, labels)
P = patch_embeds.shape[1]
assert embeds.shape == (2, P + length, 64), say(f"embeds has shape {tuple(embeds.shape)}, expected {(2, P + length, 64)}",
                                                f"embeds 的形状是 {tuple(embeds.shape)}，应为 {(2, P + length, 64)}")
assert torch.equal(embeds[:, 0], text_embeds[:, 0]), say("position 0 must stay BOS", "位置 0 必须仍然是 BOS")
assert torch.equal(embeds[:, 1 : 1 + P], patch_embeds), say("the patches go right after BOS, in order",
                                                            "patch 要按顺序紧跟在 BOS 之后")
assert torch.equal(embeds[:, 1 + P :], text_embeds[:, 1:]), say("the rest of the text follows the patches",
                                                                "其余文本要跟在 patch 之后")
assert mask.dtype == attention_mask.dtype, say(f"mask dtype {mask.dtype}, expected the input's {attention_mask.dtype}",
                                               f"掩码的 dtype 是 {mask.dtype}，应与输入相同（{attention_mask.dtype}）")
assert (mask[:, 1 : 1 + P] == 1).all() and torch.equal(mask[:, 1 + P :], attention_mask[:, 1:]), \
    say("patches are attended to; the text keeps its mask", "patch 位置要参与注意力；文本保留原来的掩码")
assert (spliced_labels[:, : 1 + P] == IGNORE_INDEX).all(), say("BOS and every patch position must be -100",
                                                               "BOS 和每个 patch 位置都必须是 -100")
assert torch.equal(spliced_labels[:, 1 + P :], labels[:, 1:]), say("the text keeps its labels", "文本保留原来的标签")
assert splice_patches(text_embeds, patch_embeds, attention_mask)[2] is None, say("labels=None gives None",
                                                                                  "labels=None 时返回的标签应为 None")
with expect_error(ValueError, match="32"):
    splice_patches(text_embeds, torch.randn(2, 16, 32), attention_mask, labels)
### BEGIN HIDDEN TESTS
assert splice_patches(text_embeds, patch_embeds, attention_mask.bool())[1].dtype == torch.bool
### END HIDDEN TESTS
print(say("All checks passed.", "全部检查通过。"))

# %% [markdown]
# ## What one spliced sequence looks like
#
# The first example, position by position: where each embedding comes from, whether it is attended to, and whether
# the loss learns from it. Only the action tokens and EOS, at the very end of the real text, carry labels.

# %%
import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap

TEXT = {
    "en": {"rows": ["source", "attention mask", "label"], "title": "Spliced sequence (example 1)",
           "x": "position", "legend": ["BOS", "patch", "prompt", "action / EOS", "padding"]},
    "zh": {"rows": ["来源", "注意力掩码", "标签"], "title": "拼接后的序列（第 1 个样本）",
           "x": "位置", "legend": ["BOS", "patch", "提示词", "动作 / EOS", "填充"]},
}[LANG]
row = 0
source = np.full(P + length, 2)
source[0], source[1 : 1 + P] = 0, 1
source[(spliced_labels[row] != IGNORE_INDEX).numpy()] = 3
source[(mask[row] == 0).numpy()] = 4
grid = np.stack([source, np.where(mask[row].numpy() == 1, 2, 4), np.where(spliced_labels[row].numpy() != IGNORE_INDEX, 3, 4)])
colors = ["tab:red", "tab:orange", "tab:blue", "tab:green", "lightgrey"]
fig, ax = plt.subplots(figsize=(10, 2.2))
ax.imshow(grid, cmap=ListedColormap(colors), vmin=0, vmax=4, aspect="auto", interpolation="nearest")
ax.set_yticks(range(3), TEXT["rows"])
ax.set_xlabel(TEXT["x"])
ax.set_title(TEXT["title"])
ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=c) for c in colors], labels=TEXT["legend"],
          loc="upper center", bbox_to_anchor=(0.5, -0.45), ncol=5, fontsize=8)
plt.show()
assert (source == 3).sum() == 8 and (source == 4).sum() == length - len(examples[0][0])

# %% [markdown]
# ## Run the backbone on it
#
# The VLM calls the backbone with `input_ids=None` and the spliced `inputs_embeds`. Three checks show that the
# splice is right, not merely the right shape:
#
# 1. **The loss learns from the actions only.** Recomputing it by hand over the labelled positions (shifted by
#    one, as HuggingFace does) gives the same value, over 16 tokens: 7 actions and EOS, twice.
# 2. **Padding is invisible.** The first example alone, without padding, gives the same logits as inside the
#    padded batch.
# 3. **The projector learns.** Backward reaches the projector's weights through the patches.

# %%
import torch.nn.functional as F

output = backbone(input_ids=None, inputs_embeds=embeds, attention_mask=mask, labels=spliced_labels)
shift_logits, shift_labels = output.logits[:, :-1], spliced_labels[:, 1:]
keep = shift_labels != IGNORE_INDEX
by_hand = F.cross_entropy(shift_logits[keep], shift_labels[keep])
print(f"loss {output.loss.item():.4f} | by hand {by_hand.item():.4f} over {int(keep.sum())} labelled tokens")
torch.testing.assert_close(output.loss, by_hand)
assert int(keep.sum()) == 16

real = int(mask[0].sum())
alone = splice_patches(text_embeds[:1, : len(examples[0][0])], patch_embeds[:1], attention_mask[:1, : len(examples[0][0])])
alone_logits = backbone(inputs_embeds=alone[0], attention_mask=alone[1]).logits
torch.testing.assert_close(alone_logits[0], output.logits[0, :real], atol=1e-5, rtol=1e-4)

output.loss.backward()
print("projector gradient norm:", f"{projector.weight.grad.norm().item():.4f}")
assert projector.weight.grad is not None and projector.weight.grad.abs().sum() > 0

# %% [markdown]
# ## Summary
# - The patches go after BOS: `[BOS, patches, rest of the text]`, for the embeddings, the mask and the labels alike.
# - Patches are always attended to and never labelled; padding keeps mask 0 and label -100, wherever it moves.
# - Only the action tokens and EOS carry labels, so the loss teaches the model to act and to stop, nothing else.
#
# ## Exercises
# 1. Put the patches *before* BOS instead. Which check above still passes, and what would the model see at
#    position 0 at inference?
# 2. Set the patch positions of the mask to 0. What happens to the loss, and why is it still finite?
# 3. OpenVLA's training text has a space after `Out:` that its inference prompt lacks (openvla#104). Add it to
#    `example_ids` and see how the tokens change.
