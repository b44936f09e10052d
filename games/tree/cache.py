"""The on-disk cache of compiled trees, so that a second run starts at once.

One .npz per game (games.tree.arrays.TreeArrays.save: no pickled objects), named by a hash
of the game string, the OpenSpiel version and the storage format, in `cache_dir()`:
`$ARMAC_SPIEL_CACHE/trees` when that variable is set, else `~/.cache/armac-spiel/trees`;
`ARMAC_SPIEL_CACHE=off` turns the cache off. A file that cannot be read, or that holds
another game or version, is logged and compiled again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re

import pyspiel

from games.tree.arrays import FORMAT, CacheFormatError, TreeArrays

ENV = "ARMAC_SPIEL_CACHE"
OFF = "off"
OPENSPIEL_VERSION = str(pyspiel.__version__)

_log = logging.getLogger(__name__)


def cache_dir() -> str | None:
  """The directory of cached trees, or None when $ARMAC_SPIEL_CACHE is `off`."""
  root = os.environ.get(ENV)
  if root is not None and root.strip().lower() == OFF:
    return None
  if not root:
    root = os.path.join(os.path.expanduser("~"), ".cache", "armac-spiel")
  return os.path.join(root, "trees")


def cache_path(game_string: str) -> str | None:
  """Where the tree of `game_string` is cached (None: the cache is off)."""
  d = cache_dir()
  if d is None:
    return None
  key = hashlib.sha256(f"{game_string}\n{OPENSPIEL_VERSION}\n{FORMAT}".encode()).hexdigest()
  stem = re.sub(r"[^A-Za-z0-9_.=-]+", "_", game_string)[:40]
  return os.path.join(d, f"{stem}-{key[:16]}.npz")


def _matches(meta: dict, game_string: str) -> bool:
  return (meta.get("game_string") == game_string and
          meta.get("openspiel_version") == OPENSPIEL_VERSION)


def cached_num_nodes(game_string: str) -> int | None:
  """The node count of the cached tree of `game_string` (None: not cached)."""
  path = cache_path(game_string)
  if path is None or not os.path.exists(path):
    return None
  try:
    meta = TreeArrays.read_meta(path)
  except CacheFormatError:
    return None
  return int(meta["num_nodes"]) if _matches(meta, game_string) else None


def load(game_string: str) -> TreeArrays | None:
  """The cached tree of `game_string`, or None (not cached, cache off, or a bad file,
  which is logged and removed)."""
  path = cache_path(game_string)
  if path is None or not os.path.exists(path):
    return None
  try:
    arrays = TreeArrays.load(path)
    if not _matches(arrays.meta(), game_string):
      raise CacheFormatError(f"{path} holds {arrays.game_string!r} (OpenSpiel "
                             f"{arrays.openspiel_version}), not {game_string!r} (OpenSpiel "
                             f"{OPENSPIEL_VERSION})")
  except CacheFormatError as e:
    _log.warning("compiled-tree cache: %s; compiling the tree again", e)
    try:
      os.unlink(path)
    except OSError:
      pass
    return None
  return arrays


def store(arrays: TreeArrays) -> str | None:
  """Caches `arrays` (atomically); returns the path, None when the cache is off. A cache
  that cannot be written is logged, not raised: the tree is still usable."""
  path = cache_path(arrays.game_string)
  if path is None:
    return None
  try:
    arrays.save(path)
  except OSError as e:
    _log.warning("compiled-tree cache: cannot write %s (%s)", path, e)
    return None
  return path
