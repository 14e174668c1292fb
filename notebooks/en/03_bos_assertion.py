# %% [markdown]
# # 03 · The BOS assertion
#
# Every OpenVLA backbone ends its constructor with a two-line check on the tokenizer: encoding `"Test 123"` with
# special tokens must start with the BOS (beginning-of-sequence) id, and encoding it without special tokens must
# not. It looks like pedantry, but the vision-language model depends on it: it splices the image into the prompt
# at a fixed position, right after the first token, on the assumption that the first token is BOS. A tokenizer
# that breaks either half of the check quietly moves the image or repeats BOS, and training goes on without any
# error. This notebook shows what goes wrong, breaks tokenizers on purpose, and runs the check on every family.
#
# **What you will learn here**
# - why the image patches need a BOS at position 0, on a tiny tensor example;
# - both halves of the check, and a broken tokenizer for each half (built with the `tokenizers` library);
# - which families pass, which are exempt (`SPECIAL_CASES`), and why OPT's BOS is `</s>`;
# - why the package writes `raise` instead of `assert` (proved under `python -O`);
# - why you check encoded ids and never the `add_bos_token` flag on transformers 5.

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

# %% [markdown]
# ## 1. Where the image goes: right after BOS
#
# The VLM embeds the prompt with the backbone's `embed_input_ids`, projects the image into patch vectors of the
# same width, and joins the two along the sequence axis as `[emb[:, :1], patches, emb[:, 1:]]`. The slice `:1` is
# fixed: whatever token sits at position 0 ends up in front of the image, everything else after it.
#
# We load the tokenizer of the Llama-2 replica (the same files `get_llm_backbone_and_tokenizer` would load) and
# tokenize a prompt twice: once normally, once without special tokens, as a tokenizer that never adds BOS would.

# %%
import torch
from transformers import AutoTokenizer
from vla_backbone.registry import checkpoint_path

llama_tok = AutoTokenizer.from_pretrained(checkpoint_path("llama2-7b-pure"), padding_side="right")
prompt = "In: pick up the cup"
with_bos = llama_tok(prompt).input_ids
without_bos = llama_tok(prompt, add_special_tokens=False).input_ids
print("with BOS:   ", with_bos, llama_tok.convert_ids_to_tokens(with_bos))
print("without BOS:", without_bos, llama_tok.convert_ids_to_tokens(without_bos))


# %% [markdown]
# To watch where each position lands, give every token a one-number "embedding": its own id. Patches get the
# negative numbers -1, -2, -3, so they cannot be mistaken for a token. The splice is the one-liner the VLM uses.

