"""Crafted malicious files for the loading tests: a torch file whose unpickling would run
`echo PWNED > SENTINEL` (through os.system), and the check that it did not.

  path = write_evil_torch_file(tmp_path / "checkpoint.pt", sentinel, lambda e: {"learner": e})
  ... load it through the code under test, expect UnsafeFileError / exit 2 ...
  assert_not_run(sentinel)
"""

from __future__ import annotations

import os
import pathlib
import pickle

import torch


class Evil:
  """Unpickling this calls os.system(command)."""

  def __init__(self, command: str):
    self.command = command

  def __reduce__(self):
    return (os.system, (self.command,))


def evil_command(sentinel) -> str:
  return f"echo PWNED > {os.fspath(sentinel)}"


def write_evil_torch_file(path, sentinel, wrap=lambda evil: {"learner": evil}):
  """torch.saves wrap(Evil) to `path` (e.g. a checkpoint with the object where the learner
  state belongs); returns the path."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if os.path.exists(sentinel):
    os.unlink(sentinel)
  torch.save(wrap(Evil(evil_command(sentinel))), path)
  return path


def write_evil_pickle(path, sentinel):
  """A plain pickle of Evil (what an older cluster file would be)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(pickle.dumps(Evil(evil_command(sentinel))))
  return path


def assert_not_run(sentinel) -> None:
  assert not os.path.exists(sentinel), f"the crafted file ran code: {sentinel} was created"
