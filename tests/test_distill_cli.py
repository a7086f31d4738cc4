"""Distilling image classifiers: the losses on cached teacher outputs, the cache's reuse and keys,
and `workbench distill` end to end (real models, real files, exit codes and one-line errors)."""
import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from conftest import RecordingProgress as _Progress
from conftest import tiny_digits

from workbench.cli import main
from workbench.distill import classify
from workbench.distill.cache import OutputCache
from workbench.distill.classifier_train import at_map_loss as _at_map_loss, attention_map as _attention_map
from workbench.distill.classify import LossConfig, distil_classifier
from workbench.distill.engine import FitConfig
from workbench.distill.losses import attention_transfer_loss
from workbench.distill.views import ShiftViews
from workbench.errors import RecipeError
from workbench.zoo.sources import load_model
from workbench.tasks import load_task
from workbench.zoo.models import SmallCNN
from workbench.zoo.weights import save_weights


# ---------------------------------------------------------------- fixtures: a tiny real task and teacher
@pytest.fixture(scope="module")
def tiny():
    """150 / 40 / 60 real digits at 16x16."""
    return tiny_digits(150, 40, 60)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny):
    """On disk: the tiny task as .npz, two teachers' weights (width 8), a student factory module."""
    root = tmp_path_factory.mktemp("distill")
    np.savez(root / "tiny.npz", x_train=tiny.x_train, y_train=tiny.y_train, x_val=tiny.x_val, y_val=tiny.y_val,
             x_test=tiny.x_test, y_test=tiny.y_test)
    for seed in (0, 1):
        torch.manual_seed(seed)
        t = SmallCNN(in_channels=1, num_classes=10, width=8, depth=1)
        _train_a_little(t, tiny)
        save_weights(t, root / f"teacher{seed}.safetensors")
    (root / "students.py").write_text(STUDENTS)
    return root


def _train_a_little(model, task, steps=30):
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.from_numpy(task.x_train), torch.from_numpy(task.y_train)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()


STUDENTS = '''
from torch import nn


class MLP(nn.Module):
    def __init__(self, num_classes, in_channels, hidden, side):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * side * side, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def mlp(num_classes, in_channels=1, hidden=16, side=16):
    return MLP(num_classes, in_channels, hidden, side)


def sequential(num_classes, in_channels=1, side=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * side * side, num_classes))


def seven_classes():
    return nn.Sequential(nn.Flatten(), nn.Linear(256, 7))


def not_a_model(num_classes):
    return "a string"
'''

TEACHER = "zoo:cnn?width=8&depth=1&weights={}"
STUDENT = "zoo:cnn?width=4&depth=1"


def _teacher(files, seed=0):
    return load_model(TEACHER.format(files / f"teacher{seed}.safetensors"), in_channels=1, num_classes=10)


def _student(seed=0):
    torch.manual_seed(seed)
    return load_model(STUDENT, in_channels=1, num_classes=10, role="student")


def _count_forward(module):
    calls = []
    inner = module.forward

    def forward(*a, **k):
        calls.append(len(a[0]))
        return inner(*a, **k)
    module.forward = forward
    return calls


CFG = FitConfig(epochs=2, batch_size=32, lr=5e-3, seed=0)


