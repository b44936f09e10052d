"""Meta-regret over the K lambda bins, one regret-matching learner per state key.

Per tracked key (one row of the tensors): regrets r (K), utility EMA (K), visits.
An update with utilities u (K) for a key, after clipping u to [-util_clip, util_clip]:
  ema   <- decay * ema + (1 - decay) * u
  sigma  = RM(r) = max(r, 0) / sum max(r, 0)   (uniform when that sum <= smoothing_factor)
  r_k   <- clip(r_k + ema_k - sum_j sigma_j ema_j, regret_min, regret_clip)
The regret is fed the EMA, not the raw clipped utility, so noisy single-sample utilities are
smoothed first (sigma is the distribution before the update). With regret_min = 0 this is
regret matching+. Duplicate keys in one batch are averaged and count as one update.
`update(..., smooth=False)` (exact utilities, strategy best_response) skips the EMA: the
regret is fed u itself, which is CFR-BR's regret-matching+ update.

The average (what converges; the current sigma oscillates). `accumulate(keys, reach, t)`
stores the player's own reach of each key under iteration t's mix and then adds, for EVERY
tracked key, w_t * reach * sigma_t to the key's numerator and w_t * reach to its
denominator; keys not in this call keep their last reach (a best responder prunes the
opponent's actions, so many own states go unvisited, but their sigma must still be averaged
in). w_t = 1 (uniform), t + 1 (linear) or (t + 1)^average_power (discounted). Counterfactual
reach would be the wrong weight (see docs/scheduler.md). `average_probs` is the normalised
average (the current sigma while a key has no weight yet).

Rows are allocated in an OrderedDict key -> row kept in least-recently-used order (update
and desired_probs both touch); when all max_states rows are taken, the lru_evict_batch least
recently used keys are evicted (never a key touched in the same call) and their rows reset.
With max_states auto the rows grow (doubling) with the keys given, up to AUTO_MAX_STATES:
every key of a game up to that size is held, none evicted, and the memory follows the game.
"""

from __future__ import annotations

import collections
from typing import Hashable, Sequence

import torch

from armac_spiel.scheduler.config import AUTO, AUTO_MAX_STATES, MetaRegretConfig

# max_states auto: the rows allocated at first (they double as keys come).
AUTO_INITIAL_ROWS = 1024


