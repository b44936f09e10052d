"""Verify a deterministic-replay directory written by `experiments.train --record_replay`.

  python -m experiments.replay_verify DIR [--tolerance=1e-6]

Rebuilds the networks from the policy files, replays every recorded episode on pyspiel and
regenerates each batch from its RNG states (see armac_spiel/recording/verify.py); a record
verified on the machine that wrote it matches bit for bit. The last line on stdout is a JSON
summary: episodes_checked, max_abs_deviation, first_mismatch (null or
{episode, step, field, file, line, detail}). Exit 0: all match; 1: a mismatch; 2: a bad
file (the error, naming file and line, goes to stderr and to the summary's "error").
"""

import argparse
import json
import sys

import torch

from armac_spiel import recording


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m experiments.replay_verify",
                               description="Verify recorded ARMAC episodes.")
  ap.add_argument("dir", help="replay directory (--record_replay of experiments.train)")
  ap.add_argument("--tolerance", type=float, default=None,
                  help="largest allowed absolute deviation of a recomputed float (default: "
                  "the run's deterministic_replay.tolerance, recorded in DIR, else 1e-6)")
  args = ap.parse_args(argv)
  torch.set_num_threads(1)
  try:
    tol = args.tolerance
    if tol is None:
      tol = recording.read_replay_tolerance(args.dir)
    res = recording.verify(args.dir) if tol is None else recording.verify(args.dir, tol)
  except (recording.ReplayError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    print(json.dumps({"episodes_checked": 0, "max_abs_deviation": None,
                      "first_mismatch": None, "error": str(e)}))
    return 2
  fm = res.first_mismatch
  if fm is not None:
    print(f"mismatch: episode {fm.episode} step {fm.step} field {fm.field} "
          f"({fm.file}:{fm.line}): {fm.detail}", file=sys.stderr)
  print(json.dumps(res.summary()))
  return 0 if fm is None else 1


if __name__ == "__main__":
  sys.exit(main())
