"""ARMAC's history critic q(h, .): a FIFO replay of episodes and its regression towards the
current policy's returns (armac.py, step 2).

Tree Backup targets towards pi^t = RM(W^t) for both players (one head in two-player
zero-sum games, player 0's value):
  G_t = V(h_{t+1}) + lam * c_{t+1} (G_{t+1} - q(h_{t+1}, a_{t+1})),  V(h) = sum_b pi(b|s) q(h, b),
G = the terminal return after the last decision, trace c = pi(a|s) (Tree Backup) or
min(1, pi(a|s) / mu(a|s)) with critic_trace=retrace (Retrace, Munos et al. 2016; mu the
behaviour that drew the action). With critic_target_tau < 1 the bootstrapped values come
from a Polyak target copy of the critic.
"""

from __future__ import annotations

import copy

import torch

from armac_spiel.buffers import TensorBuffer
from armac_spiel.fits import FitContext, NetTrainer
from armac_spiel.networks import MLP, regret_matching
from armac_spiel.records import CriticRows, critic_history
from games import Trajectories


class CriticFit:
  """The critic's replay, loss, Adam steps and Polyak target network (`target`, or None)."""

  def __init__(self, critic: MLP, regret: MLP, ctx: FitContext, heads: int, t_max: int):
    cfg = ctx.cfg
    self.net, self.regret, self.ctx, self.heads, self.t_max = critic, regret, ctx, heads, t_max
    # theta' <- (1 - tau) theta' + tau theta after each step; None: the live critic's values.
    self.target = None
    if cfg.critic_target_tau < 1.0:
      self.target = copy.deepcopy(critic).requires_grad_(False)
    self.trainer = NetTrainer("critic", critic, cfg.critic_lr,
                              after_step=None if self.target is None else self.polyak)
    self.replay = TensorBuffer(CriticRows, cfg.critic_replay_episodes, "fifo")

  def add(self, traj: Trajectories) -> None:
    """Adds the episodes, padded to the game's max length (node ids where the tree gives
    them, else encodings)."""
    t_pad = self.t_max - traj.action.shape[1]

    def pad(x, value=0):
      if t_pad == 0:
        return x
      shape = list(x.shape)
      shape[1] = t_pad
      return torch.cat([x, torch.full(shape, value, dtype=x.dtype)], 1)

    mu = None
    if self.ctx.cfg.critic_trace == "retrace":  # mu(a_t | s_t), the behaviour's probability
      mu_a = traj.behaviour.gather(-1, traj.action.clamp_min(0).unsqueeze(-1)).squeeze(-1)
      mu = pad(mu_a, 1.0)
    rows = CriticRows(player=pad(traj.player, -1), action=pad(traj.action, 0).clamp_min(0),
                      valid=pad(traj.valid, False), returns=traj.returns, mu=mu)
    if traj.node is not None and self.ctx.tables is not None:
      rows = rows._replace(node=pad(traj.node, -1))
    else:
      history = critic_history(traj.history, traj.action, self.ctx.cfg.critic_prev_actions,
                               traj.legal_mask.shape[-1])
      rows = rows._replace(history=pad(history), info=pad(traj.info_state),
                           mask=pad(traj.legal_mask, True))
    self.replay.add(rows, self.ctx.gen)

  def train(self, epoch: int) -> float:
    cfg = self.ctx.cfg
    return self.trainer.steps(cfg.critic_steps, lambda: self.loss(
        self.ctx.sample(self.replay, cfg.critic_batch_episodes)), epoch)

  @torch.no_grad()
  def polyak(self) -> None:
    """theta' <- (1 - tau) theta' + tau theta for the critic's target network."""
    tau = self.ctx.cfg.critic_target_tau
    for p_t, p in zip(self.target.parameters(), self.net.parameters()):
      p_t.lerp_(p, tau)

  def loss(self, rows: CriticRows) -> torch.Tensor:
    """MSE of q(h_t, a_t) against the trace targets (module doc) at the valid steps."""
    ctx, tb_lambda = self.ctx, self.ctx.cfg.tb_lambda
    if ctx.tables is not None:
      rows = ctx.tables.node_inputs(rows)
    valid = rows.valid
    ret = rows.returns[:, :self.heads]  # player 0's value in 2p zero-sum
    node = rows.node
    out = ctx.forward(self.net, rows.history, node).unflatten(-1, (self.heads, -1))
    a_idx = rows.action[..., None, None].expand(*rows.action.shape, self.heads, 1)
    q_a = out.gather(-1, a_idx).squeeze(-1)  # (E, T, H)
    with torch.no_grad():
      sid = None if node is None else ctx.tables.node_sid[node]
      pi = regret_matching(ctx.forward(self.regret, rows.info, sid), rows.mask)  # (E, T, A)
      boot_q, boot_out = q_a.detach(), out.detach()
      if self.target is not None:  # bootstrap from the Polyak target network
        boot_out = ctx.forward(self.target, rows.history, node).unflatten(-1, (self.heads, -1))
        boot_q = boot_out.gather(-1, a_idx).squeeze(-1)
      v = (boot_out * pi.unsqueeze(2)).sum(-1)  # (E, T, H)
      c = pi.gather(-1, rows.action.unsqueeze(-1))  # (E, T, 1)
      if rows.mu is not None:
        c = (c / rows.mu.unsqueeze(-1).clamp_min(1e-12)).clamp_max(1.0)
      target = torch.zeros_like(q_a)
      g_next = ret
      for t in range(self.t_max - 1, -1, -1):
        if t + 1 < self.t_max:
          boot = v[:, t + 1] + tb_lambda * c[:, t + 1] * (g_next - boot_q[:, t + 1])
          g_t = torch.where(valid[:, t + 1, None], boot, ret)
        else:
          g_t = ret
        target[:, t] = g_t
        g_next = g_t
    err = ((q_a - target) ** 2).mean(-1)
    return (err * valid).sum() / valid.sum().clamp_min(1)

  def state_dict(self) -> dict:
    return {"opt": self.trainer.opt.state_dict(), "replay": self.replay.state_dict(),
            **({} if self.target is None else {"target": self.target.state_dict()})}

  def load_state_dict(self, d: dict) -> None:
    if self.target is not None:
      if "target" not in d:
        raise ValueError("checkpoint has no critic target network (written with "
                         "critic_target_tau = 1); start a new run")
      self.target.load_state_dict(d["target"])
    self.trainer.opt.load_state_dict(d["opt"])
    self.replay.load_state_dict(d["replay"])
