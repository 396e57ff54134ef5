import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# one cache (lenet extractor, built-in data arrays) for the whole session, never the user's
os.environ.setdefault("AUTOPHAGY_CACHE", str(ROOT / ".cache" / "test-cache"))


@pytest.fixture
def micro():
    """A micro-preset config factory: micro(regime="sims", generations=2, ...)."""
    from autophagy.config import make_config

    def make(**overrides):
        overrides.setdefault("regime", "fully-synthetic")
        overrides.setdefault("generations", 2)
        return make_config("micro", **overrides)
    return make


def refused(capsys, *args) -> tuple[int, str]:
    """The CLI in this process, for input it must refuse before any work (a real process costs seconds of
    imports; test_cli checks once that a real process prints no traceback): (exit code, stderr)."""
    from autophagy.cli import main
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    return exit_info.value.code, capsys.readouterr().err


def run_cli(*args, env=None, timeout=300):
    """The real console entry point in a separate process: (returncode, stdout, stderr)."""
    import subprocess
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "autophagy", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=ROOT)
    return proc.returncode, proc.stdout, proc.stderr
