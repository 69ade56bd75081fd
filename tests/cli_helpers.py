"""Running the `tinykws` command as a user would: a subprocess, its exit code, stderr and JSON."""
import json
import subprocess
import sys


def run(*args, ok=True, timeout=900):
    r = subprocess.run([sys.executable, "-m", "tinykws", *map(str, args)], capture_output=True, text=True,
                       timeout=timeout)
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def last_json(r) -> dict:
    """The scripting contract: the last line of stdout is one JSON object."""
    return json.loads(r.stdout.strip().splitlines()[-1])
