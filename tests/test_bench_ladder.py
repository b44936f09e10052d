"""experiments.bench_ladder end to end on Kuhn: two methods, one seed, a few seconds; the
JSON's keys and values against the runs' metrics, the table and the figure, and a rerun that
skips the finished runs. (In a subprocess: the script's absl flags clash with other
experiments' in-process.)"""

import json
import os
import subprocess
import sys

from armac_spiel.runs import rundir
from tests.conftest import REPO

SECONDS = 2.0


def _bench(*args):
  return subprocess.run([sys.executable, "-m", "experiments.bench_ladder", *args], cwd=REPO,
                        env={**os.environ, "PYTHONPATH": REPO}, capture_output=True,
                        text=True, timeout=240)


def test_bench_ladder_writes_results_table_and_figure(tmp_path):
  root, out = tmp_path / "bench", tmp_path / "F.json"
  args = [f"--out_dir={root}", f"--out={out}", f"--figure={tmp_path / 'F.png'}",
          "--rungs=kuhn", "--methods=armac,os_mccfr", "--seeds=1", f"--seconds={SECONDS}",
          "--ray_address=none"]
  r = _bench(*args)
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.loads(out.read_text())
  for key in ("command", "date", "git_commit", "seconds", "seeds", "checkpoints_s", "rungs"):
    assert key in res, key
  assert res["command"].startswith("python -m experiments.bench_ladder ")
  assert res["seeds"] == [0] and res["eval_every_s"] == SECONDS / 60
  # 60, 300, 600 s scaled to the 2 s budget
  assert res["checkpoints_s"] == [0.2, 1.0, 2.0]
  kuhn = res["rungs"]["kuhn"]
  assert kuhn["game"] == "kuhn_poker"
  assert (kuhn["histories"], kuhn["infostates"]) == (58, 12)
  assert abs(kuhn["uniform_exploitability"] - 0.4583333) < 1e-6  # 11/24
  assert set(kuhn["methods"]) == {"armac", "os_mccfr"}
  for m, mr in kuhn["methods"].items():
    seed = mr["seeds"]["0"]
    assert seed["done"] and seed["error"] is None
    rows = rundir.read_metrics(str(root / "kuhn" / m / "seed_0" / rundir.METRICS))
    assert seed["values"]["2"] == rows[-1]["exploitability"]  # the final evaluation
    assert seed["final_train_s"] >= SECONDS
    for t in ("0.2", "1"):  # the first evaluation at or after t
      first = [r for r in rows if r["train_s"] >= float(t)][0]
      assert seed["read_at_train_s"][t] == first["train_s"]
      assert seed["values"][t] == first["exploitability"] == mr["mean"][t]
    ratio = mr["ratio_to_os_mccfr"]["2"]
    assert ratio == mr["mean"]["2"] / kuhn["methods"]["os_mccfr"]["mean"]["2"]
  assert kuhn["methods"]["os_mccfr"]["ratio_to_os_mccfr"]["2"] == 1.0
  assert kuhn["methods"]["os_mccfr"]["mean"]["2"] < kuhn["uniform_exploitability"]
  table = (tmp_path / "F.md").read_text()
  assert "| kuhn | 58 | 12 |" in table and "OS-MCCFR" in table
  # ARMAC runs the config derived from the game (--armac_config=derived), not Kuhn's YAML
  assert kuhn["methods"]["armac"]["seeds"]["0"]["config_file"] is None
  run_cfg = json.loads((root / "kuhn" / "armac" / "seed_0" / "config.json").read_text())
  assert run_cfg["derived"]["regret_fit"]["value"] == "states"
  assert "kuhn_poker.yaml" not in table
  assert (tmp_path / "F.png").stat().st_size > 10_000

  # A rerun skips the finished runs (sweep.jsonl gains no line) and reads the same values.
  r = _bench(*args)
  assert r.returncode == 0, r.stderr[-3000:]
  assert len((root / "sweep.jsonl").read_text().splitlines()) == 2
  again = json.loads(out.read_text())
  assert again["rungs"]["kuhn"]["methods"] == kuhn["methods"]

  # --plot_only redraws from the JSON alone.
  os.unlink(tmp_path / "F.png")
  r = _bench("--plot_only", f"--out={out}")
  assert r.returncode == 0, r.stderr[-3000:]
  assert (tmp_path / "F.png").exists() and "| kuhn |" in r.stdout


def test_bench_ladder_names_the_bad_flag(tmp_path):
  r = _bench(f"--out_dir={tmp_path}", "--methods=armac,cfr", "--ray_address=none")
  assert r.returncode == 2 and "--methods" in r.stderr and "os_mccfr" in r.stderr
