"""The scheduler's update strategies (utility_computation.strategy), one class each.

Each is an `UpdateStrategy`: `update(learner, traj, learner_ids)` makes one scheduler update
from the epoch's parts: bin utilities at some states, fed to the manager, whose average the
network then distils (SchedulerTrainer.step).
- best_response (`BestResponseUpdate`, compiled tree): pi_rm and pibar are tabulated over
  every information state; the manager's current sigma gives lambda(s) = sigma . bins; the
  exact best response to pi_mix and p's counterfactual values against it give the bin
  utilities at every state at once (scheduler.utilities.best_response_utilities); each
  state's own reach under pi_mix weighs it in the manager's average; cfr_br_iterations such
  iterations per update, all against the epoch's parts;
- br_critic (`BRCriticUpdate`): the same from a best-response critic on sampled episodes
  (BRCritic);
- advantage_based / immediate / hybrid (`SampledUpdate`): the sampled utilities at the
  learner's visited states (reach weight 1).
`resolve_strategy` decides the suite's auto fields for the game (best_response on the compiled tree,
br_critic beyond it), `make_strategy` builds the suite's strategy once; `check_strategy` says
beforehand whether it can run.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Protocol

import torch
from absl import logging

from armac_spiel.config import ConfigError
from armac_spiel.scheduler.br_critic import BRCritic
from armac_spiel.scheduler.config import AUTO, SchedulerSuiteConfig
from armac_spiel.scheduler.lambdas import LambdaSource, tabulate
from armac_spiel.scheduler.utilities import bin_utilities, exact_parts, exact_utilities
from games import SpielGame
from games.tree import compile_tree, tree_fits

SAMPLED = ("advantage_based", "immediate", "hybrid")
USES_VALUES = ("advantage_based", "hybrid")     # utilities from the critic's Q
USES_RETURNS = ("immediate", "hybrid")          # utilities from the sampled bin's return


class Update(NamedTuple):
  """What one update gives back."""
  stats: dict                  # SchedulerTrainer.stats(), {} when no state was seen
  notes: dict | None = None    # the update's measures by name (scheduler.<name>); None: no
                               # update was made and the previous ones stand
  iterates: list | None = None  # exact updates: [(NashConv, (S, 1) lambda)] per iterate
  parts: tuple | None = None    # exact updates: the (pi_rm, pibar) tables they were on


class UpdateStrategy(Protocol):
  """One scheduler update per call (the module docstring); state for an exact resume."""

  def update(self, learner, traj, learner_ids: torch.Tensor) -> Update: ...

  def state_dict(self) -> dict | None: ...

  def load_state_dict(self, d: dict | None) -> None: ...


def resolve_strategy(suite: SchedulerSuiteConfig, sgame: SpielGame,
                     game_string: str) -> SchedulerSuiteConfig:
  """The suite with its `auto` fields decided for the game, each choice logged:
  utility_computation.strategy best_response where the compiled tree holds a two-player
  zero-sum game, else br_critic (model-free); state_keying.level 3 (a key per information
  state) where the tree holds the game, else 2 (clusters of the information-state tensors:
  the information states of a larger game cannot be enumerated). Any other value stays as
  it is (check_strategy says whether it can run)."""
  uc, sk = suite.utility_computation, suite.state_keying
  if AUTO not in (uc.kind, sk.level):
    return suite
  fits = tree_fits(game_string)
  if uc.kind == AUTO:
    exact = sgame.is_two_player_zero_sum and fits
    if not exact:
      logging.info("scheduler: utility_computation.strategy auto -> br_critic: %s is %s, "
                   "so the exact best-response update cannot run; the utilities come from "
                   "a best-response critic on sampled episodes", game_string,
                   "not two-player zero-sum" if not sgame.is_two_player_zero_sum
                   else "beyond the compiled tree")
    uc = dataclasses.replace(uc, strategy="best_response" if exact else "br_critic")
  if sk.level == AUTO:
    if not fits:
      logging.info("scheduler: state_keying.level auto -> 2: the information states of %s "
                   "cannot be enumerated (beyond the compiled tree); the keys are %d "
                   "clusters of the information-state tensors", game_string, sk.n_clusters)
    sk = dataclasses.replace(sk, level=3 if fits else 2)
  return dataclasses.replace(suite, utility_computation=uc, state_keying=sk)


def check_strategy(suite: SchedulerSuiteConfig, sgame: SpielGame, game_string: str) -> None:
  """Raises ConfigError when utility_computation.strategy cannot run with this suite and
  game: immediate and hybrid score the bins that behaviour sampled, best_response needs a
  two-player zero-sum game on the compiled tree."""
  kind = suite.utility_computation.kind
  if kind in USES_RETURNS and not suite.policy_mixer.behaviour:
    raise ConfigError(f"utility_computation.strategy={kind} scores the bins the "
                      "episodes were sampled with: set policy_mixer.behaviour: true")
  if kind == "best_response":
    if not sgame.is_two_player_zero_sum:
      raise ConfigError(f"utility_computation.strategy=best_response needs a two-player "
                        f"zero-sum game, not {game_string}")
    if not tree_fits(game_string):
      raise ConfigError(f"utility_computation.strategy=best_response needs the compiled "
                        f"tree, and {game_string} is too big for it; use "
                        "utility_computation.strategy: br_critic (model-free)")


class BestResponseUpdate:
  """utility_computation.cfr_br_iterations CFR-BR iterations against the epoch's parts: each
  computes the exact best response to the current iterate's pi_mix (whose NashConv comes
  with it, for the deployment choice) and updates the manager."""

  def __init__(self, suite: SchedulerSuiteConfig, lambdas: LambdaSource):
    self.iterations = suite.utility_computation.cfr_br_iterations
    self.lambdas = lambdas
    self.tree = compile_tree(lambdas.game_string)

  def update(self, learner, traj, learner_ids: torch.Tensor) -> Update:
    t, lambdas = self.tree, self.lambdas
    x = t.info_tensors.to(learner.device)
    # The parts are tabulated and prepared once; the tree's information states are the
    # table's rows, in its order.
    parts = exact_parts(t.info_legal, *tabulate(learner, x, t.info_legal.to(learner.device)))
    keys = lambdas.keys_of(x, torch.arange(t.num_infostates), update=True).cpu()
    iterates = []
    for _ in range(self.iterations):
      lam, _ = lambdas.manager_lambda(keys, average=False)  # the current CFR-BR iterate
      util, res = exact_utilities(t, parts, lam, lambdas.bins)
      iterates.append((float(res.br_values.sum()), lam))
      stats = lambdas.trainer.step(x, keys=keys, utilities=util, iteration=learner.epoch,
                                   reach=res.own_reach, smooth=False)
    return Update(stats, {"br_exploitability_current_iterate": iterates[-1][0] / 2},
                  iterates, (parts.rm, parts.avg))

  def state_dict(self) -> None:
    return None

  def load_state_dict(self, d: None) -> None:
    pass


class BRCriticUpdate:
  """One update of a best-response critic against pi_mix under the manager's current sigma;
  its Q-values at the mixer's sampled states give the bin utilities (one row per key: the
  mean Q-based utility times the summed counterfactual reach estimate)."""

  def __init__(self, suite: SchedulerSuiteConfig, lambdas: LambdaSource, seed: int = 0,
               device="cpu"):
    self.lambdas = lambdas
    self.critic = BRCritic(suite.utility_computation, lambdas.game_string, seed,
                           torch.device(device))

  def update(self, learner, traj, learner_ids: torch.Tensor) -> Update:
    lambdas = self.lambdas
    d = self.critic.update(lambdas.mix_fn(learner, "current"))
    if d["info"].shape[0] == 0:
      return Update({})
    x, mask = d["info"].to(learner.device), d["legal"].to(learner.device)
    rows = None
    if lambdas.level != 2:
      rows = lambdas.table_rows(d["node"], d["info"])
    keys = lambdas.keys_of(x, rows, update=True).cpu()
    pi_rm, pi_avg = tabulate(learner, x, mask)
    util = bin_utilities(d["q"].double(), pi_rm.double(), pi_avg.double(), mask, lambdas.bins)
    # One utility row per key (the manager averages duplicate keys, so rows merge here).
    uniq, inv = torch.unique(keys, return_inverse=True)
    n = len(uniq)
    cnt = torch.bincount(inv, minlength=n).double()
    u_mean = torch.zeros(n, util.shape[1], dtype=torch.float64).index_add_(
        0, inv, util.cpu()) / cnt[:, None]
    cf = torch.zeros(n, dtype=torch.float64).index_add_(0, inv, d["cf_weight"])
    first = torch.zeros(n, dtype=torch.long).scatter_reduce(
        0, inv, torch.arange(len(inv)), "amin", include_self=False)
    reach = torch.zeros(n, dtype=torch.float64).scatter_reduce(
        0, inv, d["reach"], "amax", include_self=False)
    notes = {"br_critic_loss": self.critic.last_loss}
    stats = lambdas.trainer.step(x[first.to(x.device)], keys=uniq,
                                 utilities=(cf[:, None] * u_mean).float(),
                                 iteration=learner.epoch, reach=reach, smooth=False)
    return Update(stats, notes)

  def state_dict(self) -> dict:
    return self.critic.state_dict()

  def load_state_dict(self, d: dict) -> None:
    self.critic.load_state_dict(d)


class SampledBins:
  """The bin that each behaviour step sampled (discrete), for the immediate and hybrid
  utilities: step -> (episodes (R,), bins (R,), bin probabilities (R, K))."""

  def __init__(self, n_bins: int):
    self.n_bins = n_bins
    self._chosen: dict[int, tuple] = {}

  def record(self, step: int, episode: torch.Tensor, idx: torch.Tensor,
             probs: torch.Tensor) -> None:
    self._chosen[step] = (episode, idx, probs)

  def clear(self) -> None:
    self._chosen.clear()

  def table(self, traj) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) bin each step was sampled with (-1 where none) and (B, T, K) bin probs."""
    b, t = traj.action.shape
    out = torch.full((b, t), -1, dtype=torch.long)
    probs = torch.full((b, t, self.n_bins), 1.0 / self.n_bins)
    for step, (ep, idx, p) in self._chosen.items():
      if step < t:
        out[ep, step] = idx
        probs[ep, step] = p
    return out, probs


