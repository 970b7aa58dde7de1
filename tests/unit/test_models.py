"""Networks: the headline VGG16 exactly, its CPU-sized variants, the MLP; checkpoints."""

import torch
from torch import nn

from clpipe.checkpoints import load_model, save_model
from clpipe.networks import build_model, count_parameters
from clpipe.networks.plain import VGG16
from clpipe.runtime import seed_everything


def spec(**kw):
    base = {
        "name": "vgg16",
        "width": 1.0,
        "dropout": 0.5,
        "init": "glorot",
        "input": {"size": 224, "channels": 3, "normalize": None},
        "n_outputs": 2,
    }
    base.update(kw)
    return base


def test_vgg16_at_224_has_the_sources_parameter_count():
    model = build_model(spec(), device="meta")
    assert count_parameters(model) == 134_268_738  # docs/methods.md: 134.27M
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(25088, 4096), (4096, 4096), (4096, 2)]
    convs = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_smaller_inputs_shrink_the_classifier_and_width_scales_everything():
    model = build_model(spec(input={"size": 32, "channels": 3}), device="meta")
    assert model.classifier[1].in_features == 512
    small = build_model(spec(input={"size": 64, "channels": 3}, width=0.25), device="meta")
    assert small.classifier[1].in_features == 128 * 2 * 2
    assert small.classifier[1].out_features == 1024
    assert [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)][0] == 16
    net = build_model(spec(input={"size": 32, "channels": 3}, width=0.0625))
    assert net(torch.zeros(4, 3, 32, 32)).shape == (4, 2)


def test_mlp_and_output_relu():
    m = build_model(
        {
            "name": "mlp",
            "hidden": [256, 256, 256],
            "output_relu": True,
            "input": {"size": 28, "channels": 1},
            "n_outputs": 10,
        }
    )
    assert count_parameters(m) == 784 * 256 + 256 + 2 * (256 * 256 + 256) + 256 * 10 + 10
    assert isinstance(m.net[-1], nn.ReLU)
    out = m(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10) and bool((out >= 0).all())


def test_glorot_init_is_seeded_with_zero_biases():
    seed_everything(3)
    a = build_model(spec(input={"size": 32, "channels": 3}, width=0.125))
    seed_everything(3)
    b = build_model(spec(input={"size": 32, "channels": 3}, width=0.125))
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
        if n.endswith("bias"):
            assert not p.any()


def test_checkpoint_round_trip_rebuilds_the_model_from_the_file(tmp_path):
    s = spec(input={"size": 32, "channels": 3}, width=0.125)
    model = build_model(s)
    path = tmp_path / "model.pt"
    save_model(str(path), model, s, {"step": "test"})
    again, ckpt = load_model(str(path), torch.device("cpu"))
    assert isinstance(again, VGG16) and ckpt["meta"]["step"] == "test"
    x = torch.randn(2, 3, 32, 32)
    model.eval(), again.eval()
    assert torch.equal(model(x), again(x))
