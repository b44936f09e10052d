"""Atomic writes under injected faults: a full disk (ENOSPC from /dev/full), EIO in the
write, the fsync and the rename, and an interrupt. The previous file stays loadable, the
temp file is removed and the error names the path."""

import errno
import os

import pytest
import torch

from armac_spiel import atomic
from armac_spiel.atomic import AtomicWriteError, atomic_torch_save, atomic_write_text

OLD = {"epoch": 3, "w": torch.arange(6, dtype=torch.float32)}
NEW = {"epoch": 4, "w": torch.randn(200_000)}  # 800 kB: more than one buffer of writes


def _full_disk(monkeypatch):
  """mkstemp's file descriptor now points at /dev/full: every write fails with ENOSPC."""
  real = atomic.tempfile.mkstemp

  def mkstemp(**kw):
    fd, path = real(**kw)
    full = os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, fd)
    os.close(full)
    return fd, path

  monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)


def _eio_mid_write(monkeypatch):
  """The file object writes half of each chunk, then fails with EIO."""
  real = os.fdopen

  class Half:
    def __init__(self, f):
      self.f = f

    def write(self, data):
      self.f.write(data[:len(data) // 2])
      self.f.flush()
      raise OSError(errno.EIO, os.strerror(errno.EIO))

    def __getattr__(self, k):
      return getattr(self.f, k)

    def __enter__(self):
      return self

    def __exit__(self, *a):
      self.f.close()

  monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Half(real(fd, mode)))


def _fail(name, err):
  def f(*a, **k):
    raise OSError(err, os.strerror(err))
  return lambda monkeypatch: monkeypatch.setattr(atomic.os, name, f)


def _interrupt(monkeypatch):
  def fsync(fd):
    raise KeyboardInterrupt
  monkeypatch.setattr(atomic.os, "fsync", fsync)


@pytest.mark.parametrize("inject, err", [
    (_full_disk, errno.ENOSPC), (_eio_mid_write, errno.EIO),
    (_fail("fsync", errno.EIO), errno.EIO), (_fail("replace", errno.EIO), errno.EIO),
    (_interrupt, None)])
def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch, inject, err):
  path = str(tmp_path / "checkpoint.pt")
  atomic_torch_save(OLD, path)
  inject(monkeypatch)
  if err is None:
    with pytest.raises(KeyboardInterrupt):
      atomic_torch_save(NEW, path)
  else:
    with pytest.raises(AtomicWriteError) as e:
      atomic_torch_save(NEW, path)
    assert e.value.errno == err and isinstance(e.value, OSError)
    assert f"cannot write {path} ({os.strerror(err)}); its previous content is unchanged" \
        in str(e.value)
  monkeypatch.undo()
  assert os.listdir(tmp_path) == ["checkpoint.pt"]  # the temp file is gone
  got = torch.load(path, weights_only=True)
  assert got["epoch"] == 3 and torch.equal(got["w"], OLD["w"])
  atomic_torch_save(NEW, path)  # the disk has room again: the next write succeeds
  assert torch.load(path, weights_only=True)["epoch"] == 4


def test_failed_first_write_leaves_no_file(tmp_path, monkeypatch):
  _full_disk(monkeypatch)
  with pytest.raises(AtomicWriteError, match="No space left on device"):
    atomic_write_text(str(tmp_path / "config.json"), "{}\n")
  assert os.listdir(tmp_path) == []