def _weights(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------- KD and the teacher-output cache
def test_kd_cache_is_made_exact_then_reused_and_rekeyed(tmp_path, tiny, files):
    cache = OutputCache(tmp_path / "cache")
    teacher = _teacher(files)
    res = distil_classifier(teacher, _student(), tiny, LossConfig(), CFG, out_dir=tmp_path / "a", cache=cache, shift=1)
    assert res["cache"] == {"logits": "made"} and res["n_train"] == 150 and not res["online_hint"]
    assert 0 <= res["val_accuracy"] <= 1 and 0 <= res["test_accuracy_torch"] <= 1
    assert res["fit"]["epochs_run"] == 2 and (tmp_path / "a" / "checkpoint.pt").is_file()
    (entry,) = [p for p in (tmp_path / "cache").iterdir()]
    logits = cache.load(entry.name)["a"]
    assert logits.shape == (9, 150, 10)  # (views, examples, classes)
    views = ShiftViews(torch.from_numpy(tiny.x_train), 1)
    with torch.no_grad():
        for v in (0, 4, 8):
            assert np.allclose(logits[v], teacher.module(views.all_views(v)).numpy(), atol=1e-5)

    # the same teacher, task and shift: a hit; the teacher does not run at all
    calls = _count_forward(teacher.module)
    again = distil_classifier(teacher, _student(1), tiny, LossConfig(), CFG, out_dir=tmp_path / "b", cache=cache,
                              shift=1)
    assert again["cache"] == {"logits": "hit"} and calls == []
    # another shift, or another teacher's weights: a new entry (never the stale one)
    other_shift = distil_classifier(teacher, _student(), tiny, LossConfig(), CFG, out_dir=tmp_path / "c", cache=cache,
                                    shift=0)
    assert other_shift["cache"] == {"logits": "made"} and sum(calls) == 150
    other = distil_classifier(_teacher(files, seed=1), _student(), tiny, LossConfig(), CFG, out_dir=tmp_path / "d",
                              cache=cache, shift=0)
    assert other["cache"] == {"logits": "made"} and len(list((tmp_path / "cache").iterdir())) == 3
    # a different task (content) is another key too
    fewer = dataclasses.replace(tiny, x_train=tiny.x_train[:100], y_train=tiny.y_train[:100])
    assert distil_classifier(teacher, _student(), fewer, LossConfig(), CFG, out_dir=tmp_path / "e", cache=cache,
                             shift=0)["cache"] == {"logits": "made"}


def test_labels_only_needs_no_teacher_outputs(tmp_path, tiny, files):
    teacher = _teacher(files)
    calls = _count_forward(teacher.module)
    res = distil_classifier(teacher, _student(), tiny, LossConfig(alpha=0.0), CFG, out_dir=tmp_path / "o",
                            cache=OutputCache(tmp_path / "cache"), subset=tiny.labelled_subset(3, 0))
    assert res["cache"] == {} and calls == [] and res["n_train"] == 30
    assert not (tmp_path / "cache").exists()


def test_kd_student_learns_from_the_teacher(tmp_path, tiny, files):
    res = distil_classifier(_teacher(files), _student(), tiny, LossConfig(alpha=1.0), FitConfig(epochs=6, batch_size=16,
                            lr=1e-2), out_dir=tmp_path / "o", cache=OutputCache(tmp_path / "cache"), shift=0)
    hist = res["fit"]["history"]
    assert hist[-1]["loss"] < hist[0]["loss"] and res["val_accuracy"] > 0.3  # 10 classes: chance is 0.1


# ---------------------------------------------------------------- feature losses
def _record_adapters(monkeypatch):
    from workbench.distill import losses

    made = []
    real = losses.make_adapter

    def make_adapter(s, t):
        a = real(s, t)
        made.append((a, _weights(a)))
        return a
    monkeypatch.setattr(losses, "make_adapter", make_adapter)
    return made


def test_hint_loss_trains_adapters_on_cached_features(tmp_path, tiny, files, monkeypatch):
    made = _record_adapters(monkeypatch)
    cache = OutputCache(tmp_path / "cache")
    teacher = _teacher(files)
    losses = LossConfig(alpha=0.5, hint=1.0, hint_layers=(("features.2", "features.2"), ("features.6", "features.6")))
    res = distil_classifier(teacher, _student(), tiny, losses, CFG, out_dir=tmp_path / "o", cache=cache, shift=1)
    assert res["cache"] == {"logits": "made", "hint:features.2": "made", "hint:features.6": "made"}
    for adapter, before in made[-2:]:  # the run's own adapters (after any trial ones)
        assert isinstance(adapter, torch.nn.Conv2d) and (adapter.in_channels, adapter.out_channels) in ((4, 8), (8, 16))
        assert not _equal(_weights(adapter), before)  # trained with the student
    # the cached (float16) features are the teacher's features on that view
    entry = [p for p in (tmp_path / "cache").iterdir()
             if json.loads((p / "meta.json").read_text())["parts"]["what"] == "hint:features.2"][0]
    feats = cache.load(entry.name)["a"]
    assert feats.dtype == np.float16 and feats.shape == (9, 150, 8, 8, 8)
    views = ShiftViews(torch.from_numpy(tiny.x_train), 1)
    with torch.no_grad():
        direct = teacher.module.features[:3](views.all_views(2)).numpy()
    assert np.allclose(feats[2], direct, atol=2e-2, rtol=1e-2)
    # a second run hits every entry
    again = distil_classifier(teacher, _student(), tiny, losses, CFG, out_dir=tmp_path / "p", cache=cache, shift=1)
    assert set(again["cache"].values()) == {"hit"}


def test_hint_features_too_big_for_the_cache_run_the_teacher_online(tmp_path, tiny, files):
    teacher = _teacher(files)
    calls = _count_forward(teacher.module)
    prog = _Progress()
    losses = LossConfig(alpha=0.0, hint=1.0, hint_layers=(("features.2", "features.2"),))
    res = distil_classifier(teacher, _student(), tiny, losses, FitConfig(epochs=1, batch_size=50), out_dir=tmp_path / "o",
                            cache=OutputCache(tmp_path / "cache"), shift=1, feature_cache_mb=0, progress=prog)
    assert res["online_hint"] and res["cache"] == {"hint": "online"}
    assert calls.count(50) == 3  # the teacher ran once per training batch
    assert any("the teacher runs on each batch" in line for line in prog.lines)


def test_attention_transfer_on_cached_maps(tmp_path, tiny, files):
    cache = OutputCache(tmp_path / "cache")
    teacher = _teacher(files)
    losses = LossConfig(alpha=0.9, attention=50.0, attention_layers=(("features.6", "features.6"),
                                                                    ("features.2", "features.10")))
    res = distil_classifier(teacher, _student(), tiny, losses, CFG, out_dir=tmp_path / "o", cache=cache, shift=1)
    assert res["cache"] == {"logits": "made", "at:features.6": "made", "at:features.10": "made"}
    assert np.isfinite(res["fit"]["history"][-1]["loss"])
    entry = [p for p in (tmp_path / "cache").iterdir()
             if json.loads((p / "meta.json").read_text())["parts"]["what"] == "at:features.10"][0]
    maps = cache.load(entry.name)["a"]
    assert maps.shape == (9, 150, 2, 2)
    with torch.no_grad():
        direct = _attention_map(teacher.module.features(torch.from_numpy(tiny.x_train)), 2.0).numpy()
    assert np.allclose(maps[4], direct, rtol=1e-5, atol=1e-6)  # view 4 is the identity view
    # the attention exponent is part of the key
    res_p = distil_classifier(teacher, _student(), tiny, dataclasses.replace(losses, attention_p=1.0), CFG,
                              out_dir=tmp_path / "p", cache=cache, shift=1)
    assert res_p["cache"] == {"logits": "hit", "at:features.6": "made", "at:features.10": "made"}


@pytest.mark.parametrize("s_shape, t_shape", [
    ((3, 4, 8, 8), (3, 6, 8, 8)),  # same size, other channels
    ((3, 4, 16, 16), (3, 6, 8, 8)),  # student larger: pooled
    ((3, 4, 4, 4), (3, 6, 8, 8)),  # student smaller: interpolated
    ((3, 4, 16, 8), (3, 6, 8, 8)),  # taller only
    ((3, 4, 6, 12), (3, 6, 8, 8)),  # one side smaller, one larger
    ((3, 4, 5, 7), (3, 6, 5, 7)),  # non-square
])
@pytest.mark.parametrize("p", [2.0, 1.0])
def test_cached_map_loss_equals_the_online_attention_transfer_loss(s_shape, t_shape, p):
    g = torch.Generator().manual_seed(0)
    s = torch.randn(*s_shape, generator=g, requires_grad=True)
    t = torch.randn(*t_shape, generator=g)
    online = attention_transfer_loss(s, t, p)
    cached = _at_map_loss(_attention_map(s, p), _attention_map(t, p))
    assert cached.item() == pytest.approx(online.item(), rel=1e-5, abs=1e-8)
    g1, = torch.autograd.grad(online, s)
    g2, = torch.autograd.grad(cached, s)
    assert torch.allclose(g1, g2, rtol=1e-4, atol=1e-9)


# ---------------------------------------------------------------- black-box teachers
def _export_legacy(model, path, sample):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.from_numpy(sample),), str(path), dynamo=False, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def test_onnx_teacher_gives_logits_but_no_features(tmp_path, tiny, files):
    teacher = _teacher(files)
    _export_legacy(teacher.module, tmp_path / "t.onnx", tiny.x_train[:1])
    onnx_t = load_model(f"onnx:{tmp_path / 't.onnx'}", in_channels=1, num_classes=10)
    cache = OutputCache(tmp_path / "cache")
    with pytest.raises(RecipeError, match="is a black box .*only output-level losses"):
        distil_classifier(onnx_t, _student(), tiny, LossConfig(attention=1.0, attention_layers=(("features.2", "x"),)),
                          CFG, out_dir=tmp_path / "o", cache=cache)
    res = distil_classifier(onnx_t, _student(), tiny, LossConfig(), FitConfig(epochs=1), out_dir=tmp_path / "o",
                            cache=cache, shift=1)
    assert res["cache"] == {"logits": "made"}
    (entry,) = list((tmp_path / "cache").iterdir())
    views = ShiftViews(torch.from_numpy(tiny.x_train), 1)
    with torch.no_grad():
        direct = teacher.module(views.all_views(7)).numpy()
    assert np.allclose(cache.load(entry.name)["a"][7], direct, atol=1e-4)


