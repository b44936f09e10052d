"""The fits of ARMAC's regret network W and mean-policy network (actor), as parts.

Each fit is chosen once by config and has one interface (`Fit`): `add` an epoch's target
rows (armac_spiel/records.py), `train` (Adam steps; returns the mean loss), `state_targets`
(what it regresses on per information state, where ids exist), `state_dict` /
`load_state_dict` (its optimiser and what it keeps of the targets).

W (`regret_fit`) regresses on the CFR-weighted mean past regret targets (armac.py, step 3):
- `RowsFit`: a reservoir of target rows; Adam on minibatches of rows, each weighted by its
  policy j's CFR weight over j's draws (past_policies.CFRWeights).
- `StatesFit`: per-information-state sums of the targets (armac_spiel/state_stats.py); Adam
  on each seen state's mean, scaled to unit RMS, in full batches (optionally with an exact
  last layer); DCFR's discounting (regret_discount=dcfr) applies to the sums.
- `BootstrapFit`: W itself carries the cumulative regret sums, re-fitted each epoch to
  d_t W_t + c_t S_t (armac_spiel/bootstrap.py).
The actor (`actor_fit`) regresses on the average policy, by cross-entropy:
- `ActorRowsFit`: a reservoir of policy rows, minibatches.
- `ActorStatesFit`: per-information-state weighted sums of the policies, full batches.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import torch

from armac_spiel.bootstrap import CumulativeRegrets
from armac_spiel.buffers import TensorBuffer
from armac_spiel.config import ARMACConfig
from armac_spiel.networks import (MLP, content_ids, fit_last_layer, masked_log_softmax,
                                  unique_forward)
from armac_spiel.optim import Adam
from armac_spiel.past_policies import CFRWeights, PolicyDraw
from armac_spiel.records import PolicyRows, RegretRows, TreeTables, to_device
from armac_spiel.state_stats import StateSums


class NonFiniteLossError(FloatingPointError):
  """A training loss became NaN or infinite; the message names the loss and epoch."""


class NetTrainer:
  """A network's Adam optimiser and its loop of steps.

  Fused Adam: one kernel for all parameters. These nets are small, so a step is bound by
  per-parameter overhead: epochs 1.19x (Kuhn) and 1.06x (Leduc) faster on CPU
  (python -m experiments.bench_learner --compare=adam, docs/results.md). armac_spiel's
  Adam runs that kernel without importing torch._dynamo (armac_spiel/optim.py)."""

  def __init__(self, name: str, net: torch.nn.Module, lr: float,
               after_step: Callable[[], None] | None = None):
    self.name, self.net, self.after_step = name, net, after_step
    self.opt = Adam(net.parameters(), lr=lr)

  def steps(self, n: int, make_loss: Callable[[], torch.Tensor], epoch: int) -> float:
    """`n` Adam steps on `make_loss()`; the mean loss (NaN for none)."""
    losses = []
    for _ in range(n):
      loss = make_loss()
      self.opt.zero_grad(set_to_none=True)
      loss.backward()
      self.opt.step()
      if self.after_step is not None:
        self.after_step()
      losses.append(self.check(loss, epoch))
    return float(np.mean(losses)) if losses else float("nan")

  def check(self, loss: torch.Tensor, epoch: int) -> float:
    """The loss as a float; NonFiniteLossError if it is NaN or infinite."""
    v = float(loss.detach())
    if not np.isfinite(v):
      raise NonFiniteLossError(f"{self.name} loss is {v} at epoch {epoch}; lower "
                               f"{self.name}_lr or check the inputs")
    return v

  def set_lr(self, lr: float) -> None:
    for group in self.opt.param_groups:
      group["lr"] = lr


@dataclasses.dataclass(frozen=True)
class FitContext:
  """What the fits of one learner share: config, device, random generator (replay draws,
  minibatches), the compiled tree's id tables (None: rows hold encodings), whether the
  network passes go once per distinct input, the CFR weights and the policy draw."""
  cfg: ARMACConfig
  device: torch.device
  gen: torch.Generator
  tables: TreeTables | None
  unique_inputs: bool
  weights: CFRWeights
  draw: PolicyDraw

  def forward(self, net: torch.nn.Module, x: torch.Tensor, ids: torch.Tensor | None):
    """net(x), once per distinct input: by tree ids, else (unique_inputs) by content."""
    if ids is None and self.unique_inputs:
      ids = content_ids(x)
    return unique_forward(net, x, ids)

  def sample(self, replay: TensorBuffer, n: int):
    """n rows of `replay` on the device."""
    return to_device(replay.sample(n, self.gen), self.device)

  def state_inputs(self, rows):
    """Rows with the encodings of their information-state ids (see TreeTables)."""
    return rows if self.tables is None else self.tables.state_inputs(rows)

  def state_rows(self, n: int, batch: int):
    """All n state rows (a full batch), or a random minibatch of `batch` if n is larger."""
    if n <= batch:
      return slice(None)
    return torch.randint(n, (batch,), generator=self.gen).to(self.device)


def state_means(tree, sid: torch.Tensor, values: torch.Tensor, w: torch.Tensor):
  """Weighted mean of `values` (R, A) per information state id in `sid` (R,), over the
  states that occur. Returns (state ids (S',), means (S', A) float64, legal (S', A))."""
  num = torch.zeros(tree.num_infostates, tree.num_actions, dtype=torch.float64)
  num.index_add_(0, sid, w.double()[:, None] * values.double())
  den = torch.zeros(tree.num_infostates, dtype=torch.float64).index_add_(0, sid, w.double())
  seen = (den > 0).nonzero().squeeze(1)
  return seen, num[seen] / den[seen, None], tree.info_legal[seen]


class Fit:
  """Base of W's and the actor's fits: the network's trainer, the shared context, the
  step-size decay and the checkpoint (the fit's name, its optimiser, `_memory` state)."""
  field = ""          # the config field that chooses the fit
  name = ""           # its value
  keeps = ""          # what the fit's checkpoint keeps of the targets (for errors)
  needs_ids = False   # rows must carry information-state ids (a compiled tree)
  memory = ""         # the attribute that holds the targets (len, state_dict), checkpointed
                      # under its name

  def __init__(self, net: MLP, ctx: FitContext, net_name: str, lr: float):
    self.net, self.ctx, self.cfg, self.lr = net, ctx, ctx.cfg, lr
    self.trainer = NetTrainer(net_name, net, lr)

  def add(self, rows) -> None:
    """Takes this epoch's target rows (on the learner's device)."""
    raise NotImplementedError

  def train(self, epoch: int) -> float:
    """Fits the network at epoch `epoch`; the mean loss (NaN with nothing to fit)."""
    raise NotImplementedError

  def __len__(self) -> int:
    """Target rows (states with targets; BootstrapFit: distinct encodings) the fit holds."""
    return len(getattr(self, self.memory))

  def state_means(self, epoch: int):
    """(state ids (S',), weighted mean targets (S', A) float64, legal masks (S', A))."""
    raise ValueError(f"{self.field}={self.name} keeps no per-state targets")

  def decay_lr(self, epoch: int) -> None:
    """W and the actor regress on means over all past policies, which move like 1/t late
    in training; decaying their step size shrinks SGD's jitter around those means."""
    cfg = self.cfg
    if cfg.lr_decay == "none":
      return
    x = 1.0 + epoch / cfg.lr_decay_epochs
    f = x ** -0.5 if cfg.lr_decay == "sqrt" else 1.0 / x
    self.trainer.set_lr(max(self.lr * f, cfg.min_lr))

  def state_dict(self) -> dict:
    return {"fit": self.name, "opt": self.trainer.opt.state_dict(), **self._memory()}

  def load_state_dict(self, d: dict | None) -> None:
    if not isinstance(d, dict) or d.get("fit") != self.name:
      other = d.get("fit") if isinstance(d, dict) else None
      raise ValueError(f"checkpoint has no {self.keeps} for {self.field}={self.name} "
                       f"(written with {self.field}={other}); start a new run")
    self.trainer.opt.load_state_dict(d["opt"])
    self._load_memory(d)

  def _memory(self) -> dict:
    return {self.memory: getattr(self, self.memory).state_dict()}

  def _load_memory(self, d: dict) -> None:
    getattr(self, self.memory).load_state_dict(d[self.memory])

  def _state_sums(self) -> StateSums:
    """Empty per-information-state sums of the compiled tree (the `states` fits)."""
    tree = self.ctx.tables.tree
    return StateSums(tree.num_infostates, tree.num_actions)

  def _state_batch(self, epoch: int):
    """The `states` fits' full batch on the learner's device: (state ids (S',), their
    encodings (S', D), targets (S', A), legal masks (S', A)) from `state_targets`."""
    ctx = self.ctx
    seen, y, mask = self.state_targets(epoch)
    return seen, ctx.tables.state_info[seen.to(ctx.device)], y.to(ctx.device), \
        mask.to(ctx.device)


# ---------------------------------------------------------------- W
class RegretFit(Fit):
  """Base of W's fits."""
  field, needs_encodings = "regret_fit", False  # True: rows carry encodings even with ids

  def __init__(self, net: MLP, ctx: FitContext):
    super().__init__(net, ctx, "regret", ctx.cfg.regret_lr)

  def state_targets(self, epoch: int):
    """Per information state: (state ids (S',), the weighted mean regret targets scaled to
    unit RMS over the legal actions (S', A), legal masks (S', A))."""
    seen, mean, mask = self.state_means(epoch)
    rms = (mean.pow(2).sum(1) / mask.sum(1).clamp_min(1)).sqrt()
    y = torch.where(rms[:, None] > 0, mean / rms.clamp_min(1e-300)[:, None], 0.0)
    return seen, y.float(), mask


class RowsFit(RegretFit):
  """regret_fit=rows: a reservoir of target rows; W regresses on minibatches of rows, each
  weighted by its policy's CFR weight over its draws. Targets are scaled by sqrt(t+1): mean
  regrets shrink like 1/sqrt(t), SGD's jitter does not, and RM ignores the scale."""
  name, keeps, memory = "rows", "regret replay rows", "replay"

  def __init__(self, net: MLP, ctx: FitContext):
    super().__init__(net, ctx)
    self.replay = TensorBuffer(RegretRows, ctx.cfg.regret_replay, "reservoir")

  def add(self, rows: RegretRows) -> None:
    self.replay.add(to_device(rows._replace(player=None), "cpu"), self.ctx.gen)

  def train(self, epoch: int) -> float:
    if not len(self):
      return float("nan")
    ctx, cfg = self.ctx, self.cfg
    return self.trainer.steps(cfg.regret_steps, lambda: self.loss(
        ctx.sample(self.replay, cfg.regret_batch), epoch), epoch)

  def loss(self, rows: RegretRows, epoch: int) -> torch.Tensor:
    """Weighted MSE of W against the sqrt(t+1)-scaled targets of `rows`."""
    ctx = self.ctx
    rows = ctx.state_inputs(rows)
    w = rows.weight * ctx.weights.sample_weight(rows.j.cpu()).to(ctx.device)
    scale = float(np.sqrt(epoch + 1.0)) if self.cfg.regret_scale_sqrt_t else 1.0
    w_s = ctx.forward(self.net, rows.info, rows.sid)
    err = ((w_s - scale * rows.target) ** 2 * rows.mask).sum(-1)
    return (err * w).sum() / w.sum()

  def state_means(self, epoch: int):
    """Per state seen in the replay, the minimiser of `loss` over the whole replay."""
    r = self.replay.filled()
    return state_means(self.ctx.tables.tree, r.sid, r.target,
                       r.weight * self.ctx.weights.sample_weight(r.j))


class StatesFit(RegretFit):
  """regret_fit=states: W regresses on each seen information state's mean target, every
  state weighted alike, in full batches (minibatches of regret_batch states if more).

  The row-wise loss weights a state by its sampling frequency, so rarely reached states
  are fitted worst, and its minibatch gradients carry the targets' variance across
  histories (the opponent's cards); regret matching needs only each state's direction of
  mean regret, which is invariant to a positive per-state scale. Fitting the unit-RMS
  means directly removes both problems (Leduc, exact critic: see docs/results.md). The
  means come from per-state sums (armac_spiel/state_stats.py): those of an unthinned
  replay, in O(states * actions) memory. With regret_lstsq = N, N Adam steps train the
  features, then W's last layer is solved exactly."""
  name, keeps, needs_ids, memory = "states", "per-state sums", True, "sums"

  def __init__(self, net: MLP, ctx: FitContext):
    super().__init__(net, ctx)
    self.sums = self._state_sums()

  def add(self, rows: RegretRows) -> None:
    self.sums.add(rows.sid.cpu(), rows.target.cpu(), rows.weight.cpu(), rows.j.cpu())

  def train(self, epoch: int) -> float:
    if not len(self):
      return float("nan")
    ctx, cfg = self.ctx, self.cfg
    seen, x, y, mask = self._state_batch(epoch)

    def loss():
      idx = ctx.state_rows(len(seen), cfg.regret_batch)
      return ((self.net(x[idx]) - y[idx]) ** 2 * mask[idx]).sum(-1).mean()

    lstsq = cfg.regret_lstsq
    out = self.trainer.steps(lstsq or cfg.regret_steps, loss, epoch)
    if lstsq:  # the features stay Adam's; the last layer becomes exact
      fit_last_layer(self.net, x, y, mask)
      with torch.no_grad():
        out = self.trainer.check(((self.net(x) - y) ** 2 * mask).sum(-1).mean(), epoch)
    return out

  def state_means(self, epoch: int):
    sums = self.fold(epoch)
    seen, mean = sums.means(self.ctx.weights.epoch_factor(sums.live_epochs))
    return seen, mean, self.ctx.tables.tree.info_legal[seen]

  def fold(self, epoch: int) -> StateSums:
    """Folds the sums of the policy epochs that can no longer be drawn (neither in the
    bank nor current; with policy_draw=current: all but the current) into the final sums:
    their draw counts, hence weights, are final.

    regret_discount=dcfr (Brown & Sandholm 2019, DCFR): the sums hold each epoch's targets
    divided by its draws (its weight is 1) and, before epoch e's are added, the final sums
    of the states of e's learning players are discounted as in DCFR at that player's n-th
    update, n = e // N with alternating updates (else e): positive sums by
    n^alpha / (n^alpha + 1), negative by n^beta / (n^beta + 1). Regret matching reads only
    the per-state direction, so the denominators stay undiscounted (they mark seen states).
    """
    sums, weights, cfg = self.sums, self.ctx.weights, self.cfg
    keep = self.ctx.draw.drawable(epoch)
    if cfg.regret_discount == "none":
      sums.fold(keep, weights.epoch_factor(sums.live_epochs))
      return sums
    info_player = self.ctx.tables.tree.info_player
    for e in sorted(int(x) for x in sums.live_epochs if not torch.isin(x, keep)):
      n = weights.update_index(e)
      if n > 0:
        pos, neg = weights.dcfr_factors(n)
        mine = torch.ones(sums.num_states, 1, dtype=torch.bool)
        if weights.alternating:
          mine = (info_player == weights.updated_player(e)).unsqueeze(1)
        factor = torch.where(sums.num > 0, pos, neg)
        sums.num = torch.where(mine, sums.num * factor, sums.num)
      sums.fold(torch.tensor([x for x in sums.live_epochs.tolist() if x != e]),
                weights.epoch_factor(sums.live_epochs))
    return sums


class BootstrapFit(RegretFit):
  """regret_fit=bootstrap: W regresses on d_t * C_t + c_t * S_t over the remembered
  encodings (armac_spiel/bootstrap.py), warm-started, states weighted by relative error,
  in full batches (minibatches of regret_batch states if more). An epoch's rows wait until
  W is fitted; they need encodings, not ids."""
  name, keeps, needs_encodings, memory = ("bootstrap", "cumulative-regret memory", True,
                                          "cumulative")

  def __init__(self, net: MLP, ctx: FitContext):
    super().__init__(net, ctx)
    self.cumulative = CumulativeRegrets(ctx.cfg.bootstrap_memory)
    self.pending: RegretRows | None = None

  def add(self, rows: RegretRows) -> None:
    self.pending = rows

  def train(self, epoch: int) -> float:
    ctx, cfg, weights = self.ctx, self.cfg, self.ctx.weights
    rows, self.pending = self.pending, None
    if rows is None or not len(rows.target):
      return float("nan")
    n = weights.update_index(epoch)
    discount = weights.dcfr_factors(n) if cfg.regret_discount == "dcfr" and n > 0 else None
    weight_t = epoch + 1.0 if weights.linear else 1.0  # c_t
    x, y, mask, ws = self.cumulative.epoch_targets(
        self.net, epoch, weights.updated_player(epoch), rows.info, rows.mask, rows.player,
        rows.target, rows.weight, weight_t=weight_t, discount=discount, plus=cfg.regret_plus)
    ws = ws / ws.mean()

    def loss():
      idx = ctx.state_rows(len(x), cfg.regret_batch)
      err = ((self.net(x[idx]) - y[idx]) ** 2 * mask[idx]).sum(-1)
      return (err * ws[idx]).mean()

    return self.trainer.steps(cfg.regret_steps, loss, epoch)


# ---------------------------------------------------------------- the actor
class ActorFit(Fit):
  """Base of the actor's fits: cross-entropy towards pi^t, epoch t weighted by
  `average_weighting` (linear: t + 1, as in linear averaging)."""
  field = "actor_fit"

  def __init__(self, net: MLP, ctx: FitContext):
    super().__init__(net, ctx, "actor", ctx.cfg.actor_lr)
    self.linear = ctx.cfg.average_weighting == "linear"

  def state_targets(self, epoch: int):
    """Per information state: (state ids (S',), weighted mean policies (S', A), legal
    masks (S', A)), the minimiser of the row-wise cross-entropy over all rows (with
    explore_eps = 1 a row's frequency is the acting player's own reach, so this is CFR's
    average policy)."""
    seen, mean, mask = self.state_means(epoch)
    return seen, mean.float(), mask


class ActorRowsFit(ActorFit):
  """actor_fit=rows: a reservoir of policy rows; the actor regresses on minibatches."""
  name, keeps, memory = "rows", "actor replay rows", "replay"

  def __init__(self, net: MLP, ctx: FitContext):
    super().__init__(net, ctx)
    self.replay = TensorBuffer(PolicyRows, ctx.cfg.actor_replay, "reservoir")

  def add(self, rows: PolicyRows) -> None:
    self.replay.add(to_device(rows, "cpu"), self.ctx.gen)

  def train(self, epoch: int) -> float:
    if not len(self):
      return float("nan")
    ctx, cfg = self.ctx, self.cfg
    return self.trainer.steps(cfg.actor_steps, lambda: self.loss(
        ctx.sample(self.replay, cfg.actor_batch)), epoch)

  def loss(self, rows: PolicyRows) -> torch.Tensor:
    """Cross-entropy towards the rows' policies, weighted by epoch (linear averaging)."""
    rows = self.ctx.state_inputs(rows)
    w = rows.weight
    if self.linear:
      w = w * (rows.epoch.double() + 1.0).to(w.dtype)
    logp = masked_log_softmax(self.ctx.forward(self.net, rows.info, rows.sid), rows.mask)
    ce = -(rows.probs * logp.masked_fill(~rows.mask, 0.0)).sum(-1)
    return (ce * w).sum() / w.sum()

  def state_means(self, epoch: int):
    r = self.replay.filled()
    w = r.weight.double()
    if self.linear:
      w = w * (r.epoch.double() + 1.0)
    return state_means(self.ctx.tables.tree, r.sid, r.probs, w)


class ActorStatesFit(ActorFit):
  """actor_fit=states: cross-entropy towards each seen state's mean policy (per-state sums),
  states weighted alike, full batches (minibatches of actor_batch states if more). Same
  minimiser per state as the row-wise loss, without its minibatch noise."""
  name, keeps, needs_ids, memory = "states", "per-state sums", True, "sums"

  def __init__(self, net: MLP, ctx: FitContext):
    super().__init__(net, ctx)
    self.sums = self._state_sums()

  def add(self, rows: PolicyRows) -> None:
    w = rows.weight.cpu().double()
    if self.linear:
      w = w * (rows.epoch.cpu().double() + 1.0)
    self.sums.add(rows.sid.cpu(), rows.probs.cpu(), w)

  def train(self, epoch: int) -> float:
    if not len(self):
      return float("nan")
    ctx, cfg = self.ctx, self.cfg
    seen, x, p, mask = self._state_batch(epoch)

    def loss():
      idx = ctx.state_rows(len(seen), cfg.actor_batch)
      logp = masked_log_softmax(self.net(x[idx]), mask[idx])
      return -(p[idx] * logp.masked_fill(~mask[idx], 0.0)).sum(-1).mean()

    return self.trainer.steps(cfg.actor_steps, loss, epoch)

  def state_means(self, epoch: int):
    seen, mean = self.sums.means()
    return seen, mean, self.ctx.tables.tree.info_legal[seen]


REGRET_FITS = {f.name: f for f in (RowsFit, StatesFit, BootstrapFit)}
ACTOR_FITS = {f.name: f for f in (ActorRowsFit, ActorStatesFit)}
