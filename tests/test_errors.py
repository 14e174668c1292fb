"""Bad input gets a clear error that says what to do, and a token never leaks."""
import logging
import shutil
import subprocess
import sys
import warnings
from types import SimpleNamespace

import pytest
import torch

import vla_backbone
from vla_backbone import hf_causal
from vla_backbone.errors import (
    BackboneLoadError,
    FlashAttentionUnavailableError,
    TokenizerBOSError,
    UnknownBackboneError,
)
from vla_backbone.families import LLaMa2LLMBackbone
from vla_backbone.tiny import tiny_checkpoint

SENTINEL = "hf_SENTINELtokenNEVERshown0123456789"


def test_unknown_id_lists_known_ids():
    with pytest.raises(UnknownBackboneError) as info:
        vla_backbone.get_llm_backbone_and_tokenizer("llama3-8b-pure")
    message = str(info.value)
    assert "llama3-8b-pure" in message and "llama2-7b-pure" in message and "opt-125m" in message


def test_family_class_rejects_foreign_id():
    with pytest.raises(UnknownBackboneError, match="not a llama2 backbone.*vicuna-v15-7b"):
        LLaMa2LLMBackbone("phi-2-3b")


def test_hub_while_offline_asks_only_the_local_cache_and_points_to_tiny(monkeypatch):
    """Offline, loading never tries the network (no retries to wait for): only the local cache is asked."""
    from transformers import OPTForCausalLM

    asked = []
    original = OPTForCausalLM.from_pretrained.__func__

    def recording(cls, *args, **kwargs):
        asked.append(kwargs.get("local_files_only"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(OPTForCausalLM, "from_pretrained", classmethod(recording))
    with pytest.raises(BackboneLoadError, match="source='tiny'"):
        vla_backbone.get_llm_backbone_and_tokenizer("opt-125m", source="hub")
    assert asked == [True]


def test_hub_without_offline_flag_probes_and_asks_only_the_local_cache(tmp_path):
    # No HF_HUB_OFFLINE: the reachability probe must notice the hub is unreachable, so that loading asks only the
    # local cache instead of the ~20 s of retries huggingface_hub would do.
    code = (
        "import transformers, vla_backbone\n"
        "from transformers import OPTForCausalLM\n"
        "from vla_backbone import hf_causal\n"
        "from vla_backbone.errors import BackboneLoadError\n"
        "asked = []\n"
        "original = OPTForCausalLM.from_pretrained.__func__\n"
        "def recording(cls, *args, **kwargs):\n"
        "    asked.append(kwargs.get('local_files_only'))\n"
        "    return original(cls, *args, **kwargs)\n"
        "OPTForCausalLM.from_pretrained = classmethod(recording)\n"
        "try:\n"
        "    vla_backbone.get_llm_backbone_and_tokenizer('opt-125m', source='hub')\n"
        "except BackboneLoadError as exc:\n"
        "    print('ERR', hf_causal.hub_reachable(), asked, exc)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_HOME"] = str(tmp_path)
    env["HF_ENDPOINT"] = "https://hub.invalid"  # guaranteed unreachable, whatever the machine's network
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "ERR" in result.stdout, result.stderr[-2000:]
    assert result.stdout.startswith("ERR False [True]") and "source='tiny'" in result.stdout


# A stand-in for the hub on localhost that answers as huggingface.co does (status and X-Error-Code header, which
# huggingface_hub turns into its exceptions; transformers then wraps those in an OSError). The probe must find it on
# its port, and the error must be read through transformers' wrapping.
FAKE_HUB = """
import http.server, os, sys, threading
answers = {"meta-llama": (401, "GatedRepo"), "nobody": (404, "RepoNotFound")}
asked = []
class Hub(http.server.BaseHTTPRequestHandler):
    def do_HEAD(self):
        asked.append(self.path)
        status, code = answers.get(self.path.strip("/").split("/")[0], (404, "EntryNotFound"))
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_HEAD
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
threading.Thread(target=server.serve_forever, daemon=True).start()
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{server.server_address[1]}"
os.environ.pop("HF_HUB_OFFLINE", None)
from vla_backbone import hf_causal
from vla_backbone.errors import BackboneLoadError
from vla_backbone.families import LLaMa2LLMBackbone
assert hf_causal.hub_reachable()
try:
    LLaMa2LLMBackbone("llama2-7b-pure", hf_hub_path=sys.argv[1])
except BackboneLoadError as error:
    print("asked the hub:", bool(asked))
    print(error)
"""


@pytest.mark.parametrize("repo, expected", [
    ("meta-llama/Llama-2-7b-hf", "'meta-llama/Llama-2-7b-hf' is a gated repository and no token was passed"),
    ("nobody/nothing", "No repository 'nobody/nothing' on the hub"),
])
def test_hub_errors_are_read_through_transformers_wrapping(repo, expected, tmp_path):
    env = {**__import__("os").environ, "HF_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", FAKE_HUB, repo], capture_output=True, text=True, env=env, timeout=300)
    assert result.stdout.startswith("asked the hub: True"), result.stdout + result.stderr[-3000:]
    assert expected in result.stdout and "unreachable" not in result.stdout


def test_an_error_that_is_not_the_hubs_is_not_called_an_offline_hub(monkeypatch):
    from transformers import LlamaForCausalLM

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hf_causal, "hub_reachable", lambda: True)
    monkeypatch.setattr(LlamaForCausalLM, "from_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        LLaMa2LLMBackbone("llama2-7b-pure")


def test_probe_trusts_a_proxy_and_forgets_a_failure(monkeypatch):
    import socket

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for name in hf_causal.PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setattr(socket, "create_connection", pytest.fail)  # behind a proxy only huggingface_hub can tell
    assert hf_causal.hub_reachable()

    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setattr(hf_causal, "hub_endpoint", lambda: ("hub.example", 8443))
    attempts = []

    def refuse(address, timeout):
        attempts.append(address)
        raise ConnectionRefusedError

    monkeypatch.setattr(socket, "create_connection", refuse)
    assert not hf_causal.hub_reachable() and not hf_causal.hub_reachable()
    assert attempts == [("hub.example", 8443)] * 2  # each load asks again: a network that comes back is noticed


def test_local_directory_bug_is_not_called_corrupt(tmp_path, monkeypatch):
    from transformers import LlamaForCausalLM

    def buggy(*args, **kwargs):
        raise NotImplementedError("a family's own bug")

    monkeypatch.setattr(LlamaForCausalLM, "from_pretrained", buggy)
    with pytest.raises(NotImplementedError, match="a family's own bug"):
        vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure", source=str(tiny_checkpoint("llama2")))


def test_flash_attention_without_gpu_or_package():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; the error is for machines without one")
    with pytest.raises(FlashAttentionUnavailableError, match="use_flash_attention_2=False"):
        LLaMa2LLMBackbone("llama2-7b-pure", use_flash_attention_2=True)


def test_inference_mode_ignores_flash_attention_as_upstream():
    # Upstream passes the flag only to the training-mode `from_pretrained`; `_from_config` gets the default.
    backbone = LLaMa2LLMBackbone("llama2-7b-pure", hf_hub_path=str(tiny_checkpoint("llama2")), inference_mode=True,
                                 use_flash_attention_2=True)
    assert backbone.llm.config._attn_implementation == "sdpa"  # the library default, as upstream's _from_config


def test_missing_local_directory(tmp_path):
    with pytest.raises(BackboneLoadError, match="does not exist"):
        vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure", source=str(tmp_path / "nowhere"))
    with pytest.raises(BackboneLoadError, match="no config.json"):
        vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure", source=str(tmp_path))


def test_corrupt_local_directory(tmp_path):
    copy = tmp_path / "ckpt"
    shutil.copytree(tiny_checkpoint("llama2"), copy)
    (copy / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(BackboneLoadError, match="looks corrupt"):
        vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure", source=str(copy))
    # ...and nothing was lost: the real replica still loads.
    vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure")


def test_bos_failure_names_class_ids_and_fix():
    _, phi_tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("phi-2-3b")
    with pytest.raises(TokenizerBOSError) as info:
        hf_causal.check_bos(phi_tokenizer, "my-new-backbone")
    assert isinstance(info.value, AssertionError)  # what upstream's `assert` raised, so old `except` clauses still work
    message = str(info.value)
    assert type(phi_tokenizer).__name__ in message
    assert str(phi_tokenizer("Test 123").input_ids) in message
    assert "SPECIAL_CASES" in message and "post-processor" in message


def test_construction_runs_the_bos_check_unless_the_id_is_a_special_case(monkeypatch):
    """REFERENCE §2, step 7: the constructor checks BOS; phi-2 passes only because it is in SPECIAL_CASES."""
    vla_backbone.get_llm_backbone_and_tokenizer("phi-2-3b")
    monkeypatch.setattr(hf_causal, "SPECIAL_CASES", hf_causal.SPECIAL_CASES - {"phi-2-3b"})
    with pytest.raises(TokenizerBOSError, match="'phi-2-3b' fails the BOS check"):
        vla_backbone.get_llm_backbone_and_tokenizer("phi-2-3b")


def test_bos_check_survives_python_O():
    code = (
        "import vla_backbone\n"
        "from vla_backbone.hf_causal import check_bos\n"
        "_, tok = vla_backbone.get_llm_backbone_and_tokenizer('qwen25-0_5b-pure')\n"
        "try:\n"
        "    check_bos(tok, 'x')\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "TokenizerBOSError", result.stderr[-2000:]


def test_token_never_appears(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backbone, tokenizer = vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure", hf_token=SENTINEL)
        texts = [repr(backbone), str(backbone), repr(tokenizer), str(vars(backbone)), str(backbone.llm.config)]
        errors = []
        with pytest.raises(BackboneLoadError) as missing:
            vla_backbone.get_llm_backbone_and_tokenizer("llama2-7b-pure", hf_token=SENTINEL, source=str(tmp_path / "x"))
        errors.append(missing.value)
        with pytest.raises(BackboneLoadError) as offline:
            vla_backbone.get_llm_backbone_and_tokenizer("opt-125m", hf_token=SENTINEL, source="hub")
        errors.append(offline.value)

        # Even an error whose own text carries the token is redacted, and its cause is not chained.
        from transformers import LlamaForCausalLM

        def leaky(*args, **kwargs):
            raise OSError(f"request failed with Authorization: Bearer {SENTINEL}")

        monkeypatch.setattr(hf_causal, "hub_reachable", lambda: True)
        monkeypatch.setattr(LlamaForCausalLM, "from_pretrained", leaky)
        with pytest.raises(BackboneLoadError) as leaked:
            LLaMa2LLMBackbone("llama2-7b-pure", hf_token=SENTINEL)
        errors.append(leaked.value)
        assert leaked.value.__cause__ is None and leaked.value.__suppress_context__
        assert "Authorization: Bearer ***" in str(leaked.value)  # redacted, not dropped
    for error in errors:
        texts += [str(error), repr(error), str(error.__cause__)]
    texts += [record.getMessage() for record in caplog.records] + [str(w.message) for w in caught]
    assert not [text for text in texts if SENTINEL in text]


def test_bos_failure_of_the_second_half_gives_the_other_fix():
    class AlwaysBOS:
        bos_token_id = 1

        def __call__(self, text, add_special_tokens=True):
            return SimpleNamespace(input_ids=[1, 7, 8])

    with pytest.raises(TokenizerBOSError, match="starts with BOS even when add_special_tokens=False.*remove whatever"):
        hf_causal.check_bos(AlwaysBOS(), "x")
