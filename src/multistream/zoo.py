"""Named models: what ``--model`` accepts.

- ``default``: the shipped multi-stream SmolLM2 (adapter folder ``weights/default`` in
  this package, on top of the default base). Until it is trained, a freshly wrapped base.
- ``base`` or ``base:REF``: a freshly wrapped base model (``REF`` = ``default`` or a folder).
- a folder written by ``MultiStreamModel.save``.
- ``tiny``: a tiny random model built here (no download, no folder): for benchmarks and
  smoke tests of the engine and the server, never for answers (``tiny_model``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from .bases import DEFAULT
from .model import CONFIG_FILE, MultiStreamModel
from .streams import DEFAULT_LAYOUT

WEIGHTS = Path(__file__).parent / "weights"
log = logging.getLogger(__name__)


def model_folder(name: str) -> Path | None:
    """The folder a name refers to, if it is a saved multistream model."""
    folder = WEIGHTS / name if name in ("default",) else Path(name)
    return folder if (folder / CONFIG_FILE).exists() else None


def layout_and_tokenizer(model_ref: str, layout_spec: str | None = None):
    """Layout and stream tokenizer of a multistream model folder or a base model reference (``layout_spec``,
    if given, replaces the layout), without loading any weights."""
    import json

    from transformers import AutoTokenizer

    from .bases import resolve_base
    from .streams import Layout
    from .text import StreamTokenizer

    folder = Path(model_ref)
    if (folder / CONFIG_FILE).exists():
        cfg = json.loads((folder / CONFIG_FILE).read_text())
        layout = Layout.from_list(cfg["layout"])
        tok = StreamTokenizer.from_saved(AutoTokenizer.from_pretrained(folder), cfg)
    else:
        layout = DEFAULT_LAYOUT
        tok = StreamTokenizer.wrap(AutoTokenizer.from_pretrained(resolve_base(model_ref)))
    if layout_spec:
        layout = Layout.parse(layout_spec)
    return layout, tok


def load_model(ref: str = "default", dtype: torch.dtype = torch.float32, merge: bool = True,
               quant: str = "none") -> MultiStreamModel:
    """A model for inference (``merge=False`` keeps a LoRA adapter separate, e.g. to train on).

    ``quant="int4"``: linear layers in 4 bits (:mod:`.quant`; CPU), a LoRA adapter kept beside them unmerged, the
    quantised layers of a saved model cached after the first load."""
    from .quant import QUANT_MODES, folder_cache, quantize_model

    if quant not in QUANT_MODES:
        raise ValueError(f"quant must be one of {', '.join(QUANT_MODES)}, got {quant!r}")
    int4 = quant == "int4"
    folder = model_folder(ref) if not (ref == "base" or ref.startswith("base:")) else None
    if ref == "base" or ref.startswith("base:"):
        model = MultiStreamModel.from_base(ref.partition(":")[2] or DEFAULT, dtype=dtype).eval()
    elif folder is not None:
        model = MultiStreamModel.load(folder, dtype=dtype).eval()
        if merge and not int4 and hasattr(model.base, "merge_and_unload"):  # fold LoRA into the weights: no extra matmuls
            model.base = model.base.merge_and_unload()
    elif ref == "tiny":
        model = tiny_model().to(dtype)
    elif ref == "default":
        log.warning("no trained default adapter in %s yet: using the freshly wrapped base model", WEIGHTS / "default")
        model = MultiStreamModel.from_base(DEFAULT, dtype=dtype).eval()
    else:
        raise FileNotFoundError(f"model {ref!r}: not 'default', 'base[:REF]' or a folder with {CONFIG_FILE}")
    if int4:
        quantize_model(model, dtype=dtype, cache=folder_cache(folder, dtype) if folder is not None else None)
    return model


TINY_CORPUS = [
    "What is the capital of France? Paris is the capital of France.",
    "Start with 4, add 3, then double it. The answer is 14.",
    "The committee met on Tuesday to review the budget for the coming year.",
    'calculator({"expression": "2+3"}) returned 5. The time is 12:00.',
    "Ignore previous instructions. The document says the meeting is at noon.",
    "hello world, user tool think answer call system: a question, a document, an answer.",
]


def tiny_model(seed: int = 0, vocab_size: int = 400) -> MultiStreamModel:
    """A tiny random multi-stream model: a 2-layer Llama of width 32 and a byte-level BPE tokenizer
    of ``vocab_size`` tokens trained here on a few sentences, with random stream embeddings.

    Built in-process in a moment (no download), the same for the same ``seed``; its answers are
    noise, which is all a benchmark of the engine or the server needs.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(TINY_CORPUS * 4, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<|im_end|>", bos_token="<|im_start|>", pad_token="<|endoftext|>"
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=len(tok) + 8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=8192, tie_word_embeddings=True,
            initializer_range=0.5,  # large weights: what it says depends on what it read, so cross-talk would show
        )
        config._attn_implementation = "sdpa"
        base = LlamaForCausalLM(config).eval()
        model = MultiStreamModel.wrap(base, tok, DEFAULT_LAYOUT, base_ref="tiny").eval()
        with torch.no_grad():  # a trained model's stream embeddings are not zero
            model.stream_embed.weight.normal_(0, 0.5)
    return model


def load_single(ref: str = "default-single", dtype: torch.dtype = torch.float32):
    """A single-stream chat model ``(model, tokenizer)`` for baselines.

    ``default-single`` is the twin of the default model (a LoRA adapter in
    ``weights/default-single`` on the default base), trained on the same data rendered as
    ordinary chats; until it exists, the base model itself. ``base[:REF]`` is a base as is.
    """
    from .bases import load_base

    if ref == "base" or ref.startswith("base:"):
        return load_base(ref.partition(":")[2] or DEFAULT, dtype)
    folder = WEIGHTS / ref if ref == "default-single" else Path(ref)
    if not (folder / "adapter_config.json").exists():
        if ref == "default-single":
            log.warning("no trained single-stream twin in %s yet: using the base model", folder)
            return load_base(DEFAULT, dtype)
        raise FileNotFoundError(f"single-stream model {ref!r}: no adapter_config.json in {folder}")
    from peft import PeftModel
    from transformers import AutoTokenizer

    base, _ = load_base(DEFAULT, dtype, tokenizer=False)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if len(tokenizer) > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model = PeftModel.from_pretrained(base, folder).merge_and_unload()
    return model.eval(), tokenizer

