"""Spec strings and model sources: every kind loads a real model (or says clearly why not)."""
import numpy as np
import pytest
import torch

from workbench.errors import RecipeError, SourceError
from workbench.zoo.sources import load_model
from workbench.specs import Spec, check_options, parse_spec, parse_value
from workbench.artifact import sha256_file
from workbench.zoo import MODELS_DIR
from workbench.zoo.models import SmallCNN
from workbench.zoo.weights import save_weights


# ---------------------------------------------------------------- specs
def test_parse_spec_kind_target_and_typed_options():
    s = parse_spec("torchvision:resnet18?weights=r18.pt&num_classes=10&width_mult=0.5&pretrained=false")
    assert (s.kind, s.target) == ("torchvision", "resnet18")
    assert s.options == {"weights": "r18.pt", "num_classes": 10, "width_mult": 0.5, "pretrained": False}
    assert isinstance(s.options["num_classes"], int) and isinstance(s.options["width_mult"], float)
    assert str(s) == "torchvision:resnet18?weights=r18.pt&num_classes=10&width_mult=0.5&pretrained=false"
    assert s.option("missing", 7) == 7
    # a bare kind, a py: target with its own colon, a path with slashes, an empty query part
    assert parse_spec("digits") == Spec("digits", "", {}, "digits")
    p = parse_spec("  py:pkg.mod:make?width=3&&  ")
    assert (p.kind, p.target, p.options) == ("py", "pkg.mod:make", {"width": 3})
    assert parse_spec("images:data/flowers?size=64&grey=yes").options == {"size": 64, "grey": True}


def test_parse_value_types():
    assert parse_value("true") is True and parse_value("Off") is False
    assert parse_value("3") == 3 and parse_value("-2") == -2 and parse_value("1e-3") == pytest.approx(1e-3)
    assert parse_value("32,64,128") == (32, 64, 128)
    assert parse_value("a,1,") == ("a", 1)
    assert parse_value("model.pt") == "model.pt" and parse_value("") == ""


@pytest.mark.parametrize("bad", ["", "   ", None, "zoo:cnn?width", "zoo:cnn?=3"])
def test_parse_spec_errors(bad):
    with pytest.raises(RecipeError):
        parse_spec(bad)


def test_check_options_names_valid_ones():
    check_options(parse_spec("images:d?size=8"), {"size", "grey"}, "images task")
    with pytest.raises(RecipeError, match=r"unknown option\(s\) colour; valid: grey, size"):
        check_options(parse_spec("images:d?size=8&colour=1"), {"size", "grey"}, "images task")
    with pytest.raises(RecipeError, match=r"valid: \(none\)"):
        check_options(parse_spec("onnx:m.onnx?x=1"), set(), "onnx source")


# ---------------------------------------------------------------- zoo
def test_zoo_trained_model_is_the_committed_teacher(digits):
    m = load_model("zoo:digits-resnet", in_channels=1, num_classes=10)
    assert m.white_box and m.trained and m.kind == "zoo"
    assert m.sha256 == sha256_file(MODELS_DIR / "digits-resnet.safetensors")
    acc = (m.predict(digits.x_test[:48]).argmax(1) == digits.y_test[:48]).mean()
    assert acc >= 0.95
    with pytest.raises(RecipeError, match="takes only weights="):
        load_model("zoo:digits-resnet?depth=2")


def test_zoo_architecture_untrained_student_and_spec_keyed_sha():
    a = load_model("zoo:cnn?width=4&depth=1", in_channels=1, num_classes=3, role="student")
    assert not a.trained and a.weights is None
    assert a.module(torch.zeros(2, 1, 16, 16)).shape == (2, 3)
    assert a.sha256 == load_model("zoo:cnn?width=4&depth=1", role="student").sha256
    assert a.sha256 != load_model("zoo:cnn?width=8&depth=1", role="student").sha256
    with pytest.raises(SourceError, match="has no weights"):
        load_model("zoo:cnn?width=4&depth=1", role="teacher")
    with pytest.raises(RecipeError, match="unknown zoo name 'vit'.*digits-resnet.*cnn"):
        load_model("zoo:vit", role="student")
    with pytest.raises(SourceError, match="cannot build architecture"):
        load_model("zoo:cnn?wdth=4", role="student")


