"""The multi-stream wrapper around any Hugging Face causal LM.

The base model's code is used as is: we feed it ``inputs_embeds`` (token embedding
plus a learned per-stream embedding), explicit ``position_ids`` (a row's tokens share
one position) and an explicit 4D stream-causal mask, and read its logits. The model
computes forwards only; sampling and scheduling live in the decoders.

Saved as a folder: ``multistream_config.json`` (base reference, layout, tokens),
``multistream.safetensors`` (stream embeddings, embedding rows of added tokens), the
tokenizer files, and a PEFT adapter (``adapter_config.json`` +
``adapter_model.safetensors``) or a full ``base/`` model when there is one.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .bases import DEFAULT, load_base
from .rows import SILENCE_RULES, RowFormat, stream_causal_mask
from .streams import DEFAULT_LAYOUT, Layout, LayoutError
from .text import SILENCE_TOKEN, StreamTokenizer

CONFIG_FILE = "multistream_config.json"
WEIGHTS_FILE = "multistream.safetensors"
FORMAT_VERSION = 2
"""Version 2 records the silence rule; version 1 folders (no rule recorded) were trained with ``visible``."""


class MultiStreamModel(nn.Module):
    def __init__(
        self,
        base: nn.Module,
        tok: StreamTokenizer,
        layout: Layout,
        base_ref: str,
        new_token_ids: list[int],
        silence: str = "invisible",
    ):
        super().__init__()
        if silence not in SILENCE_RULES:
            raise ValueError(f"silence must be one of {', '.join(SILENCE_RULES)}, got {silence!r}")
        self.silence = silence
        """The silence rule the model is trained and run with (``rows.RowFormat.silence``)."""
        self.base = base
        self.tok = tok
        self.layout = layout
        self.base_ref = base_ref
        self.new_token_ids = list(new_token_ids)
        emb = base.get_input_embeddings().weight
        self.stream_embed = nn.Embedding(len(layout), emb.shape[1], device=emb.device, dtype=emb.dtype)
        nn.init.zeros_(self.stream_embed.weight)  # a fresh wrap computes exactly what the base computes

    # -- construction ------------------------------------------------------------
    @classmethod
    def wrap(
        cls,
        base: nn.Module,
        tokenizer,
        layout: Layout = DEFAULT_LAYOUT,
        base_ref: str = "custom",
        silence_token: str = SILENCE_TOKEN,
        silence: str = "invisible",
    ) -> MultiStreamModel:
        """Add the silence token (embedding = mean of the existing ones) and a zero stream embedding."""
        before = set(tokenizer.get_vocab().values())
        tok = StreamTokenizer.wrap(tokenizer, silence_token)
        new_ids = sorted(set(tokenizer.get_vocab().values()) - before)
        _make_rows(base, len(tokenizer))
        if new_ids:
            old = torch.tensor(sorted(before))
            with torch.no_grad():
                for emb in _embedding_matrices(base):
                    emb[new_ids] = emb[old].mean(0, keepdim=True)
        return cls(base, tok, layout, base_ref, new_ids, silence)

    @classmethod
    def from_base(
        cls, ref: str = DEFAULT, layout: Layout = DEFAULT_LAYOUT, dtype: torch.dtype = torch.float32, silence: str = "invisible"
    ):
        base, tokenizer = load_base(ref, dtype)
        return cls.wrap(base, tokenizer, layout, base_ref=ref, silence=silence)

    # -- properties ----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.stream_embed.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base.get_input_embeddings().weight.dtype

    @property
    def num_streams(self) -> int:
        return len(self.layout)

    @property
    def row_format(self) -> RowFormat:
        """What ``rows`` needs to turn this model's rows into tokens."""
        return RowFormat(tuple(self.layout.output_mask), self.tok.silence_id, self.silence)

    # -- forward -------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor, stream_ids: torch.Tensor) -> torch.Tensor:
        tokens = self.base.get_input_embeddings()(input_ids)
        return tokens + self.stream_embed(stream_ids).to(tokens.dtype)

    def forward(
        self,
        input_ids: torch.Tensor,
        stream_ids: torch.Tensor,
        position_ids: torch.Tensor,
        *,
        doc_ids: torch.Tensor | None = None,
        visible: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        past_key_values=None,
        past_positions: torch.Tensor | None = None,
        past_streams: torch.Tensor | None = None,
        past_visible: torch.Tensor | None = None,
        use_cache: bool = False,
        logits_to_keep: int | torch.Tensor = 0,
    ):
        """One forward over ``[B, L]`` tokens; returns the base model's output (``logits``, ``past_key_values``).

        The mask is the stream-causal one unless given: built from positions, stream ids and
        ``visible`` (default: every token is a key; ``rows`` gives it), and ``doc_ids`` for
        packed timelines; with a cache, ``past_positions``, ``past_streams`` and
        ``past_visible`` ``[B, K]`` describe the cached tokens. Callers with their own
        cache layout (the engine) pass ``attention_mask`` built by ``rows.stream_causal_mask``.
        """
        if attention_mask is None:
            if visible is None:
                visible = torch.ones_like(input_ids, dtype=torch.bool)
            if past_positions is None:
                attention_mask = stream_causal_mask(
                    position_ids, position_ids, stream_ids, stream_ids, doc_ids, doc_ids, k_visible=visible
                )
            else:
                if past_visible is None:
                    past_visible = torch.ones_like(past_positions, dtype=torch.bool)
                k_pos = torch.cat([past_positions, position_ids], dim=1)
                k_stream = torch.cat([past_streams, stream_ids], dim=1)
                k_visible = torch.cat([past_visible, visible], dim=1)
                attention_mask = stream_causal_mask(position_ids, k_pos, stream_ids, k_stream, k_visible=k_visible)
        embeds = self.embed(input_ids, stream_ids)
        return self.base(
            inputs_embeds=embeds,
            position_ids=position_ids,
            attention_mask=self._backend_mask(attention_mask, embeds.dtype),
            past_key_values=past_key_values,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
        )

    def _backend_mask(self, mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        # SDPA takes booleans; eager attention adds the mask to the scores.
        if mask.dtype != torch.bool or self.base.config._attn_implementation == "sdpa":
            return mask
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)

    # -- save / load -----------------------------------------------------------------
    def save(self, path: str | Path, save_base: bool = False) -> Path:
        """Write the folder described in the module docstring. ``save_base`` stores full base weights too."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        core = unwrap_base(self.base)
        tensors = {"stream_embed": self.stream_embed.weight.detach().contiguous()}
        if self.new_token_ids:
            ids = torch.tensor(self.new_token_ids)
            tensors["new_token_rows.input"] = core.get_input_embeddings().weight[ids].detach().contiguous()
            if not _tied(core):
                tensors["new_token_rows.output"] = core.get_output_embeddings().weight[ids].detach().contiguous()
        save_file({k: v.cpu() for k, v in tensors.items()}, path / WEIGHTS_FILE)
        self.tok.hf.save_pretrained(path)
        base_ref = self.base_ref
        if save_base:
            core.save_pretrained(path / "base")
            base_ref = "./base"
        adapter = hasattr(self.base, "peft_config")
        if adapter:  # the added token rows are saved above, the rest of the embeddings is the base's
            self.base.save_pretrained(path, save_embedding_layers=False)
        config = {
            "format_version": FORMAT_VERSION,
            "base_model": base_ref,
            "layout": self.layout.to_list(),
            "silence": self.silence,
            "silence_token": self.tok.silence_token,
            "end_token": self.tok.end_token,
            "empty_prefix": self.tok.empty_prefix,
            "new_token_ids": self.new_token_ids,
            "embedding_rows": core.get_input_embeddings().weight.shape[0],
            "adapter": adapter,
        }
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path, dtype: torch.dtype = torch.float32, trainable: bool = False) -> MultiStreamModel:
        from transformers import AutoTokenizer

        path = Path(path)
        cfg_file = path / CONFIG_FILE
        if not cfg_file.exists():
            raise FileNotFoundError(f"{path} is not a multistream model folder (no {CONFIG_FILE})")
        cfg = json.loads(cfg_file.read_text())
        version = cfg.get("format_version")
        if version not in (1, FORMAT_VERSION):
            raise ValueError(f"{cfg_file}: format_version {version} is not 1 or {FORMAT_VERSION}")
        silence = cfg.get("silence", "visible") if version == 1 else cfg.get("silence")
        if silence not in SILENCE_RULES:
            raise ValueError(f"{cfg_file}: silence must be one of {', '.join(SILENCE_RULES)}, got {silence!r}")
        layout = Layout.from_list(cfg["layout"])
        weights = load_file(path / WEIGHTS_FILE)
        if weights["stream_embed"].shape[0] != len(layout):
            raise LayoutError(f"{path}: {weights['stream_embed'].shape[0]} stream embeddings for {len(layout)} streams")
        base_ref = cfg["base_model"]
        local = base_ref.startswith("./")
        if local or ".." in Path(base_ref).parts:  # a folder inside this one, never a way out of it
            inside = (path / base_ref).resolve()
            if not inside.is_relative_to(path.resolve()):
                raise ValueError(f"{cfg_file}: base_model {base_ref!r} points outside the model folder")
            local = True
        base, _ = load_base(str(path / base_ref) if local else base_ref, dtype, tokenizer=False)
        tokenizer = AutoTokenizer.from_pretrained(path)
        tok = StreamTokenizer.from_saved(tokenizer, cfg)
        _make_rows(base, cfg["embedding_rows"])
        ids = torch.tensor(cfg["new_token_ids"], dtype=torch.long)
        with torch.no_grad():
            if len(ids):
                base.get_input_embeddings().weight[ids] = weights["new_token_rows.input"].to(dtype)
                if "new_token_rows.output" in weights:
                    base.get_output_embeddings().weight[ids] = weights["new_token_rows.output"].to(dtype)
        if cfg.get("adapter"):
            from peft import PeftModel

            base = PeftModel.from_pretrained(base, path, is_trainable=trainable)
        model = cls(base, tok, layout, base_ref if not local else str(path / base_ref), cfg["new_token_ids"], silence)
        with torch.no_grad():
            model.stream_embed.weight.copy_(weights["stream_embed"].to(dtype))
        return model.train(trainable)


def unwrap_base(base: nn.Module) -> nn.Module:
    """The plain transformers model under a PEFT wrapper (if any)."""
    return base.get_base_model() if hasattr(base, "get_base_model") else base


def _tied(model: nn.Module) -> bool:
    out = model.get_output_embeddings()
    return out is None or out.weight is model.get_input_embeddings().weight


def _embedding_matrices(model: nn.Module) -> list[torch.Tensor]:
    mats = [model.get_input_embeddings().weight]
    if not _tied(model):
        mats.append(model.get_output_embeddings().weight)
    return mats


def _make_rows(model: nn.Module, n: int) -> None:
    """Grow the embedding (and untied output) matrices to at least ``n`` rows."""
    if model.get_input_embeddings().weight.shape[0] < n:
        model.resize_token_embeddings(n, mean_resizing=False)
