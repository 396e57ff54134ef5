"""Plug-ins: Python modules that register regimes, samplers or other hooks when imported.

    autophagy run --plugin my_method.py --regime my-regime --generations 5      # a file
    autophagy run --plugin mypackage.mitigation --regime my-regime ...          # a dotted module name

Installed packages can register without a flag through the entry-point group `autophagy.plugins`
(pyproject: `[project.entry-points."autophagy.plugins"] name = "package.module"`); those are loaded
at every start. A plug-in calls `loops.regimes.register_regime` / `loops.samplers.register_sampler`
exactly as the built-ins do; a taken name is refused. `config.json` records `--plugin` values, and a
rerun of that folder without them is refused.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.metadata import entry_points
from pathlib import Path

from autophagy.config import ConfigError

ENTRY_POINT_GROUP = "autophagy.plugins"
_loaded: set[str] = set()


def load_plugin(spec: str) -> None:
    """Import a plug-in by file path or dotted module name (once per process)."""
    if spec in _loaded:
        return
    path = Path(spec).expanduser()
    try:
        if spec.endswith(".py"):
            if not path.is_file():
                raise ConfigError(f"--plugin: {spec!r} is not a file")
            name = f"autophagy_plugin_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"--plugin: {spec!r} cannot be imported ({exc}); give a .py file or an installed module") from None
    _loaded.add(spec)


def load_entry_points() -> None:
    """Import every installed plug-in of the `autophagy.plugins` entry-point group."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.value not in _loaded:
            entry.load()
            _loaded.add(entry.value)
