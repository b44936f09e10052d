"""Fault-injection soak of the run layer: SIGKILL at random moments and ENOSPC/EIO in writes.

  python -m experiments.soak --out=soak.json [--kills=20] [--seed=0] [--work_dir=DIR]

Two runs, each first trained once uninterrupted (the reference) and then again, same seed,
in a directory where every training process is ended by a fault and the next one resumes
(`--resume`, as experiments.train):
- `armac_leduc`: ARMAC on Leduc poker (small networks and replays, 40 epochs, a checkpoint
  after every epoch), and `es_mccfr_leduc`: ES-MCCFR on Leduc poker (60 steps, a checkpoint
  every 2);
- `--kills` SIGKILLs per run at random progress points: half of them (at random) inside a
  checkpoint write, paused there by armac_spiel.atomic's write hook at one of its stages
  (temp file opened, data written, fsynced, renamed), the others at a random time within a
  step after a random step;
- four I/O faults per run, between the kills: ENOSPC in a checkpoint write (its temp file
  on /dev/full), EIO in a checkpoint write (at the fsync), and ENOSPC and EIO in a metrics
  append (half the line written first). The process must stop with an error naming the file
  and the cause, the previous checkpoint byte-identical (checkpoint faults) or loadable
  (metrics faults), no temp file and no partial metrics line, and the next process must
  resume.

The final metrics.jsonl (fields other than rundir.TIMING_FIELDS), policy.json and
checkpoint (learner state, counters and pending line; clock seconds excluded) are compared
with the reference. The JSON written to --out has, per run and in `total`: kills,
resumes (processes started after a kill), resumes_ok (they resumed and trained on),
records_lost and duplicates (metrics lines missing or repeated), mismatched_fields,
io_faults and io_faults_survived; `events` lists what happened to every process.
"""

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Where to write the JSON report.")
flags.DEFINE_integer("kills", 20, "SIGKILLs per run.")
flags.DEFINE_integer("seed", 0, "Seed of the runs and of the fault schedule.")
flags.DEFINE_string("work_dir", None, "Directory for the runs (default: a temporary one, "
                    "deleted at the end).")
flags.DEFINE_list("runs", ["armac_leduc", "es_mccfr_leduc"], "Which runs to soak.")
flags.DEFINE_string("child", None, "Internal: the JSON task of one training process.")

SMALL_ARMAC = dict(episodes_per_epoch=256, groups_per_epoch=8, current_groups=2,
                   critic_steps=4, regret_steps=8, actor_steps=4, critic_batch_episodes=128,
                   regret_batch=512, actor_batch=512, regret_replay=50000,
                   actor_replay=20000, max_snapshots=8, critic_hidden=[32, 32],
                   regret_hidden=[32, 32], actor_hidden=[32, 32])
RUNS = {
    "armac_leduc": dict(algo="armac", game="leduc_poker", sets=SMALL_ARMAC, max_steps=40,
                        eval_every=1),
    "es_mccfr_leduc": dict(algo="es_mccfr", game="leduc_poker", sets={}, max_steps=60,
                           eval_every=2),
}
STAGES = ("opened", "written", "synced", "renamed")
IO_FAULTS = (("checkpoint", "ENOSPC"), ("checkpoint", "EIO"), ("metrics", "ENOSPC"),
             ("metrics", "EIO"))
CHILD_TIMEOUT_S = 900


# ------------------------------------------------------------------ the training process
def _touch(path: str, text: str = "") -> None:
  with open(path, "w") as f:
    f.write(text)


