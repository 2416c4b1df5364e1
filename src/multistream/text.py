"""Tokenisation for streams: text never becomes control tokens.

Every piece of text that arrives on a stream (user, tool results, documents, even
the model's own earlier output when re-fed) is tokenised with special-token parsing
off, so ``<|im_end|>`` or the silence token's text typed by a user stays plain text.
Only the chat template around the prefix and the tokens this module adds on purpose
(silence, end of message) are control tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

SILENCE_TOKEN = "<|silence|>"
_SENTINEL = "\u2063MULTISTREAM-PREFIX\u2063"
_MESSAGE = "\u2063MSG{}\u2063"
EMPTY_PREFIX_RULES = ("template", "none")


@dataclass
class StreamTokenizer:
    """A Hugging Face tokenizer plus the ids a multi-stream model relies on."""

    hf: object
    """The underlying ``PreTrainedTokenizer(Fast)``, with the silence token added."""
    silence_id: int
    end_id: int
    """Ends a message on any stream (the base model's end-of-turn token, e.g. ``<|im_end|>``)."""
    empty_prefix: str = "template"
    """A session with no system prompt: ``template`` starts it with what the chat template writes by itself in a
    chat with no system message (see :meth:`encode_prefix`); ``none`` with nothing (models saved before this
    choice existed, the shipped v8 among them, were trained so)."""

    @classmethod
    def wrap(cls, hf_tokenizer, silence_token: str = SILENCE_TOKEN, end_token: str | None = None,
             empty_prefix: str = "template") -> StreamTokenizer:
        """Add the silence token (if missing) and pick the end-of-message token."""
        if empty_prefix not in EMPTY_PREFIX_RULES:
            raise ValueError(f"empty_prefix must be one of {', '.join(EMPTY_PREFIX_RULES)}, got {empty_prefix!r}")
        if silence_token not in hf_tokenizer.get_vocab():
            hf_tokenizer.add_special_tokens({"additional_special_tokens": [silence_token]})
        if end_token is None:
            vocab = hf_tokenizer.get_vocab()
            end_token = "<|im_end|>" if "<|im_end|>" in vocab else hf_tokenizer.eos_token
        if end_token is None:
            raise ValueError("the tokenizer has no end-of-turn or eos token; pass end_token=")
        return cls(hf_tokenizer, hf_tokenizer.convert_tokens_to_ids(silence_token), hf_tokenizer.convert_tokens_to_ids(end_token),
                   empty_prefix)

    @classmethod
    def from_saved(cls, hf_tokenizer, config: dict) -> StreamTokenizer:
        """The tokenizer of a saved model, as its ``multistream_config.json`` says it was trained (a folder saved
        before ``empty_prefix`` was recorded read an empty prefix as nothing)."""
        return cls.wrap(hf_tokenizer, config["silence_token"], config["end_token"], config.get("empty_prefix", "none"))

    @property
    def silence_token(self) -> str:
        return self.hf.convert_ids_to_tokens(self.silence_id)

    @property
    def end_token(self) -> str:
        return self.hf.convert_ids_to_tokens(self.end_id)

    @property
    def special_ids(self) -> set[int]:
        ids = set(self.hf.all_special_ids) | {self.silence_id, self.end_id}
        ids |= {i for i, t in self.hf.added_tokens_decoder.items() if t.special}
        return ids

    def encode_text(self, text: str) -> list[int]:
        """Plain text to ids with special-token parsing off."""
        if not text:
            return []
        ids = self.hf(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        leaked = set(ids) & self.special_ids
        if leaked:  # a tokenizer whose normal vocabulary can spell a control token
            raise ValueError(f"text tokenised into control token ids {sorted(leaked)}: {text[:60]!r}")
        return list(ids)

    def encode_message(self, text: str) -> list[int]:
        """A message on a stream: its text tokens, then the end-of-message token."""
        return self.encode_text(text) + [self.end_id]

    def message_rows(self, text: str) -> int:
        return len(self.encode_message(text))

    def encode_prefix(self, text: str) -> list[int]:
        """The session prefix: the system prompt in the base model's chat template if it has one.

        The template's markers are control tokens; the prompt text itself is plain text.
        """
        template = getattr(self.hf, "chat_template", None)
        if not text:
            return list(self._template_default_prefix) if template and self.empty_prefix == "template" else []
        if not template:
            return self.encode_text(text)
        before, sep, after = self._render([{"role": "system", "content": _SENTINEL}]).partition(_SENTINEL)
        if not sep:  # a template that drops or rewrites the system message
            return self.encode_text(text)
        return self._markup(before) + self.encode_text(text) + self._markup(after)

    def _render(self, messages: list[dict]) -> str:
        return self.hf.apply_chat_template(messages, tokenize=False)

    def _markup(self, text: str) -> list[int]:
        """Template text, its markers parsed as the control tokens they are."""
        return self.hf(text, add_special_tokens=False)["input_ids"] if text else []

    @cached_property
    def _template_default_prefix(self) -> tuple[int, ...]:
        """What the chat template puts before the first user turn of a chat with no system message.

        Some templates add a default system message there (SmolLM2's does), so a single-stream model with no system
        prompt never reads the user's first word at position 0; a session with no prefix gets the same. Without it the
        question's first token is the sequence's first token, which a pretrained model reads poorly (the shipped v8
        miscopied "1456 pupils ..." as ``4456 / 28``). Empty where the template adds nothing.
        """
        system, user = {"role": "system", "content": _SENTINEL}, {"role": "user", "content": _MESSAGE.format(0)}
        alone = self._render([user]).partition(user["content"])[0]  # [default system block] + user header
        block = self._render([system])
        header = self._render([system, user]).partition(user["content"])[0]
        if not header.startswith(block) or not alone.endswith(header[len(block):]):
            return ()
        return tuple(self._markup(alone[: len(alone) - len(header) + len(block)]))

    def decode(self, ids: list[int]) -> str:
        """Text of a stream's tokens, silence and end-of-message tokens dropped."""
        keep = [i for i in ids if i not in (self.silence_id, self.end_id)]
        return self.hf.decode(keep, skip_special_tokens=False)

    def __len__(self) -> int:
        return len(self.hf)


def chat_ids(hf_tokenizer, messages: list[dict], add_generation_prompt: bool = False) -> tuple[list[int], list[bool]]:
    """Token ids of a chat in the tokenizer's template, and which ids are assistant output (content + end of turn).

    Message contents are tokenised with special-token parsing off (a document that spells
    ``<|im_end|>`` stays text); only the template's own markup becomes control tokens.
    """
    marked = [{"role": m["role"], "content": _MESSAGE.format(i)} for i, m in enumerate(messages)]
    text = hf_tokenizer.apply_chat_template(marked, tokenize=False, add_generation_prompt=add_generation_prompt)
    ids: list[int] = []
    is_out: list[bool] = []
    pending_end = False
    for i, m in enumerate(messages):
        before, sep, text = text.partition(_MESSAGE.format(i))
        if not sep:
            raise ValueError(f"the chat template drops message {i} ({m['role']})")
        markup = hf_tokenizer(before, add_special_tokens=False)["input_ids"] if before else []
        if pending_end and markup:  # the assistant turn's end-of-turn token is output too
            ids.append(markup[0])
            is_out.append(True)
            markup = markup[1:]
        ids += markup
        is_out += [False] * len(markup)
        content = hf_tokenizer(m["content"], add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids += content
        is_out += [m["role"] == "assistant"] * len(content)
        pending_end = m["role"] == "assistant"
    tail = hf_tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
    if pending_end and tail:
        ids.append(tail[0])
        is_out.append(True)
        tail = tail[1:]
    ids += tail
    is_out += [False] * len(tail)
    return ids, is_out


@dataclass
class MessageText:
    """A message's tokens and text as they arrive, one token at a time.

    Each token decodes only a short window (the tokens since the last complete piece of text), so the cost per
    token stays flat on long messages (re-decoding the whole message per token was quadratic); the pieces add up
    to ``decode`` of the whole message. A token that ends inside a multi-byte character gives an empty piece until
    the character is complete."""

    ids: list[int] = field(default_factory=list)
    text: str = ""
    """The text of the complete pieces so far."""
    _start: int = 0
    """Where the decode window starts: the last piece's first token, so the next piece is decoded in context."""
    _done: int = 0
    """Tokens already turned into text."""

    def push(self, token: int, tok: StreamTokenizer) -> str:
        """Add a token; returns the new text it completes (often one word piece, sometimes empty)."""
        self.ids.append(token)
        before = tok.decode(self.ids[self._start : self._done])
        now = tok.decode(self.ids[self._start :])
        if len(now) <= len(before) or now.endswith("\ufffd"):
            return ""
        piece = now[len(before) :]
        self._start, self._done = self._done, len(self.ids)
        self.text += piece
        return piece

    def __bool__(self) -> bool:
        return bool(self.ids)

    def __len__(self) -> int:
        return len(self.ids)
