"""Evaluations: the multi-stream model against its single-stream twin on the same cases.

- :mod:`.prompts`: accuracy on questions with known answers;
- :mod:`.injection`: attack success rate of instructions injected into untrusted data, and
  how often the ``think`` stream flags them;
- :mod:`.interrupts`: corrections that arrive while the answer is being written;
- :mod:`.latency`: the engine's latency benchmark on the accuracy cases;
- :mod:`.skills`: the held-out report per synthetic skill (multi-stream model, twin and base
  model on the test split of the training skills);
- :mod:`.chats`: held-out conversations of several turns, one engine session each against the
  twin's growing chat: accuracy by turn, all turns right, follow-ups;
- :mod:`.plots` and :mod:`.report`: figures and the full report.

Case files are JSONL (:mod:`.cases`); built-in suites ship in ``suites/`` (``free`` and
``free_corrections``: written by hand in everyday words, unlike any training template). Scoring is in
:mod:`.scoring`, as pure functions.
"""
