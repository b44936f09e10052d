"""ARMAC: the Advantage Regret-Matching Actor-Critic (Gruslys et al., arXiv 2008.12234).

Model-free: the learner sees sampled episodes only. Per epoch t (see shared/ARMAC.md):

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
   armac_spiel/bootstrap.py), each policy j
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
"""

from __future__ import annotations

import copy
from typing import Protocol

import numpy as np
import torch
from open_spiel.python import policy as os_policy

from armac_spiel.bootstrap import CumulativeRegrets
from armac_spiel.buffers import TensorBuffer
from armac_spiel.config import ARMACConfig, ConfigError
from armac_spiel.networks import (MLP, SnapshotBank, fit_last_layer, masked_log_softmax,
                                  masked_softmax, regret_matching, uniform_policy)
from armac_spiel.optim import Adam
from armac_spiel.state_stats import StateSums
from games import StepBatch, Trajectories, infostate_table, load_game, make_sampler

CURRENT = -1  # slot id of the live (current) networks


class NonFiniteLossError(FloatingPointError):
  """A training loss became NaN or infinite; the message names the loss and epoch."""


def unique_forward(net: torch.nn.Module, x: torch.Tensor | None, ids: torch.Tensor | None,
                   table: torch.Tensor | None = None):
  """net(x) for rows x (..., D), run once per distinct id and gathered back.

  Rows with equal ids must have equal x (ids are compiled-tree node or information-state
  ids). Autograd flows through the gather, so any loss of the result and its gradient are
  those of net(x); only the cost changes (a Kuhn minibatch of 4096 rows has at most 12
  distinct information states). Without ids this is net(x). With `table` (the encodings,
  one row per id) x is not read and may be None: the distinct rows come from the table, the
  same rows in the same order, so the same bits, without gathering an encoding per row.
  """
  if ids is None:
    return net(x)
  flat = ids.reshape(-1)
  uniq, inv = torch.unique(flat, return_inverse=True)
  if table is not None:
    out = net(table[uniq])
  else:
    rep = torch.empty(len(uniq), dtype=torch.long, device=flat.device)
    rep.scatter_(0, inv, torch.arange(len(flat), device=flat.device))  # one row per id
    out = net(x.reshape(len(flat), -1)[rep])
  return out[inv].reshape(*ids.shape, out.shape[-1])


_PROJECTIONS: dict = {}


def content_ids(x: torch.Tensor) -> torch.Tensor | None:
  """Ids of the distinct rows of x (..., D) from their contents, for unique_forward where no
  compiled tree gives ids (the pyspiel sampler): each row's dot product with a fixed random
  float64 vector, deduplicated (one sort of scalars; torch.unique over rows costs more than
  the forward it saves). Exact: None when two different rows share a key."""
  flat = x.reshape(-1, x.shape[-1])
  key = (x.shape[-1], str(x.device))
  if key not in _PROJECTIONS:
    g = torch.Generator().manual_seed(0)
    _PROJECTIONS[key] = torch.randn(x.shape[-1], generator=g, dtype=torch.float64).to(x.device)
  uniq, inv = torch.unique(flat.double() @ _PROJECTIONS[key], return_inverse=True)
  rep = torch.empty(len(uniq), dtype=torch.long, device=flat.device)
  rep.scatter_(0, inv, torch.arange(len(flat), device=flat.device))
  if not torch.equal(flat[rep][inv], flat):
    return None
  return inv.reshape(x.shape[:-1])


