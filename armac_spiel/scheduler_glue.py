"""Glue between ARMAC, the training config and the scheduler package (docs/scheduler.md).

The scheduler chooses lambda(s) for pi_mix = lambda pi_rm + (1 - lambda) pibar, pi_rm =
RM(W(s)) and pibar the actor, so that pi_mix is less exploitable than either part.
`SchedulerAdapter` is the object ARMAC holds (`ARMAC(..., scheduler=adapter)`):
- `train_step(learner, traj, learner_ids)`, once per epoch (its cost counts as training
  time; with scheduler.update_every = N, every N-th epoch only): one scheduler update with
  the configured utility (utility_computation.strategy):
  - best_response (compiled tree): pi_rm and pibar are tabulated over every information
    state; the manager's current sigma gives lambda(s) = sigma . bins; the exact best
    response to pi_mix and p's counterfactual values against it give the bin utilities at
    every state at once (scheduler.utilities.best_response_utilities); each state's own
    reach under pi_mix weighs it in the manager's average; cfr_br_iterations such
    iterations per update, all against the epoch's parts;
  - br_critic: the same from a best-response critic on sampled episodes (BRCritic);
  - advantage_based / immediate / hybrid: the seed's sampled utilities at the learner's
    visited states (reach weight 1);
  then the network distils the manager's average (SchedulerTrainer.step).
- `deployed_lambda(learner)` (S, 1): the lambda that is deployed: init_lambda during
  warm-up, then by policy_mixer.deploy: `average` (the manager's weighted average at keys
  it holds, the network's inference lambda, discrete: the argmax bin, elsewhere),
  `current` (the manager's current sigma) or `best_measured` (default: of this update's
  CFR-BR iterates, the final one, the average and the actor alone (lambda = 0), the one
  whose pi_mix is least exploitable on the parts deployed, measured exactly on the
  compiled tree (again at an epoch later than the update: _refresh_deployment); br_critic,
  which has no exact measure, deploys the actor alone unless its two sampled best-response
  critics' greedy responders, measured against both candidates, bound the average's mix
  below the actor by utility_computation.br_gate_z standard errors (`_measure_gate`); the
  other strategies deploy the average). The parts move
  every epoch, and a lambda averaged over past parts lags them; the current iterate tracks
  them but oscillates, so the choice is measured, never assumed. `mixed_table` / `mixed_policy`
  give pi_mix.
- `behaviour(learner, batch)`: only when policy_mixer.behaviour is true (ARMAC checks
  `drives_behaviour`): the learning player samples from pi_mix with the network's training
  lambda: discrete, soft Gumbel-softmax softmax((logits + g) / tau(t)) . bins (use_gumbel) or
  softmax(logits / T_mix(t)) . bins with the mixer temperature T_mix(t) =
  max(min_temperature, temperature * temperature_decay^t); continuous, the network's lambda.
  As a behaviour policy pi_mix changes only which states are sampled: ARMAC's reach
  correction removes it from every target.
- `metrics(learner)`: exploitability_mixed (deployed pi_mix), exploitability_mixed_net
  (the network's lambda everywhere), exploitability_mixed_current (the manager's current
  sigma, the oscillating iterate), exploitability_best_global_lambda and
  best_global_lambda (the best single lambda on a 21-point grid, a control),
  scheduler.interior_reach (share of own reach, under the deployed pi_mix, on states whose
  deployed lambda lies in (0.1, 0.9)), manager and cost statistics.
- `export(out_dir, learner)`: policy_mixed.json (policy-v1) beside policy.json; level-2
  cluster centres to state_keying.cluster_file.
- `state_dict()` / `load_state_dict()`: everything for an exact resume.

State keys: level 3 is the information state's row of games.infostate_table; levels 0 and 1
come from the poker features of its string; level 2 clusters the information-state tensors.

Mode. It is decided once, by armac_spiel.runs.spec; `make_scheduler(suite, ...)` builds
the adapter for the resolved suite (None when its mode is off).
"""

from __future__ import annotations

import math
import os
import time

import numpy as np
import torch

from armac_spiel.config import ConfigError
from armac_spiel.networks import masked_softmax, regret_matching

GLOBAL_GRID = 21                # lambdas 0, 0.05, ..., 1 for the best-global-lambda control
INTERIOR = (0.1, 0.9)
MIXED_POLICY_FILE = "policy_mixed.json"


# br_critic's deployment candidates under deploy best_measured (_choose_deployment).
GATE_CANDIDATES = ("average", "actor")


def _pair(responder: str, candidate: str) -> str:
  """gate_value's key: the critic trained against `responder`, measured against `candidate`."""
  return f"{responder}>{candidate}"


def _tabulate(learner, x: torch.Tensor, mask: torch.Tensor):
  with torch.no_grad():
    return (regret_matching(learner.regret(x), mask), masked_softmax(learner.actor(x), mask))


