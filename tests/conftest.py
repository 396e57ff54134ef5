import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# one cache (lenet extractor, built-in data arrays) for the whole session, never the user's
os.environ["AUTOPHAGY_CACHE"] = os.environ.get("AUTOPHAGY_CACHE") or str(ROOT / ".cache" / "test-cache")


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
    """The CLI in a separate, fresh process: (returncode, stdout, stderr); a negative code is the signal
    that killed it. The process is forked from tests/zygote.py, which has imported the package once."""
    import json
    import signal
    import subprocess
    import tempfile
    global _zygote
    if _zygote is None or _zygote.poll() is not None:
        _zygote = subprocess.Popen([sys.executable, str(ROOT / "tests" / "zygote.py")], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, bufsize=0, cwd=ROOT)
    with tempfile.TemporaryDirectory() as folder:
        out, err = Path(folder) / "stdout", Path(folder) / "stderr"
        request = {"args": list(map(str, args)), "env": {**os.environ, **(env or {})}, "cwd": str(ROOT),
                   "stdout": str(out), "stderr": str(err)}
        _zygote.stdin.write(json.dumps(request).encode() + b"\n")
        pid = json.loads(_reply(_zygote, timeout))["pid"]
        try:
            code = json.loads(_reply(_zygote, timeout))["returncode"]
        except TimeoutError:
            os.kill(pid, signal.SIGKILL)
            _reply(_zygote, 60)
            raise subprocess.TimeoutExpired(args, timeout) from None
        return code, out.read_text(), err.read_text()


def _reply(zygote, timeout) -> bytes:
    """One line from the zygote (unbuffered, so a line already sent is never hidden from select)."""
    import select
    import time
    line, deadline = b"", time.monotonic() + timeout
    while not line.endswith(b"\n"):
        if not select.select([zygote.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise TimeoutError
        byte = zygote.stdout.read(1)
        if not byte:
            raise RuntimeError("tests/zygote.py ended; its stderr is in the test output")
        line += byte
    return line


_zygote = None
