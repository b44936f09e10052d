"""State keys for the meta-regret manager, at four granularities (state_keying.level).

- 0: round_player_pos; id = (round * N + player) * N + position.
- 1: round_player_pos_potBucket_stackBucket; id = (id0 * n + pot_bucket) * n + stack_bucket,
  with the features and n buckets of games.poker_features.
- 2: k-means cluster of the information-state tensor (the encoding); id = cluster index.
  A scikit-learn MiniBatchKMeans, updated online with partial_fit on every batch when
  update_clusters; until it has seen n_clusters samples every id is 0. Its state is plain
  data (`kmeans_state`): the centroids as a tensor, which is all nearest-centroid
  assignment needs, and the online-fit counters and generator state as tensors and
  numbers, so a resumed fit continues exactly. `save_clusters` writes that state to
  cluster_file (a torch file of plain data, written atomically); it is loaded from there
  with torch.load(weights_only=True) at construction when the file exists.
- 3: the information state itself; id = its row of games.infostate_table.
Ids are integers computed for a whole batch with tensor arithmetic; `names_*` give the
readable strings.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
# scikit-learn (k-means) is imported where level 2 uses it: optional for the other levels,
# and its import costs seconds.

from armac_spiel.atomic import atomic_torch_save
from armac_spiel.safe_load import load_tensor_file
from armac_spiel.scheduler.config import StateKeyingConfig
from games import infostate_table
from games.poker_features import (PokerFeatures, features_from_infostate_strings,
                                  poker_spec)

CLUSTER_FORMAT = "armac-spiel/kmeans-v1"


def kmeans_state(km) -> dict:
  """A fitted MiniBatchKMeans as plain data: centroids and the online-fit state."""
  key, pos, has_gauss, gauss = km._random_state.get_state(legacy=True)[1:]
  return {"format": CLUSTER_FORMAT,
          "centroids": torch.from_numpy(np.array(km.cluster_centers_)),
          "counts": torch.from_numpy(np.array(km._counts)),
          "n_steps": int(km.n_steps_), "n_since_last_reassign": int(km._n_since_last_reassign),
          "batch_size": int(km._batch_size),
          "random_state": {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                           "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)}}


def kmeans_from_state(state: dict, n_clusters: int, seed: int, where: str = "k-means state"):
  """Rebuilds a MiniBatchKMeans from `kmeans_state` output (predict and partial_fit work
  as on the original); ValueError naming `where` when the state does not fit."""
  from sklearn.cluster import MiniBatchKMeans
  if not isinstance(state, dict) or state.get("format") != CLUSTER_FORMAT:
    fmt = state.get("format") if isinstance(state, dict) else type(state).__name__
    raise ValueError(f"{where}: unknown k-means format {fmt!r}, expected {CLUSTER_FORMAT!r} "
                     "(older armac-spiel versions pickled the k-means model; such a file is "
                     "not loaded: regenerate it by training again)")
  c = state["centroids"]
  if not isinstance(c, torch.Tensor) or c.dim() != 2 or c.shape[0] != n_clusters:
    shape = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
    raise ValueError(f"{where}: centroids have shape {shape}, state_keying.n_clusters "
                     f"is {n_clusters}")
  km = MiniBatchKMeans(n_clusters=n_clusters, n_init=3, random_state=seed)
  km.cluster_centers_ = c.numpy().copy()
  km._counts = state["counts"].numpy().copy()
  km.n_steps_ = int(state["n_steps"])
  km._n_since_last_reassign = int(state["n_since_last_reassign"])
  km._batch_size = int(state["batch_size"])
  km.n_features_in_ = c.shape[1]
  km._n_features_out = c.shape[0]
  from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
  km._n_threads = _openmp_effective_n_threads()
  rs = state["random_state"]
  km._random_state = np.random.RandomState()
  km._random_state.set_state(("MT19937", rs["key"].numpy().astype(np.uint32), int(rs["pos"]),
                              int(rs["has_gauss"]), float(rs["cached_gaussian"])))
  return km


class StateKeyer:
  """Batch state keys; `game_string` is needed for levels 0 and 1."""

  def __init__(self, cfg: StateKeyingConfig = StateKeyingConfig(),
               game_string: str | None = None, n_buckets: int = 4, scale: str = "total",
               seed: int = 0):
    self.cfg = cfg
    self.level = cfg.level
    self.game_string = game_string
    self.n_buckets = n_buckets
    self.scale = scale
    self.seed = seed
    self.spec = (poker_spec(game_string) if game_string is not None and self.level in (0, 1)
                 else None)
    if self.level == 3 and game_string is None:
      raise ValueError("state_keying.level=3 needs the game_string")
    if self.level < 2 and self.spec is None:
      raise ValueError(f"state_keying.level={self.level} needs a poker game_string")
    self.kmeans = None
    self._pending: list[np.ndarray] = []
    if self.level == 2 and os.path.exists(cfg.cluster_file):
      where = f"state_keying.cluster_file {cfg.cluster_file}"
      try:
        state = load_tensor_file(cfg.cluster_file, "state_keying.cluster_file", hint=(
            "cluster files hold plain data only (centroids as a tensor); one written by an "
            "older armac-spiel version (a pickle) must not be loaded: delete it and the "
            "run fits the clusters again"))
      except (RuntimeError, OSError, EOFError) as e:  # truncated or foreign files
        raise ValueError(f"{where} is corrupt or unreadable ({type(e).__name__}: {e}); "
                         "delete it to fit the clusters again") from None
      self.kmeans = kmeans_from_state(state, cfg.n_clusters, seed, where)

  @property
  def num_keys(self) -> int:
    """Size of the id space."""
    if self.level == 2:
      return self.cfg.n_clusters
    if self.level == 3:
      return len(infostate_table(self.game_string))
    n = self.spec.num_players
    base = self.spec.num_rounds * n * n
    return base * self.n_buckets ** 2 if self.level == 1 else base

  def features(self, infostate_strings: Sequence[str]) -> PokerFeatures:
    return features_from_infostate_strings(self.game_string, infostate_strings,
                                           self.n_buckets, self.scale)

  def ids_from_features(self, f: PokerFeatures, level: int | None = None) -> torch.Tensor:
    level = self.level if level is None else level
    if level not in (0, 1):
      raise ValueError(f"feature keys are levels 0 and 1, got {level}")
    n = self.spec.num_players
    ids = (f.round * n + f.player) * n + f.position
    if level == 1:
      ids = (ids * self.n_buckets + f.pot_bucket) * self.n_buckets + f.stack_bucket
    return ids

  def names_from_features(self, f: PokerFeatures, level: int | None = None) -> list[str]:
    level = self.level if level is None else level
    cols = [f.round, f.player, f.position]
    if level == 1:
      cols += [f.pot_bucket, f.stack_bucket]
    rows = torch.stack(cols, -1).tolist()
    return ["_".join(map(str, r)) for r in rows]

  def ids_from_infostates(self, infostate_strings: Sequence[str]) -> torch.Tensor:
    return self.ids_from_features(self.features(infostate_strings))

  def cluster_ids(self, embeddings: torch.Tensor, update: bool | None = None) -> torch.Tensor:
    """(B,) k-means cluster ids of (B, D) embeddings, on their device."""
    from sklearn.cluster import MiniBatchKMeans
    x = embeddings.detach().float().cpu().numpy()
    update = self.cfg.update_clusters if update is None else update
    if update:
      self._pending.append(x)
      pending = np.concatenate(self._pending)
      if self.kmeans is not None or len(pending) >= self.cfg.n_clusters:
        if self.kmeans is None:
          self.kmeans = MiniBatchKMeans(n_clusters=self.cfg.n_clusters, n_init=3,
                                        random_state=self.seed)
        self.kmeans.partial_fit(pending)
        self._pending = []
    if self.kmeans is None:
      return torch.zeros(x.shape[0], dtype=torch.long, device=embeddings.device)
    return torch.from_numpy(self.kmeans.predict(x).astype(np.int64)).to(embeddings.device)

  def ids(self, infostate_strings: Sequence[str] | None = None,
          embeddings: torch.Tensor | None = None,
          features: PokerFeatures | None = None) -> torch.Tensor:
    """(B,) ids at the configured level from whichever input that level needs."""
    if self.level == 3:
      if infostate_strings is None:
        raise ValueError("state_keying.level=3 needs information-state strings")
      index = infostate_table(self.game_string).index
      return torch.tensor([index[k] for k in infostate_strings], dtype=torch.long)
    if self.level == 2:
      if embeddings is None:
        raise ValueError("state_keying.level=2 needs embeddings (information-state tensors)")
      return self.cluster_ids(embeddings)
    if features is None:
      if infostate_strings is None:
        raise ValueError(f"state_keying.level={self.level} needs information-state strings "
                         "or poker features")
      features = self.features(infostate_strings)
    return self.ids_from_features(features)

  def save_clusters(self, path: str | None = None) -> str | None:
    """Writes the k-means state (plain data) atomically; returns the path (None when not
    fitted)."""
    if self.kmeans is None:
      return None
    path = path or self.cfg.cluster_file
    atomic_torch_save(kmeans_state(self.kmeans), path)
    return path

  def state_dict(self) -> dict:
    return {"kmeans": None if self.kmeans is None else kmeans_state(self.kmeans),
            "pending": [torch.from_numpy(p.copy()) for p in self._pending]}

  def load_state_dict(self, sd: dict) -> None:
    km = sd.get("kmeans")
    self.kmeans = None if km is None else kmeans_from_state(
        km, self.cfg.n_clusters, self.seed, "scheduler checkpoint entry 'keyer.kmeans'")
    self._pending = [np.asarray(p.numpy() if isinstance(p, torch.Tensor) else p).copy()
                     for p in sd.get("pending", [])]
