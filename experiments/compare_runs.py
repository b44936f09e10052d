"""Compare two run directories: metrics lines (timing fields aside) and policy.json.

  python -m experiments.compare_runs RUN_A RUN_B

Prints one JSON line: the number of metrics lines of each, the first line and field that
differ (if any), and whether the policies are bit-identical. Exit 0 when the runs match.
Timing fields (armac_spiel.runs.rundir.TIMING_FIELDS) depend on the machine, not the seed.
"""

import json
import os
import sys

import torch
from absl import app

from armac_spiel.policy_io import import_policy
from armac_spiel.runs import rundir


def compare(a: str, b: str) -> dict:
  ra = rundir.strip_timing(rundir.read_metrics(os.path.join(a, rundir.METRICS)))
  rb = rundir.strip_timing(rundir.read_metrics(os.path.join(b, rundir.METRICS)))
  out = {"lines_a": len(ra), "lines_b": len(rb), "first_difference": None}
  for i, (x, y) in enumerate(zip(ra, rb)):
    keys = sorted(set(x) | set(y))
    diff = [k for k in keys if x.get(k, "<missing>") != y.get(k, "<missing>")]
    if diff:
      out["first_difference"] = {"line": i, "fields": diff,
                                 "a": {k: x.get(k) for k in diff},
                                 "b": {k: y.get(k) for k in diff}}
      break
  pa, pb = os.path.join(a, "policy.json"), os.path.join(b, "policy.json")
  if os.path.exists(pa) and os.path.exists(pb):
    (ga, ta), (gb, tb) = import_policy(pa), import_policy(pb)
    out["policy_equal"] = ga == gb and torch.equal(ta, tb)
  out["match"] = (out["first_difference"] is None and len(ra) == len(rb) and
                  out.get("policy_equal", True))
  return out


def main(argv):
  if len(argv) != 3:
    print("usage: python -m experiments.compare_runs RUN_A RUN_B", file=sys.stderr)
    return 2
  out = compare(argv[1], argv[2])
  print(json.dumps(out))
  return 0 if out["match"] else 1


if __name__ == "__main__":
  app.run(main)
