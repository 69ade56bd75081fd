import json

import pytest

from tinykws.data.synth import SynthConfig
from tinykws.pipeline import run_demo


def test_demo_on_synthetic_speech(tmp_path):
    out = tmp_path / "report"
    synth = SynthConfig(words=["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed", "cat"],
                        clips_per_word=10, speakers=10, background_seconds=5)
    run_demo(out=out, epochs=2, progress=False, log=lambda *_: None, synth=synth, search_epochs=2,
             search_train_epochs=1)
    for f in ("metrics.json", "report.md", "confusion.png", "model.pt", "run/metrics.jsonl", "data/README.md",
              "nas/search/search.json", "nas/train/best.pt", "nas/report.md"):
        assert (out / f).is_file(), f
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["synthetic"] and saved["test"]["n"] > 0 and saved["cost"]["macs"] == 2_656_768
    nas = saved["nas"]  # the searched model meets the short search's 2 M MACs limit
    assert 0 < nas["macs"] <= 2.0e6 and nas["test_n"] == saved["test"]["n"] and nas["arch"].startswith("w0.5-")
    report = (out / "report.md").read_text()
    assert "SYNTHETIC" in report and nas["arch"] in report
    # the model is deployed: C project in c/, measured on the emulated Cortex-M7, bit-exact
    mcu = saved["mcu"]
    assert (out / "c" / "model.c").is_file() and (out / "c" / "Makefile").is_file()
    assert mcu["bit_exact"] and mcu["macs"] == 2_656_768 and mcu["instructions"] > mcu["macs"]
    assert mcu["flash_bytes"] > 22_000 and mcu["arena_bytes"] <= 16_000 and mcu["ram_bytes"] > mcu["arena_bytes"]
    assert f"{mcu['instructions'] / 1e6:.2f} M instructions" in report
    # a short streaming evaluation of the model: operating point chosen on validation clips, tested
    st = saved["stream"]
    assert st["keywords"] > 0 and st["hits"] + st["misses"] == st["keywords"] and 0 <= st["hit_rate"] <= 1
    assert st["hours"] == pytest.approx(2 / 60) and st["false_alarms_per_hour"] == st["false_alarms"] / st["hours"]
    assert (out / "stream_det.png").is_file() and f"{st['hits']} of {st['keywords']} keywords found" in report
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_demo(out=out, epochs=1, progress=False, log=lambda *_: None, synth=synth)
