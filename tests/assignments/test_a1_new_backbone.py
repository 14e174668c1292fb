"""Grader for A1 · a backbone for GPT-2 (notebooks/*/assignments/A1_new_backbone).

    .venv/bin/python -m pytest tests/assignments/test_a1_new_backbone.py --notebook path/to/A1_new_backbone.ipynb
"""
import inspect

import pytest
import torch

ASSIGNMENT = "A1_new_backbone"
ACTION_PROMPT = "What action should the robot take to pick up the red cup?"


def test_notebook_runs_top_to_bottom(notebook):
    notebook.assert_ran_to_the_end()


def _gpt2(notebook):
    """The student's class, the offline checkpoint and one loaded backbone (built once per notebook)."""
    cls = notebook["GPT2LLMBackbone"]
    path = notebook["TINY_GPT2"]

    def build():
        try:
            return cls("gpt2-124m", hf_hub_path=path)
        except NotImplementedError:
            raise
        except Exception as exc:
            pytest.fail(notebook.say(
                f"A1: GPT2LLMBackbone('gpt2-124m', hf_hub_path=TINY_GPT2) raised {type(exc).__name__}: {exc}",
                f"A1：GPT2LLMBackbone('gpt2-124m', hf_hub_path=TINY_GPT2) 抛出了 {type(exc).__name__}: {exc}"), pytrace=False)

    return cls, path, notebook.cached("backbone", build)


def _prompt_ids(backbone, answer=None):
    builder = backbone.prompt_builder_fn("openvla")
    builder.add_turn("human", ACTION_PROMPT)
    if answer is not None:
        builder.add_turn("gpt", answer)
    return backbone.get_tokenizer()(builder.get_prompt(), add_special_tokens=True).input_ids


def test_registry(notebook):
    models = notebook["GPT2_MODELS"]
    say = notebook.say
    assert isinstance(models, dict) and models, say("GPT2_MODELS must be a non-empty dict: backbone id -> hub repo",
                                                    "GPT2_MODELS 必须是一个非空的 dict：骨干网络 id -> Hub 仓库")
    assert models.get("gpt2-124m") == "openai-community/gpt2", say(
        f"GPT2_MODELS['gpt2-124m'] is {models.get('gpt2-124m')!r}; the 124M model lives at 'openai-community/gpt2'",
        f"GPT2_MODELS['gpt2-124m'] 是 {models.get('gpt2-124m')!r}；124M 的模型在 'openai-community/gpt2'")
    expected = {"gpt2-355m": "openai-community/gpt2-medium", "gpt2-774m": "openai-community/gpt2-large",
                "gpt2-1.5b": "openai-community/gpt2-xl"}
    for backbone_id, repo in models.items():
        assert backbone_id.startswith("gpt2"), say(f"'{backbone_id}' in GPT2_MODELS does not look like a GPT-2 id",
                                                   f"GPT2_MODELS 里的 '{backbone_id}' 看起来不像 GPT-2 的 id")
        if backbone_id in expected:
            assert repo == expected[backbone_id], say(f"GPT2_MODELS['{backbone_id}'] should be '{expected[backbone_id]}'",
                                                      f"GPT2_MODELS['{backbone_id}'] 应为 '{expected[backbone_id]}'")


def test_class_is_a_complete_family(notebook):
    from vla_backbone.families._common import FamilyBackbone

    say = notebook.say
    cls = notebook["GPT2LLMBackbone"]
    assert inspect.isclass(cls) and issubclass(cls, FamilyBackbone), say("GPT2LLMBackbone must subclass FamilyBackbone",
                                                                         "GPT2LLMBackbone 必须是 FamilyBackbone 的子类")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    assert not missing, say(f"GPT2LLMBackbone still has abstract members, so it cannot be built: {', '.join(missing)}",
                            f"GPT2LLMBackbone 还有抽象成员，因此无法实例化：{', '.join(missing)}")
    assert cls.family == "gpt2", say(f"family is {cls.family!r}, expected 'gpt2'", f"family 是 {cls.family!r}，应为 'gpt2'")
    assert cls.models is notebook["GPT2_MODELS"] or cls.models == notebook["GPT2_MODELS"], \
        say("models must be GPT2_MODELS", "models 必须是 GPT2_MODELS")


