"""Glue between ARMAC, the training config and the scheduler package.

`SchedulerAdapter` is the object ARMAC calls (`ARMAC(..., scheduler=adapter)`):
- `behaviour(learner, batch)`: at every lockstep sampling step, the mixed policy
  pi_mix = lambda * RM(W(s)) + (1 - lambda) * pibar(s) (legal-masked, renormalised) and the
  scheduler's outputs. Discrete mode in training draws the bin by Gumbel-max from the
  adapter's own CPU generator (seeded from the run seed, saved in the state dict).
- `train_step(learner, traj, learner_ids)`: at the end of the epoch, bin utilities at the
  learner's visited states (utility_computation.utility_type), their state keys
  (state_keying.level), one meta-regret update and one scheduler-network step
  (SchedulerTrainer), with iteration = learner.epoch (warm-up and tau).
- `metrics(learner)`: manager and mixing statistics, the scheduler's cost and the exact
  exploitability of the mixed policy (inference: argmax bins) over all information states.
  `scheduler.bin_entropy` is log K before any state is tracked (untracked keys are uniform);
  the lambda statistics and (discrete) `scheduler.net_bin_entropy`, the mean entropy of the
  network's bin distribution, are over every information state.
- `mixed_policy(learner)`: that mixed policy as an OpenSpiel policy.
- `state_dict()` / `load_state_dict()`: everything for an exact resume.

State keys. Levels 0 and 1 come from the poker features of information-state strings; the
string of a visited state is found through its row of `games.infostate_table`: from
`traj.node` with the tree sampler, else by the bytes of its information-state tensor. Level
2 clusters the information-state tensors.

Mode. It is decided once, by armac_spiel.runs.spec; `make_scheduler(suite, ...)` builds
the adapter for the resolved suite (None when its mode is off).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from armac_spiel.config import ConfigError
from armac_spiel.networks import masked_softmax, regret_matching

SCHEDULER_SECTIONS = ("use_scheduler", "scheduler", "policy_mixer", "meta_regret",
                      "state_keying", "utility_computation", "deterministic_replay")


def split_config(raw: dict, where: str = "config"):
  """Splits a YAML mapping into ARMAC keys and the seed spec's scheduler sections."""
  armac = {k: v for k, v in raw.items() if k not in SCHEDULER_SECTIONS}
  sections = {k: v for k, v in raw.items() if k in SCHEDULER_SECTIONS}
  if not sections:
    return armac, None
  from armac_spiel.scheduler.config import SchedulerSuiteConfig
  try:
    return armac, SchedulerSuiteConfig.from_dict(sections)
  except ValueError as e:
    raise ConfigError(f"{where}: {e}") from e


