"""Ablation sweeps: variants × seeds of one base config, each cell an ordinary run.

spec.py     the sweep file (pydantic, unknown keys refused) → validated cells, every error at once
plan.py     cells + images + manifest → cell ids, the sweep folder, resume from the run store
cell.py     one cell as one run (`python -m reproexec.sweep.cell`, or a Slurm job through submitit)
local.py    the local executor: cells in sequence, or N at a time on their own cpusets
slurm.py    the Slurm executor: one job array through submitit, states from squeue/sacct, scancel
stats.py    per-variant statistics and paired tests against the baseline (SciPy)
report.py   report.html, summary.csv and the Markdown table; the runs-side-by-side table
core.py     run_sweep / sweep_status: what the CLI calls
"""
