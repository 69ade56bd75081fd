"""A sweep across "machines" on a real PostgreSQL server: workers in separate processes join by the
storage URL, one is killed mid-trial, and the sweep still finishes every grid point exactly once."""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1 (apt `postgresql`, see scripts/install.sh), stopped
    and deleted afterwards. The server refuses to run as root: then it runs as the `postgres` user."""
    initdb = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not initdb:
        raise RuntimeError("PostgreSQL is not installed (apt postgresql: run scripts/install.sh)")
    bindir = Path(initdb[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="tinykws-pg-"))
    as_user = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port, db = _free_port(), root / "db"
    run = lambda *cmd: subprocess.run(as_user + [str(c) for c in cmd], check=True, capture_output=True, text=True)
    try:
        run(bindir / "initdb", "-D", db, "-A", "trust", "-U", "tinykws", "--no-sync")
        run(bindir / "pg_ctl", "-D", db, "-l", root / "server.log", "-w", "-t", "60", "start", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50")
        yield f"postgresql+psycopg2://tinykws@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [str(bindir / "pg_ctl"), "-D", str(db), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _worker(data, out, url, log):
    cmd = [sys.executable, "-m", "tinykws", "sweep", "--data", str(data), "--out", str(out), "--storage", url,
           "--frontends", "paper10", "--widths", "0.5", "--targets", "1.5e6", "--betas", "0,2,4",
           "--layers", "3", "--epochs", "1", "--warmup-epochs", "0", "--train-epochs", "1",
           "--jobs", "1", "--threads", "1", "--heartbeat", "1", "--baseline", "dscnn-kws"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


@pytest.mark.slow
def test_sweep_across_workers_survives_a_killed_worker(postgres_url, tiny_dataset, tmp_path):
    import optuna
    from optuna.trial import TrialState

    names = {f"paper10_w0.5_t1.5e+06_b{b}" for b in (0, 2, 4)}
    logs = [open(tmp_path / f"w{i}.log", "w") for i in range(2)]
    a = _worker(tiny_dataset, tmp_path / "machine_a", postgres_url, logs[0])
    b = _worker(tiny_dataset, tmp_path / "machine_b", postgres_url, logs[1])
    killed = None
    try:
        deadline = time.time() + 300
        while killed is None and time.time() < deadline and a.poll() is None:
            try:
                study = optuna.load_study(study_name="tinykws-nas", storage=postgres_url)
                mine = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING
                        and t.user_attrs.get("worker", "").endswith(f":{a.pid}")]
            except (KeyError, Exception):  # the study is not created yet
                mine = []
            if mine:
                time.sleep(1.0)  # well inside its trial
                a.send_signal(signal.SIGKILL)
                killed = mine[0].user_attrs["name"]
            time.sleep(0.3)
        assert killed, "worker A never ran a trial: " + (tmp_path / "w0.log").read_text()[-2000:]
        assert b.wait(timeout=400) == 0, (tmp_path / "w1.log").read_text()[-3000:]
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait()
        for f in logs:
            f.close()
    trials = optuna.load_study(study_name="tinykws-nas", storage=postgres_url).get_trials(deepcopy=False)
    complete = [t.user_attrs["name"] for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(complete) == sorted(names)  # every grid point finished, each exactly once
    dead = [t for t in trials if t.user_attrs.get("name") == killed and t.state == TrialState.FAIL
            and t.user_attrs.get("worker", "").endswith(f":{a.pid}")]
    assert dead, "the killed worker's trial was not marked failed"
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    log_b = (tmp_path / "w1.log").read_text()
    assert f"[{killed}] search + training" in log_b  # worker B ran the killed worker's point again