def test_unknown_kind_and_empty_target():
    with pytest.raises(RecipeError, match="unknown model source kind 'keras'.*zoo:.*outputs:"):
        load_model("keras:model.h5")
    with pytest.raises(RecipeError, match="names nothing after 'zoo:'"):
        load_model("zoo:")


def _cnn(seed=0, in_channels=1, num_classes=3):
    torch.manual_seed(seed)
    return SmallCNN(in_channels=in_channels, num_classes=num_classes, width=4, depth=1).eval()


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_weights_safetensors_and_torch_state_dict(tmp_path):
    ref = _cnn(seed=5)
    save_weights(ref, tmp_path / "w.safetensors")
    torch.save(ref.state_dict(), tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        # relative to base_dir (the recipe's folder), as a teacher: weights make it trained
        m = load_model(f"zoo:cnn?width=4&depth=1&weights={name}", in_channels=1, num_classes=3, base_dir=tmp_path)
        assert m.trained and m.weights == (tmp_path / name).resolve()
        assert m.sha256 == sha256_file(tmp_path / name)
        assert _same_weights(m.module, ref) and not m.module.training


def test_weights_errors(tmp_path):
    spec = "zoo:cnn?width=4&depth=1&weights={}"
    with pytest.raises(SourceError, match="'nowhere.safetensors' not found"):
        load_model(spec.format("nowhere.safetensors"), num_classes=3, base_dir=tmp_path)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(SourceError, match="cannot read weights"):
        load_model(spec.format(tmp_path / "bad.safetensors"), num_classes=3)
    # a torch file is read weights-only: a pickled object is refused, not executed
    torch.save({"model": _Pickled()}, tmp_path / "obj.pt")
    with pytest.raises(SourceError, match="cannot read weights"):
        load_model(spec.format(tmp_path / "obj.pt"), num_classes=3)
    # weights of another architecture
    save_weights(_cnn(num_classes=5), tmp_path / "five.safetensors")
    with pytest.raises(SourceError, match="do not fit the architecture"):
        load_model(spec.format(tmp_path / "five.safetensors"), num_classes=3)


class _Pickled:
    pass


# ---------------------------------------------------------------- torchvision
def test_torchvision_grey_inputs_are_wrapped_and_weights_load(tmp_path):
    m = load_model("torchvision:resnet18", in_channels=1, num_classes=3, role="student")
    assert m.module(torch.randn(2, 1, 32, 32)).shape == (2, 3)  # 1-channel input to a 3-channel stem
    assert not m.module.training
    rgb = load_model("torchvision:resnet18", in_channels=3, num_classes=3, role="student")
    assert rgb.module(torch.randn(2, 3, 32, 32)).shape == (2, 3) and type(rgb.module).__name__ == "ResNet"
    with pytest.raises(SourceError, match="expects 3-channel images but the task has 2"):
        load_model("torchvision:resnet18", in_channels=2, num_classes=3, role="student")
    # weights (a state_dict of the bare torchvision model) load into the wrapped model
    torch.manual_seed(3)
    import torchvision

    ref = torchvision.models.get_model("resnet18", weights=None, num_classes=3).eval()
    torch.save(ref.state_dict(), tmp_path / "r18.pt")
    t = load_model(f"torchvision:resnet18?weights={tmp_path / 'r18.pt'}", in_channels=1, num_classes=3)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.allclose(t.module(x), ref(x.expand(-1, 3, -1, -1)), atol=1e-5)
    assert t.sha256 == sha256_file(tmp_path / "r18.pt")


def test_torchvision_options_and_errors():
    m = load_model("torchvision:mobilenet_v3_small?width_mult=0.25", in_channels=3, num_classes=4, role="student")
    assert m.module(torch.randn(2, 3, 32, 32)).shape == (2, 4)
    assert sum(p.numel() for p in m.module.parameters()) < 200_000
    with pytest.raises(SourceError, match="unknown torchvision model 'resnet181'; did you mean: resnet18"):
        load_model("torchvision:resnet181", role="student")
    with pytest.raises(SourceError, match="cannot build torchvision:resnet18"):
        load_model("torchvision:resnet18?bogus_option=1", role="student")
    with pytest.raises(SourceError, match="has no weights"):
        load_model("torchvision:resnet18", num_classes=3)  # a teacher needs weights


# ---------------------------------------------------------------- py:
FACTORY = '''
import torch
from torch import nn

BUILT = []

def make(num_classes, in_channels=1, width=4):
    BUILT.append((num_classes, in_channels, width))
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(width, num_classes))

def not_a_module(num_classes=10):
    return {"num_classes": num_classes}

def strict(depth):
    return nn.Linear(depth, depth)

def broken(num_classes=10):
    raise RuntimeError("factory exploded")

CONSTANT = 3
'''


@pytest.fixture
def factory_file(tmp_path):
    p = tmp_path / "wb_factory_mod.py"
    p.write_text(FACTORY)
    return p


def test_py_factory_from_file_and_module(tmp_path, factory_file, monkeypatch):
    m = load_model(f"py:{factory_file}:make?width=3", in_channels=1, num_classes=5, role="student")
    assert m.module(torch.zeros(2, 1, 8, 8)).shape == (2, 5) and not m.trained
    assert m.module[0].out_channels == 3  # the spec's options are keyword arguments
    # relative file path against base_dir (cwd elsewhere)
    monkeypatch.chdir(tmp_path.parent)
    rel = load_model(f"py:{factory_file.name}:make", in_channels=1, num_classes=2, base_dir=tmp_path, role="student")
    assert rel.module[-1].out_features == 2
    # module path on sys.path
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = load_model("py:wb_factory_mod:make?width=2", in_channels=3, num_classes=4, role="student")
    assert mod.module[0].in_channels == 3 and mod.module[0].out_channels == 2
    # weights make it a teacher; the sha covers weights and factory source
    save_weights(mod.module, tmp_path / "f.safetensors")
    t = load_model(f"py:wb_factory_mod:make?width=2&weights={tmp_path / 'f.safetensors'}", in_channels=3,
                   num_classes=4)
    assert _same_weights(t.module, mod.module) and t.sha256 != sha256_file(tmp_path / "f.safetensors")


def test_py_factory_source_change_changes_sha(tmp_path, factory_file):
    a = load_model(f"py:{factory_file}:make", in_channels=1, num_classes=3, role="student").sha256
    assert load_model(f"py:{factory_file}:make", in_channels=1, num_classes=3, role="student").sha256 == a
    factory_file.write_text(FACTORY.replace("nn.ReLU()", "nn.GELU()") + "\n# edited\n")
    assert load_model(f"py:{factory_file}:make", in_channels=1, num_classes=3, role="student").sha256 != a


@pytest.mark.parametrize("target, message", [
    ("no_such_module_wb:make", "cannot import 'no_such_module_wb'"),
    ("{file}:missing", "has no callable 'missing'"),
    ("{file}:CONSTANT", "has no callable 'CONSTANT'"),
    ("{file}:not_a_module", "returned dict, not a torch.nn.Module"),
    ("{file}:strict", "calling .*strict.* failed"),
    ("{file}:broken", "factory exploded"),
    ("{dir}/nope.py:make", "nope.py not found"),
    ("justaname", "must be package.module:factory"),
])
def test_py_errors(tmp_path, factory_file, target, message):
    spec = "py:" + target.format(file=factory_file, dir=tmp_path)
    with pytest.raises((SourceError, RecipeError), match=message):
        load_model(spec, in_channels=1, num_classes=3, role="student")


def test_py_module_that_fails_to_import(tmp_path):
    bad = tmp_path / "raises_on_import.py"
    bad.write_text("raise ValueError('no GPU here\\nsecond line')\n")
    with pytest.raises(SourceError, match="importing .* failed: ValueError: no GPU here$"):
        load_model(f"py:{bad}:make", role="student")


# ---------------------------------------------------------------- onnx: (black box)
def test_onnx_teacher_runs_through_ort(tmp_path, digits):
    import warnings

    ref = _cnn(seed=2, num_classes=10)
    with warnings.catch_warnings():  # the TorchScript exporter: a second to make a test file (export_onnx takes ~6)
        warnings.simplefilter("ignore")
        torch.onnx.export(ref, (torch.from_numpy(digits.x_test[:1]),), str(tmp_path / "t.onnx"), dynamo=False,
                          input_names=["input"], dynamic_axes={"input": {0: "batch"}})
    m = load_model("onnx:t.onnx", in_channels=1, num_classes=10, base_dir=tmp_path)
    assert not m.white_box and m.onnx_path == (tmp_path / "t.onnx").resolve()
    assert m.sha256 == sha256_file(tmp_path / "t.onnx")
    with torch.no_grad():
        expect = ref(torch.from_numpy(digits.x_test[:20])).numpy()
    assert np.allclose(m.predict(digits.x_test[:20], batch_size=8), expect, atol=1e-4)
    with pytest.raises(RecipeError, match="teacher, not a student"):
        load_model(f"onnx:{tmp_path / 't.onnx'}", role="student")
    with pytest.raises(RecipeError, match="unknown option"):
        load_model(f"onnx:{tmp_path / 't.onnx'}?weights=x.pt")
    with pytest.raises(SourceError, match="not found"):
        load_model(f"onnx:{tmp_path / 'missing.onnx'}")
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x01garbage")
    with pytest.raises(SourceError, match="ONNX Runtime cannot load teacher"):
        load_model(f"onnx:{tmp_path / 'bad.onnx'}")


# ---------------------------------------------------------------- outputs: (precomputed logits)
def test_outputs_npy_and_npz(tmp_path, digits):
    rng = np.random.default_rng(0)
    train = rng.normal(size=(len(digits.y_train), 10)).astype(np.float32)
    np.save(tmp_path / "logits.npy", train)
    m = load_model(f"outputs:{tmp_path / 'logits.npy'}", task=digits)
    assert not m.white_box and set(m.outputs) == {"train"} and np.array_equal(m.outputs["train"], train)
    with pytest.raises(SourceError, match="cannot be run on new inputs"):
        m.predict(digits.x_test[:2])
    test = np.eye(10, dtype=np.float32)[digits.y_test] * 5
    np.savez(tmp_path / "both.npz", train=train, test=test)
    both = load_model("outputs:both.npz", base_dir=tmp_path, task=digits)
    assert set(both.outputs) == {"train", "test"} and both.sha256 == sha256_file(tmp_path / "both.npz")
    with pytest.raises(RecipeError, match="only stand for a teacher"):
        load_model(f"outputs:{tmp_path / 'logits.npy'}", role="student")


@pytest.mark.parametrize("arrays, message", [
    ({"train": np.zeros((5, 10))}, r"have 5 rows but the task's train split has 1257"),
    ({"train": np.zeros((1257, 7))}, "have 7 classes, the task has 10"),
    ({"train": np.zeros(1257)}, "must be 2-D"),
    ({"test": np.zeros((360, 10))}, "has no 'train' array"),
    ({"train": np.zeros((1257, 10)), "test": np.zeros((3, 10))}, "test split has 360"),
])
def test_outputs_checked_against_the_task(tmp_path, digits, arrays, message):
    np.savez(tmp_path / "o.npz", **arrays)
    with pytest.raises(SourceError, match=message):
        load_model(f"outputs:{tmp_path / 'o.npz'}", task=digits)


def test_outputs_unreadable(tmp_path):
    (tmp_path / "o.npy").write_bytes(b"not numpy")
    with pytest.raises(SourceError, match="cannot read teacher outputs"):
        load_model(f"outputs:{tmp_path / 'o.npy'}")


def test_a_registered_source_kind_is_loaded_through_the_registry(monkeypatch):
    from workbench.zoo.sources import SOURCES, LoadedModel, SourceKind

    seen = {}

    def load(spec, **kw):
        seen.update(kw)
        return LoadedModel(spec=spec, module=None, sha256="0" * 64, description=f"fake {spec.target}")

    monkeypatch.setitem(SOURCES._items, "fake", SourceKind("fake", load, black_box=True))
    m = load_model("fake:thing?x=1", num_classes=3, role="student")
    assert m.description == "fake thing" and not m.white_box
    assert seen["num_classes"] == 3 and seen["role"] == "student"
    with pytest.raises(RecipeError, match="unknown model source kind 'nope'.*zoo:.*outputs:.*fake:"):
        load_model("nope:x")
