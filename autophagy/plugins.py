"""Plug-ins: Python modules that register regimes, samplers or other hooks when imported.

    autophagy run --plugin my_method.py --regime my-regime --generations 5      # a file
    autophagy run --plugin mypackage.mitigation --regime my-regime ...          # a dotted module name

Installed packages can register without a flag through the entry-point group `autophagy.plugins`
(pyproject: `[project.entry-points."autophagy.plugins"] name = "package.module"`); those are loaded
at every start. A plug-in calls `loops.regimes.register_regime` / `loops.samplers.register_sampler`
exactly as the built-ins do; a taken name is refused. `config.json` records `--plugin` values, and a
rerun of that folder without them is refused. Wherever a config is resolved (the run, a Ray worker,
rescore) its plug-ins are imported (`load_config_plugins`); a run folder alone never names code to
import: rescore and report of a plug-in run take the same --plugin again.

A plug-in that cannot be imported (missing, a syntax error, an exception at import) is one line naming
it and its error (exit 2).
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


def load_plugin(spec: str, base_dir: Path | None = None) -> None:
    """Import a plug-in by file path (relative to `base_dir`, default the working folder) or dotted
    module name, once per process."""
    if spec in _loaded:
        return
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"--plugin: {spec!r} is empty; give a .py file or an installed module name")
    path = Path(spec).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    try:
        if spec.endswith(".py"):
            if not path.is_file():
                raise ConfigError(f"--plugin: {spec!r} is not a file")
            name = f"autophagy_plugin_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            importlib.import_module(spec)
    except ConfigError:
        raise
    except ModuleNotFoundError as exc:
        raise ConfigError(f"--plugin: {spec!r} cannot be imported ({exc}); give a .py file or an installed module") from None
    except SyntaxError as exc:
        raise ConfigError(f"--plugin: {spec!r} has a syntax error at line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 — whatever the plug-in raised, said in one line
        raise ConfigError(f"--plugin: {spec!r} raised {type(exc).__name__} when imported: {exc}") from None
    _loaded.add(spec)


def load_config_plugins(specs, base_dir: Path | None = None) -> None:
    """Import the plug-ins a config lists (and the installed ones), in this process."""
    load_entry_points()
    for spec in specs or ():
        load_plugin(spec, base_dir)


def load_entry_points() -> None:
    """Import every installed plug-in of the `autophagy.plugins` entry-point group."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.value not in _loaded:
            entry.load()
            _loaded.add(entry.value)
