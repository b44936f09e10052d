"""Faults during runs: budget flags, a second writer, a full disk or an I/O error in the
checkpoint and metrics writes, and sweeps whose runs raise or are killed."""

import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch

from armac_spiel import atomic, runs
from armac_spiel.params import ConfigError
from armac_spiel.runs import rundir, sweep
from tests.conftest import REPO

FAULT_MODULE = '''
import os, signal
import torch
from armac_spiel.learner import register_learner


class Faulty:
  """Uniform policy; at step 3 it raises or SIGKILLs itself while FAULT_DIR/<name> exists."""
  mode = None

  def __init__(self, game_string, seed, device="cpu"):
    from games import infostate_table
    self.game_string, self.episodes = game_string, 0
    t = infostate_table(game_string)
    self.table = t.legal_mask.double() / t.legal_mask.double().sum(1, keepdim=True)

  def step(self):
    self.episodes += 1
    if self.episodes == 3 and os.path.exists(os.path.join(os.environ["FAULT_DIR"],
                                                          self.mode)):
      if self.mode == "killer":
        os.kill(os.getpid(), signal.SIGKILL)
      raise RuntimeError("deliberate failure at step 3")
    return {}

  def average_table(self):
    return self.table

  def state_dict(self):
    return {"episodes": self.episodes}

  def load_state_dict(self, d):
    self.episodes = int(d["episodes"])


class Raiser(Faulty):
  mode = "raiser"


class Killer(Faulty):
  mode = "killer"


register_learner("raiser", Raiser)
register_learner("killer", Killer)
'''


def _cli(*args, env=None):
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True,
                        text=True, env=env, timeout=600)


@pytest.mark.parametrize("flag, message", [
    ("--time_budget_s=-5", "--time_budget_s=-5.0: must be a positive number"),
    ("--max_epochs=-1", "--max_epochs=-1: must be >= 0"),
    ("--eval_every=0", "--eval_every=0: must be a positive number of steps")])
def test_budget_flags_are_validated(tmp_path, flag, message):
  r = _cli("experiments.train", "--game_name=kuhn_poker", f"--out_dir={tmp_path / 'run'}",
           flag)
  assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]
  assert not (tmp_path / "run").exists()  # nothing trained, nothing written


def test_sweep_budgets_are_validated(tmp_path):
  for kw, message in ((dict(time_budget_s=-5.0), "--time_budget_s=-5.0"),
                      (dict(time_budget_s=float("nan")), "--time_budget_s=nan"),
                      (dict(max_steps=-2), "--max_steps=-2"),
                      (dict(max_steps=4, eval_every_steps=0), "--eval_every_steps=0")):
    with pytest.raises(ConfigError, match=message):
      sweep.make_tasks(str(tmp_path), ["kuhn_poker"], ["cfr_plus"], [0], **kw)


def test_second_writer_of_a_run_directory_is_refused(tmp_path):
  out = tmp_path / "run"
  first = subprocess.Popen([sys.executable, "-m", "experiments.train", "--algo=cfr_plus",
                            "--game_name=kuhn_poker", "--time_budget_s=120",
                            "--eval_every=1000000", f"--out_dir={out}"], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 120
    while not (out / "run.lock").exists() and time.time() < deadline:
      time.sleep(0.2)
    r = _cli("experiments.train", "--algo=cfr_plus", "--game_name=kuhn_poker",
             "--max_steps=3", f"--out_dir={out}", "--resume")
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"in use by pid {first.pid}" in r.stderr and "it is running" in r.stderr
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  # Killed: its lock is stale and the next writer takes it over.
  r = _cli("experiments.train", "--algo=cfr_plus", "--game_name=kuhn_poker", "--max_steps=3",
           "--eval_every=1", f"--out_dir={out}", "--resume", "--noplot")
  assert r.returncode == 0, r.stderr[-2000:]
  assert not (out / "run.lock").exists()  # released at exit


def _spec(out, steps, resume=False):
  return runs.resolve_spec("cfr_plus", "kuhn_poker", 0, str(out), max_steps=steps,
                           eval_every=1, device="cpu", resume=resume, plot=False)


def _full_disk_at(monkeypatch, name, n):
  """The n-th atomic write of `name` from now on fails with ENOSPC (fd on /dev/full)."""
  real, count = atomic.tempfile.mkstemp, [0]

  def mkstemp(**kw):
    fd, path = real(**kw)
    if kw.get("prefix", "").startswith(".tmp-" + name):
      count[0] += 1
      if count[0] == n:
        full = os.open("/dev/full", os.O_WRONLY)
        os.dup2(full, fd)
        os.close(full)
    return fd, path

  monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)


