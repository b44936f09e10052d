"""Deterministic replay: record during training, verify, tamper, resume, bad files."""

import gzip
import json
import os
import shutil
import subprocess
import sys

import dataclasses

import pytest
import torch
import yaml

from armac_spiel import recording, runs
from experiments import replay_verify
from tests.conftest import REPO, TINY

# 40 episodes per epoch: the line numbers the tests name depend on it.
TINY_REPLAY = dict(TINY, episodes_per_epoch=40, sampler="tree", policy_draw="uniform")
GAME, SEED, EPOCHS = "leduc_poker", 1, 5  # 5 epochs x 40 = 200 episodes


class _Killed(Exception):
  pass


def _config(root, content=None):
  """A config file of `content` (default empty: the ARMACConfig defaults, not
  experiments/configs/leduc_poker.yaml)."""
  path = root / "config.yaml"
  path.write_text(yaml.safe_dump(content or {}))
  return str(path)


def _run(root, rec_cfg, kill_at=None, max_epochs=EPOCHS, resume=False):
  spec = runs.resolve_spec("armac", GAME, SEED, str(root / "run"), config_path=_config(root),
                           sets={**TINY_REPLAY, "max_epochs": max_epochs}, device="cpu",
                           resume=resume, plot=False, record=dataclasses.asdict(rec_cfg))

  def on_epoch(learner):
    if kill_at is not None and learner.epoch == kill_at:
      raise _Killed

  return runs.run(spec, on_step=on_epoch)


def _lines(d):
  out = []
  for p in recording.replay_files(str(d)):
    opener = gzip.open if p.endswith(".gz") else open
    with opener(p, "rt") as f:
      out += f.read().splitlines()
  return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
  root = tmp_path_factory.mktemp("ref")
  _run(root, recording.RecorderConfig(str(root / "rep")))
  return root / "rep"


def test_recorded_training_run_verifies(recorded):
  res = recording.verify(str(recorded), 1e-6)
  assert res.episodes_checked == 200 and res.first_mismatch is None
  assert res.max_abs_deviation == 0.0  # the learner's batch shapes: bit for bit
  recs = [json.loads(l) for l in _lines(recorded)]
  assert [r["episode"] for r in recs] == list(range(200))
  assert any(r["slot"] >= 0 for r in recs)  # past snapshots were replayed too
  r = recs[0]
  assert r["format"] == recording.FORMAT and r["game"] == GAME and r["seed"] == SEED
  assert set(r["steps"]) >= {"player", "legal", "action", "regret_policy", "behaviour"}
  assert r["rng"]["sampler"]["bit_generator"] == "PCG64"


def _tamper(src, dst, pick, edit):
  shutil.copytree(src, dst)
  path = recording.replay_files(str(dst))[0]
  with open(path) as f:
    lines = f.read().splitlines()
  k = next(k for k, l in enumerate(lines) if pick(json.loads(l)))
  rec = json.loads(lines[k])
  edit(rec)
  lines[k] = json.dumps(rec, sort_keys=True, separators=(",", ":"))
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return rec["episode"]


def _other_card(rec):
  rec["chance"][0] = next(c for c in range(6) if c not in rec["chance"])


def _other_action(rec):
  s = rec["steps"]
  s["action"][0] = next(a for a in s["legal"][0] if a != s["action"][0])


def _bump_prob(rec):
  s = rec["steps"]
  s["behaviour"][1][s["legal"][1][0]] += 0.25


@pytest.mark.parametrize("name, pick, edit, field", [
    ("chance", lambda r: r["epoch"] == 3 and r["slot"] >= 0, _other_card, "chance"),
    ("action", lambda r: r["epoch"] == 2 and len(r["steps"]["legal"][0]) > 1, _other_action,
     "action"),
    ("prob", lambda r: r["epoch"] == 4 and len(r["steps"]["action"]) > 1, _bump_prob,
     "behaviour")])
