"""The scheduler that ARMAC holds: `Scheduler`, built by `make_scheduler` (docs/scheduler.md).

The scheduler chooses lambda(s) for pi_mix = lambda pi_rm + (1 - lambda) pibar, pi_rm =
RM(W(s)) and pibar the actor, so that pi_mix is less exploitable than either part. Its
parts: where lambda comes from (lambdas.LambdaSource), the update strategy
(strategies.UpdateStrategy, one of utility_computation.strategy), which lambda is deployed
(deployment.Deployment) and what is reported (metrics.SchedulerMetrics). ARMAC's hooks
(protocol.SchedulerHooks):
- `train_step(learner, traj, learner_ids, epoch_s)`, once per epoch (its cost counts as
  training time): at the epochs that scheduler.update_every picks (cadence.UpdateCadence:
  every N-th, or auto: as often as keeps the updates within scheduler.update_fraction of
  the epochs' seconds), one update of the strategy, then the deployment's choice.
- `behaviour(learner, batch)`: only when policy_mixer.behaviour is true (`drives_behaviour`):
  the learning player samples from pi_mix with the network's training lambda
  (LambdaSource.net_lambda). As a behaviour policy pi_mix changes only which states are
  sampled: ARMAC's reach correction removes it from every target.
- `metrics(learner)`, `export(out_dir, learner)` (policy_mixed.json, policy-v1, beside
  policy.json; level-2 cluster centres to state_keying.cluster_file), and `state_dict()` /
  `load_state_dict()`: everything for an exact resume.

Mode. It is decided once, by armac_spiel.runs.spec; `make_scheduler(suite, ...)` builds
the scheduler for the resolved suite (None when its mode is off).
"""

from __future__ import annotations

import os
import time

import torch
from open_spiel.python import policy as os_policy

from armac_spiel import policy_io
from armac_spiel.config import ConfigError
from armac_spiel.scheduler.cadence import UpdateCadence
from armac_spiel.scheduler.config import SchedulerSuiteConfig
from armac_spiel.scheduler.deployment import Deployment
from armac_spiel.scheduler.lambdas import LambdaSource, tabulate
from armac_spiel.scheduler.metrics import Cost, SchedulerMetrics
from armac_spiel.scheduler.mixer import normalise
from armac_spiel.scheduler.strategies import (SampledBins, check_strategy, make_strategy,
                                               resolve_strategy)
from armac_spiel.scheduler.trainer import SchedulerTrainer
from games import GameError, load_game

MIXED_POLICY_FILE = "policy_mixed.json"


