"""What one client may ask of the server; each limit, when hit, gives an error that names it."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..defaults import MAX_ROWS, MAX_SESSIONS


@dataclass
class ServerLimits:
    max_message_bytes: int = 64 * 1024
    """Largest WebSocket frame (or HTTP body) the protocol reads; a larger one gets ``message_too_large``."""
    max_input_chars: int = 16_000
    """Longest text in one ``input`` message (or one chat message)."""
    max_backlog_chars: int = 64_000
    """Input text a session may have queued and not yet read by the model (the end of each message counts as one)."""
    max_sessions: int = MAX_SESSIONS
    """Sessions open at once, WebSocket and HTTP together."""
    max_rows: int = MAX_ROWS
    """Rows per session; a session that reaches it is closed with reason ``row_limit``."""
    idle_timeout_s: float = 300.0
    """A WebSocket session with no message from either side for this long is closed (``idle_timeout``)."""
    max_outbox: int = 10_000
    """Events waiting for a client that does not read; past it the session is closed (``slow_client``)."""
    completion_idle_s: float = 1.0
    """Realtime responses: an answer message left open with nothing written for this long ends where it stopped
    (what it said is the answer). Chat completions end on the session's rows instead."""
    completion_timeout_s: float = 600.0
    """Chat completions: the deadline; a completion still running then ends there (``finish_reason: length``)."""
    completion_side_tokens: int = 1024
    """Chat completions: the budget of the ``think`` and ``call`` streams when the request sets no ``max_tokens``."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value <= 0:
                raise ValueError(f"ServerLimits.{name} must be > 0, got {value}")

    def public(self) -> dict:
        """What the ``opened`` message tells a client."""
        hidden = ("max_outbox", "completion_idle_s", "completion_timeout_s", "completion_side_tokens")
        return {k: v for k, v in asdict(self).items() if k not in hidden}
