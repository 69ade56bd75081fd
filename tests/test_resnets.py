"""BC-ResNet and TC-ResNet: exact MAC counts, int8 conversion bit-exact with TFLite Micro (and the
reimported .tflite), the generated C bit-exact on the host; the broadcast block does broadcast."""
import numpy as np
import pytest
import torch

from tinykws.audio import get_preset
from tinykws.models import count_cost, create_model
from tinykws.models.resnets import Broadcast
from tinykws.quant import PTQConfig, quantize_, read_tflite, tflm_run, to_integer, to_tflite_bytes
from tinykws.train.evaluate import split_features

LABELS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "_silence_", "_unknown_"]


def _bcresnet_macs(tau, t=49, f=10, classes=12):
    """BC-ResNet-tau MACs from the paper's table (stem 5x5 /freq 2; stages 8/12/16/20 x tau with 2/2/4/4
    blocks, freq stride 2 at stages 2 and 3), each block written out, F MACs per broadcast value."""
    c0 = 16 * tau
    fo = -(-f // 2)
    macs = t * fo * c0 * 25
    cin, fin = c0, fo
    for ch, n, fs in ((8, 2, 1), (12, 2, 2), (16, 4, 2), (20, 4, 1)):
        c = ch * tau
        for i in range(n):
            s = fs if i == 0 else 1
            if cin != c or s != 1:
                macs += t * fin * cin * c  # transition 1x1
            fo = -(-fin // s)
            macs += t * fo * c * 3 + t * c * 3 + t * c * c + t * fo * c * fo  # f2, f1 dw, f1 1x1, broadcast
            cin, fin = c, fo
    kt, kf = min(5, t), min(5, fin)
    ot, of = t - kt + 1, fin - kf + 1
    return macs + ot * of * cin * kt * kf + ot * of * cin * 32 * tau + 32 * tau * classes


def test_cost_counts_are_exact():
    for tau in (1, 2):
        assert count_cost(create_model("bcresnet", tau=tau)).macs == _bcresnet_macs(tau)
    assert count_cost(create_model("bcresnet", tau=2)).macs == 1_683_936 <= 2_700_000
    # TC-ResNet8: (3 x F) stem 16 ch, then per stage conv9 /2, conv9, 1x1 /2 shortcut; lengths 49, 25, 13, 7
    exp = 49 * 16 * 3 * 10
    for cin, c, l in ((16, 24, 25), (24, 32, 13), (32, 48, 7)):
        exp += l * c * 9 * cin + l * c * 9 * c + l * c * cin
    assert count_cost(create_model("tcresnet8")).macs == exp + 48 * 12 == 722_016
    c15 = count_cost(create_model("tcresnet8", width=1.5))
    assert c15.macs == 1_606_464 and c15.params_deployed == 141_624
    assert count_cost(create_model("tcresnet14")).macs > count_cost(create_model("tcresnet8")).macs


def test_broadcast_conv_broadcasts():
    b = Broadcast(3, 5)
    z = torch.randn(2, 3, 7, 1)
    assert torch.equal(b(z), z.expand(2, 3, 7, 5)) and not b.weight.requires_grad


@pytest.fixture(scope="module")
def feats(tiny_dataset):
    x, _ = split_features(tiny_dataset, "training", LABELS, get_preset("mlperf"))
    return x


def _quantized(name, kw, feats):
    torch.manual_seed(0)
    m = create_model(name, **kw)
    m.train()
    with torch.no_grad():  # batch-norm statistics of real features, so the network is not degenerate
        for _ in range(3):
            m(feats)
    m.eval()
    quantize_(m, PTQConfig(), calib=feats)
    return m, to_integer(m, meta={"labels": LABELS})


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", [("bcresnet", {"tau": 1}), ("tcresnet8", {})])
def test_int8_tflite_bit_exact(name, kw, feats, tmp_path):
    m, im = _quantized(name, kw, feats)
    kinds = [op.kind for op in im.ops]
    assert "add" in kinds and kinds[-1] == "fc"
    assert any(op.kind == "add" and op.opts["act"] == "relu" for op in im.ops), "the ReLU after a sum is fused"
    x = im.quantize_input(feats.numpy())
    ref = im.run(x)
    with torch.no_grad():
        fake = m(feats).argmax(1).numpy()
    assert (ref.argmax(1) == fake).mean() >= 0.97
    path = tmp_path / "m.tflite"
    path.write_bytes(to_tflite_bytes(im))
    assert np.array_equal(tflm_run(path, x), ref), "TFLite Micro == integer reference"
    assert np.array_equal(read_tflite(path).run(x), ref), "reimported .tflite (PAD ops included) == reference"


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", [("bcresnet", {"tau": 1}), ("tcresnet8", {})])
def test_generated_c_bit_exact_on_host(name, kw, feats, tmp_path):
    from tinykws.deploy import generate, run_host

    _, im = _quantized(name, kw, feats)
    x = im.quantize_input(feats[:16].numpy())
    ref = im.run(x)
    for kernels in ("ref", "fast"):
        generate(im, tmp_path / kernels, kernels=kernels)
        assert np.array_equal(run_host(tmp_path / kernels, x).reshape(ref.shape), ref), kernels


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", [("bcresnet", {"tau": 1}), ("tcresnet8", {"width": 0.5})])
def test_qat_steps_then_bit_exact(name, kw, feats):
    from tinykws.quant import QATConfig

    torch.manual_seed(0)
    m = create_model(name, **kw)
    quantize_(m, QATConfig(weight_bits=8, act_bits=8), calib=feats)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01)
    y = torch.randint(0, 12, (len(feats),))
    m.train()
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(m(feats), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items() if v.is_floating_point())
    if name == "bcresnet":
        bcasts = [b for b in m.modules() if hasattr(b, "bins")]  # quantized copies of the Broadcast convs
        assert len(bcasts) == 12 and all(torch.equal(b.weight, torch.ones_like(b.weight)) for b in bcasts)
    m.eval()
    im = to_integer(m)
    x = im.quantize_input(feats[:24].numpy())
    assert np.array_equal(tflm_run(to_tflite_bytes(im), x), im.run(x))