def test_model_and_layer_classes(notebook):
    gpt2 = _gpt2(notebook)
    from transformers import GPT2LMHeadModel
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    _, _, backbone = gpt2
    say = notebook.say
    assert isinstance(backbone.llm, GPT2LMHeadModel), say(
        f"llm is {type(backbone.llm).__name__}; llm_cls_path must name GPT2LMHeadModel",
        f"llm 是 {type(backbone.llm).__name__}；llm_cls_path 必须指向 GPT2LMHeadModel")
    assert backbone.transformer_layer_cls is GPT2Block, say(
        f"transformer_layer_cls is {backbone.transformer_layer_cls}; decoder_layer_path must name GPT2Block "
        "(transformers.models.gpt2.modeling_gpt2.GPT2Block)",
        f"transformer_layer_cls 是 {backbone.transformer_layer_cls}；decoder_layer_path 必须指向 GPT2Block"
        "（transformers.models.gpt2.modeling_gpt2.GPT2Block）")
    assert backbone.embed_dim == 64, say(f"embed_dim is {backbone.embed_dim}; the tiny replica's hidden size is 64",
                                         f"embed_dim 是 {backbone.embed_dim}；微型副本的隐藏维度是 64")
    assert backbone.half_precision_dtype is torch.bfloat16, say("half_precision_dtype should stay bfloat16",
                                                                "half_precision_dtype 应保持为 bfloat16")


def test_pad_token_and_resize(notebook):
    gpt2 = _gpt2(notebook)
    _, _, backbone = gpt2
    tokenizer = backbone.get_tokenizer()
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    say = notebook.say
    assert backbone.pad_token_id is not None, say("the tokenizer has no PAD token: set pad_token (e.g. '<|pad|>')",
                                                  "分词器没有 PAD token：请设置 pad_token（例如 '<|pad|>'）")
    assert backbone.pad_token_id != eos, say("PAD must be a token of its own, not <|endoftext|> (EOS)",
                                             "PAD 必须是一个专门的 token，不能是 <|endoftext|>（EOS）")
    rows = backbone.llm.get_input_embeddings().weight.shape[0]
    assert rows >= len(tokenizer) and rows % 64 == 0, say(
        f"{rows} embedding rows for {len(tokenizer)} tokens; expected a multiple of 64",
        f"{len(tokenizer)} 个 token 对应 {rows} 行嵌入；行数应为 64 的倍数")
    assert backbone.llm.config.pad_token_id == backbone.pad_token_id, say(
        "the model config's pad_token_id must match the tokenizer's", "模型 config 里的 pad_token_id 必须与分词器的一致")


@pytest.mark.parametrize("answer", [None, "move left"])
def test_bos_rule_for_every_id(notebook, answer):
    gpt2 = _gpt2(notebook)
    cls, path, _ = gpt2
    say = notebook.say
    for backbone_id in notebook["GPT2_MODELS"]:
        try:
            backbone = cls(backbone_id, hf_hub_path=path)
        except NotImplementedError:
            raise
        except Exception as exc:
            pytest.fail(say(f"A1: building '{backbone_id}' raised {type(exc).__name__}: {exc}. Every registered id must "
                            "load (and pass or skip the BOS check by your decision).",
                            f"A1：构造 '{backbone_id}' 时抛出了 {type(exc).__name__}: {exc}。每个登记的 id 都必须能加载"
                            "（并按你的决定通过或跳过 BOS 检查）。"), pytrace=False)
        tokenizer = backbone.get_tokenizer()
        bos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        ids = _prompt_ids(backbone, answer)
        first = tokenizer.convert_ids_to_tokens(ids[0])
        assert ids[0] == bos, say(
            f"'{backbone_id}': the prompt starts with token {ids[0]} ({first!r}); "
            "the VLM splices patches after position 0, which must be <|endoftext|>",
            f"'{backbone_id}'：提示词以 token {ids[0]}（{first!r}）开头；VLM 会把 patch 拼在位置 0 之后，"
            "而位置 0 必须是 <|endoftext|>")
        assert ids[1] != bos, say(f"'{backbone_id}': <|endoftext|> twice at the start (template and tokenizer both add it)",
                                  f"'{backbone_id}'：开头出现了两个 <|endoftext|>（模板和分词器各加了一个）")
        assert ids.count(bos) == (1 if answer is None else 2), say(
            f"'{backbone_id}': <|endoftext|> appears {ids.count(bos)} times; expected once at the start"
            + (" and once as EOS after the answer" if answer else ""),
            f"'{backbone_id}'：<|endoftext|> 出现了 {ids.count(bos)} 次；应当只在开头出现一次"
            + ("，并在回答之后作为 EOS 再出现一次" if answer else ""))
        if answer is not None:
            assert ids[-1] == bos, say(f"'{backbone_id}': the training prompt must end with <|endoftext|> as EOS",
                                       f"'{backbone_id}'：训练用的提示词必须以 <|endoftext|>（EOS）结尾")
    # Two rounds: BOS once at the very start, and one EOS after each answer; never a BOS before a later turn.
    builder = backbone.prompt_builder_fn("openvla")
    for turn in (ACTION_PROMPT, "And now?"):
        builder.add_turn("human", turn)
        builder.add_turn("gpt", answer or "move left")
    ids = backbone.get_tokenizer()(builder.get_prompt(), add_special_tokens=True).input_ids
    positions = [index for index, token in enumerate(ids) if token == bos]
    assert len(positions) == 3 and positions[0] == 0 and positions[-1] == len(ids) - 1, say(
        f"'{backbone_id}': a two-round conversation has <|endoftext|> at positions {positions}; expected three: position "
        "0 (BOS), and one EOS after each answer. BOS belongs to the first turn only.",
        f"'{backbone_id}'：两轮对话里 <|endoftext|> 出现在位置 {positions}；应当正好三次：位置 0（BOS），以及每个回答之后各一个 EOS。"
        "BOS 只属于第一轮。")


