"""Atomic file writes: write a temp file in the same directory, fsync, then os.replace."""

from __future__ import annotations

import io
import os
import tempfile

import torch

from armac_spiel.safe_load import check_plain


def _atomic_write(path: str, write, mode: str) -> None:
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-" + os.path.basename(path))
  try:
    with os.fdopen(fd, mode) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str, text: str) -> None:
  _atomic_write(path, lambda f: f.write(text), "w")


def atomic_write_bytes(path: str, data: bytes) -> None:
  _atomic_write(path, lambda f: f.write(data), "wb")


def atomic_torch_save(obj, path: str) -> None:
  """torch.save of plain data (see armac_spiel.safe_load), written atomically."""
  check_plain(obj)
  buf = io.BytesIO()
  torch.save(obj, buf)
  atomic_write_bytes(path, buf.getvalue())
