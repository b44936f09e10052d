"""No tracked file names a path of the machine the repository was developed on, and none is
a link or an environment."""

import os
import re
import subprocess

import pytest

from tests.conftest import REPO

# Absolute paths under these top-level directories are some machine's (built from parts, so
# that this file does not match itself).
MACHINE_DIRS = ("work", "home", "root", "Users")
MACHINE_PATH = re.compile(r"(?<![\w.~/-])/(?:" + "|".join(MACHINE_DIRS) + r")/[\w.-]")


def _tracked_files() -> list[str]:
  try:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True,
                         timeout=60).stdout
  except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
    pytest.skip("not a git checkout (or git is missing)")
  return [p for p in out.decode().split("\0") if p]


def _text(path: str):
  """The file's text, None for a binary (or unreadable) file."""
  try:
    with open(os.path.join(REPO, path), "rb") as f:
      data = f.read()
  except OSError:
    return None
  if b"\0" in data[:8192]:
    return None
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError:
    return None


def machine_paths(text: str, parent: str) -> list[str]:
  """The lines of `text` naming a machine path: under MACHINE_DIRS, or under `parent` (the
  directory that holds the checkout) when it is at least two levels deep."""
  patterns = [MACHINE_PATH]
  if parent.count("/") >= 2:
    patterns.append(re.compile(r"(?<![\w.~/-])" + re.escape(parent.rstrip("/")) + r"/"))
  return [line.strip() for line in text.splitlines() if any(p.search(line) for p in patterns)]


def test_the_check_finds_machine_paths():
  assert machine_paths("--out_dir=/" + "work/results/x\nrelative/" + "work/x\n", "/a") == [
      "--out_dir=/" + "work/results/x"]
  assert machine_paths("see /" + "home/me/x and ~/" + "home/y", "/a") == [
      "see /" + "home/me/x and ~/" + "home/y"]
  assert machine_paths("cd /srv/ci/armac-spiel/x", "/srv/ci") == ["cd /srv/ci/armac-spiel/x"]
  assert not machine_paths("tests/" + "work/x, a/root/b, https://host/home/x", "/srv/ci")


def test_no_tracked_file_names_a_machine_path():
  parent = os.path.dirname(os.path.abspath(REPO))
  found = {}
  for path in _tracked_files():
    text = _text(path)
    lines = machine_paths(text, parent) if text is not None else []
    if lines:
      found[path] = lines[:3]
  assert not found, ("tracked files name paths of this machine (results name the command, "
                     f"not where their output went): {found}")


def test_no_tracked_link_or_environment():
  """A symbolic link (git mode 120000) points into some machine; an environment is built by
  `make`, never committed."""
  try:
    out = subprocess.run(["git", "ls-files", "-s", "-z"], cwd=REPO, capture_output=True,
                         check=True, timeout=60).stdout
  except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
    pytest.skip("not a git checkout (or git is missing)")
  entries = [e.split("\t", 1) for e in out.decode().split("\0") if e]
  links = [path for head, path in entries if head.startswith("120000")]
  envs = [path for _, path in entries if path.split("/")[0] in (".venv", "venv", "env")]
  assert not links and not envs, {"links": links, "environments": envs}
