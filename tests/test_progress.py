"""Progress output: a bar on a terminal, plain lines without control characters otherwise."""

import io
import os
import re
import subprocess
import sys

from armac_spiel.progress import Bar, Progress, SweepProgress, format_duration
from tests.conftest import REPO

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but tab and newline

SCRIPT = """
from armac_spiel.progress import Progress, SweepProgress
p = Progress(interval_s=0).start(total_s=30)
for i in range(4):
  p.update({"epoch": 10 * i, "episodes": 640 * i, "train_s": 7.5 * i,
            "episodes_per_s": 1234.5, "exploitability": 0.5 / (i + 1)})
p.close()
s = SweepProgress(3, interval_s=0)
s.update(1, 1, 0)
s.update(2, 0, 1)
s.close()
"""


class Clock:
  def __init__(self):
    self.t = 0.0

  def __call__(self):
    return self.t


def test_plain_lines_when_stdout_is_not_a_tty():
  r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True,
                     text=True, check=True, timeout=120)
  assert not CONTROL.search(r.stdout), repr(r.stdout)
  lines = r.stdout.splitlines()
  assert lines[0].startswith("train: 0/30 s (  0%)")
  assert "train: 22/30 s ( 75%)" in r.stdout and "epoch 30" in r.stdout
  assert "1,234 eps/s" in r.stdout and "expl 0.1250" in r.stdout
  assert "sweep: 3/3 runs (100%)" in r.stdout
  assert "done 2  running 0  failed 1  remaining 0" in r.stdout


def test_a_terminal_gets_a_redrawn_bar():
  buf = io.StringIO()
  p = Progress(stream=buf, tty=True).start(total_epochs=4)
  for i in range(5):
    p.update({"epoch": i, "train_s": 0.1 * i, "exploitability": 1.0})
  p.close()
  assert "\r" in buf.getvalue() and "4/4 steps" in buf.getvalue() and "epoch 4" in buf.getvalue()


def test_plain_lines_are_periodic_with_an_eta():
  clock, buf = Clock(), io.StringIO()
  p = Progress(stream=buf, tty=False, interval_s=10, clock=clock).start(total_s=100)
  for t in range(0, 41, 2):  # 2 wall seconds per 1 training second
    clock.t = t
    p.update({"epoch": t, "train_s": t / 2})
  lines = buf.getvalue().splitlines()
  assert len(lines) == 5  # at 0, 10, 20, 30 and 40 wall seconds
  assert lines[-1].startswith("train: 20/100 s ( 20%)  elapsed 40s  eta 2m40s")
  clock.t = 42
  p.update({"epoch": 42, "train_s": 21})  # within the interval: not printed
  assert len(buf.getvalue().splitlines()) == 5
  p.close()
  lines = buf.getvalue().splitlines()
  assert len(lines) == 6 and lines[-1].startswith("train: 21/100 s")  # the final state
  p.close()
  assert len(buf.getvalue().splitlines()) == 6


def test_bar_without_total_and_durations():
  buf = io.StringIO()
  with Bar("bench", None, "runs", stream=buf, tty=False, interval_s=0) as b:
    b.update(3, "x")
  assert buf.getvalue().splitlines()[0].startswith("bench: 3 runs  elapsed")
  assert [format_duration(s) for s in (5, 125, 3725, None)] == ["5s", "2m05s", "1h02m", "?"]


def test_train_cli_progress_is_plain_in_a_pipe_and_logs_go_to_a_file(tmp_path):
  run = tmp_path / "run"
  r = subprocess.run([sys.executable, "-m", "experiments.train", "--algo=cfr_plus",
                      "--game_name=kuhn_poker", f"--out_dir={run}", "--max_steps=6",
                      "--eval_every=2"], cwd=REPO, capture_output=True, text=True,
                     check=True, timeout=300)
  assert not CONTROL.search(r.stdout), repr(r.stdout)
  lines = r.stdout.splitlines()
  assert lines[0].startswith("cfr_plus kuhn_poker: ") and "/6 steps" in lines[0]
  assert any(l.startswith("cfr_plus kuhn_poker: 6/6 steps (100%)") and "expl " in l
             for l in lines)
  assert "step 6" in r.stdout
  assert " I" not in r.stderr and not r.stderr.startswith("I")  # info lines: in the file
  assert "step 6" in (run / "train.INFO").read_text()


def test_sweep_cli_progress_counts_runs_and_each_run_has_event_files(tmp_path):
  root = tmp_path / "sweep"
  r = subprocess.run([sys.executable, "-m", "experiments.sweep", "--games=kuhn_poker",
                      "--algos=cfr_plus,es_mccfr", "--seeds=1", "--max_steps=4",
                      f"--out_dir={root}", "--ray_address=none"], cwd=REPO,
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert not CONTROL.search(r.stdout), repr(r.stdout)
  lines = r.stdout.splitlines()
  assert lines[0].startswith("sweep: 0/2 runs (  0%)") and "running 1" in lines[0]
  assert any(l.startswith("sweep: 2/2 runs (100%)") and
             l.endswith("done 2  running 0  failed 0  remaining 0") for l in lines)
  for algo in ("cfr_plus", "es_mccfr"):
    run = root / "kuhn_poker" / algo / "seed_0"
    assert any(f.startswith("events.out.tfevents.") for f in os.listdir(run)), algo
  assert (root / "sweep.INFO").exists()
