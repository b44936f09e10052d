"""Networks and the bounded buffer of past networks.

- `MLP`: ReLU MLP; the last layer starts at zero scale (small outputs at init keep the first
  regret-matching policies near uniform and the first critic values near 0).
- `masked_softmax`, `regret_matching`: legal-masked policies. Masked logits use a large
  finite negative number, not -inf, so gradients stay finite.
- `unique_forward`, `content_ids`: a network run once per distinct input row (by id, or by
  content where no ids exist) and gathered back.
- `SnapshotBank`: past networks stored as stacked parameter tensors with a cap and
  reservoir thinning, evaluated for G groups of rows at once with batched matmuls.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

NEG = -1e9


class MLP(nn.Sequential):
  """Linear-ReLU stack; `out_scale` scales the initial last-layer weights."""

  def __init__(self, in_size: int, hidden: tuple[int, ...], out_size: int,
               out_scale: float = 0.01):
    layers, d = [], in_size
    for h in hidden:
      layers += [nn.Linear(d, h), nn.ReLU()]
      d = h
    last = nn.Linear(d, out_size)
    with torch.no_grad():
      last.weight.mul_(out_scale)
      last.bias.zero_()
    super().__init__(*layers, last)
    self.sizes = (in_size, *hidden, out_size)

  def linears(self) -> list[nn.Linear]:
    return [m for m in self if isinstance(m, nn.Linear)]


@torch.no_grad()
def fit_last_layer(net: MLP, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                   ridge: float = 1e-6) -> None:
  """Sets `net`'s last layer to the ridge least-squares fit of y on its hidden features:
  for each output a, min_w sum_s mask[s, a] (phi(x_s) . w + b - y[s, a])^2 + r |(w, b)|^2,
  with r = ridge times the mean diagonal of the Gram matrix; solved in float64 for every
  output at once. With no more rows than hidden units the fit interpolates the targets;
  otherwise it is the best last layer for the features the earlier layers learned."""
  *body, last = list(net)
  phi = x
  for layer in body:
    phi = layer(phi)
  phi = phi.double()
  phi = torch.cat([phi, torch.ones(len(phi), 1, dtype=phi.dtype, device=phi.device)], 1)
  m = mask.double()
  gram = torch.einsum("sh,sa,sk->ahk", phi, m, phi)  # (A, H+1, H+1)
  rhs = torch.einsum("sh,sa->ah", phi, m * y.double())
  eye = torch.eye(phi.shape[1], dtype=phi.dtype, device=phi.device)
  r = ridge * gram.diagonal(dim1=1, dim2=2).mean(-1).clamp_min(1e-12)
  sol = torch.linalg.solve(gram + r[:, None, None] * eye, rhs)  # (A, H+1)
  last.weight.copy_(sol[:, :-1].to(last.weight.dtype))
  last.bias.copy_(sol[:, -1].to(last.bias.dtype))


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
  return torch.softmax(logits.masked_fill(~mask, NEG), -1)


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
  return torch.log_softmax(logits.masked_fill(~mask, NEG), -1)


def regret_matching(regrets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
  """NormalizedReLU over legal actions; uniform over legal actions when none is positive."""
  pos = regrets.clamp_min(0.0) * mask
  total = pos.sum(-1, keepdim=True)
  uniform = mask / mask.sum(-1, keepdim=True).clamp_min(1)
  return torch.where(total > 0, pos / total.clamp_min(1e-30), uniform.to(pos.dtype))


def uniform_policy(mask: torch.Tensor) -> torch.Tensor:
  m = mask.float()
  return m / m.sum(-1, keepdim=True).clamp_min(1)


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


class SnapshotBank:
  """Bounded buffer of past parameter sets of several MLPs (e.g. regret net and critic).

  Holds at most `capacity` snapshots. Once full, push number n (0-based) replaces a
  uniformly chosen slot with probability capacity / (n + 1) (reservoir sampling), so the
  kept snapshots are a uniform sample of the whole history and memory stays bounded whatever
  the number of epochs. All nets of one push share the slot; `epoch[k]` is slot k's epoch.
  """

  def __init__(self, templates: dict[str, MLP], capacity: int, device):
    self.capacity = capacity
    self.device = torch.device(device)
    self.weights = {name: [torch.zeros(capacity, l.out_features, l.in_features,
                                       device=self.device) for l in net.linears()]
                    for name, net in templates.items()}
    self.biases = {name: [torch.zeros(capacity, l.out_features, device=self.device)
                          for l in net.linears()] for name, net in templates.items()}
    self.epoch = torch.full((capacity,), -1, dtype=torch.long)
    self.size = 0
    self.pushes = 0

  @torch.no_grad()
  def push(self, nets: dict[str, MLP], epoch: int, rng: np.random.Generator) -> int | None:
    """Stores the nets' parameters; returns the slot, or None when thinning drops them."""
    if self.size < self.capacity:
      slot = self.size
      self.size += 1
    else:
      k = int(rng.integers(self.pushes + 1))
      slot = k if k < self.capacity else None
    self.pushes += 1
    if slot is not None:
      for name, net in nets.items():
        for k, l in enumerate(net.linears()):
          self.weights[name][k][slot] = l.weight
          self.biases[name][k][slot] = l.bias
      self.epoch[slot] = epoch
    return slot

  @torch.no_grad()
  def forward(self, name: str, slots: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x: (G, R, in), rows of group g evaluated by snapshot slots[g] -> (G, R, out)."""
    slots = slots.to(self.device)
    ws, bs = self.weights[name], self.biases[name]
    h = x
    for k, (w, b) in enumerate(zip(ws, bs)):
      h = torch.baddbmm(b[slots].unsqueeze(1), h, w[slots].transpose(1, 2))
      if k < len(ws) - 1:
        h = torch.relu(h)
    return h

  def state_dict(self) -> dict:
    """The filled slots only (clones: a slice view would make torch.save write them all)."""
    n = self.size
    return {"weights": {k: [w[:n].clone() for w in ws] for k, ws in self.weights.items()},
            "biases": {k: [b[:n].clone() for b in bs] for k, bs in self.biases.items()},
            "epoch": self.epoch, "size": self.size, "pushes": self.pushes}

  def load_state_dict(self, d: dict) -> None:
    for mine, saved in ((self.weights, d["weights"]), (self.biases, d["biases"])):
      for name, tensors in saved.items():
        for k, t in enumerate(tensors):  # filled slots (or, older checkpoints, all)
          mine[name][k].zero_()
          mine[name][k][:t.shape[0]] = t.to(self.device)
    self.epoch, self.size, self.pushes = d["epoch"], d["size"], d["pushes"]