class SchedulerAdapter:
  """Drives a SchedulerTrainer from ARMAC's hooks; see the module docstring."""

  def __init__(self, suite, game_string: str, seed: int = 0, device="cpu",
               mode: str | None = None):
    from armac_spiel.scheduler.trainer import SchedulerTrainer
    from games import load_game
    mode = suite.mode if mode is None else mode
    if mode not in ("continuous", "discrete"):
      raise ValueError(f"scheduler adapter needs mode continuous|discrete, got {mode!r}")
    self.suite = suite.with_mode(mode)
    self.mode = mode
    self.game_string = game_string
    self.device = torch.device(device)
    self.bins = self.suite.policy_mixer.lambda_bins
    self.level = self.suite.state_keying.level
    sg = load_game(game_string)
    self.trainer = SchedulerTrainer(self.suite, sg.info_state_size,
                                    game_string if self.level < 2 else None, self.device, mode)
    if self.trainer.keyer is not None:
      self.trainer.keyer.seed = seed
    self.gen = torch.Generator().manual_seed(seed + 7919)
    self._chosen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # step -> (episode, bin)
    self._row_keys = None   # (S,) level-0/1 key of each infostate_table row
    self._byte_rows = None  # tensor bytes -> infostate_table row (pyspiel sampler)
    self.cost = {"behaviour_s": 0.0, "train_s": 0.0, "epochs": 0}

  # ---------------------------------------------------------------- policies
  def _sched(self, x: torch.Tensor, iteration: int, training: bool) -> dict:
    """Scheduler output; discrete training samples bins by Gumbel-max from self.gen."""
    net = self.trainer.net
    self.trainer.set_iteration(iteration)
    out = net(x, training=False)
    if training and self.mode == "discrete" and not net.in_warmup():
      logits = out["logits"]
      if net.cfg.use_gumbel:
        g = -torch.empty(logits.shape).exponential_(generator=self.gen).log()
        idx = (logits + g.to(logits.device)).argmax(-1)
      else:
        p = torch.softmax(logits, -1).cpu()
        idx = torch.multinomial(p, 1, generator=self.gen).squeeze(-1).to(logits.device)
      out = {**out, "lambda_idx": idx}
    return out

  @torch.no_grad()
  def _mix(self, learner, x: torch.Tensor, mask: torch.Tensor, training: bool) -> dict:
    from armac_spiel.scheduler.mixer import mix_policies
    pi_rm = regret_matching(learner.regret(x), mask)
    pi_avg = masked_softmax(learner.actor(x), mask)
    out = self._sched(x, learner.epoch, training)
    mixed, lam = mix_policies(pi_rm, pi_avg, out, mask, self.bins, hard=True)
    res = {"mixed": mixed, "actor": pi_avg, "regret": pi_rm, "lambda": lam}
    if self.mode == "discrete":
      res.update(logits=out["logits"], lambda_idx=out["lambda_idx"])
    return res

  def _bin_of(self, res: dict) -> torch.Tensor:
    if self.mode == "discrete":
      return res["lambda_idx"]
    bins = torch.as_tensor(self.bins, dtype=res["lambda"].dtype, device=res["lambda"].device)
    return (res["lambda"] - bins).abs().argmin(-1)

  def behaviour(self, learner, batch) -> dict:
    """(R, A) mixed policy and the scheduler's outputs at one sampling step."""
    t0 = time.perf_counter()
    x = batch.info_state.to(learner.device)
    mask = batch.legal_mask.to(learner.device)
    res = self._mix(learner, x, mask, training=True)
    self._chosen[int(batch.step)] = (batch.episode.cpu(), self._bin_of(res).cpu())
    self._sync()
    self.cost["behaviour_s"] += time.perf_counter() - t0
    return res

  def mixed_table(self, learner, full: bool = False):
    """((S, A) mixed policy, (S, 1) lambda) over all information states, argmax bins;
    `full` returns the whole `_mix` dict instead."""
    from games import infostate_table
    t = infostate_table(self.game_string)
    res = self._mix(learner, t.tensors.to(learner.device), t.legal_mask.to(learner.device),
                    training=False)
    return res if full else (res["mixed"], res["lambda"])

  def mixed_policy(self, learner):
    """pi_mix with argmax bins, as an OpenSpiel policy."""
    from armac_spiel.armac import NetworkPolicy

    def fn(x, mask):
      return self._mix(learner, x, mask, training=False)["mixed"]

    return NetworkPolicy(self.game_string, fn, learner.device)

  # ---------------------------------------------------------------- training
  def _sync(self) -> None:
    if self.device.type == "cuda":
      torch.cuda.synchronize(self.device)

  def _table_rows(self, traj, sel: torch.Tensor) -> torch.Tensor:
    """(N,) infostate_table rows of the selected (B, T) entries."""
    from games import infostate_table
    if traj.node is not None:
      from games.tree import compile_tree
      return compile_tree(self.game_string).infostate[traj.node[sel]]
    if self._byte_rows is None:
      t = infostate_table(self.game_string)
      rows = t.tensors.numpy()
      self._byte_rows = {}
      for i in range(rows.shape[0]):
        self._byte_rows.setdefault(rows[i].tobytes(), i)
    x = traj.info_state[sel].contiguous().numpy()
    try:
      return torch.tensor([self._byte_rows[r.tobytes()] for r in x], dtype=torch.long)
    except KeyError:
      raise ValueError(f"{self.game_string}: a sampled information-state tensor is not in the "
                       "information-state table; use state_keying.level=2") from None

  def _keys(self, traj, sel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if self.level == 2:
      return self.trainer.keyer.ids(embeddings=x)
    if self._row_keys is None:
      from games import infostate_table
      self._row_keys = self.trainer.keyer.ids_from_infostates(
          infostate_table(self.game_string).keys)
    return self._row_keys[self._table_rows(traj, sel)]

  def _chosen_bins(self, traj) -> torch.Tensor:
    """(B, T) bin each step was sampled with (-1 where none was recorded)."""
    out = torch.full(traj.action.shape, -1, dtype=torch.long)
    for t, (ep, idx) in self._chosen.items():
      if t < out.shape[1]:
        out[ep, t] = idx
    return out

  def train_step(self, learner, traj, learner_ids: torch.Tensor) -> dict:
    """Meta-regret update and one scheduler step from the epoch's learner states."""
    t0 = time.perf_counter()
    dev = learner.device
    sel = traj.valid & (traj.player == learner_ids.unsqueeze(1))
    if not bool(sel.any()):
      self._chosen.clear()
      return {}
    x = traj.info_state[sel].to(dev)
    mask = traj.legal_mask[sel].to(dev)
    keys = self._keys(traj, sel, x)
    kind = self.suite.utility_computation.utility_type
    inputs = {}
    with torch.no_grad():
      if kind in ("advantage_based", "hybrid"):
        res = self._mix(learner, x, mask, training=False)
        player = traj.player[sel].to(dev)
        q = learner._values(learner.critic(traj.history[sel].to(dev)), player)
        inputs.update(q=q, pi_rm=res["regret"], pi_avg=res["actor"], legal_mask=mask,
                      lam=res["lambda"])
      if kind in ("immediate", "hybrid"):
        chosen = self._chosen_bins(traj)[sel]
        b_idx, t_idx = sel.nonzero(as_tuple=True)
        ret = traj.returns[b_idx, traj.player[sel]]
        steps_left = (traj.length[b_idx] - 1 - t_idx).float()
        gamma = self.suite.utility_computation.gamma
        inputs.update(chosen_idx=chosen.clamp_min(0).to(dev),
                      returns=(ret * gamma ** steps_left).to(dev))
    util = self.trainer.utility.compute(self.bins, **inputs)
    stats = self.trainer.step(x, keys=keys, utilities=util, iteration=learner.epoch)
    self._chosen.clear()
    self._sync()
    self.cost["train_s"] += time.perf_counter() - t0
    self.cost["epochs"] += 1
    return stats

  # ---------------------------------------------------------------- metrics
  def cost_ms_per_epoch(self) -> float:
    n = self.cost["epochs"]
    return 1e3 * (self.cost["behaviour_s"] + self.cost["train_s"]) / n if n else 0.0

  def metrics(self, learner) -> dict:
    """Manager, mixing and cost statistics and the mixed policy's exploitability."""
    from armac_spiel import evaluation
    from armac_spiel.scheduler.mixer import mixing_stats
    out = {k: v for k, v in self.trainer.stats().items()
           if k.startswith("scheduler.") and not k.startswith("scheduler.lambda_")}
    if out["scheduler.states_tracked"] == 0:  # untracked keys get the uniform distribution
      out["scheduler.bin_entropy"] = float(np.log(len(self.bins)))
    res = self.mixed_table(learner, full=True)
    expl, nc = evaluation.fast_exploitability(self.game_string, res["mixed"].cpu().double())
    out.update({f"scheduler.{k}": v for k, v in mixing_stats(res["lambda"], self.bins).items()})
    if self.mode == "discrete":
      logp = torch.log_softmax(res["logits"], -1)
      out["scheduler.net_bin_entropy"] = float(-(logp.exp() * logp).sum(-1).mean())
    out["scheduler.mode"] = self.mode
    out["scheduler.cost_ms_per_epoch"] = self.cost_ms_per_epoch()
    out["scheduler.behaviour_s"] = self.cost["behaviour_s"]
    out["scheduler.train_s"] = self.cost["train_s"]
    out["nash_conv_mixed"] = nc
    if expl is not None:
      out["exploitability_mixed"] = expl
    return out

  # ---------------------------------------------------------------- checkpoints
  def state_dict(self) -> dict:
    return {"mode": self.mode, "trainer": self.trainer.state_dict(),
            "gen": self.gen.get_state(), "cost": dict(self.cost)}

  def load_state_dict(self, d: dict) -> None:
    if d["mode"] != self.mode:
      raise ValueError(f"scheduler checkpoint is for mode {d['mode']!r}, not {self.mode!r}")
    self.trainer.load_state_dict(d["trainer"])
    self.gen.set_state(d["gen"])
    self.cost = dict(d["cost"])
    self._chosen.clear()


def make_scheduler(suite: dict, game_string: str, seed: int, device="cpu"):
  """The adapter for a resolved scheduler suite (armac_spiel.runs.RunSpec.scheduler, whose
  mode is decided there), or None when its mode is off."""
  from armac_spiel.scheduler.config import SchedulerSuiteConfig
  try:
    cfg = SchedulerSuiteConfig.from_dict(suite)
    if cfg.mode == "off":
      return None
    return SchedulerAdapter(cfg, game_string, seed, device, cfg.mode)
  except ValueError as e:
    raise ConfigError(f"scheduler: {e}") from e
