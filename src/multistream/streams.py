"""Stream layouts: the ordered, named streams a multi-stream model reads and writes.

A layout is plain data. It is saved with every model (``layout`` in
``multistream_config.json``) and checked when a model or a timeline is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

Kind = Literal["input", "output"]
Trust = Literal["trusted", "untrusted"]

ROLES: dict[str, Kind] = {"user": "input", "tool": "input", "think": "output", "answer": "output", "call": "output"}
"""What the toolkit uses a stream for, and the kind such a stream must be: ``user`` takes the person's
messages, ``tool`` tool results and documents, ``answer`` is the reply a person reads, ``think`` private
notes, ``call`` tool calls. A stream takes a role explicitly (``role``) or by its name."""


class LayoutError(ValueError):
    """A layout (or a reference to a stream in it) is invalid."""


@dataclass(frozen=True)
class Stream:
    name: str
    """Identifier used in timelines, the engine and the wire protocol."""
    kind: Kind
    """``input`` streams are fed from outside; ``output`` streams are sampled."""
    trust: Trust = "trusted"
    """``untrusted`` marks text the model must not take instructions from (tool results, documents)."""
    role: str | None = None
    """One of ``ROLES``; None: the stream takes the role it is named after, if any."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise LayoutError(f"stream name {self.name!r} must be a non-empty identifier")
        if self.kind not in ("input", "output"):
            raise LayoutError(f"stream {self.name!r}: kind must be 'input' or 'output', got {self.kind!r}")
        if self.trust not in ("trusted", "untrusted"):
            raise LayoutError(f"stream {self.name!r}: trust must be 'trusted' or 'untrusted', got {self.trust!r}")
        if self.role is not None:
            if self.role not in ROLES:
                raise LayoutError(f"stream {self.name!r}: unknown role {self.role!r}; roles are {', '.join(ROLES)}")
            if ROLES[self.role] != self.kind:
                raise LayoutError(f"stream {self.name!r}: role {self.role!r} needs an {ROLES[self.role]} stream")


@dataclass(frozen=True)
class Layout:
    streams: tuple[Stream, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "streams", tuple(self.streams))
        if not self.streams:
            raise LayoutError("a layout needs at least one stream")
        names = [s.name for s in self.streams]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise LayoutError(f"duplicate stream names: {', '.join(dupes)}")
        roles: dict[str, str] = {}
        for s in self.streams:
            if s.role is not None:
                if s.role in roles:
                    raise LayoutError(f"role {s.role!r} is taken by both {roles[s.role]!r} and {s.name!r}")
                roles[s.role] = s.name
        for s in self.streams:  # by name: a stream named like a free role, of the role's kind, without a role of its own
            if s.role is None and s.name in ROLES and s.name not in roles and ROLES[s.name] == s.kind:
                roles[s.name] = s.name
        object.__setattr__(self, "roles", roles)

    # -- lookups ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.streams)

    def __iter__(self):
        return iter(self.streams)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.streams]

    def index(self, name: str) -> int:
        for i, s in enumerate(self.streams):
            if s.name == name:
                return i
        raise LayoutError(f"unknown stream {name!r}; the layout has: {', '.join(self.names)}")

    def __getitem__(self, name: str) -> Stream:
        return self.streams[self.index(name)]

    def __contains__(self, name: object) -> bool:
        return name in self.names

    @property
    def inputs(self) -> list[Stream]:
        return [s for s in self.streams if s.kind == "input"]

    @property
    def outputs(self) -> list[Stream]:
        return [s for s in self.streams if s.kind == "output"]

    @property
    def output_mask(self) -> list[bool]:
        return [s.kind == "output" for s in self.streams]

    def role(self, role: str) -> str:
        """The name of the stream that plays ``role`` (see ``ROLES``)."""
        if role not in ROLES:
            raise LayoutError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        if role not in self.roles:
            raise LayoutError(f"no stream of this layout ({', '.join(self.names)}) plays the role {role!r}: "
                              f"name an {ROLES[role]} stream {role!r} or give one role={role!r}")
        return self.roles[role]

    def role_of(self, name: str) -> str | None:
        """The role stream ``name`` plays (None: none)."""
        return next((role for role, stream in self.roles.items() if stream == name), None)

    @property
    def prefix_stream(self) -> str:
        """The stream whose embedding the prefix (system prompt) gets: ``system`` or the first input."""
        if "system" in self:
            return "system"
        return self.inputs[0].name if self.inputs else self.streams[0].name

    # -- (de)serialisation -----------------------------------------------------
    def to_list(self) -> list[dict]:
        return [{k: v for k, v in asdict(s).items() if k != "role" or v is not None} for s in self.streams]

    @classmethod
    def from_list(cls, items: Iterable[dict]) -> Layout:
        streams = []
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise LayoutError(f"layout entry {i} must be an object with name/kind/trust/role")
            unknown = set(item) - {"name", "kind", "trust", "role"}
            if unknown:
                raise LayoutError(f"layout entry {i}: unknown field(s) {sorted(unknown)}")
            if "name" not in item or "kind" not in item:
                raise LayoutError(f"layout entry {i}: 'name' and 'kind' are required")
            streams.append(Stream(item["name"], item["kind"], item.get("trust", "trusted"), item.get("role")))
        return cls(tuple(streams))

    @classmethod
    def parse(cls, spec: str) -> Layout:
        """Parse ``name:kind[:trust[:role]],...`` (e.g. ``user:input,answer:output``)."""
        streams = []
        for part in spec.split(","):
            bits = part.strip().split(":")
            if len(bits) not in (2, 3, 4):
                raise LayoutError(f"bad stream spec {part!r}: use name:kind[:trust[:role]]")
            streams.append(Stream(*bits))
        return cls(tuple(streams))


DEFAULT_LAYOUT = Layout(
    (
        Stream("system", "input", "trusted"),
        Stream("user", "input", "trusted"),
        Stream("tool", "input", "untrusted"),
        Stream("think", "output", "trusted"),
        Stream("answer", "output", "trusted"),
        Stream("call", "output", "trusted"),
    )
)
