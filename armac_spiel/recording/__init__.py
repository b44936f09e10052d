"""Deterministic replay of ARMAC training: recording (`record`) and verification (`verify`).

The file format is described in `armac_spiel.recording.format`.
"""

from armac_spiel.recording.format import (FORMAT, POLICY_FORMAT, ReplayError, file_name,
                                          params_hash, policy_name, read_replay_tolerance,
                                          replay_files, selected, write_replay_tolerance)
from armac_spiel.recording.record import (RecorderConfig, ReplayRecorder, policy_checkpoint,
                                          resolve_recorder)
from armac_spiel.recording.verify import Mismatch, VerifyResult, verify

__all__ = ["FORMAT", "POLICY_FORMAT", "Mismatch", "RecorderConfig", "ReplayError",
           "ReplayRecorder", "VerifyResult", "file_name", "params_hash", "policy_checkpoint",
           "policy_name", "read_replay_tolerance", "replay_files", "resolve_recorder",
           "selected", "verify", "write_replay_tolerance"]