def test_precomputed_outputs_turn_augmentation_off(tmp_path, tiny, files):
    teacher = _teacher(files)
    with torch.no_grad():
        np.save(tmp_path / "logits.npy", teacher.module(torch.from_numpy(tiny.x_train)).numpy())
    given = load_model(f"outputs:{tmp_path / 'logits.npy'}", task=tiny)
    student = _student()
    seen = []
    student.module.register_forward_hook(lambda m, a, o: seen.append(a[0].detach().clone()) if m.training else None)
    prog = _Progress()
    res = distil_classifier(given, student, tiny, LossConfig(), CFG, out_dir=tmp_path / "o",
                            cache=OutputCache(tmp_path / "cache"), shift=2, progress=prog)
    assert res["cache"] == {"logits": "given"} and not (tmp_path / "cache").exists()
    assert any("augmentation (shift) turned off" in line for line in prog.lines)
    train_rows = {row.tobytes() for row in tiny.x_train}
    assert seen and all(row.numpy().tobytes() in train_rows for batch in seen for row in batch)  # un-shifted images
    with pytest.raises(RecipeError, match="black box"):
        distil_classifier(given, _student(), tiny, LossConfig(hint=1.0, hint_layers=(("features.2", "features.2"),)),
                          CFG, out_dir=tmp_path / "o", cache=OutputCache(tmp_path / "cache"))


