"""ARMAC with the scheduler: invariants, metrics, resume, deployment, config and CLI."""

import dataclasses
import io
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from open_spiel.python import policy as os_policy
from open_spiel.python.algorithms import exploitability as os_exploitability

from armac_spiel import config as config_lib
from armac_spiel import runs
from armac_spiel.armac import ARMAC
from armac_spiel.scheduler import Deployment, Scheduler, SchedulerHooks, make_scheduler
from armac_spiel.scheduler.config import SchedulerSuiteConfig, from_dict
from games import StepBatch, infostate_table
from tests.conftest import REPO, TINY

torch.set_num_threads(1)
GAME = "kuhn_poker"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
REQUIRED = ("scheduler.states_tracked", "scheduler.bin_entropy", "scheduler.lambda_mean",
            "scheduler.evictions", "exploitability_mixed")


def _suite(level=3, behaviour=False, strategy="best_response", **sched):
  sched = {"scheduler_warmup_iters": 1, "scheduler_lr": 1e-2, "update_every": 1, **sched}
  return from_dict({"scheduler": sched,
                    "policy_mixer": {"behaviour": behaviour},
                    "utility_computation": {"strategy": strategy, "br_episodes": 64},
                    "state_keying": {"level": level, "n_clusters": 4,
                                     "cluster_file": "/nonexistent/clusters.pt"}})


def _learner(mode, device="cpu", level=3, sampler="tree", seed=0, strategy="best_response"):
  adapter = Scheduler(_suite(level, strategy=strategy), GAME, seed, device, mode)
  cfg = config_lib.ARMACConfig(**TINY, sampler=sampler)
  return ARMAC(GAME, cfg, seed=seed, device=device, scheduler=adapter), adapter


class Checked(Scheduler):
  """Asserts Invariant A on every behaviour call made during sampling."""
  calls = 0

  def behaviour(self, learner, batch):
    out = super().behaviour(learner, batch)
    mixed, mask = out["mixed"], batch.legal_mask.to(out["mixed"].device)
    r, a = batch.legal_mask.shape
    assert mixed.shape == (r, a) and mixed.device.type == learner.device.type
    assert torch.allclose(mixed.sum(-1), torch.ones(r, device=mixed.device), atol=1e-6)
    assert (mixed[~mask] == 0).all() and (mixed >= 0).all()
    for k in ("actor", "regret"):
      assert out[k].shape == (r, a)
    if self.mode == "discrete":
      assert out["logits"].shape == (r, 5) and out["lambda_idx"].shape == (r,)
    else:
      assert out["lambda"].shape == (r, 1)
    Checked.calls += 1
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["continuous", "discrete"])
def test_behaviour_is_a_legal_distribution_during_sampling(mode, device):
  Checked.calls = 0
  adapter = Checked(_suite(behaviour=True), GAME, 0, device, mode)
  learner = ARMAC(GAME, config_lib.ARMACConfig(**TINY), seed=0, device=device,
                  scheduler=adapter)
  for _ in range(3):
    learner.step()
  assert Checked.calls >= 3 * 2
  t = infostate_table(GAME)
  batch = StepBatch(t.tensors, t.legal_mask, t.player, torch.arange(len(t)), 0)
  out = adapter.behaviour(learner, batch)
  rm = out["regret"].cpu().double()
  avg = out["actor"].cpu().double()
  lam = out["lambda"].cpu().double()
  assert torch.allclose(out["mixed"].cpu().double(), lam * rm + (1 - lam) * avg, atol=1e-6)


