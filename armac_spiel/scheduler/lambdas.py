"""Where lambda(s) comes from: the scheduler network or the meta-regret manager, per state key.

pi_mix = lambda pi_rm + (1 - lambda) pibar, with pi_rm = RM(W(s)) (ARMAC's regret network)
and pibar its actor (`tabulate`). `LambdaSource` gives lambda on any states:
- the network's lambda (`net_lambda`): at inference, the argmax bin (discrete) or the
  continuous lambda; at training time (the behaviour policy, discrete) a soft one, the
  Gumbel-softmax softmax((logits + g) / tau(t)) . bins (scheduler.use_gumbel) or
  softmax(logits / T_mix(t)) . bins with T_mix(t) = max(min_temperature,
  temperature * temperature_decay^t);
- the manager's lambda at the states' keys (`manager_lambda`): its weighted average or its
  current sigma, sigma . bins; `average_lambda` and `current_lambda` tabulate them over every
  information state, with the network's inference lambda where the manager holds nothing.

State keys: level 3 is the information state's row of games.infostate_table; levels 0 and 1
come from the poker features of its string; level 2 clusters the information-state tensors.
"""

from __future__ import annotations

import torch

from armac_spiel.networks import masked_softmax, regret_matching
from armac_spiel.scheduler.br_critic import MixFn
from armac_spiel.scheduler.mixer import normalise, sched_lambda
from armac_spiel.scheduler.trainer import SchedulerTrainer
from games import InfoStateTable, infostate_table
from games.tree import compile_tree

# The pi_mix a MixFn plays: the manager's current sigma, its average (with the network's
# inference lambda where it holds nothing: what deploy average deploys), or the actor alone.
MIX_SOURCES = ("current", "average", "actor")


