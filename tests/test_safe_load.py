"""Loading a checkpoint, a replay record or a cluster file never runs code."""

import dataclasses
import io
import subprocess
import sys

import numpy as np
import pytest
import torch

from armac_spiel import recording, runs
from armac_spiel.runs import rundir
from armac_spiel.safe_load import UnsafeFileError, check_plain, load_tensor_file
from armac_spiel.scheduler.config import StateKeyingConfig
from armac_spiel.scheduler.state_keys import StateKeyer
from experiments import replay_verify
from tests.evil_files import assert_not_run, write_evil_pickle, write_evil_torch_file
from tests.conftest import REPO, TINY

TINY_16 = dict(TINY, episodes_per_epoch=16, critic_batch_episodes=8, regret_batch=32,
               actor_batch=32)
REFUSED = r"(posix|os)\.system"


def test_the_crafted_file_runs_code_when_unpickled(tmp_path):
  """Control: the crafted file is a working exploit for an unrestricted unpickler."""
  sentinel = tmp_path / "PWNED"
  p = write_evil_torch_file(tmp_path / "evil.pt", sentinel)
  torch.load(p, weights_only=False)  # the unsafe call the library no longer makes
  assert sentinel.exists()


def test_load_tensor_file_refuses_globals_and_names_them(tmp_path):
  sentinel = tmp_path / "PWNED"
  p = write_evil_torch_file(tmp_path / "evil.pt", sentinel,
                            lambda e: {"nets": [1, 2.0, {"deep": ("x", e)}]})
  with pytest.raises(UnsafeFileError, match=rf"checkpoint .*evil\.pt: refused to load "
                     rf"{REFUSED}") as info:
    load_tensor_file(str(p), "checkpoint")
  assert info.value.path == str(p) and info.value.refused in ("posix.system", "os.system")
  assert isinstance(info.value, ValueError)
  assert_not_run(sentinel)
  # numpy arrays are not plain data either (they unpickle through numpy's reconstructors)
  torch.save({"x": np.zeros(3)}, tmp_path / "np.pt")
  with pytest.raises(UnsafeFileError, match="numpy"):
    load_tensor_file(str(tmp_path / "np.pt"), "file")


def test_plain_data_round_trips_and_writers_check_it(tmp_path):
  from armac_spiel.atomic import atomic_torch_save
  obj = {"t": torch.arange(3), "n": [1, 2.5, None, True, "s", (2**100, -3)],
         "rng": np.random.default_rng(0).bit_generator.state}
  atomic_torch_save(obj, str(tmp_path / "ok.pt"))
  back = load_tensor_file(str(tmp_path / "ok.pt"))
  assert torch.equal(back["t"], obj["t"]) and back["n"] == obj["n"] and back["rng"] == obj["rng"]
  for bad, where in (({"a": [np.zeros(2)]}, "/a/0: numpy.ndarray"),
                     ({"f": len}, "/f: builtins.builtin_function_or_method"),
                     ({"b": b"pickled"}, "/b: builtins.bytes"), ({(1, 2): 0}, "key")):
    with pytest.raises(TypeError, match=where):
      check_plain(bad)
    with pytest.raises(TypeError):
      atomic_torch_save(bad, str(tmp_path / "bad.pt"))
  assert not (tmp_path / "bad.pt").exists()


def _kuhn_spec(out_dir, resume=False, record=None, max_epochs=2):
  cfg = out_dir.parent / "empty.yaml"
  cfg.write_text("{}\n")
  return runs.resolve_spec("armac", "kuhn_poker", 3, str(out_dir), config_path=str(cfg),
                           sets={**TINY_16, "max_epochs": max_epochs}, device="cpu",
                           plot=False, resume=resume, record=record)