@pytest.mark.parametrize("mode", ["continuous", "discrete"])
def test_metrics_states_and_mixed_policy(mode):
  learner, adapter = _learner(mode)
  tracked = []
  for _ in range(4):
    learner.step()
    m = adapter.metrics(learner)
    for k in REQUIRED + ("scheduler.lambda_std", "scheduler.lambda_min",
                         "scheduler.lambda_max", "scheduler.cost_ms_per_epoch"):
      assert k in m and math.isfinite(m[k]), k
    tracked.append(m["scheduler.states_tracked"])
  # best_response updates every information state (level 3: one key each) every epoch.
  assert tracked == [len(infostate_table(GAME))] * 4
  pol = adapter.mixed_policy(learner)
  assert isinstance(pol, os_policy.Policy)
  exact = os_exploitability.exploitability(learner.sgame.game, pol)
  assert m["exploitability_mixed"] == pytest.approx(exact, abs=1e-6)


def _state_bytes(learner):
  buf = io.BytesIO()
  torch.save(learner.state_dict(), buf)
  buf.seek(0)
  return buf


@pytest.mark.parametrize("mode, level, sampler, strategy", [
    ("discrete", 3, "tree", "best_response"), ("discrete", 2, "pyspiel", "best_response"),
    ("continuous", 0, "tree", "br_critic"), ("discrete", 1, "pyspiel", "advantage_based")])
def test_state_dict_round_trip_reproduces_next_epoch(mode, level, sampler, strategy):
  a, ad_a = _learner(mode, level=level, sampler=sampler, strategy=strategy)
  for _ in range(3):
    a.step()
  saved = _state_bytes(a)
  out_a = a.step()
  b, ad_b = _learner(mode, level=level, sampler=sampler, strategy=strategy)
  b.load_state_dict(torch.load(saved, weights_only=True))
  out_b = b.step()
  assert out_a == out_b
  assert torch.equal(ad_a.mixed_table(a)[0], ad_b.mixed_table(b)[0])
  assert torch.equal(a.average_policy().table(), b.average_policy().table())
  ma, mb = ad_a.trainer.manager, ad_b.trainer.manager
  assert torch.equal(ma.regrets, mb.regrets) and ma.keys() == mb.keys()
  assert torch.equal(ma.avg_num, mb.avg_num) and torch.equal(ma.avg_den, mb.avg_den)
  assert torch.equal(ad_a.lambdas.gen.get_state(), ad_b.lambdas.gen.get_state())
  for p, q in zip(ad_a.trainer.net.parameters(), ad_b.trainer.net.parameters()):
    assert torch.equal(p, q)


def _write_yaml(path, text):
  path.write_text(text)
  return str(path)


SEED_YAML = """
episodes_per_epoch: 64
groups_per_epoch: 4
current_groups: 1
use_scheduler: true
scheduler:
  hidden: [16]
  k_bins: [0.0, 0.25, 0.5, 0.75, 1.0]
  scheduler_lr: 1e-3
  scheduler_warmup_iters: 2
  regularization:
    beta_l2: 1e-4
    beta_ent: 1e-3
policy_mixer:
  discrete: false
  lambda_bins: [0.0, 0.25, 0.5, 0.75, 1.0]
  behaviour: true
meta_regret:
  K: 5
  {mr_key}: 10000
state_keying:
  level: 0
utility_computation:
  utility_type: hybrid
deterministic_replay:
  tolerance: 1e-6
"""


