"""Output files checked before any load is sent: a long search must never end with its result
lost to a missing folder or a read-only path."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from crestline.errors import ConfigError


def check_writable(path: str | os.PathLike, option: str) -> None:
    """Raise ConfigError naming `option` unless `path` can be written: an existing regular file
    we may write, or a new name in a folder that exists and is writable. Creates nothing."""
    text = os.fspath(path)
    if not text:
        raise ConfigError(f"{option}: give a file name")
    if os.path.isdir(text):
        raise ConfigError(f"{option} {text}: is a folder; give a file name inside it")
    if os.path.exists(text):
        if not os.access(text, os.W_OK):
            raise ConfigError(f"{option} {text}: not writable; choose another path or fix "
                              "its permissions")
        return
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise ConfigError(f"{option} {text}: folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {text}: cannot create files in {folder}")


def check_outputs(**paths: str | os.PathLike | None) -> None:
    """check_writable for each given path, by option name: out='r.json' -> --out."""
    for name, path in paths.items():
        if path is not None:
            check_writable(path, "--" + name.replace("_", "-"))


def write_json(path: str | os.PathLike, data: dict, streamed: dict[str, Iterable]) -> None:
    """json.dump(data, indent=2) to path, byte for byte, with each top-level key named in
    `streamed` written from its iterable one item at a time rather than from a list in
    data (whose value there is ignored): an hour-long run's intervals never all exist as
    dicts at once."""
    with open(path, "w") as f:
        f.write("{")
        for n, (key, value) in enumerate(data.items()):
            f.write(("," if n else "") + "\n  " + json.dumps(key) + ": ")
            if key not in streamed:
                f.write(json.dumps(value, indent=2).replace("\n", "\n  "))
                continue
            first = True
            for item in streamed[key]:
                f.write(("[" if first else ",") + "\n    "
                        + json.dumps(item, indent=2).replace("\n", "\n    "))
                first = False
            f.write("[]" if first else "\n  ]")
        f.write("\n}\n" if data else "}\n")
