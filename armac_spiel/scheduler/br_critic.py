"""A model-free stand-in for the exact counterfactual values: a best-response critic.

For games the compiled tree does not hold (utility_computation.strategy = br_critic). Each
update samples br_episodes episodes; in half of them player 0 is the "mixer" m and follows
pi_mix (with br_explore uniform exploration), in the other half player 1; the other player
best-responds: it plays
epsilon-greedy (br_explore) on the critic's Q. Q(s, .) is one network over the acting
player's information-state tensor (which names the player), regressed by Monte-Carlo on the
acting player's return over the episodes of the last br_replay updates. At the responder's
states it estimates the best response's action values (so the greedy responder improves, as
in fitted Q-iteration); at the mixer's states Q(s, a) estimates m's expected return after a
against the responder, the counterfactual value cfv_m(s, a) divided by the opponents' and
chance's reach of s, so sum_a pi_mix^(k)(s, a) Q(s, a) stands in for the exact bin utility.

The mixer's own reach of each sampled state under pi_mix (without exploration) is the
product of pi_mix(a | s) over its earlier actions in the episode. Its counterfactual reach
(opponent's and chance's) is estimated by summing 1 / (episodes * own sampling reach) over
the state's visits; the bin utilities are the Q-based ones times that estimate, so that, as
in CFR-BR, a state's regrets grow with how often the best responder lets play reach it.
"""

from __future__ import annotations

import collections
from typing import Callable

import torch

from armac_spiel.networks import MLP
from armac_spiel.optim import Adam
from armac_spiel.scheduler.config import UtilityConfig
from games import StepBatch, TablePolicy, load_game, make_sampler

# (info (R, D), legal (R, A), infostate_table rows (R,) or None) -> (R, A) pi_mix
MixFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
FIT_BATCH = 8192