def test_tampering_is_named(recorded, tmp_path, name, pick, edit, field):
  ep = _tamper(recorded, tmp_path / name, pick, edit)
  res = recording.verify(str(tmp_path / name), 1e-6)
  assert res.first_mismatch is not None
  assert (res.first_mismatch.episode, res.first_mismatch.field) == (ep, field)
  assert res.episodes_checked == 200


def test_cli_exit_codes_and_summary(recorded, tmp_path, capsys):
  def cli(d):
    rc = replay_verify.main([str(d), "--tolerance=1e-6"])
    out, err = capsys.readouterr()
    return rc, json.loads(out.strip().splitlines()[-1]), err

  rc, summary, _ = cli(recorded)
  assert rc == 0 and summary["episodes_checked"] == 200 and summary["first_mismatch"] is None
  ep = _tamper(recorded, tmp_path / "t", lambda r: len(r["steps"]["action"]) > 1, _bump_prob)
  p = subprocess.run([sys.executable, "-m", "experiments.replay_verify", str(tmp_path / "t"),
                      "--tolerance=1e-6"], cwd=REPO, capture_output=True, text=True)
  rc, summary = p.returncode, json.loads(p.stdout.strip().splitlines()[-1])
  assert rc == 1 and summary["first_mismatch"]["episode"] == ep
  assert summary["first_mismatch"]["field"] == "behaviour"
  bad = tmp_path / "bad"
  shutil.copytree(recorded, bad)
  path = recording.replay_files(str(bad))[0]
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:-40])
  rc, summary, err = cli(bad)
  assert rc == 2 and "replay-00000.jsonl:200" in err and "truncated" in summary["error"]


def _bad_copy(src, dst, lineno, edit):
  shutil.copytree(src, dst)
  path = recording.replay_files(str(dst))[0]
  with open(path) as f:
    lines = f.read().splitlines()
  lines[lineno - 1] = edit(lines[lineno - 1])
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return dst


def _set(key, value):
  def edit(line):
    rec = json.loads(line)
    if value is None:
      del rec[key]
    else:
      rec[key] = value
    return json.dumps(rec)
  return edit