# %%
def splice(embeddings: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """Insert the image patches after the first position, as the VLM does."""
    return torch.cat([embeddings[:, :1], patches, embeddings[:, 1:]], dim=1)


patches = -torch.arange(1.0, 4.0).view(1, 3, 1)
spliced_good = splice(torch.tensor([with_bos], dtype=torch.float).unsqueeze(-1), patches)
spliced_bad = splice(torch.tensor([without_bos], dtype=torch.float).unsqueeze(-1), patches)
print("with BOS:   ", spliced_good.squeeze().tolist())
print("without BOS:", spliced_bad.squeeze().tolist())

# %% [markdown]
# With BOS, the image sits between BOS and the text, exactly as in training. Without it, the first token of the
# prompt (`▁In`) is cut off from the rest, and the image lands inside the `In:` marker of the prompt format.
# Nothing fails: the sequence is one position shorter, every shape downstream follows it, and no error is raised.
# Only the meaning changed.

# %%
bos_id = llama_tok.bos_token_id
assert spliced_good.shape == (1, len(with_bos) + 3, 1) and spliced_bad.shape == (1, len(without_bos) + 3, 1)
assert spliced_good[0, 0, 0] == bos_id and spliced_good[0, 1:4, 0].tolist() == [-1.0, -2.0, -3.0]
assert llama_tok.convert_ids_to_tokens(int(spliced_bad[0, 0, 0])) == "▁In"
assert spliced_bad[0, 1:4, 0].tolist() == [-1.0, -2.0, -3.0]

# %% [markdown]
# **Try it:** change `prompt` and re-run from the top of this section: without BOS, the image always lands after
# whatever token happens to come first.

# %% [markdown]
# The same two sequences as a picture: one box per position.

# %%
import matplotlib.pyplot as plt

TEXT = {
    "en": {"title": "Where the VLM splices the image patches", "good": "BOS added", "bad": "no BOS",
           "patch": "patch"},
    "zh": {"title": "VLM 把图像 patch 拼接在哪里", "good": "添加了 BOS", "bad": "没有 BOS", "patch": "patch"},
}[LANG]
COLORS = {"bos": "#2ca02c", "patch": "#ff7f0e", "text": "#1f77b4"}


def labels_for(spliced: torch.Tensor) -> list[tuple[str, str]]:
    out = []
    for value in spliced.squeeze().tolist():
        if value < 0:
            out.append((f"{TEXT['patch']} {int(-value)}", "patch"))
        else:
            out.append((llama_tok.convert_ids_to_tokens(int(value)), "bos" if int(value) == bos_id else "text"))
    return out


fig, ax = plt.subplots(figsize=(10, 2.2))
for row, (name, spliced) in enumerate([(TEXT["good"], spliced_good), (TEXT["bad"], spliced_bad)]):
    for column, (label, kind) in enumerate(labels_for(spliced)):
        ax.add_patch(plt.Rectangle((column, -row), 0.95, 0.8, color=COLORS[kind], alpha=0.8))
        ax.text(column + 0.47, -row + 0.4, label, ha="center", va="center", fontsize=8, color="white")
    ax.text(-0.2, -row + 0.4, name, ha="right", va="center")
ax.set_xlim(-1.8, spliced_good.shape[1])
ax.set_ylim(-1.1, 0.9)
ax.axis("off")
ax.set_title(TEXT["title"])
plt.show()

# %% [markdown]
# ## 2. The check, both halves
#
# `check_bos` in `vla_backbone.hf_causal` encodes the probe text `"Test 123"` twice:
#
# 1. with `add_special_tokens=True` the ids must start with `bos_token_id`: the VLM gets its BOS;
# 2. with `add_special_tokens=False` they must **not** start with it: BOS comes only when asked for.
#
# Here is the whole function. Note the explicit `raise` at the end; section 6 shows why it is not an `assert`.

# %%
import inspect
from vla_backbone.hf_causal import BOS_PROBE_TEXT, SPECIAL_CASES, check_bos

print(inspect.getsource(check_bos))

# %% [markdown]
# The Llama-2 replica passes: `<s>` (id 1) comes first with special tokens, and the plain encoding starts
# directly with the text. `check_bos` returns `None` when all is well.

# %%
ids_with = llama_tok(BOS_PROBE_TEXT, add_special_tokens=True).input_ids
ids_without = llama_tok(BOS_PROBE_TEXT, add_special_tokens=False).input_ids
print(BOS_PROBE_TEXT, "->", ids_with, "with special tokens,", ids_without, "without")
assert BOS_PROBE_TEXT == "Test 123"
assert ids_with[0] == llama_tok.bos_token_id == 1
assert ids_without[0] != llama_tok.bos_token_id
assert ids_with == [llama_tok.bos_token_id] + ids_without
assert check_bos(llama_tok, "llama2-7b-pure") is None

# %% [markdown]
# ## 3. Breaking half 1: a tokenizer that never adds BOS
#
# A fast tokenizer is a pipeline from the `tokenizers` library: normalizer, pre-tokenizer, model (BPE) and
# post-processor. BOS is the post-processor's job: a `TemplateProcessing` with the template `<s> $A` (`$A` is
# the text) runs only when special tokens are requested. We copy the Llama-2 pipeline and give it the template
# `$A` instead, then wrap it as a transformers tokenizer with the same special tokens.

# %%
from tokenizers import Tokenizer, processors
from transformers import PreTrainedTokenizerFast


def copy_pipeline(tokenizer) -> Tokenizer:
    """An independent copy of a fast tokenizer's `tokenizers` pipeline, safe to edit."""
    return Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())


