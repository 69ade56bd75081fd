"""Models shipped inside the package, by name (data only: `tinykws.train.load_bundle` opens them)."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
PRETRAINED = {
    "dscnn-kws": "dscnn_kws.pt",  # DS-CNN (MLPerf layout) trained on speech_commands_mini, 12 classes
    "nas-kws": "nas_kws.pt",  # searched MBConv model (tinykws search, 10 MFCCs) trained on speech_commands_mini
    "dscnn-kws-device": "dscnn_kws_device.pt",  # DS-CNN on the "device" front end (the fixed-point C MFCC's)
    "dscnn-kws-stream": "dscnn_kws_stream.pt",  # dscnn-kws-device fine-tuned for streams (docs/streaming.md)
}
DEFAULT = "dscnn-kws"
