"""TensorBoard event files from real metrics records, read back with EventAccumulator."""

import json
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from armac_spiel.runs import rundir
from armac_spiel.tensorboard import ORIGIN_FILE, TensorBoardWriter, export_run, tag_for
from tests.conftest import REPO, TINY, as_set_flag

NAMED = ("exploitability/average", "exploitability/current", "exploitability/mixed",
         "loss/critic", "loss/regret", "loss/actor", "speed/episodes_per_s",
         "scheduler/bin_entropy", "scheduler/lambda_mean", "time/train_s")


@pytest.fixture(scope="module")
def scheduler_run(tmp_path_factory):
  """A short real ARMAC run on Leduc with the discrete scheduler (3 evaluations)."""
  run = tmp_path_factory.mktemp("tb") / "run"
  subprocess.run([sys.executable, "-m", "experiments.train", "--game_name=leduc_poker",
                  "--config=experiments/configs/leduc_scheduler_discrete.yaml",
                  "--scheduler=discrete", f"--out_dir={run}", "--device=cpu",
                  "--max_epochs=2", "--eval_every=1", f"--set={as_set_flag(TINY)}",
                  "--tensorboard"],
                 cwd=REPO, check=True, capture_output=True, timeout=600)
  return run


def _read(path):
  ea = EventAccumulator(str(path), size_guidance={"scalars": 0, "histograms": 0})
  ea.Reload()
  return ea


@pytest.mark.parametrize("source", ["live", "rewritten"])
def test_run_metrics_become_named_scalars_on_both_axes(scheduler_run, tmp_path, source):
  """`live`: the event files `train --tensorboard` wrote; `rewritten`: its metrics lines
  fed to a new writer."""
  lines = rundir.read_metrics(str(scheduler_run / "metrics.jsonl"))
  assert len(lines) == 3
  path = scheduler_run
  if source == "rewritten":
    path = tmp_path
    hp = json.loads((scheduler_run / "config.json").read_text())
    with TensorBoardWriter(str(tmp_path), hp) as w:
      for line in lines:
        assert w.write(line) > 20
  origin = json.loads((path / ORIGIN_FILE).read_text())["origin"]
  ea = _read(path)
  tags = ea.Tags()["scalars"]
  for tag in NAMED:
    assert tag in tags, tag
  for key, tag in (("exploitability", "exploitability/average"),
                   ("exploitability_mixed", "exploitability/mixed"),
                   ("critic_loss", "loss/critic"), ("episodes_per_s", "speed/episodes_per_s")):
    events = ea.Scalars(tag)
    has = [l for l in lines if key in l]  # losses start after the first epoch
    assert len(has) >= 2
    assert [e.step for e in events] == [l["episodes"] for l in has]  # STEP axis: episodes
    np.testing.assert_allclose([e.wall_time - origin for e in events],  # RELATIVE: train s
                               [l["train_s"] for l in has], atol=1e-3)
    np.testing.assert_allclose([e.value for e in events], [l[key] for l in has], rtol=1e-6)
  assert "scheduler/mode" not in tags and "other/scheduler.lambda_hist" not in tags
  hist = ea.Histograms("scheduler/lambda")
  assert [h.step for h in hist] == [l["episodes"] for l in lines]
  assert list(hist[-1].histogram_value.bucket) == pytest.approx(lines[-1]["scheduler.lambda_hist"])
  hparams = ea.PluginTagToContent("hparams")
  assert "_hparams_/session_start_info" in hparams
  assert b"critic_lr" in hparams["_hparams_/session_start_info"]


def test_resume_keeps_the_seconds_axis_and_histogram_takes_values(tmp_path):
  with TensorBoardWriter(str(tmp_path)) as w:
    w.write({"epoch": 1, "episodes": 10, "train_s": 2.0, "exploitability": 0.5,
             "note": "text", "nothing": None, "flag": True, "bad": float("nan")})
    w.histogram("scheduler/lambda_states", np.array([0.1, 0.2, 0.9]), step=10)
    origin = w.origin
  with TensorBoardWriter(str(tmp_path)) as w2:
    assert w2.origin == origin
    w2.write({"epoch": 2, "episodes": 20, "train_s": 5.0, "exploitability": 0.25})
  ea = _read(tmp_path)
  ev = ea.Scalars("exploitability/average")
  assert [(e.step, round(e.wall_time - origin, 3), e.value) for e in ev] == [
      (10, 2.0, 0.5), (20, 5.0, 0.25)]
  assert set(ea.Tags()["scalars"]) == {"exploitability/average", "time/epoch", "time/train_s"}
  h = ea.Histograms("scheduler/lambda_states")[0].histogram_value
  assert h.num == 3 and h.min == pytest.approx(0.1) and h.max == pytest.approx(0.9)


def test_export_run_writes_a_finished_run(scheduler_run):
  assert export_run(str(scheduler_run)) == 3
  assert export_run(str(scheduler_run)) == 3  # replaces, not appends
  ea = _read(scheduler_run)
  assert len(ea.Scalars("exploitability/average")) == 3


def test_tags():
  assert tag_for("exploitability") == "exploitability/average"
  assert tag_for("scheduler.loss") == "scheduler/loss"
  assert tag_for("regret_loss") == "loss/regret"
  assert tag_for("episodes") is None
  assert tag_for("foo") == "other/foo"
