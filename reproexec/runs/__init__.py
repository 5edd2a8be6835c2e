"""A run's life, from prepare to report, and what comes after it.

prepare.py   everything checked and decided before a run folder exists
arch.py      the run's platform (amd64, arm64), its CPU's numerics class, qemu-user emulation
launch.py    one launcher per runtime (Docker, local): paths, mounts, the process
execute.py   the phases: open the folder, write the inputs, start, stream, wait
finish.py    take in the outputs, decide the status (one place), write the last run.json
reap.py      runs whose reproexec died: their containers removed, their runs marked
store.py     the run store and run.json
outputs.py   what a run wrote, taken in as untrusted input
local.py     the local runtime's process
report.py    report.html and comparison.html
smoke.py     the smoke test
rerun.py     rerun a run: replay its recipe, config and randomness; compare
compare.py   identical, within tolerance, or where two runs part
envdiff.py   every environment difference, and whether it can change numbers
bundle.py    a run (and its base or image) in one file, for another machine
"""
