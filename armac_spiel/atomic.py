"""Atomic file writes: write a temp file in the same directory, fsync, then os.replace.

A failed write (a full disk, an I/O error, an interrupt) removes the temp file and leaves
the previous file untouched; an OSError is raised again as `AtomicWriteError` (same errno)
naming the path. After the rename the directory is fsynced, so the new name survives a
power loss.
"""

from __future__ import annotations

import errno
import io
import os
import tempfile

import torch


class AtomicWriteError(OSError):
  """A file could not be written; its previous content (if any) is unchanged."""


def _fsync_dir(d: str) -> None:
  try:
    fd = os.open(d, os.O_RDONLY)
  except OSError:
    return
  try:
    os.fsync(fd)
  except OSError as e:  # some file systems cannot fsync a directory
    if e.errno not in (errno.EINVAL, errno.EBADF, errno.EROFS):
      raise
  finally:
    os.close(fd)


def _atomic_write(path: str, write, mode: str) -> None:
  d = os.path.dirname(os.path.abspath(path))
  tmp = None
  try:
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-" + os.path.basename(path))
    with os.fdopen(fd, mode) as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if tmp is not None and os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError) and not isinstance(e, AtomicWriteError):
      raise AtomicWriteError(e.errno, f"cannot write {path} ({e.strerror or e}); its previous "
                             "content is unchanged") from e
    raise
  _fsync_dir(d)


def atomic_write_text(path: str, text: str) -> None:
  _atomic_write(path, lambda f: f.write(text), "w")


def atomic_write_bytes(path: str, data: bytes) -> None:
  _atomic_write(path, lambda f: f.write(data), "wb")


def atomic_torch_save(obj, path: str) -> None:
  buf = io.BytesIO()
  torch.save(obj, buf)
  atomic_write_bytes(path, buf.getvalue())