# ---------------------------------------------------------------- resume
def test_resume_with_augmentation_matches_an_uninterrupted_run(tmp_path, tiny, files, monkeypatch):
    teacher = _teacher(files)
    cache = OutputCache(tmp_path / "cache")
    cfg = FitConfig(epochs=3, batch_size=32, lr=5e-3, seed=2)
    losses = LossConfig(alpha=0.7, attention=5.0, attention_layers=(("features.2", "features.2"),))
    ref = _student()
    res_ref = distil_classifier(teacher, ref, tiny, losses, cfg, out_dir=tmp_path / "ref", cache=cache, shift=1)

    real_fit = classify.fit

    def killed_fit(modules, step, *a, **k):
        def dying(idx, epoch):
            if epoch == 2:
                raise KeyboardInterrupt
            return step(idx, epoch)
        return real_fit(modules, dying, *a, **k)

    monkeypatch.setattr(classify, "fit", killed_fit)
    with pytest.raises(KeyboardInterrupt):
        distil_classifier(teacher, _student(), tiny, losses, cfg, out_dir=tmp_path / "run", cache=cache, shift=1)
    monkeypatch.setattr(classify, "fit", real_fit)
    resumed = _student()
    res = distil_classifier(teacher, resumed, tiny, losses, cfg, out_dir=tmp_path / "run", cache=cache, shift=1)
    assert res["fit"]["resumed_from"] == 2
    assert _equal(_weights(resumed.module), _weights(ref.module))  # the best epoch's weights
    # and the last epoch, trained after the resume, saw the same augmented views: identical losses and weights
    assert [h["loss"] for h in res["fit"]["history"]] == [h["loss"] for h in res_ref["fit"]["history"]]
    last = [torch.load(d / "checkpoint.pt", weights_only=True)["modules"]["student"] for d in (tmp_path / "ref",
                                                                                            tmp_path / "run")]
    assert _equal(*last)


