"""The contract every backbone keeps, as one reusable check: the package tests run it on every registered id,
notebook 12 and the assignments run it on a backbone you write yourself."""
from __future__ import annotations

import inspect

import torch

from vla_backbone import compat
from vla_backbone.hf_causal import SPECIAL_CASES, check_bos


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def _member(backbone, name: str):
    """Read a member so that an AttributeError raised inside a property surfaces as itself: ``nn.Module.__getattr__``
    would report it as "object has no attribute '<the property>'"."""
    member = inspect.getattr_static(type(backbone), name, None)
    return member.fget(backbone) if isinstance(member, property) else getattr(backbone, name)


def _check_checkpointing(backbone, name: str) -> None:
    """``enable_gradient_checkpointing()`` turns HF checkpointing on and keeps the input-grad hook; the backbone is
    left as it was found."""
    was_on = compat.is_checkpointing(backbone.llm)
    try:
        backbone.enable_gradient_checkpointing()
    except Exception as exc:  # e.g. transformers' ValueError for a class without checkpointing support
        raise AssertionError(f"{name}: enable_gradient_checkpointing() raised {type(exc).__name__}: {exc}") from exc
    try:
        _require(compat.is_checkpointing(backbone.llm),
                 f"{name}: enable_gradient_checkpointing() left checkpointing off; delegate to the HF model, as "
                 "HFCausalLLMBackbone does (compat.enable_checkpointing)")
        _require(compat.has_input_grad_hook(backbone.llm),
                 f"{name}: enable_gradient_checkpointing() removed the input-grad hook; a frozen backbone would then "
                 "train no adapter inside a checkpointed layer (notebook 07)")
    finally:
        if not was_on:
            compat.disable_checkpointing(backbone.llm)


