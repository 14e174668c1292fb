# %% [markdown]
# # 03 · The BOS assertion
#
# Every OpenVLA backbone ends its constructor with a two-line check on the tokenizer: encoding `"Test 123"` with
# special tokens must start with the BOS (beginning-of-sequence) id, and encoding it without special tokens must
# not. It looks like pedantry, but the vision-language model depends on it: it splices the image into the prompt
# at a fixed position, right after the first token, on the assumption that the first token is BOS. A tokenizer
# that breaks either half of the check quietly moves the image or repeats BOS, and training goes on without any
# error. This notebook runs the check on the real tokenizer files of all five families, and breaks the real
# Llama-2 tokenizer on purpose, once for each half.
#
# **What you will learn here**
# - why the image patches need a BOS at position 0, on the real ids of OpenVLA's action prompt;
# - both halves of the check, and how each half fails on the real Llama-2 tokenizer: its post-processor removed,
#   `add_bos_token=False`, a BOS written by the normalizer, a text that already starts with `<s>`;
# - which families pass, which are exempt (`SPECIAL_CASES`: phi-2 and the Qwen ids), and why OPT's BOS is `</s>`;
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
# We load the Llama-2 tokenizer exactly as the backbone loads it, with the family's `load_tokenizer`: from the real
# tokenizer files in the replica, Llama-2's read from its tokenizer.json as it is (notebook 05 shows why). Then
# we tokenize OpenVLA's action prompt twice: once normally, once without special tokens, as a tokenizer that never
# adds BOS would. The ids are the real Llama-2 ids; `1` is `<s>`.

# %%
import torch
from transformers import AutoTokenizer

from vla_backbone.registry import backbone_class, checkpoint_path


def family_tokenizer(backbone_id: str):
    """The tokenizer as `backbone_id`'s backbone loads it, before the family adds its PAD token."""
    return backbone_class(backbone_id).load_tokenizer(checkpoint_path(backbone_id))


llama_tok = family_tokenizer("llama2-7b-pure")
ACTION_PROMPT = "In: What action should the robot take to pick up the cup?\nOut:"
prompt = ACTION_PROMPT
with_bos = llama_tok(prompt).input_ids
without_bos = llama_tok(prompt, add_special_tokens=False).input_ids
print("with BOS:   ", with_bos)
print("without BOS:", without_bos)
print(llama_tok.convert_ids_to_tokens(with_bos))

# %%
assert without_bos == with_bos[1:] and llama_tok.bos_token == "<s>" and llama_tok.bos_token_id == 1
if prompt == ACTION_PROMPT:  # the ids the real Llama-2 tokenizer gives OpenVLA's prompt
    assert with_bos == [1, 512, 29901, 1724, 3158, 881, 278, 19964, 2125, 304, 5839, 701, 278, 18002, 29973, 13, 3744,
                        29901]


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
print("with BOS:   ", spliced_good.squeeze().tolist()[:8], "...")
print("without BOS:", spliced_bad.squeeze().tolist()[:8], "...")

# %% [markdown]
# With BOS, the image sits between BOS and the text, exactly as in training. Without it, the first token of the
# prompt (`▁In`, id 512) is cut off from the rest, and the image lands inside the `In:` marker of the prompt
# format. Nothing fails: the sequence is one position shorter, every shape downstream follows it, and no error is
# raised. Only the meaning changed.

# %%
bos_id = llama_tok.bos_token_id
assert spliced_good.shape == (1, len(with_bos) + 3, 1) and spliced_bad.shape == (1, len(without_bos) + 3, 1)
assert spliced_good[0, 0, 0] == bos_id and spliced_good[0, 1:4, 0].tolist() == [-1.0, -2.0, -3.0]
assert int(spliced_bad[0, 0, 0]) == without_bos[0] != bos_id
if prompt == ACTION_PROMPT:
    assert without_bos[0] == 512 and llama_tok.convert_ids_to_tokens(512) == "▁In"
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


