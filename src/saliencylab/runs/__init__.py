"""A protocol run: its config (presets, `--set`, the hash), the run directory and what is trusted
in it, the jobs and where they run (in-process, worker processes, Ray), the runner and the
report's tables and plots."""
