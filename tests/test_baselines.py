"""Tests for armac_spiel.baselines and armac_spiel.runs.rundir (OpenSpiel baselines, run I/O)."""

import io
import json
import os

import numpy as np
import pytest
import torch

from armac_spiel import baselines, evaluation, runs
from armac_spiel.runs import rundir
from armac_spiel.safe_load import load_tensor_file, tensor_bytes
from games import infostate_table

KUHN, LEDUC = "kuhn_poker", "leduc_poker"
UNIFORM_KUHN_EXPL = 0.4583

TINY_HPARAMS = {
    "cfr_plus": {},
    "es_mccfr": {"iterations_per_step": 20},
    "os_mccfr": {"iterations_per_step": 200},
    "deep_cfr": dict(num_traversals=20, batch_size_advantage=32, batch_size_strategy=32,
                     memory_capacity=10_000, policy_network_train_steps=20,
                     advantage_network_train_steps=10, policy_network_layers=(16,),
                     advantage_network_layers=(16,)),
    "nfsp": dict(episodes_per_step=40, min_buffer_size_to_learn=32, batch_size=16,
                 learn_every=8, reservoir_buffer_capacity=5_000,
                 replay_buffer_capacity=5_000, hidden_layers_sizes=(16,)),
}


def _strip_timing(records):
  return [{k: v for k, v in r.items() if k not in rundir.TIMING_FIELDS} for r in records]


def _run_baseline(algo, game, seed, out_dir, time_budget_s=None, max_steps=None,
                  eval_every_s=None, eval_every_steps=None, hparams=None):
  """One baseline run through the run layer (what baselines.run_baseline was)."""
  spec = runs.resolve_spec(algo, game, seed, out_dir, sets=hparams,
                           time_budget_s=time_budget_s, max_steps=max_steps,
                           eval_every=eval_every_steps, eval_every_s=eval_every_s,
                           device="cpu", plot=False)
  return runs.run(spec)


def _check_table(game, probs):
  legal = infostate_table(game).legal_mask
  assert probs.dtype == torch.float64 and probs.shape == legal.shape
  assert torch.isfinite(probs).all() and (probs >= 0).all()
  assert probs.masked_fill(legal, 0).abs().max() == 0
  torch.testing.assert_close(probs.sum(1), torch.ones(len(legal), dtype=torch.float64))


def test_cfr_plus_run_matches_reference(tmp_path):
  n = 5
  recs = _run_baseline("cfr_plus", KUHN, 0, str(tmp_path), max_steps=n,
                                eval_every_steps=2)
  assert [r["step"] for r in recs] == [2, 4, 5]
  final = recs[-1]
  assert final["iterations"] == final["episodes"] == n
  assert final["exploitability"] < UNIFORM_KUHN_EXPL
  ref = evaluation.exploitability(KUHN, evaluation.cfr_plus_table(KUHN, n))
  assert abs(final["exploitability"] - ref) < 1e-9
  for key in ("algo", "game", "seed", "step", "episodes", "train_s", "eval_s",
              "exploitability", "nash_conv", "steps_per_s"):
    assert key in final
  assert rundir.read_metrics(str(tmp_path / "metrics.jsonl")) == recs
  cfg = json.load(open(tmp_path / "config.json"))
  assert (cfg["algo"], cfg["game"], cfg["seed"]) == ("cfr_plus", KUHN, 0)
  assert "git_commit" in json.load(open(tmp_path / "provenance.json"))
  assert os.path.exists(tmp_path / "DONE")
  from armac_spiel.policy_io import import_policy
  _, probs = import_policy(str(tmp_path / "policy.json"))
  torch.testing.assert_close(probs, evaluation.cfr_plus_table(KUHN, n))


def test_es_mccfr_exploitability_decreases(tmp_path):
  recs = _run_baseline("es_mccfr", KUHN, 1, str(tmp_path), max_steps=50,
                                eval_every_steps=5)
  expl = [r["exploitability"] for r in recs]
  assert len(expl) == 10 and all(np.isfinite(expl))
  assert expl[-1] < 0.5 * expl[0] and expl[-1] < 0.03
  assert recs[-1]["iterations"] == 50 * 100 and recs[-1]["episodes"] == 2 * 50 * 100


def test_os_mccfr_exploitability_decreases_and_bad_epsilon_is_named(tmp_path):
  recs = _run_baseline("os_mccfr", KUHN, 1, str(tmp_path), max_steps=40,
                       eval_every_steps=4)
  expl = [r["exploitability"] for r in recs]
  assert len(expl) == 10 and all(np.isfinite(expl))
  assert expl[-1] < 0.5 * expl[0] and expl[-1] < 0.05
  assert recs[-1]["iterations"] == 40 * 1000 and recs[-1]["episodes"] == 2 * 40 * 1000
  with pytest.raises(ValueError, match="os_mccfr.*'epsilon'"):
    baselines.make_baseline("os_mccfr", KUHN, 0, epsilon=0.0)


@pytest.mark.parametrize("algo,game,steps", [("deep_cfr", KUHN, 3), ("nfsp", KUHN, 3),
                                             ("deep_cfr", LEDUC, 1)])
def test_neural_baselines_smoke(tmp_path, algo, game, steps):
  hp = dict(TINY_HPARAMS[algo])
  if game == LEDUC:
    hp["num_traversals"] = 5
  recs = _run_baseline(algo, game, 0, str(tmp_path), max_steps=steps, hparams=hp)
  assert len(recs) == 1 and recs[0]["step"] == steps
  assert np.isfinite(recs[0]["exploitability"]) and recs[0]["exploitability"] >= -1e-12
  loss_keys = ("advantage_loss_0", "policy_loss") if algo == "deep_cfr" else ("rl_loss_0",)
  assert all(k in recs[0] for k in loss_keys)
  bl = baselines.make_baseline(algo, game, 0, **hp)
  for _ in range(steps):
    bl.step()
  _check_table(game, bl.average_table())


