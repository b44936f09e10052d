"""State keys for the meta-regret manager, at three granularities (state_keying.level).

- 0: round_player_pos; id = (round * N + player) * N + position.
- 1: round_player_pos_potBucket_stackBucket; id = (id0 * n + pot_bucket) * n + stack_bucket,
  with the features and n buckets of games.poker_features.
- 2: k-means cluster of the information-state tensor (the encoding); id = cluster index.
  A scikit-learn MiniBatchKMeans, updated online with partial_fit on every batch when
  update_clusters; until it has seen n_clusters samples every id is 0. `save_clusters`
  writes it to cluster_file atomically (temp file + os.replace); it is loaded from there
  at construction when the file exists.
Ids are integers computed for a whole batch with tensor arithmetic; `names_*` give the
readable strings.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from typing import Sequence

import numpy as np
import torch

from armac_spiel.scheduler.config import StateKeyingConfig
from games.poker_features import (PokerFeatures, features_from_infostate_strings,
                                  poker_spec)


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
    self.spec = poker_spec(game_string) if game_string is not None else None
    if self.level < 2 and self.spec is None:
      raise ValueError(f"state_keying.level={self.level} needs a poker game_string")
    self.kmeans = None
    self._pending: list[np.ndarray] = []
    if self.level == 2 and os.path.exists(cfg.cluster_file):
      with open(cfg.cluster_file, "rb") as f:
        self.kmeans = pickle.load(f)

  @property
  def num_keys(self) -> int:
    """Size of the id space."""
    if self.level == 2:
      return self.cfg.n_clusters
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
    """Writes the k-means model atomically; returns the path (None when not fitted)."""
    if self.kmeans is None:
      return None
    path = path or self.cfg.cluster_file
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".clusters.", suffix=".tmp")
    try:
      with os.fdopen(fd, "wb") as f:
        pickle.dump(self.kmeans, f)
      os.replace(tmp, path)
    except BaseException:
      if os.path.exists(tmp):
        os.remove(tmp)
      raise
    return path

  def state_dict(self) -> dict:
    return {"kmeans": None if self.kmeans is None else pickle.dumps(self.kmeans),
            "pending": [p.copy() for p in self._pending]}

  def load_state_dict(self, sd: dict) -> None:
    self.kmeans = None if sd.get("kmeans") is None else pickle.loads(sd["kmeans"])
    self._pending = [p.copy() for p in sd.get("pending", [])]
