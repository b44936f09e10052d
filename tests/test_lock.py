"""Run-directory lock: holder file, second writer refused, stale locks taken over."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from armac_spiel.runs import lock as lock_lib
from armac_spiel.runs.lock import RunLock, RunLockedError
from tests.conftest import REPO

HOLD = ("import sys, time\n"
        "from armac_spiel.runs.lock import RunLock\n"
        "lk = RunLock(sys.argv[1]).acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n")


def _holder(run_dir):
  """A child process holding the lock of `run_dir` (it sleeps until killed)."""
  p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO,
                       stdout=subprocess.PIPE, text=True)
  assert p.stdout.readline().strip() == "held"
  return p


def test_lock_file_names_the_holder_and_is_released(tmp_path):
  d = tmp_path / "run"
  with RunLock(str(d)) as lk:
    info = json.loads((d / "run.lock").read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert info["started"].endswith("+00:00") and info == lk.info
    assert sorted(os.listdir(d)) == ["run.lock"]  # the temporary name is gone
  assert not (d / "run.lock").exists()
  with RunLock(str(d)):  # free again
    pass


def test_second_writer_is_refused_with_the_holder(tmp_path):
  p = _holder(tmp_path)
  try:
    with pytest.raises(RunLockedError, match=rf"in use by pid {p.pid} on host "
                       rf"'{socket.gethostname()}' since .*it is running") as e:
      RunLock(str(tmp_path)).acquire()
    assert e.value.holder["pid"] == p.pid
    assert json.loads((tmp_path / "run.lock").read_text())["pid"] == p.pid  # untouched
  finally:
    p.kill()
    p.wait()
  # In one process too: a second RunLock on a held directory.
  with RunLock(str(tmp_path / "b")):
    with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
      RunLock(str(tmp_path / "b")).acquire()


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
  p = _holder(tmp_path)
  os.kill(p.pid, signal.SIGKILL)
  p.wait()
  assert json.loads((tmp_path / "run.lock").read_text())["pid"] == p.pid  # left behind
  (tmp_path / ".tmp-checkpoint.ptx1y2z3").write_bytes(b"cut")  # a write it did not finish
  lk = RunLock(str(tmp_path)).acquire()
  assert lk.took_over["pid"] == p.pid and "not running" in lk.took_over["stale"]
  assert lk.removed_temp_files == [".tmp-checkpoint.ptx1y2z3"]
  assert sorted(os.listdir(tmp_path)) == ["run.lock"]
  assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
  lk.release()


def test_reused_pid_and_other_host_and_garbage(tmp_path):
  me = os.getpid()
  info = {"pid": me, "host": socket.gethostname(), "started": "x",
          "proc_start": lock_lib._proc_start(me) + 1, "token": "t"}
  (tmp_path / "run.lock").write_text(json.dumps(info))
  with RunLock(str(tmp_path)) as lk:  # pid alive but started at another time: reused
    assert "another process" in lk.took_over["stale"]
  (tmp_path / "run.lock").write_text(json.dumps({**info, "host": "elsewhere"}))
  with pytest.raises(RunLockedError, match="host 'elsewhere'.*another host, not checked"):
    RunLock(str(tmp_path)).acquire()
  (tmp_path / "run.lock").write_text("{not json")
  with RunLock(str(tmp_path)) as lk:
    assert lk.took_over["stale"] == "not a lock file of armac_spiel.runs.lock"


def test_racing_takeovers_leave_one_holder(tmp_path):
  """Eight processes find the same stale lock at once (each pausing before it removes the
  stale file): exactly one takes it."""
  p = _holder(tmp_path)
  os.kill(p.pid, signal.SIGKILL)
  p.wait()
  code = ("import sys, time\n"
          "from armac_spiel.runs import lock\n"
          "from armac_spiel.runs.lock import RunLock, RunLockedError\n"
          "lock._before_takeover = lambda: time.sleep(0.3)\n"
          "t = float(sys.argv[2])\n"
          "while time.time() < t: pass\n"
          "try:\n"
          "  RunLock(sys.argv[1]).acquire(); print('won', flush=True); time.sleep(3)\n"
          "except RunLockedError:\n"
          "  print('refused', flush=True)\n")
  start = time.time() + 2.0
  procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(start)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True) for _ in range(8)]
  outs = [q.communicate(timeout=60)[0].strip() for q in procs]
  assert sorted(outs) == ["refused"] * 7 + ["won"]