# ---------------------------------------------------------------- `workbench distill`
def _run(capsys, *args):
    rc = main(["distill", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def _card(out):
    return json.loads((out / "card.json").read_text())


def _check_outputs(out, card):
    assert {"card.json", "student.safetensors", "student.onnx"} <= {p.name for p in out.iterdir()}
    m, n = card["metrics"], card["task"]["n_test"]
    onnx_acc = m["test_accuracy_onnx"]["value"]
    assert 0 <= onnx_acc <= 1 and m["test_accuracy_onnx"]["n"] == n
    assert abs(onnx_acc - m["test_accuracy_torch"]) * n <= 1 + 1e-9  # the artifact agrees with PyTorch
    lo, hi = m["test_accuracy_onnx"]["ci95"]
    assert lo <= onnx_acc <= hi
    assert card["student"]["onnx_parity_max_abs"] < 1e-3


@pytest.mark.slow
def test_distill_digits_end_to_end_with_the_committed_teacher(tmp_path, capsys, digits):
    out = tmp_path / "out"
    rc, stdout, err = _run(capsys, "--teacher", "zoo:digits-resnet", "--student", STUDENT, "--task", "digits",
                           "--epochs", 2, "--shift", 0, "--batch-size", 32, "--lr", 1e-2,
                           "--cache", tmp_path / "cache", "--out", out, "--quiet")
    assert rc == 0, err
    card = _card(out)
    _check_outputs(out, card)
    assert card["teacher"]["test_accuracy"] >= 0.99 and card["teacher"]["params"] > 1_000_000
    assert card["teacher_cache"]["status"] == {"logits": "made"}
    assert card["fit"]["epochs_run"] == 2 and card["task"]["name"] == "digits" and card["task"]["n_train"] == 1257
    assert card["metrics"]["test_accuracy_torch"] > 0.3  # 2 epochs of a 1.6k-param CNN: far above chance (0.1)
    assert card["job"]["student"] == STUDENT and card["losses"]["alpha"] == 0.9
    assert "test accuracy of student.onnx (ONNX Runtime)" in stdout and f"written: {out}/" in stdout
    # the saved weights reload through the same spec and give the card's accuracy
    again = load_model(f"{STUDENT}&weights={out / 'student.safetensors'}", in_channels=1, num_classes=10)
    acc = float((again.predict(digits.x_test).argmax(1) == digits.y_test).mean())
    assert acc == pytest.approx(card["metrics"]["test_accuracy_torch"])


def _tiny_args(files, tmp_path, *extra):
    return ["--teacher", TEACHER.format(files / "teacher0.safetensors"), "--student", STUDENT,
            "--task", f"npz:{files / 'tiny.npz'}", "--epochs", 1, "--shift", 0, "--cache", tmp_path / "cache",
            "--out", tmp_path / "out", "--quiet", *extra]


@pytest.mark.slow
def test_distill_config_file_py_student_and_cache_reuse(tmp_path, capsys, files, monkeypatch):
    import shutil

    job = tmp_path / "job"
    job.mkdir()
    for name in ("tiny.npz", "teacher0.safetensors", "students.py"):
        shutil.copy(files / name, job / name)
    (job / "distill.toml").write_text(f'''
[distill]
teacher = "zoo:cnn?width=8&depth=1&weights=teacher0.safetensors"
student = "py:students.py:mlp?hidden=8"
task = "npz:tiny.npz"
epochs = 3
shift = 1
batch_size = 64
alpha = 0.5
cache = "{tmp_path / 'cache'}"
''')
    monkeypatch.chdir(tmp_path)  # paths in the file are relative to the file, not to the working directory
    rc, stdout, err = _run(capsys, "--config", job / "distill.toml", "--epochs", 2, "--out", "out1", "--quiet")
    assert rc == 0, err
    card = _card(tmp_path / "out1")
    _check_outputs(tmp_path / "out1", card)
    assert card["fit_config"]["epochs"] == 2 and card["fit"]["epochs_run"] == 2  # the CLI overrides the file
    # `shift` is the old name of augment_shift: still accepted, with a note
    assert "note: " in err and "[distill] shift is deprecated; call it augment_shift" in err
    assert card["job"]["alpha"] == 0.5 and card["job"]["augment_shift"] == 1 and card["student"]["params"] == 256 * 8 + 8 + 8 * 10 + 10
    assert card["teacher_cache"]["status"] == {"logits": "made"}
    # the same job again: the teacher's outputs come from the cache and the finished training is not repeated
    rc, _, err = _run(capsys, "--config", job / "distill.toml", "--epochs", 2, "--out", "out1", "--quiet")
    assert rc == 0, err
    again = _card(tmp_path / "out1")
    assert again["teacher_cache"]["status"] == {"logits": "hit"} and again["fit"]["resumed_from"] == 2
    assert again["metrics"]["test_accuracy_torch"] == card["metrics"]["test_accuracy_torch"]


@pytest.mark.slow
def test_distill_torchvision_student_on_a_grey_image_folder(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, kind in enumerate(("rows", "cols", "box")):
        (tmp_path / "imgs" / kind).mkdir(parents=True)
        for i in range(15):
            a = rng.integers(0, 80, size=(24, 24, 3)).astype(np.uint8)
            if kind == "rows":
                a[::4] += 150
            elif kind == "cols":
                a[:, ::4] += 150
            else:
                a[6:18, 6:18] += 150
            Image.fromarray(a).save(tmp_path / "imgs" / kind / f"{i}.png")
    torch.manual_seed(0)
    save_weights(SmallCNN(in_channels=1, num_classes=3, width=4, depth=1), tmp_path / "t.safetensors")
    out = tmp_path / "out"
    # 31 training images in batches of 10: the last batch of one is dropped (BatchNorm on 1x1 maps)
    rc, stdout, err = _run(capsys, "--teacher", f"zoo:cnn?width=4&depth=1&weights={tmp_path / 't.safetensors'}",
                           "--student", "torchvision:mobilenet_v3_small?width_mult=0.25",
                           "--task", f"images:{tmp_path / 'imgs'}?size=32&grey=true", "--epochs", 1, "--batch-size", 10,
                           "--cache", tmp_path / "cache", "--out", out, "--quiet")
    assert rc == 0, err
    card = _card(out)
    _check_outputs(out, card)
    assert card["task"]["input_shape"] == [1, 1, 32, 32] and card["task"]["num_classes"] == 3
    assert card["student"]["params"] < 200_000
    # the saved weights load back through the student's own spec (the bare torchvision model, re-wrapped)
    task = load_task(f"images:{tmp_path / 'imgs'}?size=32&grey=true")
    again = load_model(f"torchvision:mobilenet_v3_small?width_mult=0.25&weights={out / 'student.safetensors'}",
                       in_channels=1, num_classes=3)
    acc = float((again.predict(task.x_test).argmax(1) == task.y_test).mean())
    assert acc == pytest.approx(card["metrics"]["test_accuracy_torch"])


def test_list_layers(capsys, files):
    rc, out, err = _run(capsys, "--list-layers", STUDENT, "--task", f"npz:{files / 'tiny.npz'}")
    assert rc == 0, err
    lines = out.splitlines()
    assert "features.0\tConv2d" in lines and "features.2\tReLU" in lines and "fc\tLinear" in lines
    rc, out, _ = _run(capsys, "--list-layers", f"py:{files / 'students.py'}:mlp")
    assert rc == 0 and out.splitlines()[:2] == ["body\tSequential", "body.0\tFlatten"]


# every error: exit 2, exactly one line on stderr starting "error:", and no output folder
ERRORS = [
    (["--teacher", "keras:model.h5"], "unknown model source kind 'keras'"),
    (["--teacher", "zoo:cnn?width=8&depth=1&weights=nowhere.safetensors"], "'nowhere.safetensors' not found"),
    (["--teacher", "zoo:cnn?width=8&depth=1&weights={tmp}/corrupt.safetensors"], "cannot read weights"),
    (["--teacher", "zoo:cnn?width=4&depth=1&weights={files}/teacher0.safetensors"], "do not fit the architecture"),
    (["--student", "torchvision:resnet181"], "did you mean: resnet18"),
    (["--student", "py:no_such_module_wb:make"], "cannot import 'no_such_module_wb'"),
    (["--student", "py:{files}/students.py:nothing"], "has no callable 'nothing'"),
    (["--student", "py:{files}/students.py:not_a_model"], "returned str, not a torch.nn.Module"),
    (["--student", "py:{files}/students.py:seven_classes"], "outputs (7,) but the task has 10 classes"),
    (["--student", "onnx:{tmp}/corrupt.safetensors"], "teacher, not a student"),
    (["--hint", 1], "hint > 0 needs hint_layers"),
    (["--hint", 1, "--hint-layers", "features.99:features.2"], "unknown layer 'features.99'"),
    (["--attention", 1, "--attention-layers", "features.2:featurs.2"], "e.g. features.2"),
    (["--attention", 1, "--attention-layers", "features.2:fc"], "the teacher's layer 'fc' outputs (10,)"),
    (["--hint", 1, "--hint-layers", "features.2:fc"], "cannot adapt student features"),
    (["--hint", 1, "--hint-layers", "features.2"], "is not STUDENT_LAYER:TEACHER_LAYER"),
    (["--alpha", 2], "--alpha = 2.0 is not allowed; use a number in [0, 1]"),
    (["--lr", -1], "--lr = -1.0 is not allowed; use a number > 0"),
    (["--shift", 9], "--shift = 9 is not allowed; use an integer in [0, 4]"),
    (["--config", "{tmp}/recipe_only.toml"], "[distill] regimes applies to a recipe only; workbench distill trains one "
                                             "student: few = N"),
    (["--teacher", "onnx:{tmp}/t.onnx", "--attention", 1, "--attention-layers", "features.2:x"], "black box"),
    (["--task", "npz:{tmp}/missing.npz"], "not found"),
    (["--config", "{tmp}/bogus.toml"], "unknown key 'bogus' in [distill]; valid keys: teacher, student, task"),
    (["--config", "{tmp}/badtype.toml"], "[distill] lr must be a number, got 'fast'"),
    (["--config", "{tmp}/nowhere.toml"], "distill config"),
    (["--out", "{tmp}/a-file/out"], "cannot write"),
]


@pytest.mark.parametrize("args, message", ERRORS, ids=[m[:30] for _, m in ERRORS])
def test_distill_errors_are_one_line_and_write_nothing(tmp_path, capsys, files, tiny, args, message):
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 64)
    (tmp_path / "a-file").write_text("")
    (tmp_path / "bogus.toml").write_text('[distill]\nbogus = 1\n')
    (tmp_path / "badtype.toml").write_text('[distill]\nlr = "fast"\n')
    (tmp_path / "recipe_only.toml").write_text('[distill]\nregimes = ["full"]\n')
    if "{tmp}/t.onnx" in " ".join(map(str, args)):
        _export_legacy(_teacher(files).module, tmp_path / "t.onnx", tiny.x_train[:1])
    extra = [str(a).format(tmp=tmp_path, files=files) for a in args]
    base = _tiny_args(files, tmp_path)
    for flag in extra:  # an option given by the case replaces the default one
        if flag.startswith("--") and flag in base:
            j = base.index(flag)
            del base[j:j + 2]
    rc, out, err = _run(capsys, *base, *extra)
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "a-file" / "out").exists()


def test_distill_needs_teacher_student_and_task(capsys):
    rc, _, err = _run(capsys, "--student", STUDENT, "--quiet")
    assert rc == 2 and err.strip() == "error: distill needs --teacher, --task (or the key in the config file)"


@pytest.mark.slow
def test_distill_a_sequential_py_student(tmp_path, capsys, files):
    args = _tiny_args(files, tmp_path)
    args[args.index("--student") + 1] = f"py:{files / 'students.py'}:sequential"
    rc, _, err = _run(capsys, *args)
    assert rc == 0, err
    _check_outputs(tmp_path / "out", _card(tmp_path / "out"))
