"""Deterministic replay: record during training, verify, tamper, resume, bad files."""

import gzip
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from armac_spiel import config as config_lib
from armac_spiel import replay, trainer
from experiments import replay_verify

TINY = dict(critic_hidden=(16,), regret_hidden=(16,), actor_hidden=(16,),
            episodes_per_epoch=40, groups_per_epoch=4, current_groups=1, critic_steps=2,
            regret_steps=2, actor_steps=2, critic_batch_episodes=32, regret_batch=64,
            actor_batch=64, max_snapshots=4, eval_every=2, sampler="tree",
            policy_draw="uniform")
GAME, SEED, EPOCHS = "leduc_poker", 1, 5  # 5 epochs x 40 = 200 episodes
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Killed(Exception):
  pass


def _run(root, rec_cfg, kill_at=None, max_epochs=EPOCHS, resume=False):
  cfg = config_lib.ARMACConfig(**TINY, max_epochs=max_epochs)
  spec = trainer.RunSpec(GAME, cfg, SEED, str(root / "run"), device="cpu", resume=resume,
                         plot=False)

  def on_epoch(learner):
    if kill_at is not None and learner.epoch == kill_at:
      raise _Killed

  return trainer.train(spec, make_recorder=replay.recorder_factory(rec_cfg),
                       on_epoch=on_epoch)


def _lines(d):
  out = []
  for p in replay.replay_files(str(d)):
    opener = gzip.open if p.endswith(".gz") else open
    with opener(p, "rt") as f:
      out += f.read().splitlines()
  return out


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
  root = tmp_path_factory.mktemp("ref")
  _run(root, replay.RecorderConfig(str(root / "rep")))
  return root / "rep"


def test_recorded_training_run_verifies(recorded):
  res = replay.verify(str(recorded), 1e-6)
  assert res.episodes_checked == 200 and res.first_mismatch is None
  assert res.max_abs_deviation <= 1e-6
  recs = [json.loads(l) for l in _lines(recorded)]
  assert [r["episode"] for r in recs] == list(range(200))
  assert any(r["slot"] >= 0 for r in recs)  # past snapshots were replayed too
  r = recs[0]
  assert r["format"] == replay.FORMAT and r["game"] == GAME and r["seed"] == SEED
  assert set(r["steps"]) >= {"player", "legal", "action", "regret_policy", "behaviour"}
  assert r["rng"]["sampler"]["bit_generator"] == "PCG64"


def _tamper(src, dst, pick, edit):
  shutil.copytree(src, dst)
  path = replay.replay_files(str(dst))[0]
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
  res = replay.verify(str(tmp_path / name), 1e-6)
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
  path = replay.replay_files(str(bad))[0]
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:-40])
  rc, summary, err = cli(bad)
  assert rc == 2 and "replay-00000.jsonl:200" in err and "truncated" in summary["error"]


def _bad_copy(src, dst, lineno, edit):
  shutil.copytree(src, dst)
  path = replay.replay_files(str(dst))[0]
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
  with pytest.raises(replay.ReplayError, match="replay-00000.jsonl:7: " + message):
    replay.verify(str(d))


def test_missing_or_altered_policy_checkpoint(recorded, tmp_path):
  d = tmp_path / "missing"
  shutil.copytree(recorded, d)
  os.unlink(d / replay.policy_name(1))
  with pytest.raises(replay.ReplayError, match=r"replay-00000.jsonl:41: policy checkpoint "
                     r"policy-e0000001.pt is missing"):
    replay.verify(str(d))
  d = tmp_path / "altered"
  shutil.copytree(recorded, d)
  p = d / replay.policy_name(2)
  ck = torch.load(p, weights_only=False)
  ck["params"]["regret"]["0.weight"][0, 0] += 1e-3
  torch.save(ck, p)
  with pytest.raises(replay.ReplayError, match=r"replay-00000.jsonl:81: policy checkpoint "
                     r"policy-e0000002.pt was altered"):
    replay.verify(str(d))