def tabulate(learner, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
  """(pi_rm, pibar) of the learner on (B, D) states with (B, A) legal masks, unnormalised."""
  with torch.no_grad():
    return (regret_matching(learner.regret(x), mask), masked_softmax(learner.actor(x), mask))


class LambdaSource:
  """lambda(s) from the trainer's network and manager; see the module docstring."""

  def __init__(self, trainer: SchedulerTrainer, game_string: str, seed: int = 0):
    self.trainer = trainer
    self.game_string = game_string
    self.mode = trainer.mode
    self.bins = trainer.bins
    self.level = trainer.cfg.state_keying.level
    self.gen = torch.Generator().manual_seed(seed + 7919)  # Gumbel noise of net_lambda
    self._row_keys = None   # (S,) key of each infostate_table row (levels 0, 1, 3)
    self._byte_rows = None  # tensor bytes -> infostate_table row (pyspiel sampler)

  @property
  def table(self) -> InfoStateTable:
    """The game's information-state table (games.infostate_table)."""
    return infostate_table(self.game_string)

  # ---------------------------------------------------------------- keys
  def row_keys(self) -> torch.Tensor:
    """(S,) manager key of every information state (levels 0, 1 and 3)."""
    if self._row_keys is None:
      t = self.table
      if self.level == 3:
        self._row_keys = torch.arange(len(t))
      elif self.level == 2:
        raise ValueError("level-2 keys depend on the clusters; use keys_of")
      else:
        self._row_keys = self.trainer.keyer.ids_from_infostates(t.keys)
    return self._row_keys

  def keys_of(self, x: torch.Tensor, rows: torch.Tensor | None,
              update: bool = False) -> torch.Tensor:
    """Keys of states given their table rows (levels 0, 1, 3) or encodings (level 2, whose
    clusters learn from `x` when `update`)."""
    if self.level == 2:
      return self.trainer.keyer.cluster_ids(x, update=update)
    return self.row_keys()[rows]

  def table_rows(self, node, info: torch.Tensor) -> torch.Tensor:
    """(N,) infostate_table rows from tree node ids, else by the information-state bytes."""
    if node is not None:
      return compile_tree(self.game_string).infostate[node]
    if self._byte_rows is None:
      rows = self.table.tensors.numpy()
      self._byte_rows = {}
      for i in range(rows.shape[0]):
        self._byte_rows.setdefault(rows[i].tobytes(), i)
    x = info.contiguous().numpy()
    try:
      return torch.tensor([self._byte_rows[r.tobytes()] for r in x], dtype=torch.long)
    except KeyError:
      raise ValueError(f"{self.game_string}: a sampled information-state tensor is not in the "
                       "information-state table; use state_keying.level=2") from None

  # ---------------------------------------------------------------- lambdas
  def net_lambda(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
    """(B, 1) the network's lambda: inference (hard argmax bin / continuous lambda), or the
    training-time soft lambda (see the module docstring)."""
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

  def manager_lambda(self, keys, average: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """((B, 1) float64 lambda from the manager's average or current sigma, (B,) whether the
    key is held with average weight), on the CPU."""
    mgr = self.trainer.manager
    probs = mgr.average_probs(keys) if average else mgr.current_probs(keys).double()
    bins = torch.as_tensor(self.bins, dtype=torch.float64)
    held = mgr.held(keys)
    return (probs.cpu() @ bins).unsqueeze(-1), held.cpu()

  def average_lambda(self, learner) -> torch.Tensor:
    """(S, 1) float64: the manager's weighted average where it has weight, else the
    network's inference lambda."""
    t = self.table
    x = t.tensors.to(learner.device)
    self.trainer.set_iteration(learner.epoch)
    net = self.net_lambda(x).double().cpu()
    lam, held = self.manager_lambda(self.keys_of(x, torch.arange(len(t))).cpu(), True)
    return torch.where(held[:, None], lam, net)

  def current_lambda(self, learner) -> torch.Tensor:
    """(S, 1) float64 lambda of the manager's current sigma (the CFR-BR iterate; the
    network's inference lambda at keys it does not hold)."""
    t = self.table
    x = t.tensors.to(learner.device)
    self.trainer.set_iteration(learner.epoch)
    keys = self.keys_of(x, torch.arange(len(t))).cpu()
    tracked = self.trainer.manager.lookup(keys).cpu() >= 0
    lam = self.manager_lambda(keys, average=False)[0]
    return torch.where(tracked[:, None], lam, self.net_lambda(x).double().cpu())

  # ---------------------------------------------------------------- pi_mix
  def parts(self, learner) -> tuple[torch.Tensor, torch.Tensor]:
    """(pi_rm, pibar) tables (S, A) over every information state, legal-masked and
    normalised, float64 on the CPU."""
    t = self.table
    pi_rm, pi_avg = tabulate(learner, t.tensors.to(learner.device),
                             t.legal_mask.to(learner.device))
    mask = t.legal_mask
    return normalise(pi_rm.cpu().double(), mask), normalise(pi_avg.cpu().double(), mask)

  def mix(self, lam: torch.Tensor, parts: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """(S, A) float64 pi_mix over every information state from (S, 1) lambda and `parts`."""
    p_rm, p_avg = parts
    return normalise(lam * p_rm + (1 - lam) * p_avg, self.table.legal_mask)

  def mix_fn(self, learner, which: str) -> MixFn:
    """A br_critic MixFn playing pi_mix under `which` (MIX_SOURCES): the manager's current
    sigma, its average with the network's inference lambda elsewhere, or the actor alone."""
    if which not in MIX_SOURCES:
      raise ValueError(f"mix source must be one of {MIX_SOURCES}, got {which!r}")

    def mix_fn(x, mask, rows):
      x, mask = x.to(learner.device), mask.to(learner.device)
      pi_rm, pi_avg = tabulate(learner, x, mask)
      if which == "actor":
        return normalise(pi_avg, mask)
      if self.level != 2 and rows is None:
        rows = self.table_rows(None, x.cpu())
      keys = self.keys_of(x, rows).cpu()
      lam, held = self.manager_lambda(keys, average=which == "average")
      if which == "average":
        lam = torch.where(held[:, None], lam, self.net_lambda(x).double().cpu())
      lam = lam.to(pi_rm.device, pi_rm.dtype)
      return normalise(lam * normalise(pi_rm, mask) + (1 - lam) * normalise(pi_avg, mask),
                       mask)

    return mix_fn