@pytest.mark.parametrize("algo", sorted(baselines.BASELINES))
def test_same_seed_same_metrics(tmp_path, algo):
  hp = TINY_HPARAMS[algo]
  out = [_run_baseline(algo, KUHN, 3, str(tmp_path / str(i)), max_steps=4,
                       eval_every_steps=e, hparams=hp)
         for i, e in enumerate((2, 2, 1))]
  assert _strip_timing(out[0]) == _strip_timing(out[1])
  # Evaluating more often does not change training.
  assert _strip_timing(out[0]) == [r for r in _strip_timing(out[2]) if r["step"] % 2 == 0]


SMALL_MEMORIES = {  # full buffers: reservoir replacement and FIFO wrap-around
    "deep_cfr": dict(TINY_HPARAMS["deep_cfr"], memory_capacity=50),
    "nfsp": dict(TINY_HPARAMS["nfsp"], replay_buffer_capacity=40, reservoir_buffer_capacity=60),
}


@pytest.mark.parametrize("algo, hp", [(a, TINY_HPARAMS[a]) for a in TINY_HPARAMS] +
                         [(a, hp) for a, hp in SMALL_MEMORIES.items()])
def test_state_dict_resumes(algo, hp):
  """k steps, a checkpoint through a plain-data torch file (weights_only=True), a fresh
  object loads it, and both train on: the same losses and the same average policy."""
  a = baselines.make_baseline(algo, KUHN, 5, **hp)
  for _ in range(2):
    a.step()
  blob = io.BytesIO(tensor_bytes(a.state_dict()))  # refuses anything but plain data
  b = baselines.make_baseline(algo, KUHN, 5, **hp)
  b.load_state_dict(load_tensor_file(blob, "checkpoint"))
  for _ in range(2):
    assert a.step() == b.step()
  assert (a.episodes, a.iterations) == (b.episodes, b.iterations)
  torch.testing.assert_close(a.average_table(), b.average_table(), rtol=0, atol=0)


def test_different_seeds_differ():
  tables = []
  for seed in (0, 1):
    bl = baselines.make_baseline("nfsp", KUHN, seed, **TINY_HPARAMS["nfsp"])
    bl.step()
    tables.append(bl.average_table())
  assert not torch.equal(*tables)


def test_unknown_algo_and_hparam():
  with pytest.raises(ValueError, match="'dqn'.*cfr_plus"):
    baselines.make_baseline("dqn", KUHN, 0)
  with pytest.raises(ValueError, match="nfsp.*'bogus'"):
    baselines.make_baseline("nfsp", KUHN, 0, bogus=1)
  with pytest.raises(ValueError, match="time_budget_s.*max_steps"):
    _run_baseline("cfr_plus", KUHN, 0, "/nonexistent")


def test_time_budget_run(tmp_path):
  recs = _run_baseline("es_mccfr", KUHN, 0, str(tmp_path), time_budget_s=0.2,
                                eval_every_s=0.05)
  assert len(recs) >= 2 and recs[-1]["train_s"] >= 0.2
  assert recs[-1]["eval_s"] > 0 and os.path.exists(tmp_path / "DONE")


@pytest.mark.parametrize("game", [KUHN, LEDUC])
def test_fast_exploitability_matches_pyspiel(game):
  legal = infostate_table(game).legal_mask
  g = torch.Generator().manual_seed(0)
  probs = torch.rand(legal.shape, generator=g, dtype=torch.float64) * legal
  probs = probs / probs.sum(1, keepdim=True)
  expl, nc = evaluation.fast_exploitability(game, probs)
  assert abs(expl - evaluation.exploitability(game, probs)) < 1e-9
  assert abs(nc - evaluation.nash_conv(game, probs)) < 1e-9


def test_fast_exploitability_non_zero_sum():
  game = "kuhn_poker(players=3)"
  expl, nc = evaluation.fast_exploitability(game, evaluation.uniform_table(game))
  assert expl is None
  assert abs(nc - evaluation.nash_conv(game, evaluation.uniform_table(game))) < 1e-9


def test_metrics_log_truncated_line_and_truncate(tmp_path):
  path = str(tmp_path / "m.jsonl")
  with rundir.MetricsLog(path) as log:
    for i in range(3):
      log.write({"step": i, "x": 0.5 * i})
  with open(path, "a") as f:
    f.write('{"step": 3, "x"')  # a crash mid-write
  assert [r["step"] for r in rundir.read_metrics(path)] == [0, 1, 2]
  rundir.truncate_metrics(path, 2)
  assert rundir.read_metrics(path) == [{"step": 0, "x": 0.0}, {"step": 1, "x": 0.5}]
  with open(path) as f:
    assert f.read().endswith("\n")
  with pytest.raises(ValueError):
    rundir.truncate_metrics(path, 5)
  with open(path, "w") as f:
    f.write('{"a": 1}\nnot json\n{"a": 2}\n')
  with pytest.raises(ValueError, match="line 2"):
    rundir.read_metrics(path)


def test_provenance_and_json(tmp_path):
  prov = rundir.provenance()
  assert set(prov) >= {"git_commit", "git_dirty", "versions", "machine", "timestamp"}
  assert {"torch", "numpy", "open_spiel", "python"} <= set(prov["versions"])
  rundir.write_json_atomic(str(tmp_path / "a.json"), {"b": [1, 2]})
  assert json.load(open(tmp_path / "a.json")) == {"b": [1, 2]}
