"""Scheduler training: meta-regret over lambda bins distilled into the scheduler network.

Each `step`: the keys' own reach under this iteration's mix enters the manager's weighted
average (MetaRegretManager.accumulate, before the update, so iteration t's sigma is averaged
with iteration t's reach), then (B, K) bin utilities update the regrets. The network
distils the AVERAGE distribution `avg` (B, K), not the oscillating current sigma, in
scheduler.distill_steps warm-started Adam steps: discrete mode minimises
KL(avg || softmax(logits)) = F.kl_div(log_softmax(logits), avg, "batchmean"), continuous mode
MSE(lambda, sum_k avg_k bins_k). Both add the network's L2 and entropy regularisers, clip
the gradient norm at 1.0 and use Adam(scheduler_lr). During warm-up (iteration <
scheduler_warmup_iters) the manager learns but the network is not trained and outputs
init_lambda.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from armac_spiel.optim import Adam
from armac_spiel.scheduler.config import SchedulerSuiteConfig
from armac_spiel.scheduler.meta_regret import MetaRegretManager
from armac_spiel.scheduler.mixer import mixing_stats, sched_lambda
from armac_spiel.scheduler.network import SchedulerNet
from armac_spiel.scheduler.state_keys import StateKeyer
from armac_spiel.scheduler.utilities import UtilityComputer

GRAD_CLIP = 1.0


class SchedulerTrainer:
  """Holds the scheduler net, its optimiser, the meta-regret manager, keyer and utilities."""

  def __init__(self, cfg: SchedulerSuiteConfig, input_size: int,
               game_string: str | None = None, device="cpu", mode: str | None = None,
               n_buckets: int | None = None, scale: str | None = None, seed: int = 0):
    self.cfg = cfg
    self.mode = cfg.mode if mode is None else mode
    if self.mode not in ("continuous", "discrete"):
      raise ValueError(f"SchedulerTrainer needs mode continuous|discrete, got {self.mode!r}")
    self.device = torch.device(device)
    self.bins = cfg.policy_mixer.lambda_bins
    with torch.random.fork_rng(devices=[]):  # seeded init, global RNG state untouched
      torch.manual_seed(seed + 5)
      self.net = SchedulerNet(input_size, cfg.scheduler, self.mode).to(self.device)
    self.optimizer = Adam(self.net.parameters(), lr=cfg.scheduler.scheduler_lr)
    self.manager = MetaRegretManager(cfg.meta_regret, self.device)
    self.utility = UtilityComputer(cfg.utility_computation, self.device)
    self.keyer = None
    if game_string is not None or cfg.state_keying.level == 2:
      sk = cfg.state_keying
      self.keyer = StateKeyer(sk, game_string, sk.n_buckets if n_buckets is None else n_buckets,
                              sk.bucket_scale if scale is None else scale)
    self.iteration = 0
    self._last: dict = {}

  def mixer_temperature(self, iteration: int | None = None) -> float:
    """Softmax temperature for soft discrete lambdas: max(min_temperature, T * decay^t)."""
    it = self.iteration if iteration is None else iteration
    pm = self.cfg.policy_mixer
    return max(pm.min_temperature, self.cfg.scheduler.temperature * pm.temperature_decay ** it)

  def set_iteration(self, iteration: int) -> None:
    self.iteration = int(iteration)
    self.net.iteration.fill_(self.iteration)

  def keys(self, info_states: torch.Tensor | None = None,
           infostate_strings: Sequence[str] | None = None) -> torch.Tensor:
    if self.keyer is None:
      raise ValueError("no state keyer: pass keys, or build the trainer with a game_string")
    return self.keyer.ids(infostate_strings=infostate_strings, embeddings=info_states)

  def loss(self, info_states: torch.Tensor, desired: torch.Tensor,
           regularize: bool = True) -> tuple[torch.Tensor, dict]:
    """(total loss, float parts) of the scheduler against (B, K) desired bin distributions."""
    # training=False: same logits, and no Gumbel sample drawn from the global RNG.
    out = self.net(info_states.to(self.device), training=False)
    desired = desired.to(self.device)
    if self.mode == "discrete":
      fit = F.kl_div(F.log_softmax(out["logits"], -1), desired, reduction="batchmean")
    else:
      bins = torch.as_tensor(self.bins, dtype=desired.dtype, device=self.device)
      fit = F.mse_loss(out["lambda"], (desired @ bins).unsqueeze(-1))
    reg = self.net.regularizer(out) if regularize else fit.new_zeros(())
    return fit + reg, {"fit": fit.item(), "reg": reg.item()}

  def step(self, info_states: torch.Tensor, keys=None, utilities: torch.Tensor | None = None,
           iteration: int | None = None, infostate_strings: Sequence[str] | None = None,
           reach: torch.Tensor | None = None, smooth: bool = True, update_keys=None,
           **utility_inputs) -> dict:
    """One manager update and (after warm-up) distill_steps optimiser steps; returns
    `stats()`.

    keys: (B,) ids or hashables (default: from the keyer); utilities: (B, K) or computed by
    UtilityComputer.compute from `utility_inputs` (q, pi_rm, pi_avg, legal_mask, ...);
    reach: (B,) own reach of each row's state under this iteration's mix (default 1);
    smooth: False feeds exact utilities to the regrets without the EMA; update_keys: the
    keys of the utility rows when they differ from `keys` (a window of batches). The average
    starts after warm-up, its weights counted from there.
    """
    self.set_iteration(self.iteration + 1 if iteration is None else iteration)
    x = info_states.to(self.device)
    if keys is None:
      keys = self.keys(x, infostate_strings)
    if utilities is None:
      utilities = self.utility.compute(self.bins, **utility_inputs)
    if reach is None:
      reach = torch.ones(x.shape[0], dtype=torch.float64)
    frozen = self.net.in_warmup()
    if frozen:  # regrets learn during warm-up; the average starts after it
      reach = torch.zeros_like(reach, dtype=torch.float64)
    warm = self.cfg.scheduler.scheduler_warmup_iters
    self.manager.accumulate(keys, reach, max(0, self.iteration - warm))
    self.manager.update(keys if update_keys is None else update_keys, utilities, smooth=smooth)
    parts = {"fit": 0.0, "reg": 0.0}
    if not frozen:
      self.net.train()
      target = self.manager.average_probs(keys, self.device).float()
      for _ in range(self.cfg.scheduler.distill_steps):
        loss, parts = self.loss(x, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), max_norm=GRAD_CLIP)
        self.optimizer.step()
    with torch.no_grad():
      lam = sched_lambda(self.net(x, training=False), self.bins, hard=True)
    self._last = {"loss": parts["fit"] + parts["reg"], "loss_fit": parts["fit"],
                  "frozen": float(frozen), "tau": self.net.tau(),
                  **mixing_stats(lam, self.bins)}
    return self.stats()

  def stats(self) -> dict:
    out = {f"scheduler.{k}": v for k, v in self.manager.stats().items()}
    out.update({f"scheduler.{k}": v for k, v in self._last.items() if k != "lambda_hist"})
    out.setdefault("scheduler.lambda_mean", self.cfg.scheduler.init_lambda)
    out["scheduler.iteration"] = self.iteration
    return out

  def state_dict(self) -> dict:
    return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
            "manager": self.manager.state_dict(), "utility": self.utility.state_dict(),
            "keyer": None if self.keyer is None else self.keyer.state_dict(),
            "iteration": self.iteration}

  def load_state_dict(self, sd: dict) -> None:
    self.net.load_state_dict(sd["net"])
    self.optimizer.load_state_dict(sd["optimizer"])
    self.manager.load_state_dict(sd["manager"])
    self.utility.load_state_dict(sd["utility"])
    if self.keyer is not None and sd.get("keyer") is not None:
      self.keyer.load_state_dict(sd["keyer"])
    self.set_iteration(sd["iteration"])
