"""Every skill the data builders know: the v6 skills (:mod:`.skills`), the same situations in everyday wording
(:mod:`.wording`), composed word problems and unit conversions (:mod:`.problems`) and whole conversations
(:mod:`.conversations`)."""

from __future__ import annotations

from collections.abc import Callable

from . import conversations, problems, skills, wording

WORDING_SKILLS = tuple(wording.PLACERS) + tuple(problems.PLACERS)
ALL_SKILLS = skills.SKILLS + WORDING_SKILLS + ("conversation",)
GENERATORS = {
    **skills.GENERATORS,
    **{name: skills.single(place) for name, place in {**wording.PLACERS, **problems.PLACERS}.items()},
    "conversation": conversations.conversation,
}


def generate(skill: str, n: int, split: str, seed: int, length_of: Callable[[str], int],
             injected_share: float = skills.INJECTED_SHARE) -> list[skills.Example]:
    """``n`` examples of any skill of :data:`ALL_SKILLS` (see :func:`.skills.generate`)."""
    return skills.generate(skill, n, split, seed, length_of, injected_share, generators=GENERATORS)


def held_out_template_ids() -> set[str]:
    """Every template id that only the test split uses, over all skills."""
    from .everyday import everyday_items

    ids = skills.held_out_template_ids() | conversations.held_out_template_ids() | problems.held_out_template_ids()
    ids |= {f"wordproblem:{i}" for i in skills.held_out_templates(len(wording.WORD_PROBLEMS))}
    ids |= {f"prose:{i}" for i in skills.held_out_templates(len(wording.PROSE_QUESTIONS))}
    ids |= {f"everyday:{it.family}:{it.phrasing}" for it in everyday_items() if it.phrasing_held_out}
    return ids