def check_backbone_contract(backbone, special_cases=SPECIAL_CASES) -> None:
    """Raise AssertionError, saying what is wrong, unless ``backbone`` keeps every promise of ``LLMBackbone``.

    Checks: no abstract member left; tokenizer and pad token; right padding, ``model_max_length`` and a
    ``llm_max_length`` within the model's positions; the BOS check (skipped for ids in ``special_cases``; it raises
    ``TokenizerBOSError``, a subclass of AssertionError); the prompt builder's EOS is one special token;
    ``embed_dim`` is the input embeddings' width; embeddings padded to a multiple of 64; the input-grad hook in
    training mode, where ``enable_gradient_checkpointing()`` must turn checkpointing on and keep the hook (the check
    turns it off again); ``use_cache``; ``half_precision_dtype``; ``last_layer_finetune_modules``; the FSDP policy wraps
    exactly the decoder layers; ``embed_input_ids``, and a forward pass with labels from ids and from embeddings.
    """
    from vla_backbone.fsdp import wrap_plan

    name = f"{type(backbone).__name__}('{backbone.identifier}')"
    missing = sorted(getattr(type(backbone), "__abstractmethods__", ()))
    _require(not missing, f"{name} still has abstract members: {', '.join(missing)}")
    tokenizer = backbone.get_tokenizer()
    _require(tokenizer is not None and backbone.llm is not None, f"{name}: llm and tokenizer must be set in __init__")
    _require(backbone.pad_token_id is not None, f"{name}: the tokenizer has no PAD token; add one before resizing")
    _require(backbone.llm.config.pad_token_id == backbone.pad_token_id,
             f"{name}: config.pad_token_id ({backbone.llm.config.pad_token_id}) != tokenizer pad id ({backbone.pad_token_id})")
    _require(tokenizer.padding_side == "right", f"{name}: tokenizer pads on the {tokenizer.padding_side}, OpenVLA pads right")
    _require(tokenizer.model_max_length == backbone.llm_max_length,
             f"{name}: tokenizer.model_max_length is {tokenizer.model_max_length}, expected {backbone.llm_max_length}")
    positions = getattr(backbone.llm.config, "max_position_embeddings", None)
    _require(positions is None or backbone.llm_max_length <= positions,
             f"{name}: llm_max_length is {backbone.llm_max_length}, but the model has {positions} positions "
             "(config.max_position_embeddings); a longer input indexes past them. Cap llm_max_length at the context.")
    if backbone.identifier not in special_cases:
        check_bos(tokenizer, backbone.identifier)
    builder = backbone.prompt_builder_fn("openvla")
    eos_ids = tokenizer(builder.eos, add_special_tokens=False).input_ids
    _require(len(eos_ids) == 1 and eos_ids[0] in tokenizer.all_special_ids,
             f"{name}: {type(builder).__name__} ends each answer with {builder.eos!r}, which the tokenizer reads as "
             f"{tokenizer.convert_ids_to_tokens(eos_ids)}, not as one special token: the model would never learn "
             f"where an answer stops. Set the builder's eos to the tokenizer's EOS, {tokenizer.eos_token!r}.")
    width = backbone.llm.get_input_embeddings().embedding_dim
    _require(backbone.embed_dim == width,
             f"{name}: embed_dim is {backbone.embed_dim}, but the input embeddings are {width} wide; the projector must "
             "produce what embed_input_ids produces (usually config.hidden_size)")
    rows = backbone.llm.get_input_embeddings().weight.shape[0]
    _require(rows % 64 == 0 and rows >= len(tokenizer),
             f"{name}: {rows} embedding rows for {len(tokenizer)} tokens; resize to a multiple of 64 that fits them all")
    _require(backbone.llm.config.use_cache == backbone.inference_mode,
             f"{name}: use_cache must be {backbone.inference_mode} in {'inference' if backbone.inference_mode else 'training'} mode")
    if not backbone.inference_mode:
        _require(compat.has_input_grad_hook(backbone.llm),
                 f"{name}: in training mode the input-grad hook must sit on the current input embeddings")
        _check_checkpointing(backbone, name)
    _require(isinstance(backbone.half_precision_dtype, torch.dtype), f"{name}: half_precision_dtype must be a torch.dtype")
    layer_cls = _member(backbone, "transformer_layer_cls")
    layers = [(n, m) for n, m in backbone.named_modules() if isinstance(m, layer_cls)]
    _require(len(layers) > 0, f"{name}: no module of transformer_layer_cls {layer_cls.__name__}")
    embeddings, last_layer, head = _member(backbone, "last_layer_finetune_modules")
    _require(embeddings is backbone.llm.get_input_embeddings(), f"{name}: last_layer_finetune_modules[0] must be the input embeddings")
    _require(last_layer is layers[-1][1], f"{name}: last_layer_finetune_modules[1] must be the last decoder layer")
    _require(head is backbone.llm.get_output_embeddings(), f"{name}: last_layer_finetune_modules[2] must be the LM head")
    plan = wrap_plan(backbone, backbone.get_fsdp_wrapping_policy())
    _require(plan == ["", *(n for n, _ in layers)], f"{name}: the FSDP policy should wrap exactly the decoder layers, got {plan}")
    ids = tokenizer(["pick up the cup"], return_tensors="pt").input_ids
    # Equal values are not enough: a lookup that skips the module (weight[ids]) gives them too, but the module's hooks,
    # the input-grad hook among them, never fire (notebook 07).
    calls = []
    handle = backbone.llm.get_input_embeddings().register_forward_hook(lambda *_: calls.append(True))
    try:
        embedded = backbone.embed_input_ids(ids)
    finally:
        handle.remove()
    _require(bool(calls) and torch.equal(embedded, backbone.llm.get_input_embeddings()(ids)),
             f"{name}: embed_input_ids must call the input embedding module, llm.get_input_embeddings()(input_ids), "
             "so that its hooks fire")
    with torch.no_grad():
        loss = backbone(input_ids=ids, labels=ids).loss
        # The VLM's path: embeddings of width embed_dim (projected patches among them) instead of ids.
        from_embeddings = backbone(inputs_embeds=backbone.embed_input_ids(ids), labels=ids).loss
    _require(loss is not None and torch.isfinite(loss), f"{name}: forward with labels must return a finite loss")
    _require(torch.allclose(from_embeddings, loss), f"{name}: forward(inputs_embeds=embed_input_ids(ids)) must give the loss of forward(input_ids=ids)")
