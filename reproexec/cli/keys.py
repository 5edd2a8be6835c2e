"""`reproexec keys init | show`: this user's signing key (reproexec/keys.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from reproexec import console

app = typer.Typer(help="Your signing key: runs you make are signed with it, offline.", no_args_is_help=True)


@app.command("init")
def init(force: Annotated[bool, typer.Option("--force", help="Replace an existing key.")] = False) -> None:
    """Make a signing key pair under $XDG_CONFIG_HOME/reproexec/ (private key 0600, never in a run)."""
    from reproexec.keys import PUBLIC_KEY, init_keys, key_dir

    key = init_keys(force=force)
    console.success(f"signing key made: {key_dir() / PUBLIC_KEY} is the public key to share")
    console.key_values([("key id", key.keyid)])


@app.command("show")
def show() -> None:
    """Print this user's key id and public key, for a reviewer to pass to `verify --signed-by`."""
    from reproexec.errors import ConfigError
    from reproexec.keys import own_public_key

    key = own_public_key()
    if key is None:
        raise ConfigError("no signing key yet", "make one with `reproexec keys init`")
    console.key_values([("key id", key.keyid)])
    console.data(key.pem.decode().rstrip())