class SchedulerAdapter:
  """Drives a SchedulerTrainer from ARMAC's hooks; see the module docstring."""

  def __init__(self, suite, game_string: str, seed: int = 0, device="cpu",
               mode: str | None = None):
    from armac_spiel.scheduler.trainer import SchedulerTrainer
    from games import load_game
    from games.tree import tree_fits, compile_tree
    mode = suite.mode if mode is None else mode
    if mode not in ("continuous", "discrete"):
      raise ConfigError(f"scheduler adapter needs mode continuous|discrete, got {mode!r}")
    self.suite = suite = suite.with_mode(mode)
    self.mode = mode
    self.game_string = game_string
    self.device = torch.device(device)
    self.bins = suite.policy_mixer.lambda_bins
    self.level = suite.state_keying.level
    self.strategy = suite.utility_computation.kind
    self.drives_behaviour = suite.policy_mixer.behaviour
    sg = load_game(game_string)
    if self.strategy in ("immediate", "hybrid") and not self.drives_behaviour:
      raise ConfigError(f"utility_computation.strategy={self.strategy} scores the bins the "
                        "episodes were sampled with: set policy_mixer.behaviour: true")
    self.tree = None
    if self.strategy == "best_response":
      if not sg.is_two_player_zero_sum:
        raise ConfigError(f"utility_computation.strategy=best_response needs a two-player "
                          f"zero-sum game, not {game_string}")
      if not tree_fits(game_string):
        raise ConfigError(f"utility_computation.strategy=best_response needs the compiled "
                          f"tree, and {game_string} is too big for it; use "
                          "utility_computation.strategy: br_critic (model-free)")
      self.tree = compile_tree(game_string)
    keyer_game = game_string if self.level != 2 else None
    self.trainer = SchedulerTrainer(suite, sg.info_state_size, keyer_game, self.device, mode,
                                    seed=seed)
    if self.trainer.keyer is not None:
      self.trainer.keyer.seed = seed
    self.br_critic = None
    self.br_gate: dict = {}  # br_critic with deploy best_measured: candidate -> its critic
    # "responder>candidate" -> (EMA sum of the greedy responder's mean returns against the
    # candidate, of their weights, and of the squared weights times their sampling variances)
    self.gate_value: dict = {}
    if self.strategy == "br_critic":
      from armac_spiel.scheduler.br_critic import BRCritic
      uc = suite.utility_computation
      self.br_critic = BRCritic(uc, game_string, seed, self.device)
      if suite.policy_mixer.deploy == "best_measured":
        self.br_gate = {name: BRCritic(uc, game_string, seed + 1009 * (k + 1), self.device)
                        for k, name in enumerate(GATE_CANDIDATES)}
        self.gate_value = {_pair(r, c): (0.0, 0.0, 0.0)
                           for r in GATE_CANDIDATES for c in GATE_CANDIDATES}
    self.gen = torch.Generator().manual_seed(seed + 7919)
    self._chosen: dict[int, tuple] = {}  # step -> (episode, bin, bin probabilities)
    self._row_keys = None   # (S,) key of each infostate_table row (levels 0, 1, 3)
    self._byte_rows = None  # tensor bytes -> infostate_table row (pyspiel sampler)
    self.cost = {"behaviour_s": 0.0, "train_s": 0.0, "epochs": 0}
    self._last: dict = {}
    self._deployed: torch.Tensor | None = None  # (S, 1) lambda chosen by best_measured
    self._deployed_at: int | None = None  # the learner epoch whose parts it was measured on
    self._measured: list = []  # (NashConv, (S, 1) lambda) of this update's CFR-BR iterates
    self._parts = None  # the update's (pi_rm, pibar) tables, for its deployment choice

  def config_entries(self) -> dict:
    """What the run directory's config.json records about the scheduler."""
    return {"scheduler_suite": self.suite.to_dict(), "scheduler_mode": self.mode}

  # ---------------------------------------------------------------- lambdas
  def _table(self):
    from games import infostate_table
    return infostate_table(self.game_string)

  def row_keys(self) -> torch.Tensor:
    """(S,) manager key of every information state (levels 0, 1 and 3)."""
    if self._row_keys is None:
      t = self._table()
      if self.level == 3:
        self._row_keys = torch.arange(len(t))
      elif self.level == 2:
        raise ValueError("level-2 keys depend on the clusters; use _keys_of")
      else:
        self._row_keys = self.trainer.keyer.ids_from_infostates(t.keys)
    return self._row_keys

  def _keys_of(self, x: torch.Tensor, rows: torch.Tensor | None, update: bool = False):
    """Keys of states given their table rows (levels 0, 1, 3) or encodings (level 2)."""
    if self.level == 2:
      return self.trainer.keyer.cluster_ids(x, update=update)
    return self.row_keys()[rows]

  def _net_lambda(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
    """(B, 1) the network's lambda: inference (hard argmax bin / continuous lambda), or the
    training-time soft lambda (see the module docstring)."""
    from armac_spiel.scheduler.mixer import sched_lambda
    net = self.trainer.net
    with torch.no_grad():
      out = net(x, training=False)
      if self.mode == "continuous" or net.in_warmup():
        return sched_lambda(out, self.bins, hard=True)
      if not training:
        return sched_lambda(out, self.bins, hard=True)
      logits = out["logits"]
      bins = torch.as_tensor(self.bins, dtype=logits.dtype, device=logits.device)
      if net.cfg.use_gumbel:
        g = -torch.empty(logits.shape).exponential_(generator=self.gen).log().to(logits.device)
        return (torch.softmax((logits + g) / net.tau(), -1) @ bins).unsqueeze(-1)
      temp = self.trainer.mixer_temperature()
      return (torch.softmax(logits / temp, -1) @ bins).unsqueeze(-1)

  def _manager_lambda(self, keys, average: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """((B, 1) lambda from the manager's average or current sigma, (B,) held-with-weight)."""
    mgr = self.trainer.manager
    probs = mgr.average_probs(keys) if average else mgr.current_probs(keys).double()
    bins = torch.as_tensor(self.bins, dtype=torch.float64)
    uniq, inv = mgr._group(keys)
    rows = mgr._rows_for(uniq, insert=False)[inv] if uniq else inv
    held = (rows >= 0) & (mgr.avg_den[rows.clamp_min(0)] > 0)
    return (probs.cpu() @ bins).unsqueeze(-1), held.cpu()

  def average_lambda(self, learner) -> torch.Tensor:
    """(S, 1) float64: the manager's weighted average where it has weight, else the
    network's inference lambda."""
    t = self._table()
    x = t.tensors.to(learner.device)
    self.trainer.set_iteration(learner.epoch)
    net = self._net_lambda(x).double().cpu()
    lam, held = self._manager_lambda(self._keys_of(x, torch.arange(len(t))).cpu(), True)
    return torch.where(held[:, None], lam, net)

  def deployed_lambda(self, learner, net_only: bool = False) -> torch.Tensor:
    """(S, 1) float64 deployed lambda over every information state (module docstring)."""
    self.trainer.set_iteration(learner.epoch)
    if net_only or self.trainer.net.in_warmup():
      return self._net_lambda(self._table().tensors.to(learner.device)).double().cpu()
    rule = self.suite.policy_mixer.deploy
    if rule == "current":
      return self.current_lambda(learner)
    if rule == "best_measured" and self._deployed is not None:
      if self.strategy == "best_response" and self._deployed_at != learner.epoch:
        self._refresh_deployment(learner)
      return self._deployed.clone()
    if self.br_gate and self._gate_choice() == "actor":
      return torch.zeros(len(self._table()), 1, dtype=torch.float64)
    return self.average_lambda(learner)

  def _gate_estimate(self, name: str) -> tuple[float, float]:
    """(the largest bias-corrected EMA of what a deployment critic's greedy responder
    earned against candidate `name`, at least 0; its standard error): the tightest sampled
    lower bound on the candidate's exploitability that the critics give. Exploitability
    is never negative, so a responder that loses on average bounds nothing: 0 stands."""
    est = []
    for r in GATE_CANDIDATES:
      m, w, q = self.gate_value[_pair(r, name)]
      est.append((m / w, math.sqrt(q) / w))
    v, se = max(est)
    return max(v, 0.0), se

  def _gate_choice(self) -> str:
    """br_critic's deployment (deploy best_measured): the average's mix when its lower
    bound (_gate_estimate) is below the actor's by more than utility_computation.br_gate_z
    standard errors of the difference, else the actor alone (also until both are
    measured): the mix must earn its deployment, and it cannot while the responders find
    nothing to exploit in the actor (its bound 0)."""
    if any(w <= 0 for _, w, _ in self.gate_value.values()):
      return "actor"
    (v_mix, se_mix), (v_act, se_act) = (self._gate_estimate(c) for c in GATE_CANDIDATES)
    z = self.suite.utility_computation.br_gate_z
    return "average" if v_mix + z * math.hypot(se_mix, se_act) < v_act else "actor"

  def _choose_deployment(self, learner) -> None:
    """policy_mixer.deploy = best_measured, with exact utilities (strategy best_response):
    of the CFR-BR iterates of this update (each already measured by its best response), the
    final iterate, the manager's average and the actor alone (lambda = 0), deploys the
    lambda table whose pi_mix has the lowest NashConv on the current parts (exact, on the
    compiled tree). The parts move in every epoch's training, so an evaluation or export at
    a later epoch (scheduler.update_every > 1, or a time budget that ends between updates)
    measures the same candidates again on the parts it deploys (_refresh_deployment).
    br_critic has no exact measure: its sampled one decides (_measure_gate, _gate_choice).
    The other strategies deploy the average."""
    self._deployed = None
    if self.suite.policy_mixer.deploy != "best_measured" or self.trainer.net.in_warmup():
      return
    if self.br_gate:
      self._measure_gate(learner)
      return
    if self.strategy != "best_response":
      return
    cands = self._deploy_candidates(learner, self._measured, self._parts)
    self._parts = None
    self._deploy_best(cands, learner.epoch + 1)  # the parts of the epoch being finished
    self._last.update(nash_conv_deployed_at_update=min(c[1] for c in cands),
                      nash_conv_average_at_update=next(c[1] for c in cands if c[0] == "average"),
                      nash_conv_current_at_update=next(c[1] for c in cands if c[0] == "current"))

  def _deploy_candidates(self, learner, iterates: list, parts=None) -> list:
    """[(name, NashConv, (S, 1) lambda)]: the given CFR-BR iterates (NashConv, lambda), and
    the manager's current sigma, its average and the actor alone, measured exactly on the
    learner's current parts (`parts`: their tables when already tabulated)."""
    n = len(self._table())
    parts = parts if parts is not None else self._parts_of(learner)
    cands = [("iterate", nc, lam) for nc, lam in iterates]
    for name, lam in (("current", self.current_lambda(learner)),
                      ("average", self.average_lambda(learner)),
                      ("actor", torch.zeros(n, 1, dtype=torch.float64))):
      cands.append((name, self._nash_conv(learner, lam, parts), lam))
    return cands

  def _nash_conv(self, learner, lam: torch.Tensor, parts=None) -> float:
    from armac_spiel import evaluation
    mixed = self.mixed_table(learner, lam, parts)[0]
    return evaluation.fast_exploitability(self.game_string, mixed)[1]

  def _deploy_best(self, cands: list, at_epoch: int) -> None:
    name, _, lam = min(cands, key=lambda c: c[1])
    self._deployed, self._deployed_at = lam.clone(), at_epoch
    self._last.update(deployed_current=float(name in ("iterate", "current")),
                      deployed_actor=float(name == "actor"))

  def _refresh_deployment(self, learner) -> None:
    """best_measured with exact utilities, at a learner epoch later than the choice: the
    same candidates (this update's iterates, current, average, actor) measured again on
    the parts being deployed. Evaluation, not training: nothing learned changes, only which
    candidate is deployed, so a run trains the same whatever its evaluation schedule."""
    t0 = time.perf_counter()
    parts = self._parts_of(learner)
    iterates = [(self._nash_conv(learner, lam, parts), lam) for _, lam in self._measured]
    self._deploy_best(self._deploy_candidates(learner, iterates, parts), learner.epoch)
    self.cost["deploy_refresh_s"] = self.cost.get("deploy_refresh_s", 0.0) + (
        time.perf_counter() - t0)

  def _measure_gate(self, learner) -> None:
    """br_critic, deploy best_measured: one update of each candidate's best-response
    critic (GATE_CANDIDATES: the manager's average lambda, the actor alone), each trained
    against its own candidate; then every critic's greedy responder plays br_episodes
    episodes against every candidate played exactly (BRCritic.evaluate), and each pair's
    mean return enters an EMA (utility_computation.br_gate_decay) with its sampling
    variance. No exact evaluator is used: each pair is a sampled lower bound on the
    candidate's exploitability, and a responder trained against one candidate bounds the
    other's too, so a critic that lags its own (moving) candidate cannot by itself make
    that candidate look safe; _gate_choice decides."""
    d = self.suite.utility_computation.br_gate_decay
    fns = {name: self._mix_fn(learner, name) for name in GATE_CANDIDATES}
    for name, critic in self.br_gate.items():
      critic.update(fns[name])
    for r, critic in self.br_gate.items():
      for c in GATE_CANDIDATES:
        mean, var = critic.evaluate(fns[c])
        m, w, q = self.gate_value[_pair(r, c)]
        m, w, q = d * m + (1 - d) * mean, d * w + (1 - d), d * d * q + (1 - d) ** 2 * var
        self.gate_value[_pair(r, c)] = (m, w, q)
        self._last[f"br_gate_value_{r}_vs_{c}"] = m / w
    choice = self._gate_choice()
    self._last.update(deployed_actor=float(choice == "actor"))
    for c in GATE_CANDIDATES:
      v, se = self._gate_estimate(c)
      self._last.update({f"br_gate_value_{c}": v, f"br_gate_se_{c}": se})

  def current_lambda(self, learner) -> torch.Tensor:
    """(S, 1) float64 lambda of the manager's current sigma (the CFR-BR iterate; the
    network's inference lambda at keys it does not hold)."""
    t = self._table()
    x = t.tensors.to(learner.device)
    self.trainer.set_iteration(learner.epoch)
    keys = self._keys_of(x, torch.arange(len(t))).cpu()
    mgr = self.trainer.manager
    uniq, inv = mgr._group(keys)
    rows = (mgr._rows_for(uniq, insert=False)[inv] if uniq else inv).cpu()
    lam = self._manager_lambda(keys, average=False)[0]
    return torch.where((rows >= 0)[:, None], lam, self._net_lambda(x).double().cpu())

  def _parts_of(self, learner) -> tuple[torch.Tensor, torch.Tensor]:
    """(pi_rm, pibar) tables (S, A) over every information state, legal-masked and
    normalised, float64 on the CPU."""
    from armac_spiel.scheduler.mixer import normalise
    t = self._table()
    pi_rm, pi_avg = _tabulate(learner, t.tensors.to(learner.device),
                              t.legal_mask.to(learner.device))
    mask = t.legal_mask
    return normalise(pi_rm.cpu().double(), mask), normalise(pi_avg.cpu().double(), mask)

  def mixed_table(self, learner, lam: torch.Tensor | None = None, parts=None):
    """((S, A) float64 pi_mix, (S, 1) lambda) over every information state; `parts`:
    the learner's (pi_rm, pibar) from _parts_of when already tabulated."""
    from armac_spiel.scheduler.mixer import normalise
    p_rm, p_avg = parts if parts is not None else self._parts_of(learner)
    lam = self.deployed_lambda(learner) if lam is None else lam
    return normalise(lam * p_rm + (1 - lam) * p_avg, self._table().legal_mask), lam

  def mixed_policy(self, learner):
    """The deployed pi_mix as an OpenSpiel policy (a tabular one)."""
    from open_spiel.python import policy as os_policy
    from games import load_game
    probs, _ = self.mixed_table(learner)
    t = self._table()
    pol = os_policy.TabularPolicy(load_game(self.game_string).game)
    for s, key in enumerate(t.keys):
      pol.policy_for_key(key)[:] = probs[s].numpy()
    return pol

  # ---------------------------------------------------------------- behaviour
  def behaviour(self, learner, batch) -> dict:
    """(R, A) pi_mix for the learning player at one sampling step (policy_mixer.behaviour)."""
    from armac_spiel.scheduler.mixer import normalise
    t0 = time.perf_counter()
    x = batch.info_state.to(learner.device)
    mask = batch.legal_mask.to(learner.device)
    self.trainer.set_iteration(learner.epoch)
    pi_rm, pi_avg = _tabulate(learner, x, mask)
    lam = self._net_lambda(x, training=True).to(pi_rm.dtype)
    mixed = normalise(lam * normalise(pi_rm, mask) + (1 - lam) * normalise(pi_avg, mask), mask)
    res = {"mixed": mixed, "actor": pi_avg, "regret": pi_rm, "lambda": lam}
    if self.mode == "discrete":
      with torch.no_grad():
        logits = self.trainer.net(x, training=False)["logits"]
      bins = torch.as_tensor(self.bins, dtype=lam.dtype, device=lam.device)
      idx = (lam - bins).abs().argmin(-1)
      res.update(logits=logits, lambda_idx=idx)
      self._chosen[int(batch.step)] = (batch.episode.cpu(), idx.cpu(),
                                       torch.softmax(logits, -1).cpu())
    self._sync()
    self.cost["behaviour_s"] += time.perf_counter() - t0
    return res

  # ---------------------------------------------------------------- training
  def _sync(self) -> None:
    if self.device.type == "cuda":
      torch.cuda.synchronize(self.device)

  def _table_rows(self, node, info: torch.Tensor) -> torch.Tensor:
    """(N,) infostate_table rows from tree node ids, else by the information-state bytes."""
    if node is not None:
      from games.tree import compile_tree
      return compile_tree(self.game_string).infostate[node]
    if self._byte_rows is None:
      rows = self._table().tensors.numpy()
      self._byte_rows = {}
      for i in range(rows.shape[0]):
        self._byte_rows.setdefault(rows[i].tobytes(), i)
    x = info.contiguous().numpy()
    try:
      return torch.tensor([self._byte_rows[r.tobytes()] for r in x], dtype=torch.long)
    except KeyError:
      raise ValueError(f"{self.game_string}: a sampled information-state tensor is not in the "
                       "information-state table; use state_keying.level=2") from None

  def train_step(self, learner, traj, learner_ids: torch.Tensor) -> dict:
    """One scheduler update (see the module docstring); returns the trainer's stats. With
    scheduler.update_every = N > 1 it updates only when the epoch's count (learner.epoch + 1)
    is a multiple of N, so that evaluations every multiple of N epochs see a fresh update;
    in between, the deployed lambda is the last update's."""
    if (learner.epoch + 1) % self.suite.scheduler.update_every:
      self.cost["epochs"] += 1
      return self.trainer.stats()
    t0 = time.perf_counter()
    self.trainer.set_iteration(learner.epoch)
    if self.strategy == "best_response":
      stats = self._train_best_response(learner)
    elif self.strategy == "br_critic":
      stats = self._train_br_critic(learner)
    else:
      stats = self._train_sampled(learner, traj, learner_ids)
    self._choose_deployment(learner)
    self._chosen.clear()
    self._sync()
    self.cost["train_s"] += time.perf_counter() - t0
    self.cost["epochs"] += 1
    return stats

  def _train_best_response(self, learner) -> dict:
    """utility_computation.cfr_br_iterations CFR-BR iterations against the epoch's parts:
    each computes the exact best response to the current iterate's pi_mix (whose NashConv
    comes with it and is kept for the deployment choice) and updates the manager."""
    from armac_spiel.scheduler.mixer import normalise
    from armac_spiel.scheduler.utilities import best_response_utilities
    t = self.tree
    x = t.info_tensors.to(learner.device)
    pi_rm, pi_avg = _tabulate(learner, x, t.info_legal.to(learner.device))
    # The tree's information states are the table's rows, in its order.
    self._parts = tuple(normalise(p.cpu().double(), t.info_legal) for p in (pi_rm, pi_avg))
    keys = self._keys_of(x, torch.arange(t.num_infostates), update=True).cpu()
    self._measured = []
    for _ in range(self.suite.utility_computation.cfr_br_iterations):
      lam, _ = self._manager_lambda(keys, average=False)  # the current CFR-BR iterate
      util, res = best_response_utilities(t, pi_rm, pi_avg, lam, self.bins)
      self._measured.append((float(res.br_values.sum()), lam))
      stats = self.trainer.step(x, keys=keys, utilities=util, iteration=learner.epoch,
                                reach=res.own_reach, smooth=False)
    self._last = {"br_exploitability_current_iterate": self._measured[-1][0] / 2}
    return stats

  def _mix_fn(self, learner, which: str):
    """A br_critic MixFn: pi_mix under the manager's current sigma (`current`), under its
    average with the network's inference lambda elsewhere (`average`, what deploy average
    deploys), or the actor alone (`actor`)."""
    from armac_spiel.scheduler.mixer import normalise

    def mix_fn(x, mask, rows):
      x, mask = x.to(learner.device), mask.to(learner.device)
      pi_rm, pi_avg = _tabulate(learner, x, mask)
      if which == "actor":
        return normalise(pi_avg, mask)
      if self.level != 2 and rows is None:
        rows = self._table_rows(None, x.cpu())
      keys = self._keys_of(x, rows).cpu()
      lam, held = self._manager_lambda(keys, average=which == "average")
      if which == "average":
        lam = torch.where(held[:, None], lam, self._net_lambda(x).double().cpu())
      lam = lam.to(pi_rm.device, pi_rm.dtype)
      return normalise(lam * normalise(pi_rm, mask) + (1 - lam) * normalise(pi_avg, mask),
                       mask)

    return mix_fn

  def _train_br_critic(self, learner) -> dict:
    from armac_spiel.scheduler.utilities import bin_utilities

    d = self.br_critic.update(self._mix_fn(learner, "current"))
    if d["info"].shape[0] == 0:
      return {}
    x, mask = d["info"].to(learner.device), d["legal"].to(learner.device)
    rows = None
    if self.level != 2:
      rows = self._table_rows(d["node"], d["info"])
    keys = self._keys_of(x, rows, update=True).cpu()
    pi_rm, pi_avg = _tabulate(learner, x, mask)
    util = bin_utilities(d["q"].double(), pi_rm.double(), pi_avg.double(), mask, self.bins)
    # One utility row per key: the mean Q-based utility times the summed counterfactual
    # reach estimate (the manager averages duplicate keys, so rows are merged here).
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
    self._last = {"br_critic_loss": self.br_critic.last_loss}
    return self.trainer.step(x[first.to(x.device)], keys=uniq,
                             utilities=(cf[:, None] * u_mean).float(),
                             iteration=learner.epoch, reach=reach, smooth=False)

  def _chosen_bins(self, traj) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) bin each step was sampled with (-1 where none) and (B, T, K) bin probs."""
    b, t = traj.action.shape
    out = torch.full((b, t), -1, dtype=torch.long)
    probs = torch.full((b, t, len(self.bins)), 1.0 / len(self.bins))
    for step, (ep, idx, p) in self._chosen.items():
      if step < t:
        out[ep, step] = idx
        probs[ep, step] = p
    return out, probs

  def _train_sampled(self, learner, traj, learner_ids: torch.Tensor) -> dict:
    """The seed's utilities at the learner's visited states (reach weight 1)."""
    dev = learner.device
    sel = traj.valid & (traj.player == learner_ids.unsqueeze(1))
    if not bool(sel.any()):
      return {}
    x = traj.info_state[sel].to(dev)
    mask = traj.legal_mask[sel].to(dev)
    rows = None if self.level == 2 else self._table_rows(
        None if traj.node is None else traj.node[sel], traj.info_state[sel])
    keys = self._keys_of(x, rows, update=True).cpu()
    kind = self.strategy
    inputs = {}
    with torch.no_grad():
      if kind in ("advantage_based", "hybrid"):
        pi_rm, pi_avg = _tabulate(learner, x, mask)
        lam = self._net_lambda(x)
        player = traj.player[sel].to(dev)
        q = learner._values(learner.critic(traj.history[sel].to(dev)), player)
        inputs.update(q=q, pi_rm=pi_rm, pi_avg=pi_avg, legal_mask=mask, lam=lam)
      if kind in ("immediate", "hybrid"):
        chosen, bin_probs = self._chosen_bins(traj)
        b_idx, t_idx = sel.nonzero(as_tuple=True)
        ret = traj.returns[b_idx, traj.player[sel]]
        steps_left = (traj.length[b_idx] - 1 - t_idx).float()
        gamma = self.suite.utility_computation.gamma
        inputs.update(chosen_idx=chosen[sel].clamp_min(0).to(dev),
                      returns=(ret * gamma ** steps_left).to(dev),
                      bin_probs=bin_probs[sel].to(dev))
    util = self.trainer.utility.compute(self.bins, **inputs)
    upd_keys, upd_util = keys, util
    if kind in ("advantage_based", "hybrid"):
      upd_keys, upd_util = self.trainer.utility.windowed(keys, util)
    self._last = {}
    return self.trainer.step(x, keys=keys, utilities=upd_util, iteration=learner.epoch,
                             reach=torch.ones(len(keys), dtype=torch.float64), smooth=True,
                             update_keys=upd_keys)

  # ---------------------------------------------------------------- metrics
  def cost_ms_per_epoch(self) -> float:
    n = self.cost["epochs"]
    return 1e3 * (self.cost["behaviour_s"] + self.cost["train_s"]) / n if n else 0.0

  def metrics(self, learner) -> dict:
    """Exploitability of the deployed mix, the controls, interior reach, manager, cost."""
    from armac_spiel import evaluation
    from armac_spiel.scheduler.mixer import mixing_stats
    out = {k: v for k, v in self.trainer.stats().items()
           if k.startswith("scheduler.") and not k.startswith("scheduler.lambda_")}
    out.update({f"scheduler.{k}": v for k, v in self._last.items()})
    if out["scheduler.states_tracked"] == 0:  # untracked keys get the uniform distribution
      out["scheduler.bin_entropy"] = float(np.log(len(self.bins)))
    parts = self._parts_of(learner)
    mixed, lam = self.mixed_table(learner, self.deployed_lambda(learner), parts)
    expl, nc = evaluation.fast_exploitability(self.game_string, mixed)
    net_mixed, _ = self.mixed_table(learner, self.deployed_lambda(learner, net_only=True), parts)
    expl_net, nc_net = evaluation.fast_exploitability(self.game_string, net_mixed)
    cur_mixed, _ = self.mixed_table(learner, self.current_lambda(learner), parts)
    expl_cur, nc_cur = evaluation.fast_exploitability(self.game_string, cur_mixed)
    avg_mixed, _ = self.mixed_table(learner, self.average_lambda(learner), parts)
    expl_avg, nc_avg = evaluation.fast_exploitability(self.game_string, avg_mixed)
    out.update({f"scheduler.{k}": v for k, v in mixing_stats(lam, self.bins).items()})
    out["scheduler.interior_reach"] = self.interior_reach(mixed, lam)
    out["scheduler.mode"] = self.mode
    out["scheduler.strategy"] = self.strategy
    out["scheduler.cost_ms_per_epoch"] = self.cost_ms_per_epoch()
    out["scheduler.epochs_since_update"] = learner.epoch % self.suite.scheduler.update_every
    out["scheduler.behaviour_s"] = self.cost["behaviour_s"]
    out["scheduler.train_s"] = self.cost["train_s"]
    out["scheduler.deploy_refresh_s"] = self.cost.get("deploy_refresh_s", 0.0)
    out["nash_conv_mixed"] = nc
    out["nash_conv_mixed_net"] = nc_net
    out["nash_conv_mixed_current"] = nc_cur
    out["nash_conv_mixed_average"] = nc_avg
    g_lam, g_nc = self.best_global_lambda(learner, parts)
    out["best_global_lambda"] = g_lam
    out["nash_conv_best_global_lambda"] = g_nc
    if expl is not None:
      out["exploitability_mixed"] = expl
      out["exploitability_mixed_net"] = expl_net
      out["exploitability_mixed_current"] = expl_cur
      out["exploitability_mixed_average"] = expl_avg
      out["exploitability_best_global_lambda"] = g_nc / 2.0
    return out

  def interior_reach(self, mixed: torch.Tensor, lam: torch.Tensor) -> float:
    """Share of the players' own reach (under `mixed`) on states with lambda in (0.1, 0.9)."""
    from games.tree import compile_tree, tree_fits
    if not tree_fits(self.game_string):
      return float("nan")
    reach = compile_tree(self.game_string).best_response_cfv(mixed).own_reach
    lo, hi = INTERIOR
    inside = ((lam[:, 0] > lo) & (lam[:, 0] < hi)).double()
    total = float(reach.sum())
    return float((reach * inside).sum()) / total if total > 0 else 0.0

  def best_global_lambda(self, learner, parts=None) -> tuple[float, float]:
    """(lambda, NashConv) of the best single lambda on a 21-point grid."""
    from armac_spiel import evaluation
    best = (float("nan"), float("inf"))
    n = len(self._table())
    parts = parts if parts is not None else self._parts_of(learner)
    for lam in np.linspace(0.0, 1.0, GLOBAL_GRID):
      mixed, _ = self.mixed_table(learner, torch.full((n, 1), float(lam), dtype=torch.float64),
                                  parts)
      nc = evaluation.fast_exploitability(self.game_string, mixed)[1]
      if nc < best[1]:
        best = (float(lam), nc)
    return best

  # ---------------------------------------------------------------- export
  def export(self, out_dir: str, learner) -> str:
    """Writes policy_mixed.json (policy-v1) into out_dir (and level-2 cluster centres to
    state_keying.cluster_file); returns the policy path."""
    from armac_spiel import policy_io
    path = os.path.join(out_dir, MIXED_POLICY_FILE)
    policy_io.export_policy(path, self.game_string, self.mixed_table(learner)[0])
    if self.level == 2:
      self.trainer.keyer.save_clusters()
    return path

  # ---------------------------------------------------------------- checkpoints
  def state_dict(self) -> dict:
    return {"mode": self.mode, "trainer": self.trainer.state_dict(),
            "gen": self.gen.get_state(), "cost": dict(self.cost), "last": dict(self._last),
            "deployed": self._deployed, "deployed_at": self._deployed_at,
            "measured": [(float(nc), lam) for nc, lam in self._measured],
            "br_critic": None if self.br_critic is None else self.br_critic.state_dict(),
            "br_gate": {k: c.state_dict() for k, c in self.br_gate.items()},
            "gate_value": {k: list(v) for k, v in self.gate_value.items()}}

  def load_state_dict(self, d: dict) -> None:
    if d["mode"] != self.mode:
      raise ValueError(f"scheduler checkpoint is for mode {d['mode']!r}, not {self.mode!r}")
    if self.br_gate and (set(d.get("br_gate") or {}) != set(self.br_gate)
                         or set(d.get("gate_value") or {}) != set(self.gate_value)):
      raise ValueError("the checkpoint's scheduler state has no br_critic deployment critics, "
                       "or not their measures in this version's form (written by an "
                       "armac-spiel version without them, or with another "
                       "policy_mixer.deploy); start a new run, or resume with "
                       "policy_mixer.deploy: average")
    self.trainer.load_state_dict(d["trainer"])
    self.gen.set_state(d["gen"])
    self.cost = dict(d["cost"])
    self._last = dict(d.get("last", {}))
    self._deployed = d.get("deployed")
    self._deployed_at = d.get("deployed_at")  # None (older checkpoints): measured again
    self._measured = [(float(nc), lam) for nc, lam in d.get("measured", [])]
    if self.br_critic is not None:
      self.br_critic.load_state_dict(d["br_critic"])
    for k, c in self.br_gate.items():
      c.load_state_dict(d["br_gate"][k])
    for k in self.gate_value:
      self.gate_value[k] = tuple(float(v) for v in d["gate_value"][k])
    self._chosen.clear()


def make_scheduler(suite: dict, game_string: str, seed: int, device="cpu"):
  """The adapter for a resolved scheduler suite (armac_spiel.runs.RunSpec.scheduler, whose
  mode is decided there), or None when its mode is off. Bad settings raise ConfigError."""
  from armac_spiel.scheduler.config import SchedulerSuiteConfig
  try:
    cfg = SchedulerSuiteConfig.from_dict(suite)
    if cfg.mode == "off":
      return None
    return SchedulerAdapter(cfg, game_string, seed, device, cfg.mode)
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(f"scheduler: {e}") from e
