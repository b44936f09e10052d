"""Diagnostics: measurements that locate ARMAC's error (critic, W's fit, sampling floor) and
the exact-CFR questions behind its design. Run as `python -m experiments.diagnostics.NAME`."""