class MetaRegretManager:
  """K-armed regret matching per state key, stored as (rows, K) tensors with LRU: max_states
  rows, or with max_states auto rows that grow up to `limit` (AUTO_MAX_STATES)."""

  def __init__(self, cfg: MetaRegretConfig = MetaRegretConfig(), device="cpu"):
    self.cfg = cfg
    self.device = torch.device(device)
    self.auto = cfg.max_states == AUTO
    self.limit = AUTO_MAX_STATES if self.auto else cfg.max_states  # keys held at most
    self._allocate(min(AUTO_INITIAL_ROWS, self.limit) if self.auto else self.limit)
    self._rows: collections.OrderedDict[Hashable, int] = collections.OrderedDict()
    self._free = list(range(self.capacity - 1, -1, -1))
    self._same = None  # (keys, rows) of the last lookup when it held every key, in LRU order
    self.evictions = 0
    self.updates = 0

  def _allocate(self, n: int) -> None:
    """Fresh tensors of n rows."""
    k, dev = self.cfg.K, self.device
    self.regrets = torch.full((n, k), float(self.cfg.initial_regret), device=dev)
    self.util_ema = torch.zeros((n, k), device=dev)
    self.visits = torch.zeros(n, dtype=torch.long, device=dev)
    self.avg_num = torch.zeros((n, k), dtype=torch.float64, device=dev)
    self.avg_den = torch.zeros(n, dtype=torch.float64, device=dev)
    self.reach = torch.zeros(n, dtype=torch.float64, device=dev)

  @property
  def capacity(self) -> int:
    """Rows allocated."""
    return self.regrets.shape[0]

  def _grow(self) -> None:
    """max_states auto: doubles the rows (at most `limit`); the new ones are free."""
    old = self.capacity
    new = min(2 * old, self.limit)
    for name in ("regrets", "util_ema", "visits", "avg_num", "avg_den", "reach"):
      t = getattr(self, name)
      fill = float(self.cfg.initial_regret) if name == "regrets" else 0
      setattr(self, name, torch.cat([t, torch.full((new - old, *t.shape[1:]), fill,
                                                   dtype=t.dtype, device=self.device)]))
    self._free = list(range(new - 1, old - 1, -1)) + self._free

  def __len__(self) -> int:
    return len(self._rows)

  def __contains__(self, key) -> bool:
    return key in self._rows

  def keys(self) -> list:
    """Tracked keys, least recently used first."""
    return list(self._rows)

  def _reset(self, rows: list[int]) -> None:
    idx = torch.tensor(rows, dtype=torch.long, device=self.device)
    self.regrets[idx] = float(self.cfg.initial_regret)
    self.util_ema[idx] = 0.0
    self.visits[idx] = 0
    self.avg_num[idx] = 0.0
    self.avg_den[idx] = 0.0
    self.reach[idx] = 0.0

  def _rows_for(self, uniq: Sequence, insert: bool) -> torch.Tensor:
    """Rows of distinct keys (len <= max_states), -1 for absent keys when not inserting.

    A lookup of every tracked key in the LRU order that the last lookup left leaves the
    order as it is: it returns that lookup's rows without touching the dict (the exact
    best-response strategy looks up all information states several times per update)."""
    if self._same is not None and self._same[0] == uniq:
      return self._same[1].clone()
    out = []
    for touched, key in enumerate(uniq):
      row = self._rows.get(key)
      if row is not None:
        self._rows.move_to_end(key)
      elif insert:
        if not self._free and self.capacity < self.limit:
          self._grow()
        if not self._free:
          n = min(self.cfg.lru_evict_batch, len(self._rows) - touched)
          evicted = [self._rows.popitem(last=False)[1] for _ in range(n)]
          self._reset(evicted)
          self._free.extend(evicted)
          self.evictions += n
        row = self._free.pop()
        self._rows[key] = row
      out.append(-1 if row is None else row)
    rows = torch.tensor(out, dtype=torch.long, device=self.device)
    full = len(uniq) == len(self._rows) and -1 not in out
    self._same = (list(uniq), rows.clone()) if full else None
    return rows

  def _rm(self, regrets: torch.Tensor) -> torch.Tensor:
    pos = regrets.clamp_min(0.0)
    total = pos.sum(-1, keepdim=True)
    uniform = torch.full_like(regrets, 1.0 / self.cfg.K)
    return torch.where(total > self.cfg.smoothing_factor, pos / total.clamp_min(1e-30), uniform)

  def _group(self, keys) -> tuple[list, torch.Tensor]:
    """Distinct keys in first-seen order and the (B,) inverse index into them."""
    if isinstance(keys, torch.Tensor):
      flat = keys.reshape(-1).cpu()
      uniq, inv = torch.unique(flat, sorted=False, return_inverse=True)
      return uniq.tolist(), inv.to(self.device)
    index: dict = {}
    inv = [index.setdefault(k, len(index)) for k in keys]
    return list(index), torch.tensor(inv, dtype=torch.long, device=self.device)

  def lookup(self, keys) -> torch.Tensor:
    """(B,) row of each key, -1 where untracked; inserts nothing (tracked keys move to the
    most recently used end, as with every look-up)."""
    uniq, inv = self._group(keys)
    return self._rows_for(uniq, insert=False)[inv] if uniq else inv

  def held(self, keys) -> torch.Tensor:
    """(B,) bool: whether each key is tracked with average weight (a look-up)."""
    rows = self.lookup(keys)
    return (rows >= 0) & (self.avg_den[rows.clamp_min(0)] > 0)

  def update(self, keys, utilities: torch.Tensor, smooth: bool = True) -> None:
    """One regret/EMA update per distinct key from (B, K) utilities (batch-averaged);
    `smooth=False` feeds the utilities to the regrets directly."""
    u = torch.nan_to_num(utilities.detach().to(self.device, torch.float32),
                         nan=0.0, posinf=self.cfg.util_clip, neginf=-self.cfg.util_clip)
    if u.dim() != 2 or u.shape[1] != self.cfg.K:
      raise ValueError(f"utilities must be (B, K={self.cfg.K}), got {tuple(u.shape)}")
    uniq, inv = self._group(keys)
    if len(inv) != u.shape[0]:
      raise ValueError(f"{len(inv)} keys for {u.shape[0]} utility rows")
    u = u.clamp(-self.cfg.util_clip, self.cfg.util_clip)
    cap = self.limit
    for lo in range(0, len(uniq), cap):
      chunk = uniq[lo:lo + cap]
      sel = (inv >= lo) & (inv < lo + len(chunk))
      self._update_rows(self._rows_for(chunk, insert=True), inv[sel] - lo, u[sel], smooth)

  def _update_rows(self, rows: torch.Tensor, inv: torch.Tensor, u: torch.Tensor,
                   smooth: bool = True) -> None:
    n = rows.shape[0]
    sums = torch.zeros((n, u.shape[1]), device=self.device).index_add_(0, inv, u)
    counts = torch.bincount(inv, minlength=n)
    mean_u = sums / counts.clamp_min(1).unsqueeze(-1)
    c = self.cfg
    ema = c.decay * self.util_ema[rows] + (1.0 - c.decay) * mean_u
    signal = ema if smooth else mean_u
    reg = self.regrets[rows]
    sigma = self._rm(reg)
    reg = reg + signal - (sigma * signal).sum(-1, keepdim=True)
    self.util_ema[rows] = ema.clamp(-c.util_clip, c.util_clip)
    self.regrets[rows] = torch.nan_to_num(reg, nan=c.regret_min).clamp(c.regret_min,
                                                                       c.regret_clip)
    self.visits[rows] += counts
    self.updates += 1

  def desired_probs(self, keys, device=None) -> torch.Tensor:
    """(B, K) regret-matching distribution per key; uniform for untracked keys."""
    rows = self.lookup(keys)
    probs = self._rm(self.regrets[rows.clamp_min(0)])
    uniform = torch.full_like(probs, 1.0 / self.cfg.K)
    probs = torch.where((rows >= 0).unsqueeze(-1), probs, uniform)
    return probs if device is None else probs.to(device)

  def weight(self, iteration: int) -> float:
    """w_t of iteration `iteration` in the average (meta_regret.averaging)."""
    a = self.cfg.averaging
    if a == "uniform":
      return 1.0
    return float(iteration + 1) ** (1.0 if a == "linear" else self.cfg.average_power)

  def accumulate(self, keys, reach: torch.Tensor, iteration: int) -> None:
    """Stores the own reach (B,) of `keys` (inserting them) and adds every tracked key's
    current sigma to its average with weight w_t * reach (see the module docstring)."""
    uniq, inv = self._group(keys)
    if len(uniq) > self.limit:
      raise ValueError(f"{len(uniq)} keys exceed meta_regret.max_states={self.cfg.max_states}"
                       f" ({self.limit} keys at most)")
    rows = self._rows_for(uniq, insert=True)
    r = torch.zeros(len(uniq), dtype=torch.float64, device=self.device).scatter_reduce(
        0, inv, reach.detach().to(self.device, torch.float64), "amax", include_self=False)
    self.reach[rows] = r
    idx = torch.tensor(list(self._rows.values()), dtype=torch.long, device=self.device)
    w = self.weight(iteration) * self.reach[idx]
    self.avg_num[idx] += w[:, None] * self._rm(self.regrets[idx]).double()
    self.avg_den[idx] += w

  def current_probs(self, keys, device=None) -> torch.Tensor:
    """(B, K) current regret-matching distribution (= desired_probs)."""
    return self.desired_probs(keys, device)

  def average_probs(self, keys, device=None) -> torch.Tensor:
    """(B, K) float64 reach-weighted average distribution per key; the current sigma where a
    key has no average weight yet, uniform for untracked keys."""
    rows = self.lookup(keys)
    r = rows.clamp_min(0)
    den = self.avg_den[r]
    cur = self.desired_probs(keys).double()
    avg = self.avg_num[r] / den.clamp_min(1e-300)[:, None]
    out = torch.where(((rows >= 0) & (den > 0))[:, None], avg, cur)
    return out if device is None else out.to(device)

  def tracked(self) -> tuple[list, torch.Tensor]:
    """(keys, rows) of every tracked key, least recently used first."""
    return list(self._rows), torch.tensor(list(self._rows.values()), dtype=torch.long,
                                          device=self.device)

  def stats(self) -> dict:
    n = len(self._rows)
    out = {"states_tracked": n, "evictions": self.evictions, "updates": self.updates,
           "mean_regret": 0.0, "bin_entropy": 0.0, "mean_util_ema": 0.0}
    if n:
      idx = torch.tensor(list(self._rows.values()), dtype=torch.long, device=self.device)
      reg = self.regrets[idx]
      sigma = self._rm(reg)
      ent = -(sigma * sigma.clamp_min(1e-12).log()).sum(-1)
      out.update(mean_regret=reg.mean().item(), bin_entropy=ent.mean().item(),
                 mean_util_ema=self.util_ema[idx].mean().item())
      den = self.avg_den[idx]
      have = den > 0
      if bool(have.any()):
        avg = self.avg_num[idx][have] / den[have, None]
        out["avg_bin_entropy"] = float(-(avg * avg.clamp_min(1e-12).log()).sum(-1).mean())
    return out

  def state_dict(self) -> dict:
    return {"keys": list(self._rows.keys()), "rows": list(self._rows.values()),
            "regrets": self.regrets.clone(), "util_ema": self.util_ema.clone(),
            "visits": self.visits.clone(), "evictions": self.evictions,
            "updates": self.updates, "avg_num": self.avg_num.clone(),
            "avg_den": self.avg_den.clone(), "reach": self.reach.clone()}

  def load_state_dict(self, sd: dict) -> None:
    rows, k = sd["regrets"].shape
    if k != self.cfg.K or (rows != self.capacity if not self.auto else rows > self.limit):
      raise ValueError(f"meta-regret checkpoint has shape {tuple(sd['regrets'].shape)}, "
                       f"config gives {(self.capacity, self.cfg.K)} (meta_regret.max_states="
                       f"{self.cfg.max_states})")
    if self.auto:
      self._allocate(rows)
    self.regrets.copy_(sd["regrets"])
    self.util_ema.copy_(sd["util_ema"])
    self.visits.copy_(sd["visits"])
    for k in ("avg_num", "avg_den", "reach"):
      getattr(self, k).copy_(sd[k])
    self._rows = collections.OrderedDict(zip(sd["keys"], sd["rows"]))
    self._same = None
    used = set(self._rows.values())
    self._free = [r for r in range(self.capacity - 1, -1, -1) if r not in used]
    self.evictions = int(sd["evictions"])
    self.updates = int(sd["updates"])
