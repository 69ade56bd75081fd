"""The C streaming loop (tinykws deploy --stream): on the host, its results, detections, times and
scores equal the Python streaming path of the device (integer model on the DeviceMFCC features) on
a test stream of real clips; on the emulated Cortex-M7, a short stream gives the same results."""
import copy
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tinykws.checks import ConfigError
from tinykws.cli.main import app
from tinykws.data.speech_commands import KEYWORDS_10
from tinykws.deploy import DeployError, generate
from tinykws.deploy.stream_c import (StreamCConfig, bench_stream_m7, build_stream_host, run_stream_host, stream_params,
                                     write_stream_sources)
from tinykws.recipes import load_int_model
from tinykws.stream.detector import Detector, DetectorConfig
from tinykws.stream.device import device_results
from tinykws.stream.synth_stream import StreamConfig, build_stream


@pytest.fixture(scope="module")
def im():
    return load_int_model("dscnn-kws-device", None)


@pytest.fixture(scope="module")
def stream_audio(mini_dir):
    s = build_stream(mini_dir, StreamConfig(minutes=0.4, keywords_per_minute=15, unknown_per_minute=3, seed=0),
                     keywords=KEYWORDS_10)
    return s.audio()


@pytest.fixture(scope="module")
def project(im, tmp_path_factory):
    out = tmp_path_factory.mktemp("stream") / "kws"
    generate(im, out)
    write_stream_sources(im, out, StreamCConfig(hop_ms=40))
    build_stream_host(out)
    return out


@pytest.mark.slow
def test_host_loop_equals_python_device_path(im, stream_audio, project):
    tp, sp = device_results(im, stream_audio, hop_ms=40)
    labels = im.meta["labels"]
    events_py = [(e.keyword, round(e.time * 1000), e.score)
                 for e in Detector(labels, DetectorConfig(), integer=True).feed(tp, sp)]
    first = None
    for chunk in (777, 160):  # any block size gives the same stream
        events, (tc, sc) = run_stream_host(project, stream_audio, chunk=chunk)
        assert np.array_equal(tc, tp) and np.array_equal(sc, sp)
        got = [(labels[e["label"]], e["time_ms"], float(e["score"])) for e in events]
        assert got == events_py
        first = first or got
    assert len(tp) == (len(stream_audio) - 16000) // 640 + 1 and tp[0] == 1000
    assert len(first) >= 1  # the stream has keywords the model detects


@pytest.mark.slow
def test_m7_short_stream_equals_python(im, stream_audio):
    a = stream_audio[: int(1.2 * 16000)]
    d = bench_stream_m7(im, StreamCConfig(hop_ms=100), a)
    tp, sp = device_results(im, a, hop_ms=100)
    assert d["network_runs"] == len(tp) == 3
    assert np.array_equal(np.asarray(d["results"]), sp)
    assert 0 < d["instructions_per_hop_mfcc"] < d["instructions_per_network_run"]
    assert d["instructions_per_classification"] == pytest.approx(
        d["instructions_per_network_run"] + 5 * d["instructions_per_hop_mfcc"], rel=0.02)
    assert d["flash"]["network"] > 0 and d["flash"]["mfcc"] > 0 and d["ram"]["stack"] > 0


def test_front_end_the_device_cannot_compute_is_an_error(im):
    bad = copy.copy(im)
    bad.meta = dict(im.meta, frontend=dict(im.meta["frontend"], input_norm="peak"))
    with pytest.raises(DeployError, match="not computable on the device.*input_norm"):
        stream_params(bad, StreamCConfig())
    with pytest.raises(ConfigError, match="--hop-ms 30"):
        stream_params(im, StreamCConfig(hop_ms=30))


def test_deploy_stream_cli_writes_the_loop(tmp_path):
    r = CliRunner().invoke(app, ["deploy", "--model", "dscnn-kws-device", "--out", str(tmp_path / "p"), "--stream",
                                 "--hop-ms", "60", "--check", "0", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["stream"]["hop_ms"] == 60
    assert info["flash_source"].startswith("measured")  # the network's M7 build is not disturbed by the loop's files
    for f in ("tkws_stream.c", "tkws_stream.h", "tkws_stream_config.h", "tkws_mfcc.c", "stream_main.c", "model.c"):
        assert (tmp_path / "p" / f).is_file()
    cfg = (tmp_path / "p" / "tkws_stream_config.h").read_text()
    assert "#define TKWS_STREAM_STEP 3" in cfg and "#define TKWS_STREAM_SILENCE 10" in cfg
    assert "stream-host" in (tmp_path / "p" / "Makefile").read_text()
    r = CliRunner().invoke(app, ["deploy", "--model", "dscnn-kws-device", "--out", str(tmp_path / "q"), "--stream",
                                 "--hop-ms", "30", "--check", "0"])
    # the CLI's entry point prints ConfigError as one line (exit 2); here the exception itself
    assert isinstance(r.exception, ConfigError) and "--hop-ms 30" in str(r.exception)
    assert not (tmp_path / "q").exists()
