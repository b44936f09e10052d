"""The `Baseline` interface (an OpenSpiel algorithm as a Learner) and `BaselineParams`."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from armac_spiel import evaluation
from armac_spiel.params import Params
from games import load_game


def derive_seed(*parts: int) -> int:
  """A 31-bit seed from integers (independent streams per (seed, purpose, index))."""
  return int(np.random.SeedSequence([int(p) % 2**63 for p in parts]).generate_state(1)[0]
             % 2**31)


def masked_normalise(probs: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
  """Rows restricted to legal actions and renormalised (uniform where nothing is left)."""
  probs = probs.double().clamp_min(0) * legal
  total = probs.sum(1, keepdim=True)
  uniform = legal.double() / legal.sum(1, keepdim=True)
  return torch.where(total > 0, probs / total.clamp_min(1e-300), uniform)


@dataclasses.dataclass(frozen=True)
class BaselineParams(Params):
  """Hyper-parameters of a baseline (frozen; resolved values are written to config.json).
  Integer hyper-parameters must be >= 1."""

  def validate(self) -> None:
    for f in dataclasses.fields(self):
      v = getattr(self, f.name)
      if isinstance(v, int) and not isinstance(v, bool):
        self.need(v >= 1, f.name, "an integer >= 1")


class Baseline:
  """An OpenSpiel algorithm as a `Learner` (armac_spiel.learner): `step()`,
  `average_table()`, `state_dict()` / `load_state_dict()`, counters `steps`, `iterations`
  and `episodes` (unit: `episode_unit`)."""

  name = ""
  episode_unit = ""
  params_cls = BaselineParams

  def __init__(self, game_string: str, seed: int, device: str = "cpu", **hparams):
    self.game_string = game_string
    self.sgame = load_game(game_string)
    self.seed = int(seed)
    self.device = device
    self.hp = self.params_cls.from_dict(hparams, where=f"{self.name} hyper-parameters")
    self.steps = 0
    self.episodes = 0
    self.iterations = 0
    self.eval_extras: dict = {}   # filled by average_table (e.g. the strategy-net loss)

  @property
  def hparams(self) -> dict:
    return self.hp.to_dict()

  def step(self) -> dict:
    """One step of training (counted in `steps`); returns its losses."""
    out = self._step()
    self.steps += 1
    return out

  def _step(self) -> dict:
    raise NotImplementedError

  def counters(self) -> dict:
    return {"algo": self.name, "game": self.game_string, "seed": self.seed,
            "step": self.steps, "iterations": self.iterations, "episodes": self.episodes}

  def evaluation_extras(self) -> dict:
    return dict(self.eval_extras)

  def average_policy(self):
    """The average policy as an OpenSpiel `policy.TabularPolicy`."""
    return evaluation.to_openspiel_tabular(self.game_string, self.average_table())

  def average_table(self) -> torch.Tensor:
    raise NotImplementedError

  def state_dict(self) -> dict:
    raise NotImplementedError(f"{self.name} has no checkpoint support")

  def load_state_dict(self, state: dict) -> None:
    raise NotImplementedError(f"{self.name} has no checkpoint support")

  def _counters(self) -> dict:
    return {"steps": self.steps, "episodes": self.episodes, "iterations": self.iterations}

  def _load_counters(self, state: dict) -> None:
    self.steps = int(state["steps"])
    self.episodes, self.iterations = int(state["episodes"]), int(state["iterations"])
