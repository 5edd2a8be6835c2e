"""Code that runs inside the run container: seeding, data, model, train loop, environment capture.

Nothing here imports typer or docker; it needs torch, torchvision, numpy, pillow, matplotlib and
the config model (pydantic), all of which come from the run's lockfile inside the image.
"""