fig, ax = plt.subplots(figsize=(14, 2.2))
for row, (name, spliced) in enumerate([(TEXT["good"], spliced_good), (TEXT["bad"], spliced_bad)]):
    for column, (label, kind) in enumerate(labels_for(spliced)):
        ax.add_patch(plt.Rectangle((column, -row), 0.95, 0.8, color=COLORS[kind], alpha=0.8))
        ax.text(column + 0.47, -row + 0.4, label, ha="center", va="center", fontsize=7, color="white")
    ax.text(-0.2, -row + 0.4, name, ha="right", va="center")
ax.set_xlim(-2.2, spliced_good.shape[1])
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
# The real Llama-2 tokenizer passes: `<s>` (id 1) comes first with special tokens, and the plain encoding starts
# directly with the text, `▁Test` (4321), then `▁`, `1`, `2`, `3` (29871, 29896, 29906, 29941): SentencePiece
# writes digits one by one. `check_bos` returns `None` when all is well.

# %%
ids_with = llama_tok(BOS_PROBE_TEXT, add_special_tokens=True).input_ids
ids_without = llama_tok(BOS_PROBE_TEXT, add_special_tokens=False).input_ids
print(BOS_PROBE_TEXT, "->", ids_with, "with special tokens,", ids_without, "without")
print(llama_tok.convert_ids_to_tokens(ids_with))

# %%
assert BOS_PROBE_TEXT == "Test 123"
assert ids_with == [1, 4321, 29871, 29896, 29906, 29941]
assert ids_without == [4321, 29871, 29896, 29906, 29941] and ids_with == [llama_tok.bos_token_id] + ids_without
assert llama_tok.convert_ids_to_tokens(ids_without) == ["▁Test", "▁", "1", "2", "3"]
assert check_bos(llama_tok, "llama2-7b-pure") is None

# %% [markdown]
# ## 3. Breaking half 1: the real tokenizer, without BOS
#
# A fast tokenizer is a pipeline from the `tokenizers` library: normalizer, pre-tokenizer, model (here BPE) and
# post-processor. BOS is the post-processor's job: Llama-2's `tokenizer.json` holds a `TemplateProcessing` with
# the template `<s> $A` (`$A` is the text), which runs only when special tokens are requested.
#
# We read that very file with the `tokenizers` library and wrap it as a transformers tokenizer with Llama-2's
# special tokens. First, unchanged, it must give exactly the ids of the tokenizer the backbone loads (on both the
# probe and the action prompt); then we replace its template by `$A` alone.

# %%
import json

from tokenizers import Tokenizer, processors
from transformers import PreTrainedTokenizerFast

from vla_backbone.tiny import TOKENIZERS

LLAMA_TOKENIZER_JSON = TOKENIZERS / "llama2" / "tokenizer.json"


