"""Reading the files armac-spiel writes without running code.

Checkpoints, replay policy files and k-means cluster files are torch files that hold plain
data only: tensors, numbers, strings, bytes, None, and lists, tuples and dicts of these
(generator states as tensors or lists, configs as dicts). `load_tensor_file` reads them with
`torch.load(weights_only=True)`, whose unpickler builds those types and nothing else: a file
that names any other global (a class, or a callable such as `os.system`) is refused before
anything is built, with an `UnsafeFileError` naming the file and the global.
`check_plain` states the same rule for writers (armac_spiel.atomic.atomic_torch_save checks
it before it writes), so everything written reads back.
"""

from __future__ import annotations

import pickle
import re

import torch

_PLAIN_LEAVES = (bool, int, float, str, bytes, type(None), torch.Tensor, torch.nn.Parameter)
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)|global:? ([\w.]+)", re.IGNORECASE)
REGENERATE = ("files written by armac-spiel hold plain data only; one written by an older "
              "version (which pickled objects) must be regenerated, not loaded")


class UnsafeFileError(ValueError):
  """A file that names a global (class or callable) a plain-data file never holds.

  `path`, `what` (e.g. "checkpoint") and `refused` (the global, or None) are attributes."""

  def __init__(self, path: str, what: str, refused: str | None, hint: str = REGENERATE):
    self.path, self.what, self.refused = path, what, refused
    name = "an object that is not plain data" if refused is None else refused
    super().__init__(f"{what} {path}: refused to load {name} (loading it could run code); "
                     f"{hint}")


def _refused_global(msg: str) -> str | None:
  for m in _GLOBAL_RE.finditer(msg):
    name = m.group(1) or m.group(2)
    if "." in name:
      return name
  return None


def load_tensor_file(path, what: str = "file", hint: str = REGENERATE):
  """`torch.load(path, weights_only=True)` on the CPU; a refused global is an UnsafeFileError.

  `path` is a file name or a binary file object. Other failures (missing, truncated or
  foreign files) raise torch's own exceptions, for the caller to word."""
  try:
    return torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    if "weights only" not in str(e).lower():
      raise
    raise UnsafeFileError(str(path), what, _refused_global(str(e)), hint) from None


def check_plain(obj, where: str = "") -> None:
  """Raises TypeError naming the first entry of `obj` that is not plain data."""
  if isinstance(obj, dict):
    for k, v in obj.items():
      if not isinstance(k, (str, int)):
        raise TypeError(f"{where or '/'}: key {k!r} of type {type(k).__name__} is not a "
                        "string or integer")
      check_plain(v, f"{where}/{k}")
  elif isinstance(obj, (list, tuple)) and type(obj) in (list, tuple):
    for i, v in enumerate(obj):
      check_plain(v, f"{where}/{i}")
  elif type(obj) not in _PLAIN_LEAVES:
    raise TypeError(f"{where or '/'}: {type(obj).__module__}.{type(obj).__qualname__} is "
                    "not plain data (tensors, numbers, strings, lists and dicts only)")