def test_other_families_keep_their_bos_check(notebook):
    _gpt2(notebook)  # a backbone may register its ids when it is built
    from vla_backbone import hf_causal

    added = set(hf_causal.SPECIAL_CASES) - notebook.package_special_cases
    stray = sorted(added - set(notebook["GPT2_MODELS"]))
    assert not stray, notebook.say(f"only GPT-2 ids may join SPECIAL_CASES; these do not belong there: {stray}",
                                   f"只有 GPT-2 的 id 可以加入 SPECIAL_CASES；这些不应在其中：{stray}")
    assert hf_causal.check_bos is notebook.package_check_bos, notebook.say(
        "the BOS check itself was replaced; leave vla_backbone.hf_causal.check_bos alone and use SPECIAL_CASES",
        "BOS 检查本身被替换了；请不要改动 vla_backbone.hf_causal.check_bos，改用 SPECIAL_CASES")
    from transformers import AutoTokenizer

    from vla_backbone.tiny import tiny_checkpoint

    no_bos = AutoTokenizer.from_pretrained(tiny_checkpoint("qwen25"))  # Qwen has no BOS: any other id must fail
    with pytest.raises(AssertionError, match="fails the BOS check"):
        hf_causal.check_bos(no_bos, "llama2-7b-pure")


def test_last_layer_finetune_modules(notebook):
    gpt2 = _gpt2(notebook)
    _, _, backbone = gpt2
    modules = tuple(backbone.last_layer_finetune_modules)
    llm = backbone.llm
    say = notebook.say
    assert len(modules) == 3, say(f"expected 3 modules (input embeddings, last block, LM head), got {len(modules)}",
                                  f"应有 3 个模块（输入嵌入、最后一个 block、输出头），实际有 {len(modules)} 个")
    assert modules[0] is llm.get_input_embeddings(), say("the first module must be the input embeddings (transformer.wte)",
                                                         "第一个模块必须是输入嵌入（transformer.wte）")
    assert modules[1] is llm.transformer.h[-1], say("the second module must be the last GPT2Block (transformer.h[-1])",
                                                    "第二个模块必须是最后一个 GPT2Block（transformer.h[-1]）")
    assert modules[2] is llm.get_output_embeddings(), say("the third module must be the LM head (lm_head)",
                                                          "第三个模块必须是输出头（lm_head）")


def test_fsdp_wraps_each_block(notebook):
    gpt2 = _gpt2(notebook)
    from vla_backbone.fsdp import wrap_plan

    _, _, backbone = gpt2
    plan = wrap_plan(backbone, backbone.get_fsdp_wrapping_policy())
    assert plan == ["", "llm.transformer.h.0", "llm.transformer.h.1"], notebook.say(
        f"FSDP would wrap {plan}; expected each GPT2Block", f"FSDP 会包装 {plan}；应当包装每一个 GPT2Block")


def test_training_step_with_checkpointing(notebook):
    gpt2 = _gpt2(notebook)
    cls, path, _ = gpt2
    torch.manual_seed(0)
    backbone = cls("gpt2-124m", hf_hub_path=path)
    backbone.requires_grad_(False)
    for module in backbone.last_layer_finetune_modules:
        module.requires_grad_(True)
    backbone.enable_gradient_checkpointing()
    backbone.llm.train()
    ids = torch.tensor([_prompt_ids(backbone, "move left")] * 2)
    loss = backbone(input_ids=ids, attention_mask=torch.ones_like(ids), labels=ids).loss
    say = notebook.say
    assert torch.isfinite(loss), say(f"the loss is {loss}", f"损失是 {loss}")
    loss.backward()
    grad = backbone.llm.transformer.h[-1].mlp.c_fc.weight.grad
    assert grad is not None and grad.abs().sum() > 0, say("the last block received no gradient", "最后一个 block 没有得到梯度")
    assert backbone.llm.transformer.h[0].mlp.c_fc.weight.grad is None, say("the frozen first block received a gradient",
                                                                           "被冻结的第一个 block 得到了梯度")


def test_unknown_id_is_rejected(notebook):
    gpt2 = _gpt2(notebook)
    from vla_backbone.errors import UnknownBackboneError

    cls, path, _ = gpt2
    with pytest.raises(UnknownBackboneError):
        cls("llama2-7b-pure", hf_hub_path=path)
