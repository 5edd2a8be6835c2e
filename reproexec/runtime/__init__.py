"""Code that runs inside the run container: the Randomness box and the trainer.

Nothing here imports typer or docker; it needs torch, torchvision, numpy, pillow, matplotlib and
the config model (pydantic), all of which come from the run's lockfile inside the image. The host
starts it by a fixed interface (runs/launch.py, RUNTIME_PROTOCOL): a rerun starts the reproexec
recorded in the image, so the modules and flags below are kept as they are.

    train.py        entry point of the built-in trainer (`python -m reproexec.runtime.train`), pins the env before torch
    byo.py          entry point of a bring-your-own command (`python -m reproexec.runtime.byo -- CMD`)
    guard.py        wraps either: stops the run when reproexec's stdin closes (reproexec was killed)
    trainer.py      run_training(): plan, train_one_epoch, evaluate, best/last checkpoints, summary
    seeding.py      pinned_environment (no torch), determinism flags, the CPU math pins, error translation
    seeds.py        derive_seed, the hash seed (no torch)
    seedhook.py     seed_everything, and hook/sitecustomize.py: a BYO script's processes seeded at start-up
    datasets.py     imagefolder / CIFAR-10 (restricted unpickler), per-sample seeded augmentation
    model.py        torchvision models by name, sha256-pinned local weights, canonical weights hash
    artifacts.py    atomic, timestamp-free files and plots
    environment.py  environment.json
"""
