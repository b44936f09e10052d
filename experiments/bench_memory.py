"""Memory: peak resident set of a training run, and where it goes.

  python -m experiments.bench_memory --out=bench_memory.json \
      [--game_name=leduc_poker --time_budget_s=600 --seed=3 --set=...]

Each measurement runs in a fresh interpreter, so none inherits another's pages:

- `imports`: `import torch, pyspiel` and the training entry point, nothing else: the floor
  every run pays, measured in the same run as the baseline of the ratio;
- `torch_dynamo`: the same plus `import torch._dynamo`, what a torch.optim optimizer would
  add (torch.optim.Optimizer.add_param_group imports it; armac_spiel/optim.py avoids it);
- `phases`: resident memory (VmRSS, and its anonymous and file-backed parts RssAnon and
  RssFile) after the imports, after building the learner and after `--phase_epochs`
  epochs, and the peak (VmHWM, reset before each epoch through /proc/self/clear_refs) of
  each epoch;
- `train`: `python -m experiments.train` with the game's tuned config for
  `--time_budget_s` (evaluations and checkpoints included), its peak resident set from
  wait4's rusage (what `/usr/bin/time -v` prints as "Maximum resident set size"), and the
  size of its checkpoint.

Written: each measurement in kB, `train_over_imports` (the train peak / the import floor)
and the run's provenance. Linux only (/proc).

The file-backed part (torch's and OpenSpiel's shared libraries) is not the run's own: a
page fault maps the neighbouring pages that the page cache already holds, so the same run
reads tens of MB more after other processes have touched more of libtorch (two 60 s Leduc
runs of the same command printed 413 MB and 350 MB peaks on 2026-12-01). Compare runs
measured back to back, and read RssAnon for what the learner itself holds.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from armac_spiel import config as config_lib
from armac_spiel.atomic import atomic_write_text
from armac_spiel.runs import rundir

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "bench_memory.json", "Output JSON path.")
flags.DEFINE_string("game_name", "leduc_poker", "OpenSpiel game string.")
flags.DEFINE_string("algo", "armac", "Algorithm or alias (experiments.train --algo).")
flags.DEFINE_string("sampler", "tree", "experiments.train --sampler.")
flags.DEFINE_integer("seed", 3, "Seed.")
flags.DEFINE_float("time_budget_s", 600.0, "Training seconds of the `train` measurement.")
flags.DEFINE_integer("eval_every", 20, "Epochs between evaluations (and checkpoints).")
flags.DEFINE_integer("phase_epochs", 10, "Epochs of the `phases` measurement.")
flags.DEFINE_multi_string("set", [], "Config overrides KEY=VALUE[,KEY=VALUE...].")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_STATUS = """
def _status():
  out = {}
  with open('/proc/self/status') as f:
    for line in f:
      key, _, value = line.partition(':')
      if key in ('VmRSS', 'VmHWM', 'RssAnon', 'RssFile'):
        out[key] = int(value.split()[0])
  return out
"""

_IMPORTS = "import torch, pyspiel\nimport experiments.train\n"

_PHASES = """
import json
from armac_spiel import runs
torch.set_num_threads(1)  # as experiments.train (--threads=1)
from armac_spiel.runs.loop import build_learner
rows = {{'imports': _status()}}
spec = runs.resolve_spec({algo!r}, {game!r}, {seed}, '/dev/null', sets={sets!r},
                         sampler={sampler!r}, max_steps={epochs})
learner = build_learner(spec, 'cpu')
rows['learner_built'] = _status()
peaks = []
for _ in range({epochs}):
  with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # resets VmHWM to the current resident set
  learner.step()
  peaks.append(_status()['VmHWM'])
rows['epoch_peaks'] = peaks
rows['after_epochs'] = _status()
print(json.dumps(rows))
"""


def _peak_kb(cmd: list[str]) -> tuple[int, float, str]:
  """Runs cmd; (its peak resident set in kB from wait4's rusage, wall seconds, stdout)."""
  t0 = time.perf_counter()
  with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
  if proc.returncode != 0:
    raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-3000:]}")
  return int(usage.ru_maxrss), time.perf_counter() - t0, stdout


def main(argv):
  del argv
  py = sys.executable
  sets = config_lib.parse_sets(FLAGS.set)
  result = {"game": FLAGS.game_name, "algo": FLAGS.algo, "sampler": FLAGS.sampler,
            "seed": FLAGS.seed, "set": FLAGS.set, "provenance": rundir.provenance()}
  result["imports_kb"] = _peak_kb([py, "-c", _IMPORTS])[0]
  result["torch_dynamo_kb"] = _peak_kb([py, "-c", _IMPORTS + "import torch._dynamo\n"])[0]
  phases = _STATUS + _IMPORTS + _PHASES.format(algo=FLAGS.algo, game=FLAGS.game_name, seed=FLAGS.seed,
                          sets=sets, sampler=FLAGS.sampler, epochs=FLAGS.phase_epochs)
  _, _, stdout = _peak_kb([py, "-c", phases])
  result["phases_kb"] = json.loads(stdout.strip().splitlines()[-1])
  with tempfile.TemporaryDirectory() as d:
    out_dir = os.path.join(d, "run")
    cmd = [py, "-m", "experiments.train", f"--algo={FLAGS.algo}",
           f"--game_name={FLAGS.game_name}", f"--sampler={FLAGS.sampler}",
           f"--seed={FLAGS.seed}", f"--time_budget_s={FLAGS.time_budget_s}",
           f"--eval_every={FLAGS.eval_every}", f"--out_dir={out_dir}", "--noprogress",
           "--noplot"] + [f"--set={s}" for s in FLAGS.set]
    peak, wall, _ = _peak_kb(cmd)
    metrics = rundir.read_metrics(os.path.join(out_dir, rundir.METRICS))
    result["train"] = {
        "command": " ".join(cmd[1:]).replace(out_dir, "OUT"), "peak_kb": peak,
        "wall_s": wall, "checkpoint_bytes": os.path.getsize(
            os.path.join(out_dir, rundir.CHECKPOINT)),
        "last": {k: metrics[-1].get(k) for k in ("epoch", "episodes", "train_s",
                                                  "exploitability")}}
  result["train_over_imports"] = result["train"]["peak_kb"] / result["imports_kb"]
  atomic_write_text(FLAGS.out, json.dumps(result, indent=1))
  print(json.dumps({k: v for k, v in result.items() if k != "provenance"}, indent=1))


if __name__ == "__main__":
  app.run(main)