class BRCritic:
  """Best-response critic: `update(mix_fn)` samples, fits Q and returns the mixer's states."""

  def __init__(self, cfg: UtilityConfig, game_string: str, seed: int, device="cpu"):
    sg = load_game(game_string)
    if sg.num_players != 2:
      raise ValueError(f"utility_computation.strategy=br_critic needs a two-player game, "
                       f"{game_string} has {sg.num_players}")
    self.cfg = cfg
    self.device = torch.device(device)
    self.sampler = make_sampler(game_string, seed + 104729)
    with torch.random.fork_rng(devices=[]):
      torch.manual_seed(seed + 17)
      self.net = MLP(sg.info_state_size, cfg.br_hidden, sg.num_actions).to(self.device)
    self.opt = Adam(self.net.parameters(), lr=cfg.br_lr)
    self.gen = torch.Generator().manual_seed(seed + 31)
    self.replay: collections.deque = collections.deque(maxlen=cfg.br_replay)
    self.last_loss = float("nan")

  def _mixes(self, mix: torch.Tensor, q: torch.Tensor, mask: torch.Tensor,
             mixer: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Rows where `mixer`: pi_mix with exploration eps (default br_explore); elsewhere
    eps-greedy on Q."""
    eps = self.cfg.br_explore if eps is None else eps
    m = mask.float()
    uni = m / m.sum(-1, keepdim=True).clamp_min(1.0)
    greedy = torch.nn.functional.one_hot(q.masked_fill(~mask, -torch.inf).argmax(-1),
                                         mask.shape[-1]).float()
    return torch.where(mixer[:, None], (1 - eps) * mix + eps * uni,
                       (1 - eps) * greedy + eps * uni)

  @torch.no_grad()
  def _sample(self, mix_fn: MixFn, eps: float | None = None):
    """[(trajectories, mixer player (B,), (B, T, A) pi_mix at each step)] per sample call,
    both players exploring with eps (default br_explore). On the compiled tree, one table
    per mixer player (each step a table look-up)."""
    n = self.cfg.br_episodes
    tree = getattr(self.sampler, "tree", None)
    out = []
    if tree is not None:
      x, mask = tree.info_tensors.to(self.device), tree.info_legal.to(self.device)
      mix = mix_fn(x, mask, torch.arange(tree.num_infostates)).float().cpu()
      q = self.net(x).cpu()
      ext = torch.cat([mix, torch.zeros(1, mix.shape[1])])
      sid = torch.cat([tree.infostate, torch.tensor([-1])])
      for m, b in ((0, n // 2), (1, n - n // 2)):
        table = self._mixes(mix, q, tree.info_legal, tree.info_player == m, eps)
        traj = self.sampler.sample(TablePolicy(lambda _x, _l, tb=table: tb), b)
        step_mix = ext[sid[traj.node]]
        out.append((traj, torch.full((b,), m), step_mix))
      return out
    store: dict = {}

    def fn(batch: StepBatch) -> torch.Tensor:
      x, mask = batch.info_state.to(self.device), batch.legal_mask.to(self.device)
      mix = mix_fn(x, mask, batch.infostate).float()
      store[batch.step] = (batch.episode.cpu(), mix.cpu())
      mixer = (batch.episode % 2 == batch.player).to(self.device)
      return self._mixes(mix, self.net(x), mask, mixer, eps)

    traj = self.sampler.sample(fn, n)
    b, t = traj.action.shape
    step_mix = torch.zeros(b, t, traj.legal_mask.shape[-1])
    for step, (ep, probs) in store.items():
      step_mix[ep, step] = probs
    return [(traj, torch.arange(b) % 2, step_mix)]

  def update(self, mix_fn: MixFn) -> dict:
    """Samples, fits Q; returns the mixer's sampled states: info (N, D), legal (N, A),
    q (N, A), reach (N,) own reach under pi_mix, cf_weight (N,) (summed over a state's
    rows: an estimate of its counterfactual reach), node (N,) tree ids or None."""
    parts, rows = self._sample(mix_fn), []
    for traj, mixer_player, step_mix in parts:
      b = traj.action.shape[0]
      valid, player, act = traj.valid, traj.player, traj.action
      g = torch.where(valid, traj.returns[torch.arange(b)[:, None], player.clamp_min(0)], 0.0)
      x, mask = traj.info_state, traj.legal_mask
      if traj.node is not None:  # store state ids: the fit works on per-(s, a) means
        sid = self.sampler.tree.infostate[traj.node[valid]]
        self.replay.append({"sid": sid, "a": act[valid], "g": g[valid]})
      else:
        self.replay.append({"x": x[valid], "a": act[valid], "g": g[valid]})
      mixer = valid & (player == mixer_player[:, None])
      p_a = step_mix.gather(-1, act.clamp_min(0)[..., None]).squeeze(-1).double()
      ratio = torch.where(mixer, p_a, torch.ones_like(p_a))
      reach = torch.cumprod(ratio, 1) / ratio.clamp_min(1e-300)  # exclusive product
      # 1 / (episodes * the mixer's own reach under its sampling policy): summed over a
      # state's visits, an unbiased estimate of its counterfactual reach.
      b_a = traj.behaviour.gather(-1, act.clamp_min(0)[..., None]).squeeze(-1).double()
      b_ratio = torch.where(mixer, b_a, torch.ones_like(b_a))
      b_reach = torch.cumprod(b_ratio, 1) / b_ratio.clamp_min(1e-300)
      n_mixer = float((mixer_player == mixer_player[0]).sum()) if len(parts) > 1 else b / 2
      cf_w = 1.0 / (n_mixer * b_reach.clamp_min(1e-12))
      rows.append({"info": x[mixer], "legal": mask[mixer], "reach": reach[mixer],
                   "cf_weight": cf_w[mixer],
                   "node": None if traj.node is None else traj.node[mixer]})
    self._fit()
    d = {k: (None if rows[0][k] is None else torch.cat([r[k] for r in rows])) for k in rows[0]}
    with torch.no_grad():
      d["q"] = self.net(d["info"].to(self.device))
    return d

  @torch.no_grad()
  def evaluate(self, mix_fn: MixFn) -> tuple[float, float]:
    """(mean, sampling variance of the mean) of the greedy responder's return over
    br_episodes episodes against pi_mix played exactly (no exploration on either side, no
    fit, nothing stored): each episode is an unbiased sample of what one fixed strategy
    earns against pi_mix, so the mean is a sampled lower bound on pi_mix's exploitability
    (the mean of the two seats' best-response values), whatever the critic learned from."""
    ret = torch.cat([traj.returns[torch.arange(traj.action.shape[0]), 1 - m].double()
                     for traj, m, _ in self._sample(mix_fn, eps=0.0)])
    return float(ret.mean()), (float(ret.var()) / len(ret) if len(ret) > 1 else 0.0)

  def _fit(self) -> None:
    """br_steps Adam steps of MSE(Q(s, a), G) over the replay. With state ids the rows are
    grouped into per-(s, a) means weighted by their counts: the same minimiser, one row per
    pair, full batches."""
    d = {k: torch.cat([r[k] for r in self.replay]) for k in self.replay[0]}
    if "sid" in d:
      tree = self.sampler.tree
      a_dim = tree.num_actions
      uniq, inv = torch.unique(d["sid"] * a_dim + d["a"], return_inverse=True)
      cnt = torch.bincount(inv, minlength=len(uniq)).double()
      mean = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inv, d["g"].double())
      d = {"x": tree.info_tensors[uniq // a_dim], "a": uniq % a_dim,
           "g": (mean / cnt).float(), "w": (cnt / cnt.sum()).float()}
    else:
      d["w"] = torch.full(d["g"].shape, 1.0 / len(d["g"]))
    n = d["g"].shape[0]
    losses = []
    for _ in range(self.cfg.br_steps):
      idx = (torch.randint(n, (FIT_BATCH,), generator=self.gen) if n > FIT_BATCH
             else torch.arange(n))
      x, a, g, w = (d[k][idx].to(self.device) for k in ("x", "a", "g", "w"))
      q_a = self.net(x).gather(1, a[:, None]).squeeze(1)
      loss = (w * (q_a - g) ** 2).sum() / w.sum()
      self.opt.zero_grad(set_to_none=True)
      loss.backward()
      self.opt.step()
      losses.append(float(loss.detach()))
    self.last_loss = sum(losses) / len(losses)

  def state_dict(self) -> dict:
    return {"net": self.net.state_dict(), "opt": self.opt.state_dict(),
            "gen": self.gen.get_state(), "sampler_rng": self.sampler.get_rng_state(),
            "replay": list(self.replay)}

  def load_state_dict(self, sd: dict) -> None:
    self.net.load_state_dict(sd["net"])
    self.opt.load_state_dict(sd["opt"])
    self.gen.set_state(sd["gen"])
    self.sampler.set_rng_state(sd["sampler_rng"])
    self.replay.clear()
    self.replay.extend(sd["replay"])
