"""Monte Carlo CFR (Lanctot et al., NeurIPS 2009, "Monte Carlo Sampling for Regret
Minimization in Extensive Games"), OpenSpiel's C++ solvers as Learners.

- `es_mccfr`: external sampling, `pyspiel.ExternalSamplingMCCFRSolver` with SIMPLE averaging
  (the opponent's current strategy is added to the average at the nodes it samples; ~128x
  faster than FULL on Leduc). One iteration walks the tree once per player, sampling chance
  and the opponents' actions and expanding all of the traverser's.
- `os_mccfr`: outcome sampling, `pyspiel.OutcomeSamplingMCCFRSolver` (exploration epsilon
  0.6, OpenSpiel's default). One iteration samples one episode per player: the traverser
  plays its epsilon-on-policy mixture, regrets are importance-weighted by 1 / (sample
  reach); the average policy is updated along the sampled episode.
"""

from __future__ import annotations

import dataclasses

import pyspiel
import torch
from open_spiel.python import policy as os_policy

from armac_spiel import evaluation
from armac_spiel.baselines.base import Baseline, BaselineParams, derive_seed

AVERAGE_TYPES = {"simple": pyspiel.MCCFRAverageType.SIMPLE,
                 "full": pyspiel.MCCFRAverageType.FULL}


@dataclasses.dataclass(frozen=True)
class ESMCCFRParams(BaselineParams):
  iterations_per_step: int = 100
  average_type: str = "simple"   # "simple" or "full"

  def validate(self) -> None:
    super().validate()
    self.need(self.average_type in AVERAGE_TYPES, "average_type",
              f"one of {sorted(AVERAGE_TYPES)}")


@dataclasses.dataclass(frozen=True)
class OSMCCFRParams(BaselineParams):
  iterations_per_step: int = 1000
  epsilon: float = 0.6               # exploration of the traverser's sampling policy

  def validate(self) -> None:
    super().validate()
    self.need(0.0 < self.epsilon <= 1.0, "epsilon", "in (0, 1]")


class MCCFR(Baseline):
  """A pyspiel MCCFR solver (its own C++ generator, seeded from `seed`), `iterations_per_step`
  iterations per step; checkpointed as the solver's own serialisation string."""

  solver_cls = None  # a pyspiel MCCFR solver class

  def _step(self) -> dict:
    n = self.hp.iterations_per_step
    for _ in range(n):
      self._solver.run_iteration()
    self.iterations += n
    self.episodes += n * self.sgame.num_players
    return {}

  def average_table(self) -> torch.Tensor:
    return evaluation.tabularise(self.game_string, self._solver.average_policy())

  def solver_policy(self) -> "SolverPolicy":
    """The solver's average policy, queried per state (uniform where the solver has not
    been): it needs no enumeration of the game."""
    return SolverPolicy(self)

  def state_dict(self) -> dict:
    # The solver's own text serialisation (game, generator state and every information
    # state's regrets and averages) round-trips exactly; a string keeps the checkpoint
    # plain data.
    return {**self._counters(), "solver": self._solver.__getstate__()}

  def load_state_dict(self, state: dict) -> None:
    if not isinstance(state["solver"], str):
      raise ValueError(f"{self.name} checkpoint: 'solver' must be the solver's serialisation "
                       f"string, got {type(state['solver']).__name__} (a checkpoint from an "
                       "older armac-spiel version: train again)")
    solver = self.solver_cls.__new__(self.solver_cls)
    solver.__setstate__(state["solver"])  # parses the text
    self._solver = solver
    self._load_counters(state)


class SolverPolicy(os_policy.Policy):
  """A pyspiel solver's average policy as an OpenSpiel policy. The pyspiel policy points
  into the solver, so this keeps the learner that owns the solver alive."""

  def __init__(self, learner: MCCFR):
    super().__init__(learner.sgame.game, list(range(learner.sgame.num_players)))
    self._learner = learner
    self._policy = learner._solver.average_policy()  # pylint: disable=protected-access

  def action_probabilities(self, state, player_id=None):
    del player_id
    return self._policy.action_probabilities(state)


class ESMCCFR(MCCFR):
  """pyspiel.ExternalSamplingMCCFRSolver."""

  name = "es_mccfr"
  episode_unit = "sampled traversals (num_players per iteration)"
  params_cls = ESMCCFRParams
  solver_cls = pyspiel.ExternalSamplingMCCFRSolver

  def __init__(self, game_string, seed, device="cpu", **hparams):
    super().__init__(game_string, seed, device, **hparams)
    self._solver = pyspiel.ExternalSamplingMCCFRSolver(
        self.sgame.game, derive_seed(self.seed, 1), AVERAGE_TYPES[self.hp.average_type])


class OSMCCFR(MCCFR):
  """pyspiel.OutcomeSamplingMCCFRSolver (Lanctot et al. 2009): one sampled episode per
  player per iteration, epsilon-exploring the traverser's actions."""

  name = "os_mccfr"
  episode_unit = "sampled episodes (num_players per iteration)"
  params_cls = OSMCCFRParams
  solver_cls = pyspiel.OutcomeSamplingMCCFRSolver

  def __init__(self, game_string, seed, device="cpu", **hparams):
    super().__init__(game_string, seed, device, **hparams)
    self._solver = pyspiel.OutcomeSamplingMCCFRSolver(
        self.sgame.game, self.hp.epsilon, derive_seed(self.seed, 1))