class Scheduler:
  """ARMAC's scheduler: the facade over its parts; see the module docstring."""

  def __init__(self, suite: SchedulerSuiteConfig, game_string: str, seed: int = 0,
               device="cpu", mode: str | None = None):
    mode = suite.mode if mode is None else mode
    if mode not in ("continuous", "discrete"):
      raise ConfigError(f"scheduler needs mode continuous|discrete, got {mode!r}")
    sg = load_game(game_string)
    self.suite = suite = resolve_strategy(suite.with_mode(mode), sg, game_string)
    self.mode = mode
    self.game_string = game_string
    self.device = torch.device(device)
    self.bins = suite.policy_mixer.lambda_bins
    self.strategy = suite.utility_computation.kind  # the update strategy's name
    self.drives_behaviour = suite.policy_mixer.behaviour
    check_strategy(suite, sg, game_string)
    keyer_game = game_string if suite.state_keying.level != 2 else None
    self.trainer = SchedulerTrainer(suite, sg.info_state_size, keyer_game, self.device, mode,
                                    seed=seed)
    if self.trainer.keyer is not None:
      self.trainer.keyer.seed = seed
    self._check_keys()
    self.lambdas = LambdaSource(self.trainer, game_string, seed)
    self.sampled_bins = SampledBins(len(self.bins))
    self.updater = make_strategy(suite, self.lambdas, self.sampled_bins, seed, self.device)
    self.notes: dict = {}  # the update's and the deployment's measures (scheduler.<name>)
    self.deployment = Deployment(suite, self.lambdas, game_string, seed, self.device,
                                 self.notes)
    self.cost = Cost()
    self.cadence = UpdateCadence(suite.scheduler)
    self.reporter = SchedulerMetrics(suite, self.lambdas, self.deployment, self.cost,
                                     self.cadence, self.notes, self.strategy)

  def _check_keys(self) -> None:
    """ConfigError where the state keys cannot serve the game: levels 0, 1 and 3 key the
    rows of its information-state table, which must be enumerable, and the exact update
    (best_response) holds every key at once, so they must fit meta_regret.max_states."""
    level = self.suite.state_keying.level
    try:
      n = self.trainer.keyer.num_keys
    except GameError as e:
      raise ConfigError(f"state_keying.level={level} keys the information states of "
                        f"{self.game_string}, which cannot be enumerated ({e}); use "
                        "state_keying.level: 2 (clusters of the information-state "
                        "tensors)") from e
    limit = self.trainer.manager.limit
    if self.strategy == "best_response" and n > limit:
      mr = self.suite.meta_regret.max_states
      raise ConfigError(f"meta_regret.max_states={mr}: the exact update "
                        f"(utility_computation.strategy=best_response) holds all {n} keys "
                        f"of {self.game_string} at once, and {limit} fit; use "
                        f"meta_regret.max_states: auto (the default) or at least {n}")

  # ---------------------------------------------------------------- ARMAC's hooks
  def train_step(self, learner, traj, learner_ids: torch.Tensor,
                 epoch_s: float | None = None) -> dict:
    """One scheduler update at the epochs the cadence picks (scheduler.update_every, see
    cadence.UpdateCadence; `epoch_s`: the epoch's seconds before this call, which auto
    measures); returns the trainer's stats. Between updates the deployed lambda is the last
    update's."""
    self.cadence.observe(epoch_s)
    self.cost.epoch_s += epoch_s or 0.0
    if not self.cadence.due(learner.epoch):
      self.cost.epochs += 1
      return self.trainer.stats()
    t0 = time.perf_counter()
    self.trainer.set_iteration(learner.epoch)
    update = self.updater.update(learner, traj, learner_ids)
    if update.notes is not None:
      self.notes.clear()
      self.notes.update(update.notes)
    self.deployment.choose(learner, update.iterates, update.parts)
    self.sampled_bins.clear()
    self._sync()
    update_s = time.perf_counter() - t0
    self.cadence.updated(learner.epoch, update_s)
    self.cost.train_s += update_s
    self.cost.epochs += 1
    return update.stats

  def behaviour(self, learner, batch) -> dict:
    """(R, A) pi_mix for the learning player at one sampling step (policy_mixer.behaviour),
    with its parts and lambda (protocol.SchedulerHooks.behaviour)."""
    t0 = time.perf_counter()
    x = batch.info_state.to(learner.device)
    mask = batch.legal_mask.to(learner.device)
    self.trainer.set_iteration(learner.epoch)
    pi_rm, pi_avg = tabulate(learner, x, mask)
    lam = self.lambdas.net_lambda(x, training=True).to(pi_rm.dtype)
    mixed = normalise(lam * normalise(pi_rm, mask) + (1 - lam) * normalise(pi_avg, mask), mask)
    res = {"mixed": mixed, "actor": pi_avg, "regret": pi_rm, "lambda": lam}
    if self.mode == "discrete":
      with torch.no_grad():
        logits = self.trainer.net(x, training=False)["logits"]
      bins = torch.as_tensor(self.bins, dtype=lam.dtype, device=lam.device)
      idx = (lam - bins).abs().argmin(-1)
      res.update(logits=logits, lambda_idx=idx)
      self.sampled_bins.record(int(batch.step), batch.episode.cpu(), idx.cpu(),
                               torch.softmax(logits, -1).cpu())
    self._sync()
    self.cost.behaviour_s += time.perf_counter() - t0
    return res

  def metrics(self, learner) -> dict:
    """Exploitability of the deployed mix, the controls, interior reach, manager, cost
    (SchedulerMetrics.report)."""
    return self.reporter.report(learner)

  def export(self, out_dir: str, learner) -> str:
    """Writes policy_mixed.json (policy-v1) into out_dir (and level-2 cluster centres to
    state_keying.cluster_file); returns the policy path."""
    path = os.path.join(out_dir, MIXED_POLICY_FILE)
    policy_io.export_policy(path, self.game_string, self.mixed_table(learner)[0])
    if self.lambdas.level == 2:
      self.trainer.keyer.save_clusters()
    return path

  def _sync(self) -> None:
    if self.device.type == "cuda":
      torch.cuda.synchronize(self.device)

  # ---------------------------------------------------------------- lambdas and pi_mix
  def deployed_lambda(self, learner, net_only: bool = False) -> torch.Tensor:
    """(S, 1) float64 deployed lambda over every information state (Deployment)."""
    return self.deployment.deployed_lambda(learner, net_only)

  def average_lambda(self, learner) -> torch.Tensor:
    """(S, 1) float64: the manager's weighted average lambda (LambdaSource)."""
    return self.lambdas.average_lambda(learner)

  def current_lambda(self, learner) -> torch.Tensor:
    """(S, 1) float64: the manager's current sigma's lambda (LambdaSource)."""
    return self.lambdas.current_lambda(learner)

  def parts(self, learner) -> tuple[torch.Tensor, torch.Tensor]:
    """The learner's (pi_rm, pibar) tables, (S, A) float64 (LambdaSource.parts)."""
    return self.lambdas.parts(learner)

  def mixed_table(self, learner, lam: torch.Tensor | None = None, parts=None):
    """((S, A) float64 pi_mix, (S, 1) lambda) over every information state; `lam`: the
    deployed lambda by default; `parts`: the learner's (pi_rm, pibar) when already
    tabulated."""
    parts = parts if parts is not None else self.lambdas.parts(learner)
    lam = self.deployed_lambda(learner) if lam is None else lam
    return self.lambdas.mix(lam, parts), lam

  def mixed_policy(self, learner) -> os_policy.TabularPolicy:
    """The deployed pi_mix as an OpenSpiel policy (a tabular one)."""
    probs, _ = self.mixed_table(learner)
    pol = os_policy.TabularPolicy(load_game(self.game_string).game)
    for s, key in enumerate(self.lambdas.table.keys):
      pol.policy_for_key(key)[:] = probs[s].numpy()
    return pol

  # ---------------------------------------------------------------- checkpoints
  def state_dict(self) -> dict:
    cost = self.cost.to_dict()
    if self.deployment.refresh_s is not None:
      cost["deploy_refresh_s"] = self.deployment.refresh_s
    dep = self.deployment.state_dict()
    return {"mode": self.mode, "trainer": self.trainer.state_dict(),
            "gen": self.lambdas.gen.get_state(), "cost": cost, "last": dict(self.notes),
            "deployed": dep["deployed"], "deployed_at": dep["deployed_at"],
            "measured": dep["measured"], "br_critic": self.updater.state_dict(),
            "br_gate": dep["br_gate"], "gate_value": dep["gate_value"],
            "cadence": self.cadence.state_dict()}

  def load_state_dict(self, d: dict) -> None:
    if d["mode"] != self.mode:
      raise ValueError(f"scheduler checkpoint is for mode {d['mode']!r}, not {self.mode!r}")
    self.deployment.check_state(d)
    self.trainer.load_state_dict(d["trainer"])
    self.lambdas.gen.set_state(d["gen"])
    self.cost.load(d["cost"])
    self.deployment.refresh_s = d["cost"].get("deploy_refresh_s")
    self.notes.clear()
    self.notes.update(d.get("last", {}))
    self.deployment.load_state_dict(d)
    self.updater.load_state_dict(d.get("br_critic"))
    self.cadence.load_state_dict(d.get("cadence"))
    self.sampled_bins.clear()


def make_scheduler(suite: dict, game_string: str, seed: int, device="cpu") -> Scheduler | None:
  """The scheduler for a resolved scheduler suite (armac_spiel.runs.RunSpec.scheduler, whose
  mode is decided there), or None when its mode is off. Bad settings raise ConfigError."""
  try:
    cfg = SchedulerSuiteConfig.from_dict(suite)
    if cfg.mode == "off":
      return None
    return Scheduler(cfg, game_string, seed, device, cfg.mode)
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(f"scheduler: {e}") from e
