"""Live progress for long jobs: a tqdm bar on a terminal, plain periodic lines otherwise.

`Progress` follows a training run from its metrics lines (epoch or step, train_s,
episodes_per_s, exploitability): the bar counts training seconds against a time budget (or
steps, ARMAC's epochs, against a step budget) and shows the ETA; it is a logger of the run
loop (`write(line)`, `close()`). `SweepProgress` counts the runs of a sweep
(done, running, failed, remaining). `Bar` is the generic piece for benchmarks.

When the stream is not a terminal (CI, a log file, a pipe) no bar is drawn: a plain line,
without control characters, is printed at most every `interval_s` seconds and once at the
end. `log_to_file` sends absl logging to a file in the run directory and keeps only warnings
on the terminal, so that the bar stays readable.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Optional, TextIO

PLAIN_INTERVAL_S = 10.0


def is_tty(stream) -> bool:
  try:
    return bool(stream.isatty())
  except (AttributeError, ValueError):
    return False


def format_duration(s: Optional[float]) -> str:
  """'1h02m', '3m07s', '42s', or '?' when unknown."""
  if s is None or not math.isfinite(s) or s < 0:
    return "?"
  s = int(round(s))
  if s >= 3600:
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
  if s >= 60:
    return f"{s // 60}m{s % 60:02d}s"
  return f"{s}s"


class Bar:
  """A count towards `total` with a text postfix: tqdm on a terminal, plain lines otherwise.

  `tty=None` asks the stream; tests and callers may force either mode.
  """

  def __init__(self, desc: str, total: Optional[float], unit: str = "it",
               stream: Optional[TextIO] = None, tty: Optional[bool] = None,
               interval_s: float = PLAIN_INTERVAL_S, clock=time.monotonic):
    self.desc = desc
    self.total = total
    self.unit = unit
    self.stream = stream if stream is not None else sys.stdout
    self.tty = is_tty(self.stream) if tty is None else tty
    self.interval_s = interval_s
    self._clock = clock
    self._t0 = clock()
    self._last_print = None
    self._printed = None
    self._n0 = None  # count at the first update (a resumed run starts above 0)
    self.n = 0.0
    self.postfix = ""
    self._closed = False
    self._tqdm = None
    if self.tty:
      from tqdm.auto import tqdm
      fmt = ("{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} " + unit +
             " [{elapsed}{postfix}]")
      self._tqdm = tqdm(total=total, desc=desc, file=self.stream, dynamic_ncols=True,
                        bar_format=fmt if total else None, unit=unit, leave=True,
                        mininterval=0.5)

  def eta_s(self) -> Optional[float]:
    """Wall seconds left, from the rate since the first update."""
    if not self.total or self._n0 is None:
      return None
    done = self.n - self._n0
    dt = self._clock() - self._t0
    if done <= 0 or dt <= 0:
      return None
    return max(self.total - self.n, 0.0) * dt / done

  def update(self, n: float, postfix: str = "") -> None:
    """Sets the count to `n` (absolute) and the postfix text."""
    if self._closed:
      return
    if self._n0 is None:
      self._n0 = n
      self._t0 = self._clock()
    self.n = n
    self.postfix = postfix
    if self._tqdm is not None:
      eta = f"eta {format_duration(self.eta_s())}" if self.total else ""
      self._tqdm.set_postfix_str("  ".join(x for x in (eta, postfix) if x), refresh=False)
      self._tqdm.n = min(n, self.total) if self.total else n
      self._tqdm.refresh()
      return
    now = self._clock()
    if self._last_print is None or now - self._last_print >= self.interval_s:
      self._print_line()
      self._last_print = now

  def line(self) -> str:
    """The plain progress line (no control characters)."""
    if self.total:
      pct = 100.0 * min(self.n / self.total, 1.0)
      count = f"{self.n:.0f}/{self.total:.0f} {self.unit} ({pct:3.0f}%)"
    else:
      count = f"{self.n:.0f} {self.unit}"
    parts = [f"{self.desc}: {count}", f"elapsed {format_duration(self._clock() - self._t0)}"]
    if self.total:
      parts.append(f"eta {format_duration(self.eta_s())}")
    if self.postfix:
      parts.append(self.postfix)
    return "  ".join(parts)

  def _print_line(self) -> None:
    self.stream.write(self.line() + "\n")
    self.stream.flush()
    self._printed = (self.n, self.postfix)

  def write(self, text: str) -> None:
    """Prints a message above the bar (or as a plain line)."""
    if self._tqdm is not None:
      self._tqdm.write(text, file=self.stream)
    else:
      self.stream.write(text + "\n")
      self.stream.flush()

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    if self._tqdm is not None:
      self._tqdm.close()
    elif self._n0 is not None and self._printed != (self.n, self.postfix):
      self._print_line()  # the final state, unless it was the last line printed

  def __enter__(self):
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _fmt_num(x) -> Optional[str]:
  if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
    return None
  return f"{x:.4f}" if isinstance(x, float) else f"{x:,}"


class Progress:
  """Training progress from metrics lines: seconds of training against the time budget, or
  epochs against the epoch budget, with epoch, episodes/s and the last exploitability."""

  def __init__(self, desc: str = "train", stream: Optional[TextIO] = None,
               tty: Optional[bool] = None, interval_s: float = PLAIN_INTERVAL_S,
               clock=time.monotonic):
    self.desc = desc
    self._kw = dict(stream=stream, tty=tty, interval_s=interval_s, clock=clock)
    self.bar: Optional[Bar] = None
    self.by = None
    self.last: dict = {}

  def start(self, total_s: Optional[float] = None, total_steps: Optional[int] = None,
            total_epochs: Optional[int] = None) -> "Progress":
    """Counts training seconds when `total_s` is given, else steps (ARMAC: epochs)."""
    total_steps = total_steps if total_steps is not None else total_epochs
    if total_s:
      self.by, total, unit = "train_s", float(total_s), "s"
    else:
      self.by, total, unit = "steps", (float(total_steps) if total_steps else None), "steps"
    self.bar = Bar(self.desc, total, unit, **self._kw)
    return self

  @staticmethod
  def _steps(line: dict):
    """(label, count): ARMAC lines count epochs, the other learners steps."""
    for key in ("epoch", "step"):
      if isinstance(line.get(key), (int, float)) and not isinstance(line.get(key), bool):
        return key, line[key]
    return None, None

  def update(self, line: dict) -> None:
    """One metrics line (keys read: epoch or step, train_s, episodes_per_s,
    exploitability, else nash_conv)."""
    if self.bar is None:
      self.start()
    self.last = line
    parts = []
    label, steps = self._steps(line)
    if label is not None:
      parts.append(f"{label} {steps}")
    if self.by == "steps" and isinstance(line.get("train_s"), (int, float)):
      parts.append(f"train {line['train_s']:.0f}s")
    eps = line.get("episodes_per_s")
    if isinstance(eps, (int, float)) and math.isfinite(eps) and eps > 0:
      parts.append(f"{eps:,.0f} eps/s")
    for key, label in (("exploitability", "expl"), ("nash_conv", "nash_conv")):
      v = _fmt_num(line.get(key))
      if v is not None:
        parts.append(f"{label} {v}")
        break
    n = steps if self.by == "steps" else line.get(self.by)
    if not isinstance(n, (int, float)):
      n = self.bar.n
    self.bar.update(float(n), "  ".join(parts))

  def write(self, line: dict) -> None:
    """The run loop's logger interface: one metrics line."""
    self.update(line)

  def message(self, text: str) -> None:
    """Prints text above the bar (or as a plain line)."""
    if self.bar is not None:
      self.bar.write(text)
    else:
      stream = self._kw["stream"] or sys.stdout
      stream.write(text + "\n")

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def for_run(spec, stream: Optional[TextIO] = None, tty: Optional[bool] = None) -> Progress:
  """A started Progress for a RunSpec: its time budget in seconds, else its step budget."""
  p = Progress(desc=f"{spec.algo} {spec.game}", stream=stream, tty=tty)
  return p.start(total_s=spec.time_budget_s, total_steps=spec.max_steps)