def wrap(pipeline: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(tokenizer_object=pipeline, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


real_pipeline = Tokenizer.from_file(str(LLAMA_TOKENIZER_JSON))
print("post-processor in tokenizer.json:", real_pipeline.post_processor)
assert all(wrap(real_pipeline)(text).input_ids == llama_tok(text).input_ids for text in (BOS_PROBE_TEXT, prompt))
# The model is BPE, and the template for one text is `<s> $A`, as the file stores it.
stored = json.loads(real_pipeline.to_str())
assert stored["model"]["type"] == "BPE" and stored["post_processor"]["type"] == "TemplateProcessing"
assert stored["post_processor"]["single"] == [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]

never_pipeline = Tokenizer.from_file(str(LLAMA_TOKENIZER_JSON))
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
# Nobody has to edit a file to get there. One loading argument does it: transformers' Llama tokenizer honours
# `add_bos_token=False`, on 4.57 and on 5.x alike, and the unchanged real files then encode without BOS. This is
# exactly the kind of change the constructor's check exists to catch.

# %%
switched_off = AutoTokenizer.from_pretrained(checkpoint_path("llama2-7b-pure"), add_bos_token=False)
print(type(switched_off).__name__, switched_off(BOS_PROBE_TEXT).input_ids)
assert switched_off(BOS_PROBE_TEXT).input_ids == ids_without
with expect_error(TokenizerBOSError, match="does not prepend BOS when add_special_tokens=True"):
    check_bos(switched_off, "llama2-7b-pure")

# %% [markdown]
# ## 4. Breaking half 2: BOS that does not come from the special-token step
#
# Why insist that BOS is *absent* without special tokens? Because code that builds training examples counts on
# it. Prismatic's fine-tuning dataset (which OpenVLA inherits; `FinetuneDataset.__getitem__` in
# `prismatic/preprocessing/datasets/datasets.py`) tokenizes a conversation one turn at a time, with
# `add_special_tokens=(turn_idx == 0)`, and concatenates the pieces: BOS once, at the start.
#
# The simplest way to get a BOS from somewhere else is a text that already starts with `<s>`. The real tokenizer
# reads the written `<s>` as the special token, so the plain encoding starts with BOS, and the normal one has two.
# That is why every prompt builder whose tokenizer adds BOS removes a leading `<s>` from its text (notebook 05).

# %%
from vla_backbone.prompting import PurePromptBuilder, openvla_action_prompt

written = "<s>" + BOS_PROBE_TEXT
print(repr(written), "->", llama_tok(written).input_ids, "with special tokens,",
      llama_tok(written, add_special_tokens=False).input_ids, "without")
assert llama_tok(written, add_special_tokens=False).input_ids == [1] + ids_without
assert llama_tok(written).input_ids == [1, 1] + ids_without
assert PurePromptBuilder("openvla").finish("<s>In: hi\nOut: ") == "In: hi\nOut:"

# %% [markdown]
# `check_bos` always encodes its own probe, so a text cannot fool it; a *tokenizer* that writes BOS on every
# call can. The post-processor runs only on request, but the normalizer runs on every text. Llama-2's
# `tokenizer.json` has a normalizer that prepends `▁` (SentencePiece's space mark) and turns spaces into `▁`; we
# make it prepend `<s>▁` instead. Two details make it work: the `<s>` token must be matched *after* normalization
# (`normalized=True`), and the rule must leave the text `<s>` itself alone (`(?!<s>)`), because the tokenizer
# normalizes each added token's text too before it looks for it.

# %%
from tokenizers import AddedToken, Regex, normalizers

print("normalizer in tokenizer.json:", real_pipeline.normalizer)
assert real_pipeline.normalizer.normalize_str("pick up") == "▁pick▁up"  # prepends ▁ and turns spaces into ▁
always_pipeline = Tokenizer.from_file(str(LLAMA_TOKENIZER_JSON))
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
def tokenize_turns(tokenizer, turns: list[str]) -> list[int]:
    ids = []
    for turn_idx, text in enumerate(turns):
        ids += tokenizer(text, add_special_tokens=turn_idx == 0).input_ids
    return ids


builder = PurePromptBuilder("openvla")
turns = [builder.add_turn("human", openvla_action_prompt("pick up the cup")).rstrip(), builder.add_turn("gpt", "1 2 3")]
print(turns)
for name, tokenizer in [("real Llama-2", llama_tok), ("always-BOS", always_bos)]:
    ids = tokenize_turns(tokenizer, turns)
    print(f"{name:13s} BOS at positions {[i for i, t in enumerate(ids) if t == 1]} of {len(ids)}")

# %% [markdown]
# The real tokenizer gives one BOS, at position 0 (the first turn is the 18-token action prompt). The broken one
# gives a double BOS at the start *and* a BOS in the middle of the example, at position 19, right where the answer
# begins; the model would learn to predict a BOS there. The fix for this kind of failure is to remove whatever
# writes BOS outside the post-processor (here the normalizer), so that only `add_special_tokens=True` adds it.

# %%
good_ids, bad_ids = tokenize_turns(llama_tok, turns), tokenize_turns(always_bos, turns)
first_turn_length = len(llama_tok(turns[0]).input_ids)
assert first_turn_length == 18 and good_ids[:first_turn_length] == llama_tok(ACTION_PROMPT).input_ids
assert [i for i, t in enumerate(good_ids) if t == 1] == [0]
bad_positions = [i for i, t in enumerate(bad_ids) if t == 1]
assert bad_positions[:3] == [0, 1, first_turn_length + 1] == [0, 1, 19]
assert len(bad_positions) == len(turns) + 1  # one BOS per turn, and the double one at the start

# %% [markdown]
# **Try it:** add a second human and gpt turn to the builder and re-run: every later turn adds one more BOS in
# the middle of the broken example, while the real tokenizer keeps a single BOS at position 0.

# %% [markdown]
# ## 5. Every family, on its real tokenizer files
#
# The same two encodings for each family, each tokenizer loaded from its real files as its backbone loads it. The
# ids below are the ones the hub tokenizers give. Half 1 asks for a BOS id at all: Qwen has no BOS token, so
# `bos_token_id` is `None` and half 1 fails by definition. Phi-2 has a BOS token, `<|endoftext|>` (50256, also its
# EOS), but its tokenizer never adds it. OPT passes with an unusual BOS: it prepends `</s>` (id 2), which is also
# its EOS. On transformers 5 each family has one tokenizer class (Mistral's loads as the generic
# `TokenizersBackend`); on 4.57 they are the `*Fast` classes.

# %%
from vla_backbone import compat
from vla_backbone.registry import list_backbones

FAMILY_IDS = {"llama2": "llama2-7b-pure", "mistral": "mistral-v0.1-7b-pure", "phi": "phi-2-3b",
              "qwen25": "qwen25-0_5b-pure", "opt": "opt-125m"}
# Llama-2's is the one loaded in section 1; the others load the same way.
tokenizers_by_family = {family: llama_tok if family == "llama2" else family_tokenizer(backbone_id)
                        for family, backbone_id in FAMILY_IDS.items()}


def halves(tokenizer) -> tuple[list[int], list[int], bool, bool]:
    with_special = tokenizer(BOS_PROBE_TEXT, add_special_tokens=True).input_ids
    without_special = tokenizer(BOS_PROBE_TEXT, add_special_tokens=False).input_ids
    bos = tokenizer.bos_token_id
    return with_special, without_special, bos is not None and with_special[:1] == [bos], without_special[:1] != [bos]


print(f"{'family':8s} {'class':22s} {'BOS token':14s} {'id':>5s}  {'with special tokens':38s} half 1  half 2")
results = {}
for family, tokenizer in tokenizers_by_family.items():
    with_special, without_special, half1, half2 = results[family] = halves(tokenizer)
    print(f"{family:8s} {type(tokenizer).__name__:22s} {tokenizer.bos_token!s:14s} {tokenizer.bos_token_id!s:>5s}  "
          f"{with_special!s:38s} {'pass' if half1 else 'FAIL':7s} {'pass' if half2 else 'FAIL'}")

# %% [markdown]
# Llama-2, Mistral and OPT pass both halves; Phi-2 and Qwen fail half 1 and pass half 2.

# %%
REAL_TEST_123 = {
    "llama2": [1, 4321, 29871, 29896, 29906, 29941],
    "mistral": [1, 3735, 28705, 28740, 28750, 28770],
    "phi": [14402, 17031],
    "qwen25": [2271, 220, 16, 17, 18],
    "opt": [2, 34603, 17072],
}
assert {family: result[0] for family, result in results.items()} == REAL_TEST_123
assert {family: result[1] for family, result in results.items()} == {
    family: ids[1:] if family in ("llama2", "mistral", "opt") else ids for family, ids in REAL_TEST_123.items()}
passing = {family for family, (_, _, half1, half2) in results.items() if half1 and half2}
assert passing == {"llama2", "mistral", "opt"}
assert all(results[family][3] and not results[family][2] for family in ("phi", "qwen25"))
opt_tok = tokenizers_by_family["opt"]
assert opt_tok.bos_token == opt_tok.eos_token == "</s>" and opt_tok.bos_token_id == 2
phi_tok = tokenizers_by_family["phi"]
assert phi_tok.bos_token == phi_tok.eos_token == "<|endoftext|>" and phi_tok.bos_token_id == 50256
assert tokenizers_by_family["qwen25"].bos_token is None and tokenizers_by_family["qwen25"].bos_token_id is None
CLASSES_V5 = ["LlamaTokenizer", "TokenizersBackend", "CodeGenTokenizer", "Qwen2Tokenizer", "GPT2Tokenizer"]
CLASSES_V4 = ["LlamaTokenizerFast", "LlamaTokenizerFast", "CodeGenTokenizerFast", "Qwen2TokenizerFast", "GPT2TokenizerFast"]
assert [type(t).__name__ for t in tokenizers_by_family.values()] == (CLASSES_V5 if compat.IS_V5 else CLASSES_V4)

# %% [markdown]
# Those failures are by design, and the backbone constructor skips the check for exactly these ids: the set
# `SPECIAL_CASES`. Phi-2's id comes from OpenVLA; the Qwen-2.5 ids come from MiniVLA, which added Qwen to OpenVLA.
# Running the check over *every* registered id (each id uses its family's tokenizer) gives back exactly that set.
# Notebook 04 shows how phi-2 and Qwen get a fixed first token instead.

# %%
failing_ids = set()
for backbone_id in list_backbones():
    try:
        check_bos(tokenizers_by_family[backbone_class(backbone_id).family], backbone_id)
    except TokenizerBOSError:
        failing_ids.add(backbone_id)
print(sorted(failing_ids))
assert failing_ids == SPECIAL_CASES
assert SPECIAL_CASES == {"phi-2-3b"} | {i for i in list_backbones() if backbone_class(i).family == "qwen25"} == {
    "phi-2-3b", "qwen25-0_5b-pure", "qwen25-0_5b-extra", "qwen25-1_5b-pure", "qwen25-3b-pure", "qwen25-7b-pure"}

# %% [markdown]
# ## 6. `raise`, not `assert`: the check survives `python -O`
#
# Upstream writes the check as an `assert`. Python drops every `assert` statement when it runs with `-O` (or with
# the environment variable `PYTHONOPTIMIZE` set), so a broken tokenizer would then pass silently.
# `check_bos` ends with an explicit `raise`, which `-O` keeps.
#
# We prove it in a separate `python -O` process. Importing torch and transformers there would take many seconds
# (under `-O` Python compiles them afresh the first time), so the process runs the *exact source* of `check_bos`
# (from `inspect.getsource`) on the never-BOS pipeline from section 3 (the real Llama-2 `tokenizer.json` without
# its BOS template), saved to a file and read back with the `tokenizers` library alone. Next to it, an `assert`
# version of half 1.

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
# Llama-2's `tokenizer_config.json` says `"add_bos_token": true`, and the tokenizer object carries an
# `add_bos_token` attribute. It is tempting to test that instead of encoding anything. On transformers 5 this gives
# the wrong answer: `save_pretrained` no longer writes `add_bos_token` into `tokenizer_config.json`, and the reloaded
# tokenizer reads the flag as `False` while it still prepends BOS, because BOS now lives in the saved
# post-processor. On 4.57 the flag is written and survives.
#
# We load the real Llama-2 tokenizer with `add_bos_token=True` spelled out, save it, and load it back.

# %%
import json

hub_config = json.loads((TOKENIZERS / "llama2" / "tokenizer_config.json").read_text())
explicit = AutoTokenizer.from_pretrained(checkpoint_path("llama2-7b-pure"), add_bos_token=True)
with tempfile.TemporaryDirectory() as tmp:
    explicit.save_pretrained(tmp)
    saved_config = json.loads(open(os.path.join(tmp, "tokenizer_config.json")).read())
    reloaded = AutoTokenizer.from_pretrained(tmp)
print("transformers", compat.TRANSFORMERS_VERSION, "| the hub's tokenizer_config.json: add_bos_token =",
      hub_config["add_bos_token"])
print(f"before saving: {type(explicit).__name__}.add_bos_token = {explicit.add_bos_token}, ids",
      explicit(BOS_PROBE_TEXT).input_ids)
print("'add_bos_token' in the saved tokenizer_config.json:", "add_bos_token" in saved_config)
print(f"after reload:  {type(reloaded).__name__}.add_bos_token = {reloaded.add_bos_token}, ids",
      reloaded(BOS_PROBE_TEXT).input_ids)

# %% [markdown]
# The ids are what the VLM sees, and they are the real ones, `[1, 4321, 29871, 29896, 29906, 29941]`, before and
# after, on every version; only the flag changes its story. The branch below states what each version does, so
# the cell runs on 4.57 and on 5.x.

# %%
assert hub_config["add_bos_token"] is True and explicit.add_bos_token is True
assert reloaded(BOS_PROBE_TEXT).input_ids == explicit(BOS_PROBE_TEXT).input_ids == [1, 4321, 29871, 29896, 29906, 29941]
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
# which families still produce a token? And `"<s>Test 123"`: which tokenizers read `<s>` as one special token?

# %%
from vla_backbone.hf_causal import BOS_PROBE_TEXT
from vla_backbone.notebook import explore


def bos_report(family: str, text: str) -> bool:
    tokenizer = tokenizers_by_family[family]
    with_special = tokenizer(text, add_special_tokens=True).input_ids
    without_special = tokenizer(text, add_special_tokens=False).input_ids
    print(f"{family}: bos_token = {tokenizer.bos_token!r}, bos_token_id = {tokenizer.bos_token_id}")
    print("  with special tokens:", with_special, tokenizer.convert_ids_to_tokens(with_special))
    print("  without:            ", without_special, tokenizer.convert_ids_to_tokens(without_special))
    bos = tokenizer.bos_token_id
    print(f"  this text: half 1 {'holds' if bos is not None and with_special[:1] == [bos] else 'fails'}, "
          f"half 2 {'fails' if bos is not None and without_special[:1] == [bos] else 'holds'}")
    try:
        check_bos(tokenizer, FAMILY_IDS[family])
        print(f"  check_bos (on its own probe, {BOS_PROBE_TEXT!r}): passes")
        return True
    except TokenizerBOSError as error:
        print(f"  check_bos (on its own probe, {BOS_PROBE_TEXT!r}):", str(error).split(":", 1)[1].split(".")[0].strip())
        return False


first = explore(bos_report, family=list(FAMILY_IDS), text=["Test 123", "pick up the red cup", "", "<s>Test 123"])
assert first is True

# %% [markdown]
# ## Summary
# - The VLM splices image patches in after position 0 (`[emb[:, :1], patches, emb[:, 1:]]`), so position 0 must be
#   BOS; without it the image lands after the first text token (`▁In` of OpenVLA's prompt) and nothing raises.
# - Half 1: with special tokens the ids start with BOS. It fails when the post-processor loses its BOS template or
#   when the tokenizer is loaded with `add_bos_token=False`.
# - Half 2: without special tokens they do not, because examples are tokenized turn by turn with special tokens on
#   the first turn only. A BOS from anywhere else (a text starting with `<s>`, a normalizer that writes it) gives a
#   double BOS and a BOS in mid-example.
# - On the real files, Llama-2, Mistral and OPT (BOS `</s>`) pass; phi-2 (BOS = EOS = `<|endoftext|>`, never added)
#   and Qwen (no BOS token) fail half 1 by design and are exactly `SPECIAL_CASES`.
# - An explicit `raise` survives `python -O`; an `assert` does not.
# - Check the encoded ids, never the `add_bos_token` flag: on transformers 5 it reads `False` after a save and
#   reload while BOS is still prepended.
#
# ## Exercises
# 1. Break half 1 a second way: keep the post-processor, but set the wrapped tokenizer's `bos_token` to `</s>`.
#    What does `check_bos` report, and which id does the message show as `bos_token_id`?
# 2. Write `fix_always_bos(tokenizer)` that repairs the always-BOS tokenizer of section 4 by restoring the
#    original normalizer, and assert that `check_bos` then passes and `tokenize_turns` puts BOS only at 0.
# 3. Run the splice of section 1 with the Qwen tokenizer and `QwenPromptBuilder`. Which token ends up before the
#    image? Argue whether that is acceptable, then compare with notebook 04.
# 4. Extend the `python -O` experiment: run the child with `PYTHONOPTIMIZE=2` in its environment instead of
#    `-O`, and check what `sys.flags.optimize` reports and whether the outcome changes.
# 5. Copy the real Llama-2 files into a temporary directory, delete the `post_processor` from `tokenizer.json`,
#    and load the directory with `AutoTokenizer`. Does BOS come back? Compare transformers 4.57 and 5.x, and find
#    the setting each version rebuilds the post-processor from.
