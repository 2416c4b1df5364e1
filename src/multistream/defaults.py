"""Defaults that more than one module uses, defined once.

The dataclasses (``EngineConfig``, ``ServerLimits``, ``Contenders``), the command line's options
and the functions' keyword defaults refer to these names instead of repeating the numbers. This
module imports nothing, so that any layer may read it.
"""

SPEAK_RULE = "likely"
"""How greedy output streams choose between silence and speech (``EngineConfig.speak_rule``): ``likely`` speaks when
all spoken tokens together outweigh silence; the other rule, ``argmax``, only when one spoken token alone does."""

INPUT_WAIT_S = 0.5
"""Seconds a silent session waits for the next token of an input message it is part-way through before it runs a row
without it (``EngineConfig.input_wait``, ``--input-wait``)."""

SPECULATIVE_ROWS = 16
"""Rows fed at once while reading input, assuming silent outputs, where the command line, the server, the evaluations
and the demo run the engine (``--speculative``; ``EngineConfig.speculative`` itself defaults to 0, off)."""

MAX_ROWS = 4096
"""Rows per session (the engine's and the server's limit) and per timeline (``timeline.validate``)."""

MAX_SESSIONS = 32
"""Sessions open at once (the engine's and the server's limit)."""

EVAL_MAX_TOKENS = 144
"""The evaluations' token budget of one reply, the same for both contenders: every output stream of the multi-stream
model together; the twin's reply, thinking and tags included (``Contenders.max_tokens``, ``--max-tokens``)."""

ARRIVAL_RATE = 10.0
"""Tokens/s at which input arrives where an evaluation, a benchmark or the demo streams it in (``--rate``)."""

SYSTEM_PROMPT = "You are a helpful assistant."
"""A session's system prompt where none is given (``chat --prefix``, ``plot timeline --prefix``, an evaluation case's
``system``)."""
