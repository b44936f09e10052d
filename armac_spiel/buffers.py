"""Fixed-capacity replay memories of typed records: FIFO ring and reservoir.

A buffer holds rows of one record type (a NamedTuple of tensors, armac_spiel/records.py),
adds a whole batch with tensor ops and samples minibatches with a caller's
`torch.Generator`, so runs are reproducible and checkpointable. Its state dict holds the
stored fields by name (tensors only), so checkpoints load with torch.load(weights_only=True).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class TensorBuffer:
  """Rows of `row_type`, whose fields that are None in the first batch are not stored.
  mode='fifo' overwrites the oldest rows; mode='reservoir' keeps a uniform sample of every
  row ever added (row n kept with probability capacity/(n+1))."""

  def __init__(self, row_type: type, capacity: int, mode: str = "fifo"):
    if mode not in ("fifo", "reservoir"):
      raise ValueError(f"buffer mode must be 'fifo' or 'reservoir', got {mode!r}")
    self.row_type = row_type
    self.capacity = capacity
    self.mode = mode
    self.data: dict[str, torch.Tensor] = {}  # stored field -> (capacity, ...) tensor
    self.size = 0
    self.added = 0

  def __len__(self) -> int:
    return self.size

  def add(self, rows: NamedTuple, gen: torch.Generator) -> None:
    if not isinstance(rows, self.row_type):
      raise TypeError(f"a {self.row_type.__name__} buffer got {type(rows).__name__} rows")
    fields = {k: v for k, v in rows._asdict().items() if v is not None}
    n = next(iter(fields.values())).shape[0]
    if n == 0:
      return
    if not self.data:
      self.data = {k: torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype)
                   for k, v in fields.items()}
    elif set(fields) != set(self.data):
      raise ValueError(f"replay rows have fields {sorted(fields)} but the buffer holds "
                       f"{sorted(self.data)} (a checkpoint from another armac-spiel version "
                       f"or sampler?); start a new run")
    if self.mode == "fifo":
      if n > self.capacity:
        fields = {k: v[-self.capacity:] for k, v in fields.items()}
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
    for k, v in fields.items():
      self.data[k][slots] = v[keep].to(self.data[k].dtype)
    self.added += n
    self.size = min(self.added, self.capacity)

  def sample(self, n: int, gen: torch.Generator) -> NamedTuple:
    """n rows drawn uniformly with replacement."""
    idx = torch.randint(self.size, (n,), generator=gen)
    return self.row_type(**{k: v[idx] for k, v in self.data.items()})

  def filled(self) -> NamedTuple:
    """The filled rows (views of the storage)."""
    if not self.size:
      raise ValueError(f"the {self.row_type.__name__} replay is empty")
    return self.row_type(**{k: v[:self.size] for k, v in self.data.items()})

  def state_dict(self) -> dict:
    # clone: a slice is a view, and torch.save would write the whole capacity's storage.
    return {"data": {k: v[:self.size].clone() for k, v in self.data.items()},
            "size": self.size, "added": self.added}

  def load_state_dict(self, d: dict) -> None:
    unknown = sorted(set(d["data"]) - set(self.row_type._fields))
    if unknown:
      raise ValueError(f"replay rows have fields {unknown} that {self.row_type.__name__} "
                       f"does not know (a checkpoint from another armac-spiel version?); "
                       f"start a new run")
    self.size, self.added = d["size"], d["added"]
    self.data = {}
    for k, v in d["data"].items():
      full = torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype)
      full[:v.shape[0]] = v
      self.data[k] = full