def test_yaml_loads_and_unknown_key_is_named(tmp_path):
  def spec_of(path, **kw):
    return runs.resolve_spec("armac", GAME, 0, str(tmp_path / "run"), config_path=path,
                             max_steps=1, device="cpu", **kw)

  def adapter(spec):
    return make_scheduler(spec.scheduler, spec.game, spec.seed, "cpu")

  good = _write_yaml(tmp_path / "good.yaml", SEED_YAML.format(mr_key="max_states"))
  spec = spec_of(good)
  suite = SchedulerSuiteConfig.from_dict(spec.scheduler)
  assert suite.mode == "continuous" and suite.meta_regret.max_states == 10000
  assert spec.scheduler["scheduler"]["hidden"] == [16]
  # Config mode off + YAML use_scheduler: the YAML's mode runs; a flag mode wins.
  assert spec.config.scheduler_mode == "continuous" and adapter(spec).mode == "continuous"
  assert isinstance(adapter(spec), SchedulerHooks)  # what ARMAC holds
  spec2 = spec_of(good, sets={"scheduler_mode": "discrete"})
  assert adapter(spec2).mode == "discrete"
  assert spec_of(good, scheduler="discrete").scheduler == spec2.scheduler
  assert make_scheduler(suite.with_mode("off").to_dict(), GAME, 0, "cpu") is None
  assert spec_of(good, scheduler="off").scheduler is None
  # No scheduler sections in the YAML: off, unless a mode is asked for (default suite).
  plain = _write_yaml(tmp_path / "plain.yaml", "episodes_per_epoch: 64\ngroups_per_epoch: 4\n"
                       "current_groups: 1\n")
  assert spec_of(plain).scheduler is None
  spec3 = spec_of(plain, sets={"scheduler_mode": "discrete"})
  # The default suite, its strategy (auto) decided for the game in the spec (config.json
  # says what runs): exact on Kuhn's tree.
  decided = from_dict({"utility_computation": {"strategy": "best_response"},
                       "state_keying": {"level": 3}}).with_mode("discrete")
  assert spec3.scheduler == decided.to_dict()
  assert adapter(spec3).suite == decided
  bad = _write_yaml(tmp_path / "bad.yaml", SEED_YAML.format(mr_key="max_state"))
  with pytest.raises(config_lib.ConfigError, match=r"meta_regret\.max_state"):
    spec_of(bad)


def test_cli_writes_scheduler_metrics(tmp_path):
  out = tmp_path / "run"
  env = {**os.environ, "PYTHONPATH": REPO}
  small = _write_yaml(tmp_path / "small.yaml", "".join(
      f"{k}: {list(v) if isinstance(v, tuple) else v}\n" for k, v in TINY.items()))
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.train", "--game_name=kuhn_poker",
       "--scheduler=discrete", "--max_epochs=4", "--eval_every=2", "--device=cpu",
       f"--config={small}", f"--out_dir={out}"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
  assert [x["epoch"] for x in lines] == [0, 2, 4]
  for line in lines:
    for k in REQUIRED:
      assert k in line and math.isfinite(line[k]), k
  assert lines[-1]["scheduler.states_tracked"] > 0
  cfg = json.loads((out / "config.json").read_text())
  assert cfg["hparams"]["scheduler_mode"] == "discrete"
  assert cfg["scheduler"]["policy_mixer"]["discrete"] is True


