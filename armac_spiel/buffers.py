"""Fixed-capacity replay memories of named tensors: FIFO ring and reservoir.

Both add a whole batch with tensor ops and sample minibatches with a caller's
`torch.Generator`, so runs are reproducible and checkpointable.
"""

from __future__ import annotations

import torch


class TensorBuffer:
  """Rows of named tensors. mode='fifo' overwrites the oldest rows; mode='reservoir' keeps
  a uniform sample of every row ever added (row n kept with probability capacity/(n+1))."""

  def __init__(self, capacity: int, mode: str = "fifo"):
    if mode not in ("fifo", "reservoir"):
      raise ValueError(f"buffer mode must be 'fifo' or 'reservoir', got {mode!r}")
    self.capacity = capacity
    self.mode = mode
    self.data: dict[str, torch.Tensor] = {}
    self.size = 0
    self.added = 0

  def __len__(self) -> int:
    return self.size

  def add(self, rows: dict[str, torch.Tensor], gen: torch.Generator) -> None:
    n = next(iter(rows.values())).shape[0]
    if n == 0:
      return
    if not self.data:
      self.data = {k: torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype)
                   for k, v in rows.items()}
    elif set(rows) != set(self.data):
      raise ValueError(f"replay rows have fields {sorted(rows)} but the buffer holds "
                       f"{sorted(self.data)} (a checkpoint from another armac-spiel version "
                       f"or sampler?); start a new run")
    if self.mode == "fifo":
      if n > self.capacity:
        rows = {k: v[-self.capacity:] for k, v in rows.items()}
        self.added += n - self.capacity
        n = self.capacity
      slots = (self.added + torch.arange(n)) % self.capacity
      keep = torch.arange(n)
    else:
      idx = self.added + torch.arange(n)
      fill = idx < self.capacity
      u = torch.rand(n, generator=gen, dtype=torch.float64)
      rand_slot = torch.randint(self.capacity, (n,), generator=gen)
      accept = fill | (u < self.capacity / (idx + 1).double())
      slots = torch.where(fill, idx, rand_slot)[accept]
      keep = accept.nonzero().squeeze(1)
    for k, v in rows.items():
      self.data[k][slots] = v[keep].to(self.data[k].dtype)
    self.added += n
    self.size = min(self.added, self.capacity)

  def sample(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    idx = torch.randint(self.size, (n,), generator=gen)
    return {k: v[idx] for k, v in self.data.items()}

  def filled(self) -> dict[str, torch.Tensor]:
    """The filled rows of every field (views)."""
    return {k: v[:self.size] for k, v in self.data.items()}

  def state_dict(self) -> dict:
    # clone: a slice is a view, and torch.save would write the whole capacity's storage.
    return {"data": {k: v.clone() for k, v in self.filled().items()},
            "size": self.size, "added": self.added}

  def load_state_dict(self, d: dict) -> None:
    self.size, self.added = d["size"], d["added"]
    self.data = {}
    for k, v in d["data"].items():
      full = torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype)
      full[:v.shape[0]] = v
      self.data[k] = full
