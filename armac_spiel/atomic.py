"""Atomic file writes: write a temp file in the same directory, fsync, then os.replace.

A failed write (a full disk, an I/O error, an interrupt) removes the temp file and leaves
the previous file untouched; an OSError is raised again as `AtomicWriteError` (same errno)
naming the path. After the rename the directory is fsynced, so the new name survives a
power loss.

A process killed inside a write leaves its temp file (`.tmp-<name><random>`) behind;
`remove_temp_files(directory)` deletes them, for the one writer of a directory (the holder
of its armac_spiel.runs.lock.RunLock) to call.

`set_write_hook(fn)` installs `fn(stage, path)`, called at each stage of every write:
"opened" (temp file created), "written" (data written, not yet fsynced), "synced" (before
the rename) and "renamed" (before the directory fsync). Fault-injection tests and
experiments/soak.py use it to pause or fail a write at a chosen point.
"""

from __future__ import annotations

import errno
import io
import os
import tempfile

import torch

from armac_spiel.safe_load import check_plain


class AtomicWriteError(OSError):
  """A file could not be written; its previous content (if any) is unchanged."""


_hook = None


def set_write_hook(fn) -> None:
  """Installs `fn(stage, path)` (None removes it); see the module docstring."""
  global _hook
  _hook = fn


def _stage(stage: str, path: str) -> None:
  if _hook is not None:
    _hook(stage, path)


TEMP_PREFIX = ".tmp-"


def remove_temp_files(directory: str) -> list[str]:
  """Deletes the temp files that interrupted atomic writes left in `directory`; returns
  their names. Only for the directory's one writer: another writer's temp files vanish."""
  try:
    names = [n for n in os.listdir(directory) if n.startswith(TEMP_PREFIX)]
  except FileNotFoundError:
    return []
  for n in names:
    try:
      os.unlink(os.path.join(directory, n))
    except FileNotFoundError:
      pass
  return names


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
    fd, tmp = tempfile.mkstemp(dir=d, prefix=TEMP_PREFIX + os.path.basename(path))
    with os.fdopen(fd, mode) as f:
      _stage("opened", path)
      write(f)
      f.flush()
      _stage("written", path)
      os.fsync(f.fileno())
    _stage("synced", path)
    os.replace(tmp, path)
  except BaseException as e:
    if tmp is not None and os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError) and not isinstance(e, AtomicWriteError):
      raise AtomicWriteError(e.errno, f"cannot write {path} ({e.strerror or e}); its previous "
                             "content is unchanged") from e
    raise
  _stage("renamed", path)
  _fsync_dir(d)


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
