"""What an approximate evaluation may spend, and what it reports."""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import numpy as np

Z95 = 1.959963984540054


@dataclasses.dataclass(frozen=True)
class Budget:
  """Training episodes and/or seconds (both seats together; the first reached ends
  training), then evaluation episodes per seat and/or seconds (the first reached ends the
  evaluation; at least two chunks are played so that the interval exists)."""
  episodes: Optional[int] = 4_000_000
  seconds: Optional[float] = None
  eval_episodes: Optional[int] = 1_000_000
  eval_seconds: Optional[float] = None

  def __post_init__(self):
    for name, flag in (("episodes", "--budget_episodes"),
                       ("eval_episodes", "--eval_episodes")):
      v = getattr(self, name)
      if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
        raise ValueError(f"{flag}={v!r}: must be a positive number of episodes (or unset)")
    for name, flag in (("seconds", "--budget_s"), ("eval_seconds", "--eval_s")):
      v = getattr(self, name)
      if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
        raise ValueError(f"{flag}={v!r}: must be a positive number of seconds (or unset)")
    if self.episodes is None and self.seconds is None:
      raise ValueError("give a training budget: --budget_episodes and/or --budget_s")
    if self.eval_episodes is None and self.eval_seconds is None:
      raise ValueError("give an evaluation budget: --eval_episodes and/or --eval_s")

  @classmethod
  def of_seconds(cls, seconds: float, train_share: float = 0.6) -> "Budget":
    """`seconds` in all: `train_share` of it to learn, the rest to evaluate."""
    return cls(episodes=None, seconds=train_share * seconds, eval_episodes=None,
               eval_seconds=(1 - train_share) * seconds)


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A lower bound on exploitability by sampled play of a fixed responder per seat.

  exploitability = (v0 + v1 - utility_sum) / 2 (OpenSpiel's convention, NashConv / 2), v_p
  the responder's mean return in seat p; ci95 is the half-width of its 95% interval, from
  the per-episode means of the two seats (both seats replay the same uniforms)."""
  method: str
  exploitability: float
  ci95: float
  br_values: Optional[tuple[float, float]]   # None for the exact method
  br_ci95: Optional[tuple[float, float]]
  train_episodes: int
  eval_episodes: int      # per seat
  seconds: float
  train_s: float
  eval_s: float
  train_estimate: Optional[float] = None  # the learner's own (optimistic) value
  infostates: Optional[int] = None        # responder information states seen
  histories: int = 0                      # histories expanded through pyspiel

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    for k in ("br_values", "br_ci95"):
      d[k] = None if d[k] is None else list(d[k])
    return d


def half_width(x: np.ndarray) -> float:
  """95% half-width of the mean of x (normal approximation)."""
  if x.size < 2:
    return float("inf")
  return Z95 * float(x.std(ddof=1)) / math.sqrt(x.size)
