"""The compiled tree's storage: a few flat numpy arrays, integers of the smallest width.

Node ids are breadth first, so the children of a node are consecutive ids, in the order of
its legal actions (a decision) or of its chance outcomes, and the nodes of each depth form
one range. A node stores its information state (decision nodes), its number of children,
the action or chance outcome that leads to it, the chance probability of that edge, its
returns (terminal nodes; rows deduplicated) and, at decision nodes, each player's view: a
row of `view_tensors`, each player's information-state tensor. Everything else (kind,
player, first child, parent, depth, the dense children matrix) is derived on demand.

`save` writes one .npz (no pickled objects) with a JSON header; `load` reads it back with
allow_pickle=False and checks that the arrays fit together.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile

import numpy as np

CHANCE, DECISION, TERMINAL = 0, 1, 2
FORMAT = 1  # bump when the stored arrays change


def narrow(x: np.ndarray) -> np.ndarray:
  """`x` as the smallest signed integer type that holds its values."""
  lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
  for t in (np.int8, np.int16, np.int32):
    info = np.iinfo(t)
    if info.min <= lo and hi <= info.max:
      return x.astype(t, copy=False)
  return x.astype(np.int64, copy=False)


class CacheFormatError(ValueError):
  """A stored tree that cannot be read or whose arrays do not fit together."""


@dataclasses.dataclass(frozen=True, eq=False)
class TreeArrays:
  """One game's compiled tree (M nodes, S information states, V views, N players)."""
  game_string: str
  openspiel_version: str
  num_players: int           # N
  num_actions: int           # A
  width: int                 # W = max(A, chance outcomes): columns of the dense children rows
  compile_s: float           # seconds the traversal took
  infostate: np.ndarray      # (M,) information-state id of a decision node, -1 elsewhere
  num_children: np.ndarray   # (M,)
  action: np.ndarray         # (M,) action or chance outcome leading to the node, -1 at the root
  edge_prob_id: np.ndarray   # (M,) row of edge_probs
  edge_probs: np.ndarray     # (P,) float64: chance probability of the edge into a node, 0 after
                             #   a decision
  return_id: np.ndarray      # (M,) row of return_values
  return_values: np.ndarray  # (R, N) float64; row 0 is zeros (the returns of non-terminals)
  view: np.ndarray           # (M, N) row of view_tensors per player at decision nodes, else -1
  view_tensors: np.ndarray   # (V, D) float32; rows s < S are the information-state tensors
  info_keys: tuple[str, ...]  # (S,) information_state_string, in first-visit DFS order
  info_legal: np.ndarray     # (S, A) bool
  info_player: np.ndarray    # (S,) int8

  @property
  def num_nodes(self) -> int:
    return int(self.infostate.shape[0])

  @property
  def num_infostates(self) -> int:
    return len(self.info_keys)

  @functools.cached_property
  def kind(self) -> np.ndarray:
    """(M,) int8: CHANCE, DECISION or TERMINAL."""
    return np.where(self.infostate >= 0, DECISION,
                    np.where(self.num_children == 0, TERMINAL, CHANCE)).astype(np.int8)

  @functools.cached_property
  def player(self) -> np.ndarray:
    """(M,) int8: acting player, -1 where none acts."""
    return np.where(self.infostate >= 0, self.info_player[np.maximum(self.infostate, 0)],
                    -1).astype(np.int8)

  @functools.cached_property
  def first_child(self) -> np.ndarray:
    """(M,) int64: id of the first child (children are first_child + [0, num_children))."""
    c = np.cumsum(self.num_children, dtype=np.int64)
    return c - self.num_children + 1

  @functools.cached_property
  def depth_bounds(self) -> tuple[int, ...]:
    """Nodes at depth d are [bounds[d], bounds[d+1])."""
    c = np.concatenate([[0], np.cumsum(self.num_children, dtype=np.int64)])
    bounds = [0, 1]
    while bounds[-1] < self.num_nodes:
      lo, hi = bounds[-2], bounds[-1]
      width = int(c[hi] - c[lo])
      if width == 0:
        raise CacheFormatError(f"tree of {self.game_string!r}: nodes {hi}.. have no parent")
      bounds.append(hi + width)
    return tuple(bounds)

  @functools.cached_property
  def depth(self) -> np.ndarray:
    b = np.asarray(self.depth_bounds)
    return narrow(np.repeat(np.arange(len(b) - 1), np.diff(b)))

  @functools.cached_property
  def parent(self) -> np.ndarray:
    """(M,) int64, -1 at the root."""
    p = np.repeat(np.arange(self.num_nodes, dtype=np.int64), self.num_children)
    return np.concatenate([[-1], p])

  @functools.cached_property
  def column(self) -> np.ndarray:
    """(M,) int64: the node's column in its parent's dense children row: the action after a
    decision, the outcome's position in chance_outcomes() after a chance node; -1 at the
    root."""
    par = self.parent[1:]
    rank = np.arange(1, self.num_nodes) - self.first_child[par]
    col = np.where(self.infostate[par] >= 0, self.action[1:], rank)
    return np.concatenate([[-1], col]).astype(np.int64)

  def nbytes(self) -> int:
    """Bytes of the stored arrays."""
    arrays = (self.infostate, self.num_children, self.action, self.edge_prob_id,
              self.edge_probs, self.return_id, self.return_values, self.view,
              self.view_tensors, self.info_legal, self.info_player)
    return sum(a.nbytes for a in arrays) + sum(len(k) for k in self.info_keys)

  # Storage.
  def meta(self) -> dict:
    return {"format": FORMAT, "game_string": self.game_string,
            "openspiel_version": self.openspiel_version, "num_players": self.num_players,
            "num_actions": self.num_actions, "width": self.width, "compile_s": self.compile_s,
            "num_nodes": self.num_nodes, "num_infostates": self.num_infostates}

  def save(self, path: str) -> None:
    """Writes the arrays to `path` (.npz) atomically: a temporary file, then a rename."""
    keys = [k.encode() for k in self.info_keys]
    offsets = np.cumsum([0] + [len(k) for k in keys], dtype=np.int64)
    arrays = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
              if isinstance(getattr(self, f.name), np.ndarray)}
    arrays["info_keys_bytes"] = np.frombuffer(b"".join(keys), dtype=np.uint8)
    arrays["info_keys_offsets"] = offsets
    arrays["meta"] = np.frombuffer(json.dumps(self.meta()).encode(), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path))
    try:
      with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
      os.replace(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.unlink(tmp)
      raise

  @staticmethod
  def read_meta(path: str) -> dict:
    """The JSON header of a stored tree (reads nothing else)."""
    try:
      with np.load(path, allow_pickle=False) as z:
        return json.loads(z["meta"].tobytes().decode())
    except (OSError, ValueError, KeyError, EOFError) as e:
      raise CacheFormatError(f"{path}: not a stored tree ({e})") from e

  @classmethod
  def load(cls, path: str) -> TreeArrays:
    """The tree stored at `path`; CacheFormatError if it is unreadable or inconsistent."""
    try:
      with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
      meta = json.loads(data.pop("meta").tobytes().decode())
      raw, off = data.pop("info_keys_bytes").tobytes(), data.pop("info_keys_offsets")
      keys = tuple(raw[off[i]:off[i + 1]].decode() for i in range(len(off) - 1))
    except (OSError, ValueError, KeyError, EOFError, UnicodeDecodeError) as e:
      raise CacheFormatError(f"{path}: unreadable ({e})") from e
    if meta.get("format") != FORMAT:
      raise CacheFormatError(f"{path}: format {meta.get('format')}, expected {FORMAT}")
    scalars = {k: meta[k] for k in ("game_string", "openspiel_version", "num_players",
                                    "num_actions", "width", "compile_s")}
    try:
      out = cls(**scalars, **data, info_keys=keys)
    except TypeError as e:
      raise CacheFormatError(f"{path}: {e}") from e
    out.check()
    return out

  def check(self) -> None:
    """Raises CacheFormatError unless the arrays fit together."""
    m, s, n = self.num_nodes, self.num_infostates, self.num_players
    problems = []
    for name in ("num_children", "action", "edge_prob_id", "return_id"):
      if getattr(self, name).shape != (m,):
        problems.append(f"{name} shape {getattr(self, name).shape} != ({m},)")
    if self.view.shape != (m, n):
      problems.append(f"view shape {self.view.shape} != ({m}, {n})")
    if self.info_legal.shape != (s, self.num_actions) or self.info_player.shape != (s,):
      problems.append("information-state tables do not match the keys")
    if not problems:
      if int(self.num_children.sum(dtype=np.int64)) != m - 1:
        problems.append("children do not add up to the nodes")
      if m and not (-1 <= int(self.infostate.min()) and int(self.infostate.max()) < s):
        problems.append("information-state ids out of range")
      if self.view.size and not (-1 <= int(self.view.min()) and
                                 int(self.view.max()) < self.view_tensors.shape[0]):
        problems.append("view ids out of range")
      if m and not (0 <= int(self.edge_prob_id.min()) and
                    int(self.edge_prob_id.max()) < len(self.edge_probs)):
        problems.append("edge probability ids out of range")
      if m and not (0 <= int(self.return_id.min()) and
                    int(self.return_id.max()) < len(self.return_values)):
        problems.append("return ids out of range")
      if self.return_values.shape[1:] != (n,):
        problems.append("return rows do not have one column per player")
    if problems:
      raise CacheFormatError(f"stored tree of {self.game_string!r}: " + "; ".join(problems))
