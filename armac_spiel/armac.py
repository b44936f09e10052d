"""ARMAC: the Advantage Regret-Matching Actor-Critic (Gruslys et al., arXiv 2008.12234).

Model-free: the learner sees sampled episodes only. Per epoch t:

1. Episodes are split into G groups. The first `current_groups` groups play the current
   policy pi^t (their opponent states feed the mean policy); in each other group the
   opponent plays a policy pi^j = RM(W^j) from the bounded buffer of past (W^j, q^j) or the
   current one, drawn uniformly (`policy_draw=uniform`, as in the paper) or where the
   regret replay is furthest below policy j's CFR weight (`balanced`, the default).
   The learning player i plays mu = (1-eps) pi^j + eps uniform (or the scheduler's mixed
   policy in place of pi^j). i alternates by episode; with `alternating_updates` (default),
   as in CFR with alternating updates, the groups replaying policy j learn for player
   j mod N only (see learner_ids); exact CFR converges several times faster that way (see
   docs/results.md, Alternating updates).
   With linear CFR weights the balanced draw favours the newest policy (its weight share is
   largest and it has no draws yet: on Kuhn it took every past group at epochs 1, 6, ...,
   26, the ones printed); `policy_draw=current` always gives it all of them.
2. The history critic q(h, .) is trained with Tree-Backup targets towards the current
   policy pi^t = RM(W^t) for both players:
     G_t = V(h_{t+1}) + lam * pi(a_{t+1}|s_{t+1}) (G_{t+1} - q(h_{t+1}, a_{t+1})),
     V(h) = sum_b pi(b|s) q(h, b), G = terminal return after the last decision.
   With critic_trace=retrace the trace pi(a_{t+1}|s_{t+1}) becomes
   min(1, pi/mu)(a_{t+1}|s_{t+1}), mu the behaviour that drew the action (Retrace).
   The trained critic is q^t; (W^t, q^t) joins the buffer.
3. At the learner's states of group j, the regret target over all legal actions is
     r^j(s, a) = q^j_i(h, a) - sum_b pi^j(b|s) q^j_i(h, b).
   W regresses on these targets over all past epochs (regret_fit=rows: a reservoir of
   rows; states: per-information-state sums, armac_spiel/state_stats.py; bootstrap: W
   itself carries the running sums, re-fitted each epoch to d_t W_t + c_t S_t, see
   armac_spiel/bootstrap.py; the fits are armac_spiel/fits.py), each policy j
   counted with its CFR weight (uniform, or linear as in LCFR; or DCFR's discounting,
   regret_discount=dcfr) whatever its number of draws, so W
   predicts the weighted mean past regret and pi^{t+1} = RM(W^{t+1}), RM = NormalizedReLU
   (uniform where no regret is positive). Targets are scaled by sqrt(t+1): mean regrets
   shrink like 1/sqrt(t), SGD's jitter does not, and RM ignores the scale.
4. The mean-policy network (actor) is trained with cross-entropy towards pi^t(s) at the
   opponent's states of groups that played the current policy.

Reach weighting. Inside an information state the histories are weighted by the opponent's
and chance's reach only, which is the counterfactual weighting. Across epochs the learner's
own reach under mu would bias both the regret mean and the average policy, so every sample
carries w = prod over the learner's earlier actions of uniform(a) / mu(a|s): states are then
weighted as if the learner had played uniformly, a factor that does not depend on j or t.
With explore_eps = 1 the learner plays uniformly and w = 1.

Parts: the policy draw and the CFR weights (armac_spiel/past_policies.py), the critic's fit
(armac_spiel/critic.py), W's and the actor's fits (armac_spiel/fits.py) and their typed rows
(armac_spiel/records.py). Measurements: docs/results.md; the per-state sums:
docs/armac-state-sums-and-floor.md.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np
import torch
from open_spiel.python import policy as os_policy

from armac_spiel.config import ARMACConfig, ConfigError
from armac_spiel.critic import CriticFit
from armac_spiel.fits import ACTOR_FITS, REGRET_FITS, FitContext, NonFiniteLossError
from armac_spiel.networks import (MLP, SnapshotBank, content_ids, masked_softmax,
                                  regret_matching, uniform_policy, unique_forward)
from armac_spiel.past_policies import CURRENT, CFRWeights, PolicyDraw, learner_ids
from armac_spiel.records import PolicyRows, RegretRows, TreeTables, critic_history
from armac_spiel.scheduler.protocol import SchedulerHooks
from games import StepBatch, Trajectories, infostate_table, load_game, make_sampler

__all__ = ["ARMAC", "CURRENT", "NetworkPolicy", "NonFiniteLossError", "TargetCritic",
           "content_ids", "learner_ids", "learner_weights", "unique_forward"]


def learner_weights(traj: Trajectories, learner: torch.Tensor) -> torch.Tensor:
  """(B, T): prod over the learner's earlier actions of uniform(a) / mu(a) (module doc)."""
  mine = traj.valid & (traj.player == learner.unsqueeze(1))
  n_legal = traj.legal_mask.sum(-1).clamp_min(1).float()
  mu_a = traj.behaviour.gather(-1, traj.action.clamp_min(0).unsqueeze(-1)).squeeze(-1)
  ratio = torch.where(mine, 1.0 / (n_legal * mu_a.clamp_min(1e-12)), torch.ones_like(mu_a))
  cum = torch.cumprod(ratio, 1)
  return cum / ratio  # exclusive product: weight of reaching step t


