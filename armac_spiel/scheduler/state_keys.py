"""State keys for the meta-regret manager, at four granularities (state_keying.level).

- 0: round_player_pos; id = (round * N + player) * N + position.
- 1: round_player_pos_potBucket_stackBucket; id = (id0 * n + pot_bucket) * n + stack_bucket,
  with the features and n buckets of games.poker_features.
- 2: k-means cluster of the information-state tensor (the encoding); id = cluster index.
  Mini-batch k-means (Sculley 2010) in torch: seeded by k-means++ and Lloyd iterations once
  n_clusters samples were seen (every id is 0 before), then updated on every batch when
  update_clusters. `save_clusters` writes the centres to cluster_file as JSON, atomically;
  they are loaded from there at construction when the file exists.
- 3: the information state itself; id = its row of games.infostate_table.
Ids are integers computed for a whole batch with tensor arithmetic; `names_*` give the
readable strings.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import torch

from armac_spiel.atomic import atomic_write_text

from armac_spiel.scheduler.config import StateKeyingConfig
from games import infostate_table
from games.poker_features import (PokerFeatures, features_from_infostate_strings,
                                  poker_spec)


CLUSTER_FORMAT = "armac-spiel/clusters-v1"
LLOYD_ITERS = 10


def level_needs_poker(level: int) -> bool:
  return level in (0, 1)


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
    self.spec = poker_spec(game_string) if game_string is not None and level_needs_poker(
        cfg.level) else None
    if self.level < 2 and self.spec is None:
      raise ValueError(f"state_keying.level={self.level} needs a poker game_string")
    if self.level == 3 and game_string is None:
      raise ValueError("state_keying.level=3 needs the game_string")
    self.centers: torch.Tensor | None = None  # (n_clusters, D) float32
    self.counts: torch.Tensor | None = None   # (n_clusters,) float64 points assigned so far
    self._pending: list[torch.Tensor] = []
    self._table_index = None
    if self.level == 2 and os.path.exists(cfg.cluster_file):
      self.load_clusters(cfg.cluster_file)

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

  def _init_centers(self, x: torch.Tensor) -> None:
    """k-means++ seeding on x (n >= n_clusters), then Lloyd iterations."""
    g = torch.Generator().manual_seed(self.seed)
    k = self.cfg.n_clusters
    c = x[torch.randint(len(x), (1,), generator=g)]
    for _ in range(1, k):
      d = torch.cdist(x, c).min(1).values.pow(2)
      p = d / d.sum() if float(d.sum()) > 0 else torch.full_like(d, 1.0 / len(d))
      c = torch.cat([c, x[torch.multinomial(p, 1, generator=g)]])
    for _ in range(LLOYD_ITERS):
      a = torch.cdist(x, c).argmin(1)
      n = torch.bincount(a, minlength=k).double()
      s = torch.zeros_like(c, dtype=torch.float64).index_add_(0, a, x.double())
      c = torch.where(n[:, None] > 0, s / n.clamp_min(1)[:, None], c.double()).float()
    self.centers = c
    self.counts = torch.bincount(torch.cdist(x, c).argmin(1), minlength=k).double()

  def _partial_fit(self, x: torch.Tensor) -> None:
    """Mini-batch k-means step (Sculley 2010): centre j moves to the running mean of the
    points ever assigned to it."""
    k = self.cfg.n_clusters
    a = torch.cdist(x, self.centers).argmin(1)
    n = torch.bincount(a, minlength=k).double()
    s = torch.zeros(k, x.shape[1], dtype=torch.float64).index_add_(0, a, x.double())
    self.counts += n
    step = (n / self.counts.clamp_min(1))[:, None]
    mean = s / n.clamp_min(1)[:, None]
    self.centers = (self.centers.double() + step * (mean - self.centers.double())).float()

  def cluster_ids(self, embeddings: torch.Tensor, update: bool | None = None) -> torch.Tensor:
    """(B,) k-means cluster ids of (B, D) embeddings, on their device."""
    x = embeddings.detach().float().cpu()
    update = self.cfg.update_clusters if update is None else update
    if update:
      if self.centers is None:
        self._pending.append(x)
        pending = torch.cat(self._pending)
        if len(pending) >= self.cfg.n_clusters:
          self._init_centers(pending)
          self._pending = []
      else:
        self._partial_fit(x)
    if self.centers is None:
      return torch.zeros(x.shape[0], dtype=torch.long, device=embeddings.device)
    return torch.cdist(x, self.centers).argmin(1).to(embeddings.device)

  def ids(self, infostate_strings: Sequence[str] | None = None,
          embeddings: torch.Tensor | None = None,
          features: PokerFeatures | None = None) -> torch.Tensor:
    """(B,) ids at the configured level from whichever input that level needs."""
    if self.level == 2:
      if embeddings is None:
        raise ValueError("state_keying.level=2 needs embeddings (information-state tensors)")
      return self.cluster_ids(embeddings)
    if self.level == 3:
      if infostate_strings is None:
        raise ValueError("state_keying.level=3 needs information-state strings")
      index = infostate_table(self.game_string).index
      return torch.tensor([index[k] for k in infostate_strings], dtype=torch.long)
    if features is None:
      if infostate_strings is None:
        raise ValueError(f"state_keying.level={self.level} needs information-state strings "
                         "or poker features")
      features = self.features(infostate_strings)
    return self.ids_from_features(features)

  def save_clusters(self, path: str | None = None) -> str | None:
    """Writes the centres and counts as JSON atomically; returns the path (None when not
    fitted)."""
    if self.centers is None:
      return None
    path = path or self.cfg.cluster_file
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps({"format": CLUSTER_FORMAT,
                                        "centers": self.centers.tolist(),
                                        "counts": self.counts.tolist()}))
    return path

  def load_clusters(self, path: str) -> None:
    """Reads a cluster file written by save_clusters (JSON; nothing is executed)."""
    try:
      with open(path) as f:
        d = json.load(f)
      if d.get("format") != CLUSTER_FORMAT:
        raise ValueError(f"format is {d.get('format')!r}, expected {CLUSTER_FORMAT!r}")
      centers = torch.tensor(d["centers"], dtype=torch.float32)
      counts = torch.tensor(d["counts"], dtype=torch.float64)
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise ValueError(f"state_keying.cluster_file={path}: unreadable cluster file: {e}") from e
    if centers.shape[0] != self.cfg.n_clusters or counts.shape != (centers.shape[0],):
      raise ValueError(f"state_keying.cluster_file={path}: holds {centers.shape[0]} centres, "
                       f"state_keying.n_clusters is {self.cfg.n_clusters}")
    self.centers, self.counts = centers, counts

  def state_dict(self) -> dict:
    return {"centers": self.centers, "counts": self.counts,
            "pending": [p.clone() for p in self._pending]}

  def load_state_dict(self, sd: dict) -> None:
    self.centers, self.counts = sd.get("centers"), sd.get("counts")
    self._pending = [p.clone() for p in sd.get("pending", [])]