@pytest.mark.parametrize("edit, message", [
    (lambda l: l[:len(l) // 2], "corrupt JSON"),
    (_set("format", "other/replay-v9"), "unknown format version 'other/replay-v9'"),
    (_set("steps", None), "missing field 'steps'")])
def test_bad_lines_name_file_and_line(recorded, tmp_path, edit, message):
  d = _bad_copy(recorded, tmp_path / "d", 7, edit)
  with pytest.raises(recording.ReplayError, match="replay-00000.jsonl:7: " + message):
    recording.verify(str(d))


def test_missing_or_altered_policy_checkpoint(recorded, tmp_path):
  d = tmp_path / "missing"
  shutil.copytree(recorded, d)
  os.unlink(d / recording.policy_name(1))
  with pytest.raises(recording.ReplayError, match=r"replay-00000.jsonl:41: policy checkpoint "
                     r"policy-e0000001.pt is missing"):
    recording.verify(str(d))
  d = tmp_path / "altered"
  shutil.copytree(recorded, d)
  p = d / recording.policy_name(2)
  ck = torch.load(p, weights_only=True)
  ck["params"]["regret"]["0.weight"][0, 0] += 1e-3
  torch.save(ck, p)
  with pytest.raises(recording.ReplayError, match=r"replay-00000.jsonl:81: policy checkpoint "
                     r"policy-e0000002.pt was altered"):
    recording.verify(str(d))


def test_killed_and_resumed_run_gives_identical_files(recorded, tmp_path):
  rec = recording.RecorderConfig(str(tmp_path / "rep"))
  with pytest.raises(_Killed):  # after epoch 3 is recorded; checkpoint at epoch 2
    _run(tmp_path, rec, kill_at=4)
  with open(recording.replay_files(rec.out_dir)[0], "a") as f:
    f.write('{"format": "armac-spiel/replay-v1", "epo')  # a line cut by the kill
  _run(tmp_path, rec, resume=True)
  assert recording.verify(rec.out_dir).first_mismatch is None
  # Same seed twice (once killed): byte-identical replay and policy files.
  names = sorted(os.listdir(recorded))
  assert sorted(os.listdir(rec.out_dir)) == names
  for n in names:
    assert (recorded / n).read_bytes() == (tmp_path / "rep" / n).read_bytes(), n


def test_gzip_subset_files_and_resume(recorded, tmp_path):
  rec = recording.RecorderConfig(str(tmp_path / "rep"), fraction=0.5, episodes_per_file=30,
                              gzip=True)
  with pytest.raises(_Killed):
    _run(tmp_path, rec, kill_at=3)
  files = recording.replay_files(rec.out_dir)
  with open(files[-1], "ab") as f:
    f.write(b"\x1f\x8b\x08\x00garbage")  # a gzip member cut by the kill
  _run(tmp_path, rec, resume=True)
  files = recording.replay_files(rec.out_dir)
  assert all(f.endswith(".jsonl.gz") for f in files)
  want = [l for l in _lines(recorded)
          if recording.selected(SEED, json.loads(l)["episode"], 0.5)]
  assert 60 < len(want) < 140 and _lines(rec.out_dir) == want
  assert len(files) == -(-len(want) // 30)
  res = recording.verify(rec.out_dir)
  assert res.first_mismatch is None and res.episodes_checked == len(want)
  with open(files[0], "rb") as f:
    data = f.read()
  with open(files[0], "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(recording.ReplayError, match=r"replay-00000.jsonl.gz:\d+: unreadable or "
                     "truncated"):
    recording.verify(rec.out_dir)


def test_scheduler_outputs_are_recorded_and_verified(tmp_path):
  suite = {"scheduler": {"scheduler_warmup_iters": 1, "scheduler_lr": 1e-2},
           "policy_mixer": {"behaviour": True}, "state_keying": {"level": 1}}
  rec = recording.RecorderConfig(str(tmp_path / "rep"))
  spec = runs.resolve_spec("armac", GAME, SEED, str(tmp_path / "run"),
                           config_path=_config(tmp_path, suite),
                           sets={**TINY_REPLAY, "max_epochs": 3, "scheduler_mode": "discrete"},
                           device="cpu", plot=False, record=dataclasses.asdict(rec))
  assert spec.config.scheduler_mode == "discrete"
  assert spec.scheduler["scheduler"]["scheduler_warmup_iters"] == 1
  runs.run(spec)
  recs = [json.loads(l) for l in _lines(rec.out_dir)]
  assert recs[0]["rng"]["scheduler_sha256"]
  assert {"mixed", "actor", "regret", "lambda", "logits", "lambda_idx"} <= set(recs[0]["steps"])
  res = recording.verify(rec.out_dir)
  assert res.first_mismatch is None and res.episodes_checked == 120
  assert res.max_abs_deviation == 0.0
  def flip_bin(s):
    s["lambda_idx"][0] = (s["lambda_idx"][0] + 1) % len(s["logits"][0])

  def bump_mixed(s):
    s["mixed"][0][s["legal"][0][0]] += 0.25

  for field, edit in (("lambda_idx", flip_bin), ("mixed", bump_mixed)):
    ep = _tamper(tmp_path / "rep", tmp_path / field, lambda r: r["epoch"] == 2,
                 lambda r: edit(r["steps"]))
    res = recording.verify(str(tmp_path / field))
    assert (res.first_mismatch.episode, res.first_mismatch.field) == (ep, field)


def test_pyspiel_sampler_record_verifies_bit_for_bit(tmp_path):
  rec = recording.RecorderConfig(str(tmp_path / "rep"))
  spec = runs.resolve_spec("armac", GAME, SEED, str(tmp_path / "run"),
                           config_path=_config(tmp_path),
                           sets={**TINY_REPLAY, "max_epochs": 3, "sampler": "pyspiel"},
                           device="cpu", plot=False, record=dataclasses.asdict(rec))
  runs.run(spec)
  res = recording.verify(rec.out_dir)
  assert res.first_mismatch is None and res.episodes_checked == 120
  assert res.max_abs_deviation == 0.0


def test_verifier_gives_the_net_the_learners_batch_shapes(tmp_path, monkeypatch):
  """Float32 products can differ in their last bits with the number of rows in the batch
  (seen on the CI machine: 1e-7 between the learner's and the verifier's pi_j). A net whose
  output moves with its row count makes that visible on any machine: the record still
  verifies bit for bit only if the verifier runs every forward on the learner's shapes
  (with the tree sampler: once per distinct information-state id)."""
  from armac_spiel.networks import MLP
  plain = MLP.forward
  monkeypatch.setattr(MLP, "forward", lambda self, x: plain(self, x) + 1e-4 * x.shape[-2])
  # A fraction of the episodes: the learner's batch still holds them all.
  rec = recording.RecorderConfig(str(tmp_path / "rep"), fraction=0.3)
  spec = runs.resolve_spec("armac", GAME, SEED, str(tmp_path / "run"),
                           config_path=_config(tmp_path), sets={**TINY_REPLAY, "max_epochs": 3},
                           device="cpu", plot=False, record=dataclasses.asdict(rec))
  runs.run(spec)
  res = recording.verify(rec.out_dir)
  assert res.first_mismatch is None and 0 < res.episodes_checked < 120
  assert res.max_abs_deviation == 0.0


def _swap_probs(rec):
  s = rec["steps"]
  for t, p in enumerate(s["regret_policy"]):
    a, b = s["legal"][t][:2]
    if p[a] != p[b]:
      p[a], p[b] = p[b], p[a]
      return
  raise AssertionError("no step with two different probabilities")


def test_30s_leduc_record_verifies_at_the_default_tolerance(tmp_path):
  """A full-size record (Leduc config, 30 s of training): every episode's floats must match
  the learner's exactly; per-row recomputation drifted past 1e-6 after a few epochs."""
  rep = tmp_path / "rep"
  subprocess.run([sys.executable, "-m", "experiments.train", "--game_name=leduc_poker",
                  "--seed=2", "--time_budget_s=30", f"--record_replay={rep}",
                  "--replay_fraction=0.05", f"--out_dir={tmp_path / 'run'}"],
                 cwd=REPO, check=True, capture_output=True)
  res = recording.verify(str(rep))
  lines = _lines(rep)
  epochs = {json.loads(l)["epoch"] for l in lines}
  assert len(epochs) >= 5 and res.episodes_checked == len(lines) > 1000
  assert res.first_mismatch is None and res.max_abs_deviation == 0.0
  # Tampering with one line of the last epoch is named (a copy with that epoch only).
  last = max(epochs)
  keep = [l for l in lines if json.loads(l)["epoch"] == last]
  name = recording.policy_name(last)
  for field, pick, edit in (
      ("action", lambda r: len(r["steps"]["legal"][0]) > 1, _other_action),
      ("chance", lambda r: True, _other_card),
      ("regret_policy", lambda r: True, _swap_probs)):
    d = tmp_path / field
    d.mkdir()
    shutil.copy(rep / name, d / name)
    k = next(k for k, l in enumerate(keep) if pick(json.loads(l)))
    rec = json.loads(keep[k])
    edit(rec)
    out = keep[:k] + [json.dumps(rec, sort_keys=True, separators=(",", ":"))] + keep[k + 1:]
    (d / recording.file_name(0, False)).write_text("\n".join(out) + "\n")
    res = recording.verify(str(d))
    assert res.episodes_checked == len(keep)
    assert (res.first_mismatch.episode, res.first_mismatch.field) == (rec["episode"], field)