class NetworkPolicy(os_policy.Policy):
  """An OpenSpiel policy backed by a batched function of (info_state, legal_mask)."""

  def __init__(self, game_string: str, fn, device):
    sgame = load_game(game_string)
    super().__init__(sgame.game, list(range(sgame.num_players)))
    self.game_string = game_string
    self.fn = fn
    self.device = device

  @torch.no_grad()
  def batch_probs(self, info_state: torch.Tensor, legal_mask: torch.Tensor) -> torch.Tensor:
    return self.fn(info_state.to(self.device), legal_mask.to(self.device))

  def action_probabilities(self, state, player_id=None):
    p = state.current_player() if player_id is None else player_id
    legal = state.legal_actions(p)
    x = torch.tensor([state.information_state_tensor(p)], dtype=torch.float32)
    m = torch.zeros(1, self.game.num_distinct_actions(), dtype=torch.bool)
    m[0, legal] = True
    probs = self.batch_probs(x, m)[0].cpu().double()
    return {a: float(probs[a]) for a in legal}

  def table(self) -> torch.Tensor:
    """(S, A) table over every information state, in one forward pass."""
    t = infostate_table(self.game_string)
    return self.batch_probs(t.tensors, t.legal_mask).cpu().double()


class TargetCritic(Protocol):
  """Supplies the action values of the regret targets in place of the learned critics q^j
  (e.g. the exact Q of each policy j on a compiled tree, for diagnostics). With one set,
  ARMAC does not train its own critic."""

  def values(self, learner: "ARMAC", traj: Trajectories,
             policy_epochs: torch.Tensor) -> torch.Tensor:
    """Critic outputs (B, T, heads * A) of the episodes in `traj` (one group of B / G
    episodes per entry of `policy_epochs` (G,)), each under its group's policy epoch j;
    called once per epoch, at epoch `learner.epoch`, after the current policy's critic
    would have been trained."""