def _eio_on_metrics_line(monkeypatch, n):
  """The n-th metrics line from now on: half of it is written, then EIO."""
  real, count = rundir.MetricsLog.write, [0]

  def write(self, record):
    count[0] += 1
    if count[0] != n:
      return real(self, record)
    f = self._f

    class Half:
      def write(self, data):
        f.write(data[:len(data) // 2])
        raise OSError(errno.EIO, os.strerror(errno.EIO))

      def __getattr__(self, k):
        return getattr(f, k)

    self._f = Half()
    try:
      return real(self, record)
    finally:
      self._f = f

  monkeypatch.setattr(rundir.MetricsLog, "write", write)


def test_enospc_in_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
  ref = runs.run(_spec(tmp_path / "ref", 6))
  out = tmp_path / "run"
  runs.run(_spec(out, 3))
  ck_path = str(out / rundir.CHECKPOINT)
  before = (out / rundir.CHECKPOINT).read_bytes()
  _full_disk_at(monkeypatch, rundir.CHECKPOINT, 1)
  with pytest.raises(atomic.AtomicWriteError, match=r"cannot write .*checkpoint.pt \(No space "
                     r"left on device\); its previous content is unchanged") as e:
    runs.run(_spec(out, 6, resume=True))
  assert e.value.errno == errno.ENOSPC
  monkeypatch.undo()
  assert (out / rundir.CHECKPOINT).read_bytes() == before
  assert rundir.load_checkpoint(ck_path)["clock"]["steps"] == 3
  assert not [n for n in os.listdir(out) if n.startswith(".tmp-")]
  rows = runs.run(_spec(out, 6, resume=True))  # resumable: the same run as without a fault
  assert rundir.strip_timing(rows) == rundir.strip_timing(ref)


def test_eio_in_a_metrics_write_leaves_no_partial_line(tmp_path, monkeypatch):
  ref = runs.run(_spec(tmp_path / "ref", 5))
  out = tmp_path / "run"
  _eio_on_metrics_line(monkeypatch, 3)
  with pytest.raises(rundir.MetricsWriteError, match=r"cannot append to .*metrics.jsonl "
                     r"\(Input/output error\); the line was not written"):
    runs.run(_spec(out, 5))
  monkeypatch.undo()
  text = (out / rundir.METRICS).read_text()
  assert text.endswith("\n") and len(text.splitlines()) == 2
  assert rundir.load_checkpoint(str(out / rundir.CHECKPOINT))["clock"]["n_lines"] == 3
  rows = runs.run(_spec(out, 5, resume=True))
  assert rundir.strip_timing(rows) == rundir.strip_timing(ref)


def test_cut_metrics_line_is_dropped_on_resume(tmp_path):
  ref = runs.run(_spec(tmp_path / "ref", 5))
  out = tmp_path / "run"
  runs.run(_spec(out, 3))
  with open(out / rundir.METRICS, "a") as f:
    f.write('{"step": 4, "epis')  # a crash inside an append
  rows = runs.run(_spec(out, 5, resume=True))
  assert rundir.strip_timing(rows) == rundir.strip_timing(ref)


def test_sweep_isolates_a_raising_and_a_killed_run_and_retries_them(tmp_path):
  (tmp_path / "mods").mkdir()
  (tmp_path / "mods" / "faultmod.py").write_text(FAULT_MODULE)
  flags_dir = tmp_path / "faults"
  flags_dir.mkdir()
  (flags_dir / "raiser").touch()
  (flags_dir / "killer").touch()
  env = {**os.environ, "FAULT_DIR": str(flags_dir),
         "PYTHONPATH": os.pathsep.join([REPO, str(tmp_path / "mods")])}
  root = tmp_path / "sweep"
  args = ("experiments.sweep", "--games=kuhn_poker", "--algos=cfr_plus,raiser,killer",
          "--seeds=1", "--max_steps=5", "--eval_every_steps=1", "--ray_address=none",
          "--learner_module=faultmod", f"--out_dir={root}")
  r = _cli(*args, env=env)
  assert r.returncode == 102, r.stderr[-3000:]  # 100 + two failed runs
  assert "1 done, 0 skipped, 2 failed" in r.stdout
  lines = [json.loads(l) for l in (root / sweep.SWEEP_LOG).read_text().splitlines()]
  by = {s["algo"]: s for s in lines}
  assert [by[a]["status"] for a in ("cfr_plus", "raiser", "killer")] == [
      "done", "failed", "failed"]
  assert by["raiser"]["error"] == "RuntimeError: deliberate failure at step 3"
  assert by["killer"]["error"] == "the run process was killed by SIGKILL"
  for a in ("raiser", "killer"):
    assert by[a]["log"] == str(root / "kuhn_poker" / a / "seed_0" / "run.log")
  assert "deliberate failure at step 3" in pathlib.Path(by["raiser"]["log"]).read_text()
  assert f"(log: {by['killer']['log']})" in r.stderr
  done_metrics = (root / "kuhn_poker" / "cfr_plus" / "seed_0" / rundir.METRICS).read_bytes()
  # Again, without the faults: only the two failed runs run, resumed from their checkpoints.
  os.unlink(flags_dir / "raiser")
  os.unlink(flags_dir / "killer")
  r = _cli(*args, env=env)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "2 done, 1 skipped, 0 failed" in r.stdout
  new = [json.loads(l) for l in (root / sweep.SWEEP_LOG).read_text().splitlines()][3:]
  assert sorted((s["algo"], s["status"], s["resumed"]) for s in new) == [
      ("killer", "done", True), ("raiser", "done", True)]
  assert (root / "kuhn_poker" / "cfr_plus" / "seed_0" / rundir.METRICS).read_bytes() == \
      done_metrics
  for a in ("raiser", "killer"):
    m = rundir.read_metrics(str(root / "kuhn_poker" / a / "seed_0" / rundir.METRICS))
    assert [x["step"] for x in m] == [1, 2, 3, 4, 5]