class SampledUpdate:
  """advantage_based / immediate / hybrid: the sampled utilities at the learner's visited
  states (reach weight 1); advantage_based and hybrid feed the manager a window of batches."""

  def __init__(self, suite: SchedulerSuiteConfig, lambdas: LambdaSource, bins: SampledBins):
    self.kind = suite.utility_computation.kind
    self.gamma = suite.utility_computation.gamma
    self.lambdas = lambdas
    self.bins = bins

  def update(self, learner, traj, learner_ids: torch.Tensor) -> Update:
    lambdas, trainer = self.lambdas, self.lambdas.trainer
    dev = learner.device
    sel = traj.valid & (traj.player == learner_ids.unsqueeze(1))
    if not bool(sel.any()):
      return Update({})
    x = traj.info_state[sel].to(dev)
    mask = traj.legal_mask[sel].to(dev)
    rows = None if lambdas.level == 2 else lambdas.table_rows(
        None if traj.node is None else traj.node[sel], traj.info_state[sel])
    keys = lambdas.keys_of(x, rows, update=True).cpu()
    inputs = {}
    with torch.no_grad():
      if self.kind in USES_VALUES:
        pi_rm, pi_avg = tabulate(learner, x, mask)
        lam = lambdas.net_lambda(x)
        player = traj.player[sel].to(dev)
        q = learner.player_values(learner.critic(learner.critic_inputs(traj)[sel].to(dev)),
                                  player)
        inputs.update(q=q, pi_rm=pi_rm, pi_avg=pi_avg, legal_mask=mask, lam=lam)
      if self.kind in USES_RETURNS:
        chosen, bin_probs = self.bins.table(traj)
        b_idx, t_idx = sel.nonzero(as_tuple=True)
        ret = traj.returns[b_idx, traj.player[sel]]
        steps_left = (traj.length[b_idx] - 1 - t_idx).float()
        inputs.update(chosen_idx=chosen[sel].clamp_min(0).to(dev),
                      returns=(ret * self.gamma ** steps_left).to(dev),
                      bin_probs=bin_probs[sel].to(dev))
    util = trainer.utility.compute(lambdas.bins, **inputs)
    upd_keys, upd_util = keys, util
    if self.kind in USES_VALUES:
      upd_keys, upd_util = trainer.utility.windowed(keys, util)
    stats = trainer.step(x, keys=keys, utilities=upd_util, iteration=learner.epoch,
                         reach=torch.ones(len(keys), dtype=torch.float64), smooth=True,
                         update_keys=upd_keys)
    return Update(stats, {})

  def state_dict(self) -> None:
    return None

  def load_state_dict(self, d: None) -> None:
    pass


def make_strategy(suite: SchedulerSuiteConfig, lambdas: LambdaSource, bins: SampledBins,
                  seed: int = 0, device="cpu") -> UpdateStrategy:
  """The suite's update strategy (utility_computation.strategy, or its utility_type)."""
  kind = suite.utility_computation.kind
  if kind == "best_response":
    return BestResponseUpdate(suite, lambdas)
  if kind == "br_critic":
    return BRCriticUpdate(suite, lambdas, seed, device)
  if kind in SAMPLED:
    return SampledUpdate(suite, lambdas, bins)
  raise ConfigError(f"utility_computation.strategy={kind!r}: must be one of best_response, "
                    f"br_critic, {', '.join(SAMPLED)}")
