"""Deep CFR (Brown et al., arXiv 1811.00164), OpenSpiel's PyTorch `DeepCFRSolver`, as a
Learner driven one iteration at a time.

Per player, `num_traversals` external-sampling traversals fill the advantage memory, then the
advantage network is re-initialised and regressed on it with weight sqrt(t). The average
policy is a strategy network trained on the strategy memory (weight sqrt(t)).
"""

# OpenSpiel exposes no public per-iteration API for Deep CFR's internals.
# pylint: disable=protected-access

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
from open_spiel.python.pytorch import deep_cfr as os_deep_cfr

from armac_spiel import evaluation
from armac_spiel.baselines.base import Baseline, BaselineParams, derive_seed, masked_normalise
from armac_spiel.baselines.state import (GlobalRng, buffer_from, buffer_state, rng_from_plain,
                                         rng_plain)
from games import infostate_table


@dataclasses.dataclass(frozen=True)
class DeepCFRParams(BaselineParams):
  """Near OpenSpiel's recommended Leduc settings (examples/deep_cfr_pytorch.py)."""
  policy_network_layers: tuple[int, ...] = (128, 128)
  advantage_network_layers: tuple[int, ...] = (128, 128)
  num_traversals: int = 1500          # per player per iteration
  learning_rate: float = 1e-3
  batch_size_advantage: int = 2048
  batch_size_strategy: int = 2048
  memory_capacity: int = 1_000_000
  policy_network_train_steps: int = 5000    # per evaluation (strategy net from scratch)
  advantage_network_train_steps: int = 750  # per player per iteration
  reinitialize_advantage_networks: bool = True


class DeepCFR(Baseline):
  """OpenSpiel's DeepCFRSolver, one iteration per step (the body of its `solve()`).

  Evaluation re-initialises the solver's strategy network and trains it from scratch for
  `policy_network_train_steps` on the strategy memory, as `solve()` does once at the end
  (and as its `print_nash_convs` path does each iteration). The strategy network is not
  used by the traversals, so this does not change training; it runs in an evaluation
  generator stream seeded by (seed, iteration), and its cost counts as evaluation time.
  The strategy network's softmax covers all actions; the table keeps the legal ones,
  renormalised (OpenSpiel's `action_probabilities` returns them unnormalised).
  """

  name = "deep_cfr"
  episode_unit = "sampled traversals (num_players * num_traversals per iteration)"
  params_cls = DeepCFRParams

  def __init__(self, game_string, seed, device="cpu", **hparams):
    super().__init__(game_string, seed, device, **hparams)
    hp = self.hp
    self._rng = GlobalRng(derive_seed(self.seed, 2), cuda=str(device).startswith("cuda"))
    with self._rng.active():
      # Batch sizes must be set: with None, this OpenSpiel version trains on the whole
      # preallocated (np.empty) memory, uninitialised rows included.
      self._solver = os_deep_cfr.DeepCFRSolver(
          self.sgame.game,
          policy_network_layers=hp.policy_network_layers,
          advantage_network_layers=hp.advantage_network_layers,
          num_iterations=1,
          num_traversals=hp.num_traversals,
          learning_rate=hp.learning_rate,
          batch_size_advantage=hp.batch_size_advantage,
          batch_size_strategy=hp.batch_size_strategy,
          memory_capacity=hp.memory_capacity,
          policy_network_train_steps=hp.policy_network_train_steps,
          advantage_network_train_steps=hp.advantage_network_train_steps,
          reinitialize_advantage_networks=hp.reinitialize_advantage_networks,
          device=device,
          seed=derive_seed(self.seed, 3))
    self._cache: Optional[tuple[int, torch.Tensor, dict]] = None

  def _step(self) -> dict:
    s, hp = self._solver, self.hp
    out = {}
    with self._rng.active():
      for p in range(self.sgame.num_players):
        for _ in range(hp.num_traversals):
          s._traverse_game_tree(s._root_node, p)
        if hp.reinitialize_advantage_networks:
          s._reinitialize_advantage_network(p)
        out[f"advantage_loss_{p}"] = s._learn_advantage_network(p)
      s._iteration += 1
    self.iterations += 1
    self.episodes += hp.num_traversals * self.sgame.num_players
    return out

  def average_table(self) -> torch.Tensor:
    if self._cache is not None and self._cache[0] == self.iterations:
      self.eval_extras = dict(self._cache[2])
      return self._cache[1].clone()
    s = self._solver
    table = infostate_table(self.game_string)
    with GlobalRng(derive_seed(self.seed, 4, self.iterations)).active():
      s._reinitialize_policy_network()
      loss = s._learn_strategy_network()
      with torch.no_grad():
        probs = s._policy_network(table.tensors.to(s._device)).cpu()
    probs = evaluation.validate_table(self.game_string,
                                      masked_normalise(probs, table.legal_mask))
    self.eval_extras = {"policy_loss": loss}
    self._cache = (self.iterations, probs, dict(self.eval_extras))
    return probs.clone()

  def state_dict(self) -> dict:
    s = self._solver
    return {**self._counters(), "rng": rng_plain(self._rng.state), "solver": {
        "iteration": int(s._iteration),
        "advantage_networks": [n.state_dict() for n in s._advantage_networks],
        "advantage_optimizers": [o.state_dict() for o in s._optimizer_advantages],
        "policy_network": s._policy_network.state_dict(),
        "policy_optimizer": s._optimizer_policy.state_dict(),
        "advantage_memories": [buffer_state(m) for m in s._advantage_memories],
        "strategy_memory": buffer_state(s._strategy_memories)}}

  def load_state_dict(self, state: dict) -> None:
    s, d = self._solver, state["solver"]
    s._iteration = int(d["iteration"])
    for net, opt, net_sd, opt_sd in zip(s._advantage_networks, s._optimizer_advantages,
                                        d["advantage_networks"], d["advantage_optimizers"]):
      net.load_state_dict(net_sd)
      opt.load_state_dict(opt_sd)
    s._policy_network.load_state_dict(d["policy_network"])
    s._optimizer_policy.load_state_dict(d["policy_optimizer"])
    s._advantage_memories = [
        buffer_from(os_deep_cfr.ReservoirBuffer, os_deep_cfr.AdvantageMemory, m)
        for m in d["advantage_memories"]]
    s._strategy_memories = buffer_from(os_deep_cfr.ReservoirBuffer, os_deep_cfr.StrategyMemory,
                                        d["strategy_memory"])
    self._rng.state = rng_from_plain(state["rng"])
    self._cache = None
    self._load_counters(state)
