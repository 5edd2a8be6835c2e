"""Code that runs inside the run container: seeding, data, model, train loop, environment capture.

Nothing here imports typer or docker; it needs torch, torchvision, numpy, pillow, matplotlib and
the config model (pydantic), all of which come from the run's lockfile inside the image.

    train.py        entry point (`python -m reproexec.runtime.train`), pins the env before torch
    trainer.py      run_training(): plan, train_one_epoch, evaluate, best/last checkpoints, summary
    seeding.py      derive_seed, pinned_environment (no torch), determinism flags, error translation
    data.py         imagefolder / CIFAR-10 (restricted unpickler), per-sample seeded augmentation
    model.py        torchvision models by name, sha256-pinned local weights, canonical weights hash
    artifacts.py    atomic, timestamp-free files and plots
    environment.py  environment.json
"""