def test_resume_refuses_a_crafted_checkpoint_with_exit_2(tmp_path):
  run = tmp_path / "run"
  runs.run(_kuhn_spec(run))
  sentinel = tmp_path / "PWNED"
  ck = write_evil_torch_file(run / rundir.CHECKPOINT, sentinel)
  with pytest.raises(UnsafeFileError, match=rf"checkpoint {ck}: refused to load {REFUSED}"):
    runs.run(_kuhn_spec(run, resume=True, max_epochs=4))
  assert_not_run(sentinel)
  out = subprocess.run([sys.executable, "-m", "experiments.train", "--game_name=kuhn_poker",
                        f"--out_dir={run}", "--resume", "--device=cpu", "--max_epochs=4"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
  assert out.returncode == 2, out.stderr[-2000:]
  assert f"checkpoint {ck}: refused to load" in out.stderr
  assert "posix.system" in out.stderr or "os.system" in out.stderr
  assert "train again in a new --out_dir" in out.stderr
  assert_not_run(sentinel)


def test_load_run_refuses_a_crafted_checkpoint(kuhn_armac_run, tmp_path):
  import shutil
  run = tmp_path / "run"
  shutil.copytree(kuhn_armac_run, run)
  assert runs.load_run(str(run)).epoch == 12  # the genuine checkpoint loads
  sentinel = tmp_path / "PWNED"
  ck = write_evil_torch_file(run / rundir.CHECKPOINT, sentinel,
                             lambda e: {"spec": {"algo": "armac"}, "learner": {"nets": e}})
  with pytest.raises(UnsafeFileError, match=rf"checkpoint {ck}: refused to load {REFUSED}"):
    runs.load_run(str(run))
  assert_not_run(sentinel)


def test_replay_verify_refuses_a_crafted_policy_file_with_exit_2(tmp_path, capsys):
  rep = tmp_path / "rep"
  runs.run(_kuhn_spec(tmp_path / "run",
                      record=dataclasses.asdict(recording.RecorderConfig(str(rep)))))
  assert recording.verify(str(rep)).first_mismatch is None
  sentinel = tmp_path / "PWNED"
  p = write_evil_torch_file(rep / recording.policy_name(0), sentinel,
                            lambda e: {"format": recording.POLICY_FORMAT, "params": e})
  assert replay_verify.main([str(rep)]) == 2
  err = capsys.readouterr().err
  assert f"policy checkpoint {p}: refused to load" in err
  assert "posix.system" in err or "os.system" in err
  assert_not_run(sentinel)


def test_cluster_file_is_plain_data_and_crafted_ones_are_refused(tmp_path):
  sentinel = tmp_path / "PWNED"
  path = tmp_path / "clusters.pt"
  cfg = StateKeyingConfig(level=2, n_clusters=3, cluster_file=str(path))
  write_evil_torch_file(path, sentinel, lambda e: {"format": "armac-spiel/kmeans-v1",
                                                   "centroids": e})
  with pytest.raises(UnsafeFileError, match=rf"state_keying.cluster_file {path}: refused "
                     rf"to load {REFUSED}"):
    StateKeyer(cfg)
  assert_not_run(sentinel)
  write_evil_pickle(path, sentinel)  # an older cluster file was a bare pickle
  with pytest.raises(UnsafeFileError, match=rf"state_keying.cluster_file {path}: refused "
                     rf"to load {REFUSED}.*delete it"):
    StateKeyer(cfg)
  assert_not_run(sentinel)
  # What save_clusters writes loads with weights_only=True and holds the centroids.
  path.unlink()
  keyer = StateKeyer(cfg)
  x = torch.cat([torch.zeros(4, 2), torch.full((4, 2), 5.0), torch.full((4, 2), -5.0)])
  ids = keyer.ids(embeddings=x)
  keyer.save_clusters()
  state = torch.load(path, weights_only=True)
  assert torch.equal(state["centroids"], torch.from_numpy(keyer.kmeans.cluster_centers_))
  assert torch.equal(StateKeyer(cfg).cluster_ids(x, update=False), ids)


def test_scheduler_checkpoint_with_a_pickled_kmeans_entry_is_refused():
  cfg = StateKeyingConfig(level=2, n_clusters=3, cluster_file="/nonexistent/c.pt")
  with pytest.raises(ValueError, match="keyer.kmeans.*unknown k-means format"):
    StateKeyer(cfg).load_state_dict({"kmeans": b"\x80\x04pickled", "pending": []})


def test_kmeans_state_round_trip_continues_the_online_fit_exactly():
  cfg = StateKeyingConfig(level=2, n_clusters=5, cluster_file="/nonexistent/c.pt")
  g = torch.Generator().manual_seed(0)
  batches = [torch.randn(37, 4, generator=g) * (1 + i) for i in range(12)]
  a = StateKeyer(cfg, seed=4)
  for x in batches[:6]:
    a.ids(embeddings=x)
  buf = io.BytesIO()
  torch.save(a.state_dict(), buf)
  buf.seek(0)
  b = StateKeyer(cfg, seed=4)
  b.load_state_dict(load_tensor_file(buf, "scheduler state"))
  for x in batches[6:]:
    assert torch.equal(a.ids(embeddings=x), b.ids(embeddings=x))
  np.testing.assert_array_equal(a.kmeans.cluster_centers_, b.kmeans.cluster_centers_)
  np.testing.assert_array_equal(a.kmeans._counts, b.kmeans._counts)
  assert a.kmeans.n_steps_ == b.kmeans.n_steps_ == 12