def _sha(path: str) -> str | None:
  if not os.path.exists(path):
    return None
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def child_main(task: dict) -> int:
  """One training process: resume the run, train, and meet the task's event."""
  from armac_spiel import atomic, runs
  from armac_spiel.runs import rundir
  from armac_spiel.runs.lock import RunLock
  torch.set_num_threads(1)
  r, ctl, ev = RUNS[task["run"]], task["ctl"], task.get("event") or {}
  out = task["out_dir"]
  ckpt = os.path.join(out, rundir.CHECKPOINT)
  start = rundir.load_checkpoint(ckpt)["clock"]["steps"] if os.path.exists(ckpt) else 0
  _touch(os.path.join(ctl, "start.json"), json.dumps({"step": start, "pid": os.getpid()}))
  state = {"step": start, "fired": False}
  kind, at = ev.get("kind"), ev.get("step", 0)

  def armed(target: str) -> bool:
    return (kind == "fault" and ev["target"] == target and not state["fired"] and
            state["step"] >= at)

  def fire() -> None:
    state["fired"] = True
    _touch(os.path.join(ctl, "fault.json"), json.dumps({"step": state["step"],
                                                        "checkpoint_sha256": _sha(ckpt)}))

  def on_step(learner) -> None:
    state["step"] += 1
    if kind == "time" and state["step"] >= at and not state.get("told"):
      state["told"] = True
      _touch(os.path.join(ctl, "reached"))

  def hook(stage: str, path: str) -> None:
    if not path.endswith(rundir.CHECKPOINT):
      return
    if kind == "pause" and stage == ev["stage"] and state["step"] >= at:
      _touch(os.path.join(ctl, "paused"))
      time.sleep(3600)  # until the soak kills this process
    if stage == "written" and armed("checkpoint") and ev["errno"] == "EIO":
      fire()
      raise OSError(errno.EIO, os.strerror(errno.EIO))  # as a failing fsync would

  real_mkstemp = atomic.tempfile.mkstemp

  def mkstemp(**kw):
    fd, path = real_mkstemp(**kw)
    if (kw.get("prefix", "").startswith(".tmp-" + rundir.CHECKPOINT) and
        armed("checkpoint") and ev["errno"] == "ENOSPC"):
      fire()
      full = os.open("/dev/full", os.O_WRONLY)  # every write of the temp file: ENOSPC
      os.dup2(full, fd)
      os.close(full)
    return fd, path

  real_write = rundir.MetricsLog.write

  def metrics_write(log, record):
    if not armed("metrics"):
      return real_write(log, record)
    fire()
    f, code = log._f, getattr(errno, ev["errno"])  # pylint: disable=protected-access

    class HalfThenFail:
      def write(self, data):
        f.write(data[:len(data) // 2])
        raise OSError(code, os.strerror(code))

      def __getattr__(self, k):
        return getattr(f, k)

    log._f = HalfThenFail()  # pylint: disable=protected-access
    try:
      return real_write(log, record)
    finally:
      log._f = f  # pylint: disable=protected-access

  atomic.set_write_hook(hook)
  atomic.tempfile.mkstemp = mkstemp
  rundir.MetricsLog.write = metrics_write
  spec = runs.resolve_spec(r["algo"], r["game"], task["seed"], out, sets=dict(r["sets"]),
                           max_steps=r["max_steps"], eval_every=r["eval_every"],
                           device="cpu", resume=True, plot=False)
  try:
    with RunLock(out):
      runs.run(spec, on_step=on_step)
  except OSError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    return 1
  return 0


# ------------------------------------------------------------------ the soak
def _spawn(task: dict, log_path: str) -> subprocess.Popen:
  with open(log_path, "ab") as log:
    return subprocess.Popen([sys.executable, "-m", "experiments.soak",
                             "--child=" + json.dumps(task)], stdout=log,
                            stderr=subprocess.STDOUT, cwd=_REPO)


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _wait(proc: subprocess.Popen, ctl: str, marker: str | None, timeout: float) -> bool:
  """True when `marker` appeared in `ctl` while `proc` runs; False when it exited first."""
  end = time.time() + timeout
  while time.time() < end:
    if marker is not None and os.path.exists(os.path.join(ctl, marker)):
      return True
    if proc.poll() is not None:
      return marker is not None and os.path.exists(os.path.join(ctl, marker))
    time.sleep(0.02)
  proc.kill()
  proc.wait()
  raise TimeoutError(f"a training process ran past {timeout} s")


def _kill(proc: subprocess.Popen) -> bool:
  if proc.poll() is not None:
    return False
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return proc.returncode == -signal.SIGKILL


def _schedule(rng: np.random.Generator, n_kills: int, max_steps: int) -> list[dict]:
  """Kill and I/O-fault events at sorted random progress points, in random order."""
  events = []
  for _ in range(n_kills):
    if rng.random() < 0.5:
      events.append({"kind": "pause", "stage": STAGES[int(rng.integers(len(STAGES)))]})
    else:
      events.append({"kind": "time"})
  for target, code in IO_FAULTS:
    events.append({"kind": "fault", "target": target, "errno": code})
  order = rng.permutation(len(events))
  steps = np.sort(rng.integers(1, max_steps - 1, size=len(events)))
  return [{**events[i], "step": int(s)} for i, s in zip(order, steps)]


def _strip(row: dict, timing) -> dict:
  return {k: v for k, v in row.items() if k not in timing}


def _openspiel_state(text: str):
  """An OpenSpiel solver's `Serialize` text (the ES-MCCFR checkpoint) as {section: text},
  with the values table as a dict: the table's order is a hash map's, which differs after
  a round trip. None if `text` is not one."""
  if not text.startswith("# Automatically generated by OpenSpiel"):
    return None
  out, name = {}, None
  for line in text.split("\n"):
    if line.startswith("[") and line.endswith("]") and "<~>" not in line:
      name = line
      out[name] = []
    elif name is not None:
      out[name].append(line)
  table = "\n".join(out.pop("[SolverValuesTable]", [])).strip()
  parts = table.split("<~>") if table else []
  out = {k: "\n".join(v) for k, v in out.items()}
  out["[SolverValuesTable]"] = dict(zip(parts[0::2], parts[1::2]))
  return out


def _diff(a, b, path: str = "") -> list[str]:
  """Leaves where two checkpoint or JSON trees differ (tensors compared exactly)."""
  if isinstance(a, str) and isinstance(b, str) and a != b:
    sa, sb = _openspiel_state(a), _openspiel_state(b)
    if sa is not None and sb is not None:
      return _diff(sa, sb, path)
  if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
    ok = (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype
          and a.shape == b.shape and torch.equal(a, b))
    return [] if ok else [path]
  if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
    return [] if np.array_equal(np.asarray(a), np.asarray(b)) else [path]
  if isinstance(a, dict) and isinstance(b, dict):
    out = []
    for k in sorted(set(a) | set(b), key=str):
      if k not in a or k not in b:
        out.append(f"{path}/{k}")
      else:
        out += _diff(a[k], b[k], f"{path}/{k}")
    return out
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    if len(a) != len(b):
      return [path]
    return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}/{i}")]
  if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
    return []
  return [] if a == b else [path]


def compare(ref_dir: str, run_dir: str) -> dict:
  """Lost, duplicated and mismatched records of `run_dir` against `ref_dir`."""
  from armac_spiel.runs import rundir
  timing = set(rundir.TIMING_FIELDS)
  ref = rundir.read_metrics(os.path.join(ref_dir, rundir.METRICS))
  got = rundir.read_metrics(os.path.join(run_dir, rundir.METRICS))
  key = "epoch" if ref and "epoch" in ref[0] else "step"
  want = {r[key]: _strip(r, timing) for r in ref}
  seen: dict = {}
  for r in got:
    seen.setdefault(r[key], []).append(_strip(r, timing))
  lost = sorted(k for k in want if k not in seen)
  dups = sum(len(v) - 1 for v in seen.values()) + sum(1 for k in seen if k not in want)
  mism = []
  for k, rows in seen.items():
    if k in want:
      mism += [f"metrics[{key}={k}]{d}" for d in _diff(want[k], rows[0])]
  with open(os.path.join(ref_dir, "policy.json")) as f:
    pol_ref = json.load(f)
  with open(os.path.join(run_dir, "policy.json")) as f:
    pol = json.load(f)
  mism += ["policy.json" + d for d in _diff(pol_ref, pol)]
  ck_ref = rundir.load_checkpoint(os.path.join(ref_dir, rundir.CHECKPOINT))
  ck = rundir.load_checkpoint(os.path.join(run_dir, rundir.CHECKPOINT))
  clock_t = ("train_s", "eval_s", "last_eval_train_s")
  for part in ("learner", "spec"):
    mism += [f"checkpoint/{part}{d}" for d in _diff(ck_ref[part], ck[part])]
  mism += ["checkpoint/clock" + d for d in _diff(_strip(ck_ref["clock"], clock_t),
                                                 _strip(ck["clock"], clock_t))]
  mism += ["checkpoint/pending" + d for d in _diff(_strip(ck_ref["pending"], timing),
                                                   _strip(ck["pending"], timing))]
  return {"records": len(got), "records_ref": len(ref), "records_lost": len(lost),
          "duplicates": dups, "mismatched_fields": len(mism), "mismatches": mism[:20]}


def _fault_ok(ev: dict, rc: int, log_text: str, fault: dict | None, run_dir: str) -> dict:
  from armac_spiel.runs import rundir
  ckpt = os.path.join(run_dir, rundir.CHECKPOINT)
  name = rundir.CHECKPOINT if ev["target"] == "checkpoint" else rundir.METRICS
  cause = os.strerror(getattr(errno, ev["errno"]))
  checks = {"fired": fault is not None, "exit_status_1": rc == 1,
            "clear_error": f"{name} ({cause})" in log_text and "error: " in log_text}
  try:
    rundir.load_checkpoint(ckpt)
    checks["checkpoint_loadable"] = True
  except rundir.CheckpointError:
    checks["checkpoint_loadable"] = False
  if ev["target"] == "checkpoint":
    checks["checkpoint_unchanged"] = fault is not None and _sha(ckpt) == \
        fault["checkpoint_sha256"]
  checks["no_temp_file"] = not [n for n in os.listdir(run_dir) if n.startswith(".tmp-")]
  with open(os.path.join(run_dir, rundir.METRICS), "rb") as f:
    data = f.read()
  checks["no_partial_metrics_line"] = not data or data.endswith(b"\n")
  return checks


def soak_run(name: str, root: str, seed: int, n_kills: int, rng) -> dict:
  r = RUNS[name]
  base = os.path.join(root, name)
  ref_dir, run_dir, ctl = (os.path.join(base, d) for d in ("reference", "soaked", "ctl"))
  logs = os.path.join(base, "logs")
  os.makedirs(logs, exist_ok=True)
  os.makedirs(ctl, exist_ok=True)
  t0 = time.time()
  proc = _spawn({"run": name, "out_dir": ref_dir, "ctl": ctl, "seed": seed},
                os.path.join(logs, "reference.log"))
  _wait(proc, ctl, None, CHILD_TIMEOUT_S)
  if proc.returncode != 0:
    raise RuntimeError(f"{name}: the reference run failed; see {logs}/reference.log")
  per_step = (time.time() - t0) / r["max_steps"]
  res = {"kills": 0, "resumes": 0, "resumes_ok": 0, "io_faults": 0, "io_faults_survived": 0,
         "events": []}
  after_kill = after_fault = None  # the event the running process resumes after
  plan = _schedule(rng, n_kills, r["max_steps"]) + [{"kind": "finish"}]
  for i, ev in enumerate(plan):
    shutil.rmtree(ctl)
    os.makedirs(ctl)
    log_path = os.path.join(logs, f"process-{i:02d}.log")
    proc = _spawn({"run": name, "out_dir": run_dir, "ctl": ctl, "seed": seed, "event": ev},
                  log_path)
    rec = dict(ev)
    if ev["kind"] == "pause":
      reached = _wait(proc, ctl, "paused", CHILD_TIMEOUT_S)
      rec["killed"] = reached and _kill(proc)
    elif ev["kind"] == "time":
      reached = _wait(proc, ctl, "reached", CHILD_TIMEOUT_S)
      if reached:
        rec["delay_s"] = float(rng.uniform(0, per_step))
        time.sleep(rec["delay_s"])
      rec["killed"] = reached and _kill(proc)
    else:
      _wait(proc, ctl, None, CHILD_TIMEOUT_S)
      reached = proc.returncode == 0 if ev["kind"] == "finish" else os.path.exists(
          os.path.join(ctl, "fault.json"))
    rc = proc.wait()
    with open(log_path, errors="replace") as f:
      text = f.read()
    started = os.path.exists(os.path.join(ctl, "start.json"))
    if started:
      with open(os.path.join(ctl, "start.json")) as f:
        rec["resumed_from_step"] = json.load(f)["step"]
    rec["exit"] = rc
    # The process resumed and trained on: it met its event (or finished).
    resumed_ok = started and reached
    if after_kill is not None:
      res["resumes"] += 1
      res["resumes_ok"] += int(resumed_ok)
      rec["resume_ok"] = resumed_ok
    if after_fault is not None:
      after_fault["resumed_after"] = resumed_ok
      res["io_faults_survived"] += int(resumed_ok and all(after_fault["checks"].values()))
    after_kill = after_fault = None
    if ev["kind"] in ("pause", "time"):
      res["kills"] += int(rec["killed"])
      after_kill = rec if rec["killed"] else None
      if not rec["killed"]:
        rec["note"] = "the process ended before the kill; " + text[-300:]
    elif ev["kind"] == "fault":
      res["io_faults"] += 1
      fault = None
      if os.path.exists(os.path.join(ctl, "fault.json")):
        with open(os.path.join(ctl, "fault.json")) as f:
          fault = json.load(f)
      rec["checks"] = _fault_ok(ev, rc, text, fault, run_dir)
      rec["error"] = next((l for l in text.splitlines() if l.startswith("error: ")), None)
      after_fault = rec
    elif rc != 0:
      rec["note"] = text[-2000:]
    res["events"].append(rec)
  if plan[-1]["kind"] == "finish" and res["events"][-1]["exit"] != 0:
    raise RuntimeError(f"{name}: the last process did not finish; see {logs}")
  res.update(compare(ref_dir, run_dir))
  res["wall_s"] = time.time() - t0
  return res


def main(argv):
  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}", file=sys.stderr)
    return 2
  if FLAGS.child:
    return child_main(json.loads(FLAGS.child))
  if not FLAGS.out:
    print("error: --out is required", file=sys.stderr)
    return 2
  bad = [r for r in FLAGS.runs if r not in RUNS]
  if bad or FLAGS.kills < 0:
    print(f"error: --runs must be in {sorted(RUNS)} and --kills >= 0", file=sys.stderr)
    return 2
  root = FLAGS.work_dir or tempfile.mkdtemp(prefix="armac-soak-")
  rng = np.random.default_rng(FLAGS.seed)
  report = {"seed": FLAGS.seed, "kills_per_run": FLAGS.kills, "work_dir": root, "runs": {}}
  try:
    for name in FLAGS.runs:
      report["runs"][name] = soak_run(name, root, FLAGS.seed, FLAGS.kills, rng)
  finally:
    if FLAGS.work_dir is None:
      shutil.rmtree(root, ignore_errors=True)
  keys = ("kills", "resumes", "resumes_ok", "records_lost", "duplicates",
          "mismatched_fields", "io_faults", "io_faults_survived")
  report["total"] = {k: sum(r[k] for r in report["runs"].values()) for k in keys}
  from armac_spiel.atomic import atomic_write_text
  atomic_write_text(FLAGS.out, json.dumps(report, indent=2) + "\n")
  print(json.dumps(report["total"]))
  t = report["total"]
  ok = (t["kills"] == t["resumes"] == t["resumes_ok"] and not t["records_lost"] and
        not t["duplicates"] and not t["mismatched_fields"] and
        t["io_faults"] == t["io_faults_survived"])
  return 0 if ok else 1


if __name__ == "__main__":
  app.run(main)