def test_br_critic_deploys_what_its_sampled_responders_exploit_less(monkeypatch):
  """br_critic with deploy best_measured: one critic per candidate (the manager's average,
  the actor alone), each trained against its own candidate; every critic's greedy responder
  is measured against every candidate, each pair in a bias-corrected EMA with its standard
  error; a candidate's bound is its largest pair, and the average is deployed only when its
  bound is below the actor's by more than br_gate_z standard errors of the difference."""
  learner, ad = _learner("discrete", strategy="br_critic")
  assert set(ad.deployment.gate.critics) == {"average", "actor"}
  assert ad.deployment.gate.choice() == "actor"
  for _ in range(3):
    learner.step()
  lam_avg = ad.average_lambda(learner)
  assert lam_avg.abs().sum() > 0  # the average mixes somewhere: the choice is visible
  uc = ad.suite.utility_computation
  d, z = uc.br_gate_decay, uc.br_gate_z
  # (mean return, sampling variance of the mean) per update, responder and candidate
  returns = {("average", "average"): [(-0.5, 0.0)] * 4,
             ("actor", "average"): [(-0.6, 0.0)] * 3 + [(5.0, 0.0)],
             ("actor", "actor"): [(-0.1, 0.0), (0.9, 0.2), (0.9, 0.0), (0.9, 0.0)],
             ("average", "actor"): [(-0.2, 0.0)] * 4}
  # A deployment of its own over the trained lambdas: its gate has measured nothing yet.
  dep = Deployment(ad.suite, ad.lambdas, GAME, seed=0, device="cpu")
  gate = dep.gate
  trained = {k: [] for k in gate.critics}
  seen = {k: [] for k in returns}
  for name, critic in gate.critics.items():
    def update(mix_fn, name=name):
      trained[name].append(mix_fn)
      return {}

    def evaluate(mix_fn, name=name):
      c = "average" if len(seen[(name, "average")]) == len(seen[(name, "actor")]) else "actor"
      seen[(name, c)].append(mix_fn)
      return returns[(name, c)][len(seen[(name, c)]) - 1]
    monkeypatch.setattr(critic, "update", update)
    monkeypatch.setattr(critic, "evaluate", evaluate)

  def ema(k, n):
    w = [(1 - d) * d ** (n - 1 - i) for i in range(n)]
    r = returns[k][:n]
    mean = sum(wi * v for wi, (v, _) in zip(w, r)) / sum(w)
    se = math.sqrt(sum(wi * wi * var for wi, (_, var) in zip(w, r))) / sum(w)
    return mean, se

  choices = []
  for n in (1, 2, 3, 4):
    dep.choose(learner)  # after an update: the gate measures once
    raw = {c: max(ema((r, c), n) for r in gate.critics) for c in gate.critics}
    est = {c: (max(v, 0.0), se) for c, (v, se) in raw.items()}
    for c in est:
      assert dep.notes[f"br_gate_value_{c}"] == pytest.approx(est[c][0], abs=1e-12)
      assert dep.notes[f"br_gate_se_{c}"] == pytest.approx(est[c][1], abs=1e-12)
      assert gate.estimate(c) == (dep.notes[f"br_gate_value_{c}"],
                                  dep.notes[f"br_gate_se_{c}"])
      for r in gate.critics:
        assert dep.notes[f"br_gate_value_{r}_vs_{c}"] == pytest.approx(ema((r, c), n)[0],
                                                                       abs=1e-12)
    margin = z * math.hypot(est["average"][1], est["actor"][1])
    want = "average" if est["average"][0] + margin < est["actor"][0] else "actor"
    assert gate.choice() == want and dep.notes["deployed_actor"] == float(want == "actor")
    choices.append(want)
    if n == 1:  # lower (-0.5 against -0.1) without noise, but a losing responder bounds
      # nothing: both bounds are 0 and the actor stays
      assert raw["average"][0] < raw["actor"][0] < 0
      assert torch.equal(dep.deployed_lambda(learner), torch.zeros_like(lam_avg))
    if n == 2:  # 0 against 0.405, within the noise (se 0.226)
      assert est["actor"][0] > 0 and est["actor"][1] > 0.2
    if n == 3:  # the noise decays: the average's mix is deployed
      assert torch.equal(dep.deployed_lambda(learner), lam_avg)
  # The actor's responder then finds the average's mix exploitable (5.0, EMA 0.84), its own
  # critic does not (-0.5): the larger bound counts, and the actor is deployed again.
  assert ema(("average", "average"), 4)[0] < 0 < est["actor"][0] < est["average"][0]
  assert choices == ["actor", "actor", "average", "actor"]
  # Each critic was trained against its own candidate, and measured against both.
  t = infostate_table(GAME)
  x, mask = t.tensors, t.legal_mask
  rows = torch.arange(len(t))
  pi_mix, _ = ad.mixed_table(learner, lam_avg)
  pi_actor, _ = ad.mixed_table(learner, torch.zeros_like(lam_avg))
  want_pi = {"average": pi_mix, "actor": pi_actor}
  for name in gate.critics:
    assert len(trained[name]) == 4
    assert torch.allclose(trained[name][0](x, mask, rows).double(), want_pi[name], atol=1e-6)
    for c in gate.critics:
      assert torch.allclose(seen[(name, c)][0](x, mask, rows).double(), want_pi[c], atol=1e-6)
  assert not torch.allclose(pi_mix, pi_actor, atol=1e-3)