def test_killed_and_resumed_run_gives_identical_files(recorded, tmp_path):
  rec = replay.RecorderConfig(str(tmp_path / "rep"))
  with pytest.raises(_Killed):  # after epoch 3 is recorded; checkpoint at epoch 2
    _run(tmp_path, rec, kill_at=4)
  with open(replay.replay_files(rec.out_dir)[0], "a") as f:
    f.write('{"format": "armac-spiel/replay-v1", "epo')  # a line cut by the kill
  _run(tmp_path, rec, resume=True)
  assert replay.verify(rec.out_dir).first_mismatch is None
  # Same seed twice (once killed): byte-identical replay and policy files.
  names = sorted(os.listdir(recorded))
  assert sorted(os.listdir(rec.out_dir)) == names
  for n in names:
    assert (recorded / n).read_bytes() == (tmp_path / "rep" / n).read_bytes(), n


def test_gzip_subset_files_and_resume(recorded, tmp_path):
  rec = replay.RecorderConfig(str(tmp_path / "rep"), fraction=0.5, episodes_per_file=30,
                              gzip=True)
  with pytest.raises(_Killed):
    _run(tmp_path, rec, kill_at=3)
  files = replay.replay_files(rec.out_dir)
  with open(files[-1], "ab") as f:
    f.write(b"\x1f\x8b\x08\x00garbage")  # a gzip member cut by the kill
  _run(tmp_path, rec, resume=True)
  files = replay.replay_files(rec.out_dir)
  assert all(f.endswith(".jsonl.gz") for f in files)
  want = [l for l in _lines(recorded)
          if replay.selected(SEED, json.loads(l)["episode"], 0.5)]
  assert 60 < len(want) < 140 and _lines(rec.out_dir) == want
  assert len(files) == -(-len(want) // 30)
  res = replay.verify(rec.out_dir)
  assert res.first_mismatch is None and res.episodes_checked == len(want)
  with open(files[0], "rb") as f:
    data = f.read()
  with open(files[0], "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(replay.ReplayError, match=r"replay-00000.jsonl.gz:\d+: unreadable or "
                     "truncated"):
    replay.verify(rec.out_dir)


def test_scheduler_outputs_are_recorded_and_verified(tmp_path):
  from armac_spiel import scheduler_glue
  from armac_spiel.scheduler.config import from_dict
  suite = from_dict({"scheduler": {"scheduler_warmup_iters": 1, "scheduler_lr": 1e-2},
                     "policy_mixer": {"behaviour": True}, "state_keying": {"level": 1}})
  cfg = config_lib.ARMACConfig(**TINY, max_epochs=3, scheduler_mode="discrete")
  spec = trainer.RunSpec(GAME, cfg, SEED, str(tmp_path / "run"), device="cpu", plot=False)
  rec = replay.RecorderConfig(str(tmp_path / "rep"))
  trainer.train(spec, make_scheduler=scheduler_glue.scheduler_factory(suite, "discrete"),
                make_recorder=replay.recorder_factory(rec))
  recs = [json.loads(l) for l in _lines(rec.out_dir)]
  assert recs[0]["rng"]["scheduler_sha256"]
  assert {"mixed", "actor", "regret", "lambda", "logits", "lambda_idx"} <= set(recs[0]["steps"])
  res = replay.verify(rec.out_dir)
  assert res.first_mismatch is None and res.episodes_checked == 120
  def flip_bin(s):
    s["lambda_idx"][0] = (s["lambda_idx"][0] + 1) % len(s["logits"][0])

  def bump_mixed(s):
    s["mixed"][0][s["legal"][0][0]] += 0.25

  for field, edit in (("lambda_idx", flip_bin), ("mixed", bump_mixed)):
    ep = _tamper(tmp_path / "rep", tmp_path / field, lambda r: r["epoch"] == 2,
                 lambda r: edit(r["steps"]))
    res = replay.verify(str(tmp_path / field))
    assert (res.first_mismatch.episode, res.first_mismatch.field) == (ep, field)