class ARMAC:
  """ARMAC as a `Learner` (armac_spiel.learner): `step()` does one epoch;
  `average_policy()` / `current_policy()` are OpenSpiel policies; `state_dict()` /
  `load_state_dict()` checkpoint everything.

  Parts: the networks (critic, regret = W, actor) and the snapshot bank of past policies;
  `draw` (past_policies.PolicyDraw) and `weights` (CFRWeights); `critic_fit`
  (critic.CriticFit); `regret_fit` and `actor_fit` (fits.REGRET_FITS / ACTOR_FITS, chosen
  by `regret_fit` / `actor_fit`)."""

  def __init__(self, game_string: str, config: ARMACConfig, seed: int, device="cpu",
               scheduler: SchedulerHooks | None = None, recorder=None,
               unique_inputs: bool = True,
               target_critic: TargetCritic | None = None):
    self.game_string = game_string
    self.sgame = sg = load_game(game_string)
    self.cfg = cfg = config
    self.seed = seed
    self.device = torch.device(device)
    self.n_players = sg.num_players
    self.zero_sum2 = sg.is_two_player_zero_sum
    self.heads = 1 if self.zero_sum2 else sg.num_players
    with torch.random.fork_rng(devices=[]):  # seeded init without touching global RNG state
      torch.manual_seed(seed)
      self.critic = MLP(sg.history_size + cfg.critic_prev_actions * sg.num_actions,
                        cfg.critic_hidden, sg.num_actions * self.heads)
      self.regret = MLP(sg.info_state_size, cfg.regret_hidden, sg.num_actions)
      self.actor = MLP(sg.info_state_size, cfg.actor_hidden, sg.num_actions)
    for net in (self.critic, self.regret, self.actor):
      net.to(self.device)
    self.bank = SnapshotBank({"regret": self.regret, "critic": self.critic},
                             cfg.max_snapshots, self.device)
    self.sampler = make_sampler(game_string, seed, cfg.sampler)
    # Compiled-tree samplers report node ids: replay rows then carry node / information-state
    # ids, and the losses run each network once per distinct input (see unique_forward).
    # unique_inputs=False turns this off (same losses, for benchmarks).
    # regret_fit / actor_fit = states need the ids whatever unique_inputs says.
    fit_types = (REGRET_FITS[cfg.regret_fit], ACTOR_FITS[cfg.actor_fit])
    by_state = [f for f in fit_types if f.needs_ids]
    tree = getattr(self.sampler, "tree", None) if (unique_inputs or by_state) else None
    if by_state and tree is None:
      raise ConfigError(f"config field '{by_state[0].field}' = '{by_state[0].name}' needs "
                        f"information-state ids, which only the tree sampler gives "
                        f"({game_string} uses the {type(self.sampler).__name__}); use 'rows'")
    self._tree = tree
    # With ids, replay rows store ids, not encodings (Leduc checkpoints 4.8x smaller, see
    # experiments/bench_checkpoint.py); the tables gather the encodings.
    self.tables = None if tree is None else TreeTables(tree, self.device,
                                                              cfg.critic_prev_actions)
    self.rng = np.random.default_rng([seed, 1])
    self.gen = torch.Generator().manual_seed(seed + 2)
    self.weights = CFRWeights(cfg, self.n_players)
    self.draw = PolicyDraw(cfg, self.bank, self.weights, self.rng)
    self.fit_context = ctx = FitContext(cfg, self.device, self.gen, self.tables, unique_inputs,
                                        self.weights, self.draw)
    self.critic_fit = CriticFit(self.critic, self.regret, ctx, self.heads,
                                sg.sizes.max_game_length)
    self.regret_fit = fit_types[0](self.regret, ctx)
    self.actor_fit = fit_types[1](self.actor, ctx)
    self.scheduler: SchedulerHooks | None = scheduler
    self.recorder = recorder    # episode recorder for deterministic replay (or None)
    self.target_critic = target_critic  # replaces the learned q^j in the regret targets
    self.epoch = 0
    self.episodes = 0
    self.last_losses: dict[str, float] = {}
    self.last_counts: dict[str, int] = {}

  # ---------------------------------------------------------------- policies
  def _rm(self, x, mask):
    return regret_matching(self.regret(x), mask)

  def _avg(self, x, mask):
    return masked_softmax(self.actor(x), mask)

  def average_policy(self) -> NetworkPolicy:
    return NetworkPolicy(self.game_string, self._avg, self.device)

  def current_policy(self) -> NetworkPolicy:
    return NetworkPolicy(self.game_string, self._rm, self.device)

  # ---------------------------------------------------------------- inspection
  @property
  def tree(self):
    """The compiled game tree behind the information-state ids, or None (pyspiel sampler)."""
    return self._tree

  def state_regret_targets(self):
    """What W regresses on, per information state: (state ids (S',), the weighted mean
    regret targets scaled to unit RMS over the legal actions (S', A), legal masks (S', A)).
    Needs information-state ids (tree sampler)."""
    self._need_tree("state_regret_targets")
    return self.regret_fit.state_targets(self.epoch)

  def state_policy_targets(self):
    """The actor's per-information-state targets: (state ids (S',), weighted mean policies
    (S', A), legal masks (S', A)). Needs information-state ids (tree sampler)."""
    self._need_tree("state_policy_targets")
    return self.actor_fit.state_targets(self.epoch)

  def critic_inputs(self, traj: Trajectories) -> torch.Tensor:
    """(B, T, in) the critic's input at each step of `traj` (records.critic_history)."""
    return critic_history(traj.history, traj.action, self.cfg.critic_prev_actions,
                          self.sgame.num_actions)

  def critic_node_inputs(self, nodes: torch.Tensor) -> torch.Tensor:
    """The critic's input at compiled-tree nodes (tree sampler only)."""
    self._need_tree("critic_node_inputs")
    return self.tables.history[nodes.to(self.device)]

  def _need_tree(self, what: str) -> None:
    if self._tree is None:
      raise ValueError(f"ARMAC.{what} needs information-state ids: use sampler 'tree' "
                       f"(and unique_inputs=True)")

  # ---------------------------------------------------------------- network passes
  def player_values(self, critic_out: torch.Tensor, player: torch.Tensor) -> torch.Tensor:
    """Critic outputs (..., heads * A) -> the acting player's action values (..., A)
    (`player` (...), -1 on padding; in two-player zero-sum games the one head is player
    0's value, negated for player 1)."""
    a = self.sgame.num_actions
    if self.zero_sum2:
      sign = 1.0 - 2.0 * player.clamp_min(0).unsqueeze(-1).to(critic_out.dtype)
      return critic_out * sign
    out = critic_out.unflatten(-1, (self.heads, a))
    idx = player.clamp_min(0)[..., None, None].expand(*player.shape, 1, a)
    return out.gather(-2, idx).squeeze(-2)


  def group_forward(self, name: str, slots: torch.Tensor, x, ids: torch.Tensor | None = None,
                    by_content: bool = False, table: torch.Tensor | None = None):
    """Network `name` ("regret" or "critic") on groups of rows without gradients: x
    (G, R, in), or a zero-argument callable that returns it; group g through snapshot
    slots[g], or the live net where CURRENT. Returns (G, R, out).

    With `ids` (G, R) (tree ids: equal ids, equal rows) and every group on the live net,
    the net runs once per distinct id (unique_forward), on the distinct rows of `table` when
    given (then x, the encodings of every row, is never built; docs/results.md, Memory);
    without ids, by content if `by_content`.
    The sampling policy does not go by content: float32 products depend in their last bits
    on the batch's shape, and a replay verifier (armac_spiel/recording) that recomputes a
    fraction of the episodes must get the same bits from the full-batch shape."""
    live = self.regret if name == "regret" else self.critic
    cur = slots == CURRENT
    if self.bank.size == 0 or cur.all():
      with torch.no_grad():
        if ids is not None and table is not None:
          return unique_forward(live, None, ids, table)
        x = x() if callable(x) else x
        if by_content:
          return self.fit_context.forward(live, x, ids)
        return unique_forward(live, x, ids)
    x = x() if callable(x) else x
    out = self.bank.forward(name, slots.clamp_min(0), x)
    if cur.any():
      with torch.no_grad():
        out[cur] = live(x[cur])
    return out

  # ---------------------------------------------------------------- one epoch
  def sample_episodes(self, slots: torch.Tensor) -> tuple[Trajectories, torch.Tensor]:
    """One epoch's B episodes, group g replaying the policy of snapshot slots[g] (G,)
    (module doc, step 1); returns them and each episode's learning player (B,). Reports
    each decision step to the recorder, if any."""
    cfg, sg = self.cfg, self.sgame
    b, g = cfg.episodes_per_epoch, cfg.groups_per_epoch
    per = b // g
    learner = learner_ids(cfg, self.draw.slot_epochs(slots, self.epoch), self.n_players)
    eps = cfg.explore_eps

    def policy_fn(batch: StepBatch) -> torch.Tensor:
      x = torch.zeros(b, sg.info_state_size, device=self.device)
      m = torch.ones(b, sg.num_actions, dtype=torch.bool, device=self.device)
      e = batch.episode.to(self.device)
      x[e] = batch.info_state.to(self.device)
      m[e] = batch.legal_mask.to(self.device)
      ids = None
      if batch.infostate is not None and self._tree is not None:
        ids = torch.full((b,), -1, dtype=torch.long, device=self.device)  # -1: zero rows
        ids[e] = batch.infostate.to(self.device)
        ids = ids.view(g, per)
      w = self.group_forward("regret", slots, x.view(g, per, -1), ids).view(b, -1)
      pi_j = regret_matching(w, m)[e]
      mask = m[e]
      is_learner = (batch.player == learner[batch.episode]).to(self.device).unsqueeze(1)
      base, sched = pi_j, {}
      if self.scheduler is not None and self.scheduler.drives_behaviour:
        # {"mixed": (R, A), "actor": (R, A), "regret": (R, A), "lambda" | "logits", ...}
        sched = self.scheduler.behaviour(self, batch)
        base = torch.where(is_learner, sched["mixed"], pi_j)
      explore = (1 - eps) * base + eps * uniform_policy(mask)
      out = torch.where(is_learner, explore, pi_j)
      if self.recorder is not None:
        self.recorder.on_step(self, batch, {"regret_policy": pi_j, "behaviour": out,
                                            "is_learner": is_learner.squeeze(1), **sched})
      return out

    if self.recorder is not None:
      self.recorder.before_sample(self, slots, learner)
    traj = self.sampler.sample(policy_fn, b)
    if self.recorder is not None:
      self.recorder.after_sample(self, traj, slots, learner)
    return traj, learner

  @torch.no_grad()
  def add_targets(self, traj: Trajectories, learner: torch.Tensor,
                  slots: torch.Tensor) -> dict[str, int]:
    """Gives the fits this epoch's targets (module doc, steps 3 and 4): regret targets at
    the learner's states of the past groups, mean-policy targets at the other players'
    states of the current groups; counts the past groups' draws. Returns the row counts."""
    cfg, dev, tab = self.cfg, self.device, self.tables
    b, t = traj.action.shape
    g = cfg.groups_per_epoch
    per = b // g
    mask = traj.legal_mask.to(dev)
    info = lambda: traj.info_state.to(dev)  # gathered (and kept by traj) only where needed
    sid = None if traj.node is None or tab is None else tab.node_sid[traj.node.to(dev)]
    node = None if sid is None else traj.node.to(dev).view(g, -1)
    w_j = self.group_forward("regret", slots, lambda: info().view(g, b * t // g, -1),
                             None if sid is None else sid.view(g, -1), by_content=True,
                             table=None if sid is None else tab.state_info_ext)
    pi_j = regret_matching(w_j.view(b, t, -1), mask)
    epochs = self.draw.slot_epochs(slots, self.epoch)
    if self.target_critic is None:
      hist = lambda: self.critic_inputs(traj).to(dev).view(g, b * t // g, -1)
      q_j = self.group_forward("critic", slots, hist, node, by_content=True,
                               table=None if node is None else tab.history)
    else:
      q_j = self.target_critic.values(self, traj, epochs).to(dev)
    q_i = self.player_values(q_j.view(b, t, -1), traj.player.to(dev))
    adv = (q_i - (pi_j * q_i).sum(-1, keepdim=True)) * mask
    weight = learner_weights(traj, learner).to(dev)
    is_learner = traj.valid & (traj.player == learner.unsqueeze(1))
    current = (torch.arange(b) < cfg.current_groups * per).unsqueeze(1)  # mean-policy groups
    sel = (is_learner & ~current).to(dev)

    def ids(rows, encodings=False):  # information-state ids of the rows (tree), else encodings
      if sid is None or encodings:
        return {"info": info()[rows], "mask": mask[rows]}
      return {"sid": sid[rows]}

    j = epochs.repeat_interleave(per).unsqueeze(1).expand(b, t)[sel.cpu()]
    self.regret_fit.add(RegretRows(adv[sel], weight[sel], j, traj.player.to(dev)[sel],
                                   **ids(sel, self.regret_fit.needs_encodings)))
    self.draw.count(slots, self.epoch)
    opp = (traj.valid & ~is_learner & current).to(dev)
    n = int(opp.sum())
    self.actor_fit.add(PolicyRows(pi_j[opp], weight[opp],
                                  torch.full((n,), self.epoch, dtype=torch.long), **ids(opp)))
    return {"regret_rows": int(sel.sum()), "actor_rows": n}

  def step(self) -> dict:
    """One ARMAC epoch; returns its losses (row counts in `last_counts`)."""
    t0 = time.perf_counter()
    for fit in (self.regret_fit, self.actor_fit):
      fit.decay_lr(self.epoch)
    slots = self.draw.slots(self.epoch)
    traj, learner = self.sample_episodes(slots)
    self.critic_fit.add(traj)
    critic_loss = float("nan")
    if self.target_critic is None:
      critic_loss = self.critic_fit.train(self.epoch)
    counts = self.add_targets(traj, learner, slots)
    self.bank.push({"regret": self.regret, "critic": self.critic}, self.epoch, self.rng)
    regret_loss = self.regret_fit.train(self.epoch)
    actor_loss = self.actor_fit.train(self.epoch)
    if self.scheduler is not None:
      self.scheduler.train_step(self, traj, learner, time.perf_counter() - t0)
    self.epoch += 1
    self.episodes += traj.batch_size
    self.last_losses = {"critic_loss": critic_loss, "regret_loss": regret_loss,
                        "actor_loss": actor_loss}
    self.last_counts = counts
    return dict(self.last_losses)

  # ---------------------------------------------------------------- Learner interface
  eval_at_start = True  # the metrics open with the untrained (uniform-like) policy

  def counters(self) -> dict:
    return {"epoch": self.epoch, "episodes": self.episodes}

  def average_table(self) -> torch.Tensor:
    return self.average_policy().table()

  def current_table(self) -> torch.Tensor:
    return self.current_policy().table()

  def evaluation_extras(self) -> dict:
    return {} if self.scheduler is None else self.scheduler.metrics(self)

  def export(self, out_dir: str) -> None:
    """The scheduler's files beside policy.json (policy_mixed.json: its deployed pi_mix)."""
    if self.scheduler is not None:
      self.scheduler.export(out_dir, self)

  # ---------------------------------------------------------------- checkpoints
  def _parts(self) -> dict:
    """The parts that checkpoint themselves (state_dict / load_state_dict), by key."""
    return {"critic": self.critic, "regret": self.regret, "actor": self.actor,
            "bank": self.bank, "cfr_weights": self.weights, "critic_fit": self.critic_fit,
            "regret_fit": self.regret_fit, "actor_fit": self.actor_fit}

  def state_dict(self) -> dict:
    return {"game": self.game_string, "seed": self.seed, "config": self.cfg.to_dict(),
            "epoch": self.epoch, "episodes": self.episodes,
            **{k: part.state_dict() for k, part in self._parts().items()},
            "sampler_rng": self.sampler.get_rng_state(),
            "rng": self.rng.bit_generator.state, "gen": self.gen.get_state(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict()}

  def load_state_dict(self, d: dict) -> None:
    if d["game"] != self.game_string:
      raise ValueError(f"checkpoint is for game {d['game']!r}, not {self.game_string!r}")
    if "critic_fit" not in d:
      raise ValueError("checkpoint was written by an armac-spiel version that kept its "
                       "replays outside the fits; start a new run")
    self.epoch, self.episodes = d["epoch"], d["episodes"]
    for k, part in self._parts().items():
      part.load_state_dict(d.get(k))
    self.sampler.set_rng_state(d["sampler_rng"])
    self.rng.bit_generator.state = d["rng"]
    self.gen.set_state(d["gen"])
    if self.scheduler is not None and d.get("scheduler") is not None:
      self.scheduler.load_state_dict(d["scheduler"])