def wrap(pipeline: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=pipeline, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


print("original post-processor:", llama_tok.backend_tokenizer.post_processor)
never_pipeline = copy_pipeline(llama_tok)
never_pipeline.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B")
never_bos = wrap(never_pipeline)
print(never_bos(BOS_PROBE_TEXT).input_ids, never_bos(BOS_PROBE_TEXT, add_special_tokens=False).input_ids)

# %% [markdown]
# It still knows its BOS token (`bos_token_id` is 1), it just never writes it, so half 1 fails. The error names
# the tokenizer class, the backbone id, both encodings and the BOS id, and says what to do.

# %%
from vla_backbone.errors import TokenizerBOSError
from vla_backbone.notebook import expect_error

assert never_bos.bos_token_id == 1 and never_bos(BOS_PROBE_TEXT).input_ids == ids_without
with expect_error(TokenizerBOSError, match="does not prepend BOS when add_special_tokens=True") as caught:
    check_bos(never_bos, "my-llm-7b")
message = str(caught[0])
assert type(never_bos).__name__ in message and "'my-llm-7b'" in message
assert str(ids_without) in message and "bos_token_id = 1" in message
assert "post-processor" in message and "SPECIAL_CASES" in message

# %% [markdown]
# ## 4. Breaking half 2: a tokenizer that always adds BOS
#
# Why insist that BOS is *absent* without special tokens? Because code that builds training examples counts on
# it. Prismatic's fine-tuning dataset (which OpenVLA inherits) tokenizes a conversation one turn at a time, with
# `add_special_tokens=(turn_idx == 0)`, and concatenates the pieces: BOS once, at the start. And the prompt
# builders strip a leading `<s>` from their text because the tokenizer will add it (notebook 05).
#
# To add BOS on every call, the tokenizer must write it outside the post-processor, which only runs on request.
# The normalizer runs on every text. The Llama replica's normalizer prepends `▁` (SentencePiece's space mark)
# and turns spaces into `▁`; ours prepends `<s>▁` instead. Two details make it work: the `<s>` token must be
# matched *after* normalization (`normalized=True`), and the rule must leave the text `<s>` itself alone
# (`(?!<s>)`), because the tokenizer normalizes each added token's text too before it looks for it.

# %%
from tokenizers import AddedToken, Regex, normalizers

print("original normalizer:", llama_tok.backend_tokenizer.normalizer)
always_pipeline = copy_pipeline(llama_tok)
always_pipeline.normalizer = normalizers.Sequence(
    [normalizers.Replace(Regex(r"\A(?!<s>)"), "<s>▁"), normalizers.Replace(" ", "▁")]
)
always_pipeline.add_special_tokens([AddedToken("<s>", normalized=True, special=True)])
always_bos = wrap(always_pipeline)
print(always_bos(BOS_PROBE_TEXT).input_ids, always_bos(BOS_PROBE_TEXT, add_special_tokens=False).input_ids)

# %% [markdown]
# Half 1 passes, half 2 fails. With special tokens the post-processor adds a second BOS in front of the one the
# normalizer wrote: a double BOS, and the image would land between the two.

# %%
assert always_bos(BOS_PROBE_TEXT, add_special_tokens=False).input_ids == [1] + ids_without
assert always_bos(BOS_PROBE_TEXT).input_ids == [1, 1] + ids_without
with expect_error(TokenizerBOSError, match="starts with BOS even when add_special_tokens=False") as caught:
    check_bos(always_bos, "my-llm-7b")
assert "[1, 1, " in str(caught[0]) and type(always_bos).__name__ in str(caught[0])

# %% [markdown]
# Now a two-turn training example, built the way Prismatic builds it: each turn from the Pure prompt builder,
# special tokens on the first turn only. We compare where BOS appears with each tokenizer.

# %%
from vla_backbone.prompting import PurePromptBuilder, openvla_action_prompt


def tokenize_turns(tokenizer, turns: list[str]) -> list[int]:
    ids = []
    for turn_idx, text in enumerate(turns):
        ids += tokenizer(text, add_special_tokens=turn_idx == 0).input_ids
    return ids


builder = PurePromptBuilder("openvla")
turns = [builder.add_turn("human", openvla_action_prompt("pick up the cup")).rstrip(), builder.add_turn("gpt", "1 2 3")]
print(turns)
for name, tokenizer in [("llama2 replica", llama_tok), ("always-BOS", always_bos)]:
    ids = tokenize_turns(tokenizer, turns)
    print(f"{name:15s} BOS at positions {[i for i, t in enumerate(ids) if t == 1]} of {len(ids)}")

# %% [markdown]
# The good tokenizer gives one BOS, at position 0. The broken one gives a double BOS at the start *and* a BOS in
# the middle of the example, right where the answer begins; the model would learn to predict a BOS there.
# The fix for this kind of failure is to remove whatever writes BOS outside the post-processor (here the
# normalizer), so that only `add_special_tokens=True` adds it.

# %%
good_ids, bad_ids = tokenize_turns(llama_tok, turns), tokenize_turns(always_bos, turns)
assert [i for i, t in enumerate(good_ids) if t == 1] == [0]
first_turn_length = len(llama_tok(turns[0]).input_ids)
assert [i for i, t in enumerate(bad_ids) if t == 1] == [0, 1, first_turn_length + 1]

# %% [markdown]
# **Try it:** add a second human and gpt turn to the builder and re-run: every later turn adds one more BOS in
# the middle of the broken example, while the good one keeps a single BOS at position 0.

# %% [markdown]
# ## 5. Every family
#
# The same two encodings for each family's replica. Half 1 asks for a BOS id at all: Qwen has no BOS token, so
# `bos_token_id` is `None` and half 1 fails by definition. Phi-2 has a BOS token (`<|endoftext|>`) but its
# tokenizer never adds it. OPT passes with an unusual BOS: it prepends `</s>`, which is also its EOS.

# %%
from vla_backbone.registry import backbone_class, list_backbones

FAMILY_IDS = {"llama2": "llama2-7b-pure", "mistral": "mistral-v0.1-7b-pure", "phi": "phi-2-3b",
              "qwen25": "qwen25-0_5b-pure", "opt": "opt-125m"}
tokenizers_by_family = {
    family: AutoTokenizer.from_pretrained(checkpoint_path(backbone_id), padding_side="right")
    for family, backbone_id in FAMILY_IDS.items()
}


def halves(tokenizer) -> tuple[list[int], list[int], bool, bool]:
    with_special = tokenizer(BOS_PROBE_TEXT, add_special_tokens=True).input_ids
    without_special = tokenizer(BOS_PROBE_TEXT, add_special_tokens=False).input_ids
    bos = tokenizer.bos_token_id
    return with_special, without_special, bos is not None and with_special[:1] == [bos], without_special[:1] != [bos]


print(f"{'family':8s} {'BOS token':15s} {'id':>4s}  {'with special tokens':24s} {'without':24s} half 1  half 2")
results = {}
for family, tokenizer in tokenizers_by_family.items():
    with_special, without_special, half1, half2 = results[family] = halves(tokenizer)
    print(f"{family:8s} {tokenizer.bos_token!s:15s} {tokenizer.bos_token_id!s:>4s}  {with_special!s:24s} "
          f"{without_special!s:24s} {'pass' if half1 else 'FAIL':7s} {'pass' if half2 else 'FAIL'}")

# %% [markdown]
# Llama-2, Mistral and OPT pass both halves; Phi-2 and Qwen fail half 1 and pass half 2. OPT's BOS is `</s>`,
# the same token as its EOS.

# %%
passing = {family for family, (_, _, half1, half2) in results.items() if half1 and half2}
assert passing == {"llama2", "mistral", "opt"}
assert all(results[family][3] and not results[family][2] for family in ("phi", "qwen25"))
opt_tok = tokenizers_by_family["opt"]
assert opt_tok.bos_token == opt_tok.eos_token == "</s>" and results["opt"][0][0] == opt_tok.bos_token_id
assert tokenizers_by_family["qwen25"].bos_token_id is None
assert tokenizers_by_family["phi"].bos_token == "<|endoftext|>"

# %% [markdown]
# Those failures are by design, and the backbone constructor skips the check for exactly these ids: the set
# `SPECIAL_CASES`. Running the check over *every* registered id (each id uses its family's tokenizer) gives back
# exactly that set. Notebook 04 shows how phi-2 and Qwen get their first token instead.

# %%
failing_ids = set()
for backbone_id in list_backbones():
    try:
        check_bos(tokenizers_by_family[backbone_class(backbone_id).family], backbone_id)
    except TokenizerBOSError:
        failing_ids.add(backbone_id)
print(sorted(failing_ids))
assert failing_ids == SPECIAL_CASES

# %% [markdown]
# ## 6. `raise`, not `assert`: the check survives `python -O`
#
# Upstream writes the check as an `assert`. Python drops every `assert` statement when it runs with `-O` (or with
# the environment variable `PYTHONOPTIMIZE` set), so a broken tokenizer would then pass silently.
# `check_bos` ends with an explicit `raise`, which `-O` keeps.
#
# We prove it in a separate `python -O` process. Importing torch and transformers there would take many seconds
# (under `-O` Python compiles them afresh the first time), so the process runs the *exact source* of `check_bos`
# (from `inspect.getsource`) on the never-BOS pipeline from section 3, saved to a file and read back with the
# `tokenizers` library alone. Next to it, an `assert` version of half 1.

# %%
import os
import tempfile

assert "raise TokenizerBOSError" in inspect.getsource(check_bos) and "assert " not in inspect.getsource(check_bos)

CHILD = '''
import sys, types
from tokenizers import Tokenizer
from vla_backbone.errors import TokenizerBOSError

class PipelineTokenizer:
    """Just enough of a transformers tokenizer for check_bos."""
    bos_token_id = 1
    def __init__(self, path):
        self.pipeline = Tokenizer.from_file(path)
    def __call__(self, text, add_special_tokens=True):
        return types.SimpleNamespace(input_ids=self.pipeline.encode(text, add_special_tokens=add_special_tokens).ids)

def check_with_assert(tokenizer):
    assert tokenizer("Test 123").input_ids[:1] == [tokenizer.bos_token_id], "no BOS"

namespace = {"TokenizerBOSError": TokenizerBOSError, "BOS_PROBE_TEXT": "Test 123"}
exec(sys.argv[2], namespace)
tokenizer = PipelineTokenizer(sys.argv[1])
print("sys.flags.optimize =", sys.flags.optimize)
check_with_assert(tokenizer)
print("assert version: passed silently")
try:
    namespace["check_bos"](tokenizer, "my-llm-7b")
    print("check_bos: passed silently")
except TokenizerBOSError as error:
    print("check_bos: raised TokenizerBOSError")
'''

with tempfile.TemporaryDirectory() as tmp:
    pipeline_file = os.path.join(tmp, "never_bos.json")
    never_pipeline.save(pipeline_file)
    child = subprocess.run([sys.executable, "-O", "-c", CHILD, pipeline_file, inspect.getsource(check_bos)],
                           capture_output=True, text=True, timeout=60)
print(child.stdout, child.stderr[-2000:])

# %% [markdown]
# Under `-O` the `assert` version lets the broken tokenizer through; `check_bos` still raises.

# %%
assert child.returncode == 0
assert child.stdout.splitlines() == [
    "sys.flags.optimize = 1",
    "assert version: passed silently",
    "check_bos: raised TokenizerBOSError",
]

# %% [markdown]
# ## 7. Check the ids, never the flag
#
# Some tokenizer classes carry an `add_bos_token` flag, and it is tempting to test that instead of encoding
# anything. On transformers 5 this gives the wrong answer: `save_pretrained` no longer writes
# `add_bos_token` into `tokenizer_config.json`, and a reloaded tokenizer reads the flag as `False` while it still
# prepends BOS, because BOS now lives in the saved post-processor. On 4.57 the flag is written and survives.
#
# We load the Llama replica as a `LlamaTokenizerFast` with `add_bos_token=True`, save it, and load it back.

# %%
import json

from transformers import LlamaTokenizerFast
from vla_backbone import compat

explicit = LlamaTokenizerFast.from_pretrained(checkpoint_path("llama2-7b-pure"), add_bos_token=True)
with tempfile.TemporaryDirectory() as tmp:
    explicit.save_pretrained(tmp)
    with open(os.path.join(tmp, "tokenizer_config.json")) as f:
        saved_config = json.load(f)
    reloaded = LlamaTokenizerFast.from_pretrained(tmp)
print("transformers", compat.TRANSFORMERS_VERSION)
print("before saving: add_bos_token =", explicit.add_bos_token, "ids", explicit(BOS_PROBE_TEXT).input_ids)
print("'add_bos_token' in the saved tokenizer_config.json:", "add_bos_token" in saved_config)
print("after reload:  add_bos_token =", reloaded.add_bos_token, "ids", reloaded(BOS_PROBE_TEXT).input_ids)

# %% [markdown]
# The ids are what the VLM sees, and they are right on every version; only the flag changes its story.

# %%
assert explicit.add_bos_token is True
assert reloaded(BOS_PROBE_TEXT).input_ids == explicit(BOS_PROBE_TEXT).input_ids == ids_with
assert check_bos(reloaded, "llama2-7b-pure") is None
assert "<s>" in str(reloaded.backend_tokenizer.post_processor)
if compat.IS_V5:
    assert "add_bos_token" not in saved_config and reloaded.add_bos_token is False
else:
    assert saved_config["add_bos_token"] is True and reloaded.add_bos_token is True

# %% [markdown]
# ## Try it
#
# Pick a family and a text; the cell prints both encodings, the tokens, and the verdict of `check_bos`. In
# JupyterLab or Colab you get drop-downs; as a script it runs once with the first choices. Try the empty text:
# which families still produce a token?

# %%
from vla_backbone.notebook import explore


def bos_report(family: str, text: str) -> bool:
    tokenizer = tokenizers_by_family[family]
    with_special = tokenizer(text, add_special_tokens=True).input_ids
    without_special = tokenizer(text, add_special_tokens=False).input_ids
    print(f"{family}: bos_token = {tokenizer.bos_token!r}, bos_token_id = {tokenizer.bos_token_id}")
    print("  with special tokens:", with_special, tokenizer.convert_ids_to_tokens(with_special))
    print("  without:            ", without_special, tokenizer.convert_ids_to_tokens(without_special))
    try:
        check_bos(tokenizer, FAMILY_IDS[family])
        print("  check_bos: passes")
        return True
    except TokenizerBOSError as error:
        print("  check_bos:", str(error).split(":", 1)[1].split(".")[0].strip())
        return False


first = explore(bos_report, family=list(FAMILY_IDS), text=["Test 123", "pick up the red cup", ""])
assert first is True

# %% [markdown]
# ## Summary
# - The VLM splices image patches in after position 0 (`[emb[:, :1], patches, emb[:, 1:]]`), so position 0 must be
#   BOS; without it the image lands after the first text token and nothing raises.
# - Half 1: with special tokens the ids start with BOS. Half 2: without them they do not, because examples are
#   tokenized turn by turn with special tokens on the first turn only; a tokenizer that always adds BOS gives a
#   double BOS and a BOS in mid-example.
# - Llama-2, Mistral and OPT (BOS `</s>`) pass; Phi-2 and Qwen fail half 1 by design and are exactly
#   `SPECIAL_CASES`.
# - An explicit `raise` survives `python -O`; an `assert` does not.
# - Check the encoded ids, never the `add_bos_token` flag: on transformers 5 it reads `False` after a save and
#   reload while BOS is still prepended.
#
# ## Exercises
# 1. Break half 1 a second way: keep the post-processor, but set the wrapped tokenizer's `bos_token` to `</s>`.
#    What does `check_bos` report, and which id does the message show as `bos_token_id`?
# 2. Write `fix_always_bos(tokenizer)` that repairs the always-BOS tokenizer of section 4 by restoring the
#    original normalizer, and assert that `check_bos` then passes and `tokenize_turns` puts BOS only at 0.
# 3. Run the splice of section 1 with the Qwen replica and `QwenPromptBuilder`. Which token ends up before the
#    image? Argue whether that is acceptable, then compare with notebook 04.
# 4. Extend the `python -O` experiment: run the child with `PYTHONOPTIMIZE=2` in its environment instead of
#    `-O`, and check what `sys.flags.optimize` reports and whether the outcome changes.
