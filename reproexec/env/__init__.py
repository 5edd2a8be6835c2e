"""The Environment box: everything that makes a run image.

spec.py       what an image is made of, as data; the Dockerfile and the content hash
lock.py       the lockfile: exact pins with sha256s (pip-tools)
wheels.py     the locked wheels, downloaded on the host and checked
selfwheel.py  reproexec's own (reproducible) wheel
base.py       the base image: by digest, or made offline, reproducibly (mmdebstrap)
context.py    build contexts as normalized tar streams
build.py      plan and build `reproexec-env:<content hash>`, checked before it is tagged
recipe.py     a run's recorded recipe, rebuilt to the recorded tag by any later reproexec
gc.py         giving back the disk no run needs
"""
