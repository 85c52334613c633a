"""Internal sampling parameters: what the scheduler needs to run one request.

Built only by :meth:`localloom.engine.protocol.ChatCompletionRequest.to_sampling_params`
(and its completion twin), so every default is defined once, in ``protocol.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SamplingParams"]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample one request (all of its ``n`` choices)."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float
    max_tokens: int | None
    stop: tuple[str, ...]
    seed: int | None
    n: int
    logprobs: bool
    top_logprobs: int
    frequency_penalty: float
    presence_penalty: float
    repetition_penalty: float
    logit_bias: tuple[tuple[int, float], ...]
    grammar: str | None
    penalty_last_n: int = 64
    prompt_lookup: bool = False  # may guess ahead from the prompt (rewrite, summarize)
    deterministic: bool | None = None  # None: Settings.deterministic decides

    @property
    def greedy(self) -> bool:
        """Temperature 0 picks the most likely token every time."""
        return self.temperature <= 0.0

    @property
    def has_penalties(self) -> bool:
        """Whether a penalties sampler is needed at all (it costs a pass over candidates)."""
        return (
            self.frequency_penalty != 0.0
            or self.presence_penalty != 0.0
            or self.repetition_penalty != 1.0
        )
