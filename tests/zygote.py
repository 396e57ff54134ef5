"""Starts the tests' CLI processes by forking: this helper imports the package once (torch, diffusers and
datasets cost 6-9 s of imports a process on 2 cores), then forks one child per command. Each child is a
separate process that runs `autophagy ARGS` under its own environment and exits with the CLI's code;
AUTOPHAGY_KILL_AT kills it for real, and its exit status reads as subprocess reports one (-9: SIGKILLed).
Nothing here runs torch before a fork, so no thread pool is inherited half-built.

One JSON line each way on stdin/stdout:
    {"args": [...], "env": {...}, "cwd": ..., "stdout": path, "stderr": path}  ->  {"pid": n}, then {"returncode": n}
`tests/test_cli.py` still starts one process the plain way (`python -m autophagy`), to check the real entry point.
"""
import atexit
import json
import os
import random
import sys
import traceback


def child(request) -> int:
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    random.seed()       # a fresh process's state, not the helper's (temporary names, say)
    sys.argv = ["autophagy", *request["args"]]
    from autophagy.cli import main
    try:
        code = main(request["args"])
    except SystemExit as exc:
        code = exc.code
    except BaseException:   # what `python -m autophagy` would print on an uncaught error
        traceback.print_exc()
        code = 1
    if not isinstance(code, int):   # SystemExit("message") or None, as the interpreter treats them
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    atexit._run_exitfuncs()
    return code


def serve() -> None:
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)   # anything else printed here goes to stderr, never into the replies
    import autophagy.cli, analysis.report, analysis.verdicts, loops.protocols, loops.run, loops.sweep  # noqa: F401
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = child(request)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        print(json.dumps({"pid": pid}), file=reply)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), file=reply)


if __name__ == "__main__":
    serve()