def test_br_critics_evaluation_is_the_greedy_responders_exact_play():
  """BRCritic.evaluate: the responder greedy on Q, the candidate played exactly; its mean
  return over many episodes approaches the exact value of that pure strategy against pi_mix
  (OpenSpiel's expected_game_score), below the best response's value."""
  import pyspiel
  from open_spiel.python.algorithms.expected_game_score import policy_value
  learner, ad = _learner("discrete", strategy="br_critic")
  for _ in range(2):
    learner.step()
  critic = ad.deployment.gate.critics["actor"]
  critic.cfg = dataclasses.replace(critic.cfg, br_episodes=200_000)
  t = infostate_table(GAME)
  pi_actor, _ = ad.mixed_table(learner, torch.zeros(len(t), 1, dtype=torch.float64))
  mean, var = critic.evaluate(ad.lambdas.mix_fn(learner, "actor"))
  game = pyspiel.load_game(GAME)
  with torch.no_grad():
    q = critic.net(t.tensors).masked_fill(~t.legal_mask, -torch.inf)
  greedy = torch.nn.functional.one_hot(q.argmax(-1), t.legal_mask.shape[1]).double()
  mixer, responder = os_policy.TabularPolicy(game), os_policy.TabularPolicy(game)
  for i, key in enumerate(t.keys):
    for pol, src in ((mixer, pi_actor), (responder, greedy)):
      pol.policy_for_key(key)[:] = src[i].numpy()
  want = 0.0
  for m in (0, 1):  # the mixer in seat m, the responder in seat 1 - m
    seats = [mixer, responder] if m == 0 else [responder, mixer]
    want += 0.5 * policy_value(game.new_initial_state(), seats)[1 - m]
  assert abs(mean - want) < 4 * math.sqrt(var), (mean, want, math.sqrt(var))
  assert want <= os_exploitability.exploitability(game, mixer) + 1e-9


def test_a_checkpoint_without_br_critics_deployment_critics_is_named():
  """A br_critic checkpoint written without the deployment critics cannot resume silently."""
  learner, ad = _learner("discrete", strategy="br_critic")
  learner.step()
  state = ad.state_dict()
  state.pop("br_gate")
  with pytest.raises(ValueError, match="deployment critics.*policy_mixer.deploy: average"):
    ad.load_state_dict(state)


def test_best_measured_measures_its_candidates_again_on_the_parts_it_deploys():
  """update_every = 3: at the epochs between updates the parts have moved, and the deployed
  lambda is the least exploitable of the update's candidates on the parts deployed now
  (exact NashConv); at the update's own epoch it is the update's choice. The training is
  the same whether or not anything was deployed in between."""
  from armac_spiel import evaluation

  def make():
    adapter = Scheduler(_suite(update_every=3), GAME, 0, "cpu", "discrete")
    return ARMAC(GAME, config_lib.ARMACConfig(**TINY), seed=0, scheduler=adapter), adapter

  learner, ad = make()
  twin, _ = make()
  refreshed = 0
  for epoch in range(1, 13):
    learner.step()
    twin.step()
    if ad.deployment.chosen is None:
      continue
    at_update = ad.deployment.chosen_at == learner.epoch
    lam = ad.deployed_lambda(learner)
    names = [("iterate", lam_i) for _, lam_i in ad.deployment.iterates] + [
        ("current", ad.current_lambda(learner)), ("average", ad.average_lambda(learner)),
        ("actor", torch.zeros_like(lam))]
    ncs = [evaluation.fast_exploitability(GAME, ad.mixed_table(learner, c)[0])[1]
           for _, c in names]
    got = evaluation.fast_exploitability(GAME, ad.mixed_table(learner, lam)[0])[1]
    if not at_update:
      refreshed += 1
      assert got == pytest.approx(min(ncs), abs=1e-12)
    assert ad.deployment.chosen_at == learner.epoch
  assert refreshed >= 4
  for a, b in zip(learner.regret.parameters(), twin.regret.parameters()):
    assert torch.equal(a, b)
  for a, b in zip(learner.actor.parameters(), twin.actor.parameters()):
    assert torch.equal(a, b)
