"""OpenSpiel's own algorithms behind one run interface, logging ARMAC's metrics schema:
CFR+ (`cfr_plus`), ES- and OS-MCCFR (`es_mccfr`, `os_mccfr`), Deep CFR (`deep_cfr`) and NFSP
(`nfsp`), each described in its module.

Units of `episodes` (cumulative):
- cfr_plus: full tree traversals, one per iteration (`episodes == iterations`);
- es_mccfr: sampled traversals, `num_players` per iteration;
- os_mccfr: sampled episodes, `num_players` per iteration;
- deep_cfr: sampled traversals, `num_players * num_traversals` per iteration;
- nfsp: played episodes.

Every call into OpenSpiel code that draws from the global Python/NumPy/torch generators
(Deep CFR and NFSP: sampling, buffers, network initialisation; OpenSpiel's constructors
also call `set_seed` on the global state) runs inside the baseline's private copy of those
generator states, so a fixed seed gives the same run regardless of what else runs in the
process, and evaluation never perturbs training.

Checkpoints (`state_dict`) are plain data (armac_spiel.safe_load): ES-MCCFR's C++ solver as
its own serialisation string; Deep CFR and NFSP as network and optimizer state_dicts,
memories as tensors of their filled rows, counters, and generator states as lists and
tensors; `load_state_dict` rebuilds the objects, and training continues exactly.

Each learner sits beside its hyper-parameters (a `BaselineParams`, armac_spiel.params):
cfr_plus.py, mccfr.py (ES and OS), deep_cfr.py, nfsp.py; base.py holds the `Baseline`
interface, state.py the plain-data forms of generator states and OpenSpiel's buffers.
"""

from __future__ import annotations

from armac_spiel.baselines.base import Baseline, BaselineParams
from armac_spiel.baselines.cfr_plus import CFRPlus, CFRPlusParams
from armac_spiel.baselines.deep_cfr import DeepCFR, DeepCFRParams
from armac_spiel.baselines.mccfr import ESMCCFR, OSMCCFR, ESMCCFRParams, OSMCCFRParams
from armac_spiel.baselines.nfsp import NFSP, NFSPParams
from armac_spiel.params import ConfigError

__all__ = ["BASELINES", "CFRPlus", "CFRPlusParams", "Baseline", "BaselineParams", "DeepCFR",
           "DeepCFRParams", "ESMCCFR", "ESMCCFRParams", "NFSP", "NFSPParams", "OSMCCFR",
           "OSMCCFRParams", "make_baseline"]

BASELINES = {"cfr_plus": CFRPlus, "es_mccfr": ESMCCFR, "os_mccfr": OSMCCFR,
             "deep_cfr": DeepCFR, "nfsp": NFSP}


def make_baseline(name: str, game_string: str, seed: int, device: str = "cpu",
                  **hp) -> Baseline:
  if name not in BASELINES:
    raise ConfigError(f"unknown baseline algo {name!r}; allowed: {sorted(BASELINES)}")
  return BASELINES[name](game_string, seed, device, **hp)