def learner_ids(cfg: ARMACConfig, slot_epochs: torch.Tensor, n_players: int) -> torch.Tensor:
  """(B,) learning player of each episode of an epoch, given each group's policy epoch.

  Episodes alternate by batch index (i mod N). With `alternating_updates`, as in CFR with
  alternating updates, the groups that replay policy j estimate the regrets of player
  j mod N only, so player i's regrets at j are measured against the opponent policy that
  already answered i's previous update; the current groups (mean-policy data) keep
  alternating by episode."""
  b, g = cfg.episodes_per_epoch, cfg.groups_per_epoch
  per = b // g
  learner = torch.arange(b) % n_players
  if cfg.alternating_updates:
    past = slot_epochs.repeat_interleave(per) % n_players
    learner = torch.where(torch.arange(b) >= cfg.current_groups * per, past, learner)
  return learner


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
  `load_state_dict()` checkpoint everything."""

  def __init__(self, game_string: str, config: ARMACConfig, seed: int, device="cpu",
               scheduler=None, recorder=None, unique_inputs: bool = True,
               target_critic: TargetCritic | None = None):
    self.game_string = game_string
    self.sgame = sg = load_game(game_string)
    self.cfg = cfg = config
    self.seed = seed
    self.device = torch.device(device)
    self.n_players = sg.num_players
    self.zero_sum2 = sg.is_two_player_zero_sum
    self.heads = 1 if self.zero_sum2 else sg.num_players
    self.t_max = sg.sizes.max_game_length
    with torch.random.fork_rng(devices=[]):  # seeded init without touching global RNG state
      torch.manual_seed(seed)
      self.critic = MLP(sg.history_size, cfg.critic_hidden, sg.num_actions * self.heads)
      self.regret = MLP(sg.info_state_size, cfg.regret_hidden, sg.num_actions)
      self.actor = MLP(sg.info_state_size, cfg.actor_hidden, sg.num_actions)
    for net in (self.critic, self.regret, self.actor):
      net.to(self.device)
    # The critic's Polyak target network (critic_target_tau < 1), or None: the trace
    # targets then bootstrap from the live critic.
    self.polyak_critic = None
    if cfg.critic_target_tau < 1.0:
      self.polyak_critic = copy.deepcopy(self.critic).requires_grad_(False)
    # Fused Adam: one kernel for all parameters. These nets are small, so a step is bound by
    # per-parameter overhead: epochs 1.19x (Kuhn) and 1.06x (Leduc) faster on CPU
    # (python -m experiments.bench_learner --compare=adam, docs/results.md). armac_spiel's
    # Adam runs that kernel without importing torch._dynamo (armac_spiel/optim.py).
    self.opt = {name: Adam(net.parameters(), lr=getattr(cfg, f"{name}_lr"))
                for name, net in (("critic", self.critic), ("regret", self.regret),
                                  ("actor", self.actor))}
    self.bank = SnapshotBank({"regret": self.regret, "critic": self.critic},
                             cfg.max_snapshots, self.device)
    self.critic_replay = TensorBuffer(cfg.critic_replay_episodes, "fifo")
    self.regret_replay = TensorBuffer(cfg.regret_replay, "reservoir")
    self.draws = torch.zeros(0, dtype=torch.float64)  # times each policy epoch was drawn
    self.actor_replay = TensorBuffer(cfg.actor_replay, "reservoir")
    self.sampler = make_sampler(game_string, seed, cfg.sampler)
    # Compiled-tree samplers report node ids: replay rows then carry node / information-state
    # ids, and the losses run each network once per distinct input (see unique_forward).
    # unique_inputs=False turns this off (same losses, for benchmarks).
    # regret_fit / actor_fit = states need the ids whatever unique_inputs says.
    by_state = [f for f in ("regret_fit", "actor_fit") if getattr(cfg, f) == "states"]
    tree = getattr(self.sampler, "tree", None) if (unique_inputs or by_state) else None
    if by_state and tree is None:
      raise ConfigError(f"config field '{by_state[0]}' = 'states' needs information-state "
                        f"ids, which only the tree sampler gives ({game_string} uses the "
                        f"{type(self.sampler).__name__}); use 'rows'")
    self._tree = tree
    self.unique_inputs = unique_inputs
    # With ids, replay rows store ids, not encodings (Leduc checkpoints 4.8x smaller, see
    # experiments/bench_checkpoint.py); _inputs gathers the encodings from the tree's tables
    # (node tables: index -1 is the zero padding row; state ids are never padding).
    self._tables = None if tree is None else {
        "history": tree._history_ext.to(self.device),
        "info": tree._node_info_ext.to(self.device),
        "mask": tree._legal_ext.to(self.device),
        "state_info": tree.info_tensors.to(self.device),
        "state_mask": tree.info_legal.to(self.device),
        "state_info_ext": tree._info_ext.to(self.device)}  # zero row at -1: padding's id
    self._node_sid = None if tree is None else torch.cat(
        [tree.infostate, torch.tensor([-1])]).to(self.device)  # index -1: padding -> -1
    # regret_fit / actor_fit = states keep per-information-state sums of the targets in
    # place of replay rows (armac_spiel/state_stats.py): the same means as an unthinned
    # replay, in O(states * actions) memory.
    shape = (0, 0) if tree is None else (tree.num_infostates, tree.num_actions)
    self.regret_sums = StateSums(*shape) if cfg.regret_fit == "states" else None
    self.actor_sums = StateSums(*shape) if cfg.actor_fit == "states" else None
    # regret_fit = bootstrap: W carries the cumulative sums; this epoch's learner rows wait
    # in _pending until W is fitted (armac_spiel/bootstrap.py).
    self.cumulative = (CumulativeRegrets(cfg.bootstrap_memory)
                       if cfg.regret_fit == "bootstrap" else None)
    self._pending = None
    self.rng = np.random.default_rng([seed, 1])
    self.gen = torch.Generator().manual_seed(seed + 2)
    self.scheduler = scheduler  # see armac_spiel/scheduler_glue.py for the interface
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
    return self._state_regret_targets()

  def state_policy_targets(self):
    """The actor's per-information-state targets: (state ids (S',), weighted mean policies
    (S', A), legal masks (S', A)). Needs information-state ids (tree sampler)."""
    self._need_tree("state_policy_targets")
    return self._state_policy_targets()

  def _need_tree(self, what: str) -> None:
    if self._tree is None:
      raise ValueError(f"ARMAC.{what} needs information-state ids: use sampler 'tree' "
                       f"(and unique_inputs=True)")

  # ---------------------------------------------------------------- helpers
  def _values(self, out: torch.Tensor, player: torch.Tensor) -> torch.Tensor:
    """Critic output (..., heads*A) -> the acting player's action values (..., A)."""
    a = self.sgame.num_actions
    if self.zero_sum2:
      sign = 1.0 - 2.0 * player.clamp_min(0).unsqueeze(-1).to(out.dtype)
      return out * sign
    out = out.unflatten(-1, (self.heads, a))
    idx = player.clamp_min(0)[..., None, None].expand(*player.shape, 1, a)
    return out.gather(-2, idx).squeeze(-2)

  def _forward(self, net: torch.nn.Module, x: torch.Tensor, ids: torch.Tensor | None):
    """net(x), once per distinct input: by tree ids, else (unique_inputs) by content."""
    if ids is None and self.unique_inputs:
      ids = content_ids(x)
    return unique_forward(net, x, ids)

  def _group_forward(self, name: str, slots: torch.Tensor, x, ids: torch.Tensor | None = None,
                     by_content: bool = False, table: torch.Tensor | None = None):
    """x: (G, R, in), or a zero-argument callable that returns it; group g through snapshot
    slots[g], or the live net where CURRENT.
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
          return self._forward(live, x, ids)
        return unique_forward(live, x, ids)
    x = x() if callable(x) else x
    out = self.bank.forward(name, slots.clamp_min(0), x)
    if cur.any():
      with torch.no_grad():
        out[cur] = live(x[cur])
    return out

  def _draw_slots(self) -> torch.Tensor:
    """Policy j per group: `current_groups` play the current policy, the rest past ones."""
    g, cfg = self.cfg.groups_per_epoch, self.cfg
    slots = torch.full((g,), CURRENT, dtype=torch.long)
    n_past = g - cfg.current_groups
    # Candidates: the kept past policies and the current one (index bank.size).
    if cfg.policy_draw == "current":
      pick = np.full(n_past, self.bank.size)
    elif cfg.policy_draw == "uniform":
      pick = self.rng.integers(self.bank.size + 1, size=n_past)
    else:
      pick = self._balanced_picks(n_past)
    pick[pick == self.bank.size] = CURRENT
    slots[cfg.current_groups:] = torch.from_numpy(pick)
    return slots

  def _balanced_picks(self, n: int) -> np.ndarray:
    """Draws j where the replay is furthest below its target share of policy j.

    The regret replay then holds each policy's targets in proportion to its CFR weight,
    so the importance weights in _regret_sample_weight stay near 1 (an effective sample
    size ln(t) times larger than with uniform draws). Ties are broken at random.
    """
    ep = torch.cat([self.bank.epoch[:self.bank.size], torch.tensor([self.epoch])])
    self._grow_draws(self.epoch + 1)
    target = (ep.double() + 1.0) if self.cfg.snapshot_weighting == "linear" else (
        torch.ones(len(ep), dtype=torch.float64))
    have = self.draws[ep].clone()
    total = self.draws.sum() + n
    picks = np.empty(n, dtype=np.int64)
    for k in range(n):
      deficit = target / target.sum() * total - have
      deficit += torch.from_numpy(self.rng.random(len(ep))) * 1e-6
      picks[k] = int(deficit.argmax())
      have[picks[k]] += 1
    return picks

  def _slot_epochs(self, slots: torch.Tensor) -> torch.Tensor:
    return torch.where(slots == CURRENT, torch.tensor(self.epoch),
                       self.bank.epoch[slots.clamp_min(0)])

  # ---------------------------------------------------------------- sampling
  def _sample(self, slots: torch.Tensor) -> tuple[Trajectories, torch.Tensor]:
    cfg, sg = self.cfg, self.sgame
    b, g = cfg.episodes_per_epoch, cfg.groups_per_epoch
    per = b // g
    learner = learner_ids(cfg, self._slot_epochs(slots), self.n_players)
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
      w = self._group_forward("regret", slots, x.view(g, per, -1), ids).view(b, -1)
      pi_j = regret_matching(w, m)[e]
      mask = m[e]
      is_learner = (batch.player == learner[batch.episode]).to(self.device).unsqueeze(1)
      base, sched = pi_j, {}
      if self.scheduler is not None and getattr(self.scheduler, "drives_behaviour", True):
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

  def _pad_time(self, traj: Trajectories) -> dict[str, torch.Tensor]:
    """Episode rows padded to the game's max length, for the critic replay."""
    t_pad = self.t_max - traj.action.shape[1]

    def pad(x, value=0):
      if t_pad == 0:
        return x
      shape = list(x.shape)
      shape[1] = t_pad
      return torch.cat([x, torch.full(shape, value, dtype=x.dtype)], 1)

    rows = {"player": pad(traj.player, -1), "action": pad(traj.action, 0).clamp_min(0),
            "valid": pad(traj.valid, False), "returns": traj.returns}
    if self.cfg.critic_trace == "retrace":  # mu(a_t | s_t), the behaviour's probability
      mu_a = traj.behaviour.gather(-1, traj.action.clamp_min(0).unsqueeze(-1)).squeeze(-1)
      rows["mu"] = pad(mu_a, 1.0)
    if traj.node is not None and self._tables is not None:
      return {**rows, "node": pad(traj.node, -1)}  # encodings: see _inputs
    return {**rows, "history": pad(traj.history), "info": pad(traj.info_state),
            "mask": pad(traj.legal_mask, True)}

  def _inputs(self, d: dict) -> dict:
    """Replay rows with the encodings their ids stand for (rows that store them: as is).
    Critic rows hold node ids (-1: padding, zero encodings); W and actor rows hold
    information-state ids."""
    if self._tables is None or "info" in d:
      return d
    tab = self._tables
    if "node" in d:
      return {**d, "history": tab["history"][d["node"]], "info": tab["info"][d["node"]],
              "mask": tab["mask"][d["node"]]}
    return {**d, "info": tab["state_info"][d["sid"]], "mask": tab["state_mask"][d["sid"]]}

  @staticmethod
  def _learner_weights(traj: Trajectories, learner: torch.Tensor) -> torch.Tensor:
    """(B, T): prod over the learner's earlier actions of uniform(a) / mu(a)."""
    mine = traj.valid & (traj.player == learner.unsqueeze(1))
    n_legal = traj.legal_mask.sum(-1).clamp_min(1).float()
    mu_a = traj.behaviour.gather(-1, traj.action.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    ratio = torch.where(mine, 1.0 / (n_legal * mu_a.clamp_min(1e-12)), torch.ones_like(mu_a))
    cum = torch.cumprod(ratio, 1)
    return cum / ratio  # exclusive product: weight of reaching step t

  # ---------------------------------------------------------------- training
  def _check(self, name: str, loss: torch.Tensor) -> float:
    v = float(loss.detach())
    if not np.isfinite(v):
      raise NonFiniteLossError(f"{name} loss is {v} at epoch {self.epoch}; lower "
                               f"{name}_lr or check the inputs")
    return v

  def _fit(self, name: str, buffer: TensorBuffer, steps: int, batch: int, loss_fn) -> float:
    """`steps` Adam steps of network `name` on minibatches of `buffer`; mean loss."""
    return self._adam_steps(name, steps, lambda: loss_fn(
        {k: v.to(self.device) for k, v in buffer.sample(batch, self.gen).items()}))

  def _adam_steps(self, name: str, steps: int, make_loss) -> float:
    """`steps` Adam steps of network `name` on `make_loss()`; mean loss."""
    losses = []
    for _ in range(steps):
      loss = make_loss()
      self.opt[name].zero_grad(set_to_none=True)
      loss.backward()
      self.opt[name].step()
      if name == "critic" and self.polyak_critic is not None:
        self._polyak()
      losses.append(self._check(name, loss))
    return float(np.mean(losses)) if losses else float("nan")

  def _state_rows(self, n: int, batch: int):
    """All n state rows (a full batch), or a random minibatch of `batch` if n is larger."""
    if n <= batch:
      return slice(None)
    return torch.randint(n, (batch,), generator=self.gen).to(self.device)

  def _train_critic(self) -> float:
    if self.target_critic is not None:
      return float("nan")
    return self._fit("critic", self.critic_replay, self.cfg.critic_steps,
                     self.cfg.critic_batch_episodes, self._critic_loss)

  @torch.no_grad()
  def _polyak(self) -> None:
    """theta' <- (1 - tau) theta' + tau theta for the critic's target network."""
    tau = self.cfg.critic_target_tau
    for p_t, p in zip(self.polyak_critic.parameters(), self.critic.parameters()):
      p_t.lerp_(p, tau)

  def _critic_loss(self, d: dict) -> torch.Tensor:
    """Regression of q(h_t, a_t) towards the current policy's return: Tree Backup (trace
    c = tb_lambda * pi(a)) or, with critic_trace=retrace, Retrace (c = tb_lambda *
    min(1, pi(a) / mu(a)), Munos et al. 2016), mu the stored behaviour probability."""
    d = self._inputs(d)
    valid = d["valid"]
    ret = d["returns"][:, :self.heads]  # player 0's value in 2p zero-sum
    node = d.get("node")
    out = self._forward(self.critic, d["history"], node).unflatten(-1, (self.heads, -1))
    a_idx = d["action"][..., None, None].expand(*d["action"].shape, self.heads, 1)
    q_a = out.gather(-1, a_idx).squeeze(-1)  # (E, T, H)
    with torch.no_grad():
      sid = None if node is None else self._node_sid[node]
      pi = regret_matching(self._forward(self.regret, d["info"], sid), d["mask"])  # (E, T, A)
      boot_q, boot_out = q_a.detach(), out.detach()
      if self.polyak_critic is not None:  # bootstrap from the Polyak target network
        boot_out = self._forward(self.polyak_critic, d["history"], node).unflatten(
            -1, (self.heads, -1))
        boot_q = boot_out.gather(-1, a_idx).squeeze(-1)
      v = (boot_out * pi.unsqueeze(2)).sum(-1)  # (E, T, H)
      c = pi.gather(-1, d["action"].unsqueeze(-1))  # (E, T, 1)
      if "mu" in d:
        c = (c / d["mu"].unsqueeze(-1).clamp_min(1e-12)).clamp_max(1.0)
      target = torch.zeros_like(q_a)
      g_next = ret
      for t in range(self.t_max - 1, -1, -1):
        if t + 1 < self.t_max:
          boot = v[:, t + 1] + self.cfg.tb_lambda * c[:, t + 1] * (
              g_next - boot_q[:, t + 1])
          g_t = torch.where(valid[:, t + 1, None], boot, ret)
        else:
          g_t = ret
        target[:, t] = g_t
        g_next = g_t
    err = ((q_a - target) ** 2).mean(-1)
    return (err * valid).sum() / valid.sum().clamp_min(1)

  def _grow_draws(self, n: int) -> None:
    if len(self.draws) < n:
      self.draws = torch.cat([self.draws, torch.zeros(n - len(self.draws), dtype=torch.float64)])

  def _fold_regret_sums(self) -> StateSums:
    """Folds the regret sums of the policy epochs that can no longer be drawn (neither in
    the bank nor current; with policy_draw=current: all but the current) into the final
    sums: their draw counts, hence weights, are final.

    regret_discount=dcfr (Brown & Sandholm 2019, DCFR): the sums hold each epoch's targets
    divided by its draws (its weight is 1) and, before epoch e's are added, the final sums
    of the states of e's learning players are discounted as in DCFR at that player's n-th
    update, n = e // N with alternating updates (else e): positive sums by
    n^alpha / (n^alpha + 1), negative by n^beta / (n^beta + 1). Regret matching reads only
    the per-state direction, so the denominators stay undiscounted (they mark seen states).
    """
    sums, cfg = self.regret_sums, self.cfg
    if cfg.policy_draw == "current":
      keep = torch.tensor([self.epoch])
    else:
      keep = torch.cat([self.bank.epoch[:self.bank.size], torch.tensor([self.epoch])])
    if cfg.regret_discount == "none":
      sums.fold(keep, self._regret_epoch_factor(sums.live_epochs))
      return sums
    for e in sorted(int(x) for x in sums.live_epochs if not torch.isin(x, keep)):
      n = e // self.n_players if cfg.alternating_updates else e
      if n > 0:
        pos, neg = self._dcfr_factors(n)
        mine = torch.ones(sums.num_states, 1, dtype=torch.bool)
        if cfg.alternating_updates:
          mine = (self._tree.info_player == e % self.n_players).unsqueeze(1)
        factor = torch.where(sums.num > 0, pos, neg)
        sums.num = torch.where(mine, sums.num * factor, sums.num)
      sums.fold(torch.tensor([x for x in sums.live_epochs.tolist() if x != e]),
                self._regret_epoch_factor(sums.live_epochs))
    return sums

  def _dcfr_factors(self, n: int) -> tuple[float, float]:
    """DCFR's discounts of positive and negative regret sums at a player's n-th update."""
    a, b = self.cfg.dcfr_alpha, self.cfg.dcfr_beta
    return n ** a / (n ** a + 1.0), n ** b / (n ** b + 1.0)

  def _regret_epoch_factor(self, j: torch.Tensor) -> torch.Tensor:
    """_regret_sample_weight in float64 (with regret_discount=dcfr: 1 / draws)."""
    self._grow_draws(int(j.max()) + 1 if len(j) else 0)
    target = (j.double() + 1.0) if (self.cfg.snapshot_weighting == "linear" and
                                    self.cfg.regret_discount == "none") else 1.0
    return target / self.draws[j].clamp_min(1.0)

  def _average_weight(self, epoch: int) -> float:
    """Weight of epoch t's policy in the average policy."""
    return epoch + 1.0 if self.cfg.average_weighting == "linear" else 1.0

  def _regret_sample_weight(self, j: torch.Tensor) -> torch.Tensor:
    """Makes every past policy j count target(j) in W's regression, whatever its draws.

    Each epoch draws j uniformly from the policies so far, and the replay accumulates over
    epochs, so early policies would dominate (draws[j] ~ log(t / j)). Dividing by the
    realised draw count restores CFR's weighting: uniform, or linear (j + 1) as in LCFR.
    """
    target = (j.double() + 1.0) if self.cfg.snapshot_weighting == "linear" else 1.0
    return (target / self.draws[j].clamp_min(1.0)).float()

  def _train_regret(self) -> float:
    if self.cfg.regret_fit == "states":
      return self._train_regret_states()
    if self.cfg.regret_fit == "bootstrap":
      return self._train_regret_bootstrap()
    return self._fit("regret", self.regret_replay, self.cfg.regret_steps,
                     self.cfg.regret_batch, self._regret_loss)

  def _state_means(self, sid: torch.Tensor, values: torch.Tensor, w: torch.Tensor):
    """Weighted mean of `values` (R, A) per information state id in `sid` (R,), over the
    states that occur. Returns (state ids (S',), means (S', A) float64, legal (S', A))."""
    tree = self._tree
    num = torch.zeros(tree.num_infostates, tree.num_actions, dtype=torch.float64)
    num.index_add_(0, sid, w.double()[:, None] * values.double())
    den = torch.zeros(tree.num_infostates, dtype=torch.float64).index_add_(0, sid, w.double())
    seen = (den > 0).nonzero().squeeze(1)
    return seen, num[seen] / den[seen, None], tree.info_legal[seen]

  def _state_regret_targets(self):
    """Per information state s seen in the regret replay: the weighted mean of its targets
    (the minimiser of _regret_loss's row-wise MSE over the whole replay), scaled to unit RMS
    over the legal actions. Returns (state ids, targets (S', A), legal masks (S', A))."""
    if self.regret_sums is not None:
      sums = self._fold_regret_sums()
      seen, mean = sums.means(self._regret_epoch_factor(sums.live_epochs))
      mask = self._tree.info_legal[seen]
    else:
      d = self.regret_replay.filled()
      seen, mean, mask = self._state_means(
          d["sid"], d["target"], d["weight"] * self._regret_sample_weight(d["j"]))
    rms = (mean.pow(2).sum(1) / mask.sum(1).clamp_min(1)).sqrt()
    y = torch.where(rms[:, None] > 0, mean / rms.clamp_min(1e-300)[:, None], 0.0)
    return seen, y.float(), mask

  def _train_regret_states(self) -> float:
    """regret_fit=states: W regresses on each seen information state's mean target, every
    state weighted alike, in full batches (minibatches of regret_batch states if more).

    The row-wise loss weights a state by its sampling frequency, so rarely reached states
    are fitted worst, and its minibatch gradients carry the targets' variance across
    histories (the opponent's cards); regret matching needs only each state's direction of
    mean regret, which is invariant to a positive per-state scale. Fitting the unit-RMS
    means directly removes both problems (Leduc, exact critic: see docs/results.md).
    """
    if not len(self.regret_replay if self.regret_sums is None else self.regret_sums):
      return float("nan")
    seen, y, mask = self._state_regret_targets()
    x = self._tables["state_info"][seen.to(self.device)]
    y, mask = y.to(self.device), mask.to(self.device)

    def loss():
      idx = self._state_rows(len(seen), self.cfg.regret_batch)
      return ((self.regret(x[idx]) - y[idx]) ** 2 * mask[idx]).sum(-1).mean()

    lstsq = self.cfg.regret_lstsq
    out = self._adam_steps("regret", lstsq or self.cfg.regret_steps, loss)
    if lstsq:  # the features stay Adam's; the last layer becomes exact
      fit_last_layer(self.regret, x, y, mask)
      with torch.no_grad():
        out = self._check("regret", ((self.regret(x) - y) ** 2 * mask).sum(-1).mean())
    return out

  def _train_regret_bootstrap(self) -> float:
    """regret_fit=bootstrap: W regresses on d_t * C_t + c_t * S_t over the remembered
    encodings (armac_spiel/bootstrap.py), warm-started, states weighted by relative error,
    in full batches (minibatches of regret_batch states if more)."""
    cfg, rows, self._pending = self.cfg, self._pending, None
    if rows is None or not len(rows["adv"]):
      return float("nan")
    n = self.epoch // self.n_players if cfg.alternating_updates else self.epoch
    discount = self._dcfr_factors(n) if cfg.regret_discount == "dcfr" and n > 0 else None
    weight_t = (self.epoch + 1.0 if cfg.snapshot_weighting == "linear" and
                cfg.regret_discount == "none" else 1.0)
    x, y, mask, ws = self.cumulative.epoch_targets(
        self.regret, self.epoch,
        self.epoch % self.n_players if cfg.alternating_updates else None,
        rows["info"], rows["mask"], rows["player"], rows["adv"], rows["weight"],
        weight_t=weight_t, discount=discount, plus=cfg.regret_plus)
    ws = ws / ws.mean()

    def loss():
      idx = self._state_rows(len(x), cfg.regret_batch)
      err = ((self.regret(x[idx]) - y[idx]) ** 2 * mask[idx]).sum(-1)
      return (err * ws[idx]).mean()

    return self._adam_steps("regret", cfg.regret_steps, loss)

  def _regret_loss(self, d: dict) -> torch.Tensor:
    d = self._inputs(d)
    w = d["weight"] * self._regret_sample_weight(d["j"].cpu()).to(self.device)
    # Mean regrets shrink like 1/sqrt(t) while SGD's output jitter does not; regressing
    # on sqrt(t)-scaled targets keeps their ratio fixed. RM is invariant to the scale.
    scale = float(np.sqrt(self.epoch + 1.0)) if self.cfg.regret_scale_sqrt_t else 1.0
    w_s = self._forward(self.regret, d["info"], d.get("sid"))
    err = ((w_s - scale * d["target"]) ** 2 * d["mask"]).sum(-1)
    return (err * w).sum() / w.sum()

  def _train_actor(self) -> float:
    if self.cfg.actor_fit == "states":
      return self._train_actor_states()
    return self._fit("actor", self.actor_replay, self.cfg.actor_steps,
                     self.cfg.actor_batch, self._actor_loss)

  def _state_policy_targets(self):
    """Per information state s seen in the actor replay: the weighted mean of its target
    policies, the minimiser of _actor_loss's cross-entropy over the whole replay (with
    explore_eps = 1 a row's frequency is the acting player's own reach, so this is CFR's
    average policy). Returns (state ids, mean policies (S', A), legal masks (S', A))."""
    if self.actor_sums is not None:
      seen, mean = self.actor_sums.means()
      return seen, mean.float(), self._tree.info_legal[seen]
    d = self.actor_replay.filled()
    w = d["weight"].double()
    if self.cfg.average_weighting == "linear":
      w = w * (d["epoch"].double() + 1.0)
    seen, mean, mask = self._state_means(d["sid"], d["probs"], w)
    return seen, mean.float(), mask

  def _train_actor_states(self) -> float:
    """actor_fit=states: cross-entropy towards each seen state's mean policy, states
    weighted alike, full batches (minibatches of actor_batch states if more). Same
    minimiser per state as the row-wise loss, without its minibatch noise."""
    seen, p, mask = self._state_policy_targets()
    x = self._tables["state_info"][seen.to(self.device)]
    p, mask = p.to(self.device), mask.to(self.device)

    def loss():
      idx = self._state_rows(len(seen), self.cfg.actor_batch)
      logp = masked_log_softmax(self.actor(x[idx]), mask[idx])
      return -(p[idx] * logp.masked_fill(~mask[idx], 0.0)).sum(-1).mean()

    return self._adam_steps("actor", self.cfg.actor_steps, loss)

  def _actor_loss(self, d: dict) -> torch.Tensor:
    """Cross-entropy towards pi^t, weighted by epoch (linear averaging) when configured."""
    d = self._inputs(d)
    w = d["weight"]
    if self.cfg.average_weighting == "linear":
      w = w * (d["epoch"].double() + 1.0).to(w.dtype)
    logp = masked_log_softmax(self._forward(self.actor, d["info"], d.get("sid")), d["mask"])
    ce = -(d["probs"] * logp.masked_fill(~d["mask"], 0.0)).sum(-1)
    return (ce * w).sum() / w.sum()

  @torch.no_grad()
  def _targets(self, traj: Trajectories, learner: torch.Tensor, slots: torch.Tensor):
    """Regret targets at the learner's states; mean-policy targets at current groups."""
    cfg = self.cfg
    b, t = traj.action.shape
    g = cfg.groups_per_epoch
    dev = self.device
    mask = traj.legal_mask.to(dev)
    info = lambda: traj.info_state.to(dev)  # gathered (and kept by traj) only where needed
    tab = self._tables
    sid = None if traj.node is None or self._node_sid is None else (
        self._node_sid[traj.node.to(dev)])
    node = None if sid is None else traj.node.to(dev).view(g, -1)
    w_j = self._group_forward("regret", slots, lambda: info().view(g, b * t // g, -1),
                              None if sid is None else sid.view(g, -1), by_content=True,
                              table=None if sid is None else tab["state_info_ext"])
    pi_j = regret_matching(w_j.view(b, t, -1), mask)
    if self.target_critic is None:
      hist = lambda: traj.history.to(dev).view(g, b * t // g, -1)
      q_j = self._group_forward("critic", slots, hist, node, by_content=True,
                                table=None if node is None else tab["history"])
    else:
      q_j = self.target_critic.values(self, traj, self._slot_epochs(slots)).to(dev)
    q_i = self._values(q_j.view(b, t, -1), traj.player.to(dev))
    adv = (q_i - (pi_j * q_i).sum(-1, keepdim=True)) * mask
    weight = self._learner_weights(traj, learner).to(dev)
    is_learner = traj.valid & (traj.player == learner.unsqueeze(1))
    per = b // g
    current_ep = torch.zeros(g, dtype=torch.bool)
    current_ep[:cfg.current_groups] = True  # groups that feed the mean policy only
    current_ep = current_ep.repeat_interleave(per).unsqueeze(1)
    sel = (is_learner & ~current_ep).to(dev)
    j_epoch = self._slot_epochs(slots).repeat_interleave(per).unsqueeze(1).expand(b, t)

    def ids(rows):  # information-state ids of the rows (tree sampler), else encodings
      if sid is None:
        return {"info": info()[rows].cpu(), "mask": mask[rows].cpu()}
      return {"sid": sid[rows].cpu()}

    if self.regret_sums is not None:
      self.regret_sums.add(sid[sel].cpu(), adv[sel].cpu(), weight[sel].cpu(), j_epoch[sel.cpu()])
    elif self.cumulative is not None:
      self._pending = {"info": info()[sel], "mask": mask[sel], "adv": adv[sel],
                       "weight": weight[sel], "player": traj.player.to(dev)[sel]}
    else:
      self.regret_replay.add({**ids(sel), "target": adv[sel].cpu(),
                              "weight": weight[sel].cpu(), "j": j_epoch[sel.cpu()]}, self.gen)
    # Realised draw counts per policy epoch: the replay holds policy j's targets in
    # proportion to draws[j], which _train_regret divides out (see _regret_sample_weight).
    past = self._slot_epochs(slots[cfg.current_groups:])
    self._grow_draws(self.epoch + 1)
    self.draws.index_add_(0, past, torch.ones(len(past), dtype=torch.float64))
    opp = (traj.valid & ~is_learner & current_ep).to(dev)
    n = int(opp.sum())
    if self.actor_sums is not None:
      w_avg = weight[opp].cpu().double() * self._average_weight(self.epoch)
      self.actor_sums.add(sid[opp].cpu(), pi_j[opp].cpu(), w_avg)
    else:
      self.actor_replay.add({**ids(opp), "probs": pi_j[opp].cpu(),
                             "weight": weight[opp].cpu(),
                             "epoch": torch.full((n,), self.epoch, dtype=torch.long)}, self.gen)
    return {"regret_rows": int(sel.sum()), "actor_rows": n}

  def _actor_rows(self) -> int:
    return len(self.actor_replay if self.actor_sums is None else self.actor_sums)

  def _decay_lrs(self) -> None:
    """W and the actor regress on means over all past policies, which move like 1/t late
    in training; decaying their step size shrinks SGD's jitter around those means."""
    cfg = self.cfg
    if cfg.lr_decay == "none":
      return
    x = 1.0 + self.epoch / cfg.lr_decay_epochs
    f = x ** -0.5 if cfg.lr_decay == "sqrt" else 1.0 / x
    for name, lr in (("regret", cfg.regret_lr), ("actor", cfg.actor_lr)):
      for group in self.opt[name].param_groups:
        group["lr"] = max(lr * f, cfg.min_lr)

  def step(self) -> dict:
    """One ARMAC epoch; returns its losses (row counts in `last_counts`)."""
    self._decay_lrs()
    slots = self._draw_slots()
    traj, learner = self._sample(slots)
    self.critic_replay.add(self._pad_time(traj), self.gen)
    critic_loss = self._train_critic()
    counts = self._targets(traj, learner, slots)
    self.bank.push({"regret": self.regret, "critic": self.critic}, self.epoch, self.rng)
    regret_loss = self._train_regret()
    actor_loss = self._train_actor() if self._actor_rows() else float("nan")
    if self.scheduler is not None:
      self.scheduler.train_step(self, traj, learner)
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
    if self.scheduler is not None and hasattr(self.scheduler, "export"):
      self.scheduler.export(out_dir, self)

  # ---------------------------------------------------------------- checkpoints
  def state_dict(self) -> dict:
    return {
        "game": self.game_string, "seed": self.seed, "config": self.cfg.to_dict(),
        "epoch": self.epoch, "episodes": self.episodes,
        "nets": {"critic": self.critic.state_dict(), "regret": self.regret.state_dict(),
                 "actor": self.actor.state_dict(),
                 **({} if self.polyak_critic is None else
                    {"polyak_critic": self.polyak_critic.state_dict()})},
        "opt": {k: o.state_dict() for k, o in self.opt.items()},
        "bank": self.bank.state_dict(),
        "critic_replay": self.critic_replay.state_dict(),
        "regret_replay": self.regret_replay.state_dict(),
        "cumulative": None if self.cumulative is None else self.cumulative.state_dict(),
        "actor_replay": self.actor_replay.state_dict(),
        "state_sums": {name: sums.state_dict() for name, sums in
                       (("regret", self.regret_sums), ("actor", self.actor_sums))
                       if sums is not None},
        "draws": self.draws,
        "sampler_rng": self.sampler.get_rng_state(),
        "rng": self.rng.bit_generator.state,
        "gen": self.gen.get_state(),
        "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
    }

  def load_state_dict(self, d: dict) -> None:
    if d["game"] != self.game_string:
      raise ValueError(f"checkpoint is for game {d['game']!r}, not {self.game_string!r}")
    self.epoch, self.episodes = d["epoch"], d["episodes"]
    self.critic.load_state_dict(d["nets"]["critic"])
    self.regret.load_state_dict(d["nets"]["regret"])
    self.actor.load_state_dict(d["nets"]["actor"])
    if self.polyak_critic is not None:
      if "polyak_critic" not in d["nets"]:
        raise ValueError("checkpoint has no critic target network (written with "
                         "critic_target_tau = 1); start a new run")
      self.polyak_critic.load_state_dict(d["nets"]["polyak_critic"])
    for k, o in self.opt.items():
      o.load_state_dict(d["opt"][k])
    self.bank.load_state_dict(d["bank"])
    self.critic_replay.load_state_dict(d["critic_replay"])
    self.regret_replay.load_state_dict(d["regret_replay"])
    self.actor_replay.load_state_dict(d["actor_replay"])
    if self.cumulative is not None:
      if d.get("cumulative") is None:
        raise ValueError("checkpoint has no cumulative-regret memory for regret_fit=bootstrap "
                         "(written with another regret_fit); start a new run")
      self.cumulative.load_state_dict(d["cumulative"])
    for name, sums in (("regret", self.regret_sums), ("actor", self.actor_sums)):
      if sums is None:
        continue
      saved = d.get("state_sums", {}).get(name)
      if saved is None:
        raise ValueError(f"checkpoint has no per-state sums for {name}_fit=states (written "
                         f"by an armac-spiel version that kept replay rows); start a new run")
      sums.load_state_dict(saved)
    self.draws = d["draws"]
    self.sampler.set_rng_state(d["sampler_rng"])
    self.rng.bit_generator.state = d["rng"]
    self.gen.set_state(d["gen"])
    if self.scheduler is not None and d.get("scheduler") is not None:
      self.scheduler.load_state_dict(d["scheduler"])