class SweepProgress:
  """Runs of a sweep: done, running, failed and remaining, with an ETA from the runs finished
  since the first update (runs skipped as already done do not count towards the rate)."""

  def __init__(self, total_runs: int, desc: str = "sweep", stream: Optional[TextIO] = None,
               tty: Optional[bool] = None, interval_s: float = PLAIN_INTERVAL_S,
               clock=time.monotonic):
    self.total = total_runs
    self.bar = Bar(desc, float(total_runs), "runs", stream=stream, tty=tty,
                   interval_s=interval_s, clock=clock)
    self.counts = {"done": 0, "running": 0, "failed": 0}

  def update(self, done: int, running: int, failed: int) -> None:
    self.counts = {"done": done, "running": running, "failed": failed}
    remaining = max(self.total - done - running - failed, 0)
    self.bar.update(float(done + failed), f"done {done}  running {running}  failed {failed}  "
                    f"remaining {remaining}")

  def message(self, text: str) -> None:
    self.bar.write(text)

  def close(self) -> None:
    self.bar.close()


def log_to_file(log_dir: str, program: str = "train") -> None:
  """absl logging into `log_dir/<program>.INFO` (all levels); the terminal keeps warnings
  and errors only, unless --stderrthreshold was given."""
  from absl import flags, logging
  os.makedirs(log_dir, exist_ok=True)
  logging.get_absl_handler().use_absl_log_file(program, log_dir)
  fl = flags.FLAGS
  if fl.is_parsed() and "stderrthreshold" in fl and not fl["stderrthreshold"].present:
    fl.stderrthreshold = "warning"
