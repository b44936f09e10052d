"""Reading the files armac-spiel writes without running code.

Checkpoints, replay policy files and k-means cluster files are torch files that hold plain
data only: tensors, numbers, strings, None, and lists, tuples and dicts of these
(generator states as tensors or lists, configs as dicts). `load_tensor_file` reads them with
`torch.load(weights_only=True)`, whose unpickler builds those types and nothing else (no
global is added to its allow-list): a file that names any other global (a class, or a
callable such as `os.system`) is refused before anything is built, with an
`UnsafeFileError` naming the file and the global.
`check_plain` states the same rule for writers (armac_spiel.atomic.atomic_torch_save checks
it before it writes), so everything written reads back.
"""

from __future__ import annotations

import io
import os
import pickletools
import re

import torch

_PLAIN_LEAVES = (bool, int, float, str, type(None), torch.Tensor, torch.nn.Parameter)
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")  # how torch's weights-only unpickler names it
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
  m = _GLOBAL_RE.search(msg)
  return m.group(1) if m else None


def _first_global_in_pickle(path) -> str | None:
  """The first global a bare pickle file names, read with pickletools (which only parses)."""
  if not isinstance(path, (str, os.PathLike)):
    return None
  try:
    with open(path, "rb") as f:
      data = f.read(1 << 20)
    strings: list[str] = []
    for op, arg, _ in pickletools.genops(data):
      if op.name == "GLOBAL":
        return str(arg).replace(" ", ".")
      if op.name == "STACK_GLOBAL" and len(strings) >= 2:
        return f"{strings[-2]}.{strings[-1]}"
      if isinstance(arg, str):
        strings.append(arg)
  except Exception:  # not a pickle, or truncated: nothing to name
    pass
  return None


def load_tensor_file(path, what: str = "file", hint: str = REGENERATE):
  """`torch.load(path, weights_only=True)` on the CPU; a refused global is an UnsafeFileError.

  `path` is a file name or a binary file object. Other failures (missing, truncated or
  foreign files) raise torch's own exceptions, for the caller to word."""
  try:
    return torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises pickle's UnpicklingError for refused globals
    if type(e).__name__ != "UnpicklingError" or "weights only" not in str(e).lower():
      raise
    refused = _refused_global(str(e)) or _first_global_in_pickle(path)
    raise UnsafeFileError(str(path), what, refused, hint) from None


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


def tensor_bytes(obj) -> bytes:
  """`obj` (checked to be plain data) serialised as a torch file in memory."""
  check_plain(obj)
  buf = io.BytesIO()
  torch.save(obj, buf)
  return buf.getvalue()
