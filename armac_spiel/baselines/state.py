"""Plain-data forms (armac_spiel.safe_load) of generator states and OpenSpiel's buffers,
and `GlobalRng`, the private copy of the global generators a baseline runs OpenSpiel in."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


class GlobalRng:
  """A private copy of the Python, NumPy and torch global generator states, swapped in
  around calls into OpenSpiel code that uses the global generators."""

  def __init__(self, seed: int, cuda: bool = False):
    self._cuda = cuda and torch.cuda.is_available()
    outer = self._capture()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if self._cuda:
      torch.cuda.manual_seed_all(seed)
    self.state = self._capture()
    self._restore(outer)

  def _capture(self):
    cuda = torch.cuda.get_rng_state_all() if self._cuda else None
    return (random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda)

  def _restore(self, state) -> None:
    random.setstate(state[0])
    np.random.set_state(state[1])
    torch.set_rng_state(state[2])
    if self._cuda and state[3] is not None:
      torch.cuda.set_rng_state_all(state[3])

  @contextlib.contextmanager
  def active(self):
    outer = self._capture()
    self._restore(self.state)
    try:
      yield
    finally:
      self.state = self._capture()
      self._restore(outer)


def np_legacy_state(state) -> dict:
  """np.random.RandomState.get_state() (MT19937) as plain data."""
  _, key, pos, has_gauss, gauss = state
  return {"key": torch.from_numpy(np.asarray(key, dtype=np.int64)), "pos": int(pos),
          "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)}


def np_legacy_from(d: dict) -> tuple:
  return ("MT19937", d["key"].numpy().astype(np.uint32), int(d["pos"]), int(d["has_gauss"]),
          float(d["cached_gaussian"]))


def rng_plain(state) -> dict:
  """A GlobalRng state (Python, NumPy, torch, CUDA generator states) as plain data."""
  version, internal, gauss = state[0]
  return {"python": [int(version), list(internal), gauss],
          "numpy": np_legacy_state(state[1]), "torch": state[2].clone(),
          "cuda": None if state[3] is None else [t.clone() for t in state[3]]}


def rng_from_plain(d: dict) -> tuple:
  version, internal, gauss = d["python"]
  return ((int(version), tuple(int(x) for x in internal), gauss), np_legacy_from(d["numpy"]),
          d["torch"].clone(), None if d["cuda"] is None else list(d["cuda"]))


def buffer_state(buf) -> dict | None:
  """An OpenSpiel replay / reservoir buffer as plain data: its filled rows, one tensor per
  field, its capacity and its counter (add_calls or entry_index)."""
  if buf is None:
    return None
  n = len(buf)
  count = buf.add_calls if hasattr(buf, "add_calls") else buf.entry_index
  return {"rows": {f: torch.from_numpy(np.array(v[:n]))
                   for f, v in zip(buf.experience._fields, buf.experience)},
          "capacity": int(buf.capacity), "count": int(count)}


def buffer_from(cls, experience_cls, state: dict | None):
  """Rebuilds `cls` (an OpenSpiel buffer with `init`) from `buffer_state` output."""
  if state is None:
    return None
  rows = [state["rows"][f].numpy() for f in experience_cls._fields]
  buf = cls.init(state["capacity"], experience_cls(*[r[0] for r in rows]))
  for dst, src in zip(buf.experience, rows):
    dst[:len(src)] = src
  count = np.array(state["count"])
  if hasattr(buf, "add_calls"):
    buf.add_calls = count
  else:
    buf.entry_index = count
  return buf
