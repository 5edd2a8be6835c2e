"""Start-up hook of a bring-your-own run: on PYTHONPATH only for the entrypoint's processes.

Seeds the process (reproexec.runtime.seedhook), then runs the `sitecustomize` this one shadows, if
any, so the interpreter behaves as it would without reproexec.
"""

import os as _os
import sys as _sys

try:
    from reproexec.runtime.seedhook import install as _install
except ImportError:  # another interpreter, without reproexec: nothing to seed here
    _install = None
if _install is not None:
    _install()


def _chain() -> None:
    import importlib.machinery
    import importlib.util

    here = _os.path.dirname(_os.path.abspath(__file__))
    rest = [p for p in _sys.path if _os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.origin and _os.path.abspath(spec.origin) != _os.path.abspath(__file__):
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]


_chain()
