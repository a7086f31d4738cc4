"""--device (auto|cpu|cuda[:N]) on a machine without CUDA: parsing, validation, auto resolution, the
recipe's [train] section, one-line errors that write nothing, and --device cpu changing no output; the
pieces of the torchrun path that need no second process; patience counted in validations."""
from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import torch
from conftest import RecordingProgress, tiny_digits

from workbench.cli import main
from workbench.distill import ddp, device
from workbench.distill.engine import FitConfig, fit
from workbench.errors import RecipeError
from workbench.recipe import TrainSection, recipe_from_dict


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without a GPU, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    root = tmp_path_factory.mktemp("device")
    t = tiny_digits(60, 20, 20)
    np.savez(root / "tiny.npz", x_train=t.x_train, y_train=t.y_train, x_val=t.x_val, y_val=t.y_val,
             x_test=t.x_test, y_test=t.y_test)
    return root / "tiny.npz"


def test_device_specs_are_parsed_and_bad_ones_refused():
    assert [device.parse_device(s) for s in ("auto", "CPU", " cuda ", "cuda:1")] == ["auto", "cpu", "cuda", "cuda:1"]
    for bad in ("gpu", "cuda:", "cuda:x", "cuda1", "", None, 0):
        with pytest.raises(RecipeError, match="is not a device; use auto, cpu, cuda or cuda:N"):
            device.parse_device(bad)


def test_auto_resolves_to_cpu_and_cuda_is_refused_without_a_gpu(no_cuda):
    assert device.resolve("auto") == "cpu" and device.resolve("cpu") == "cpu"
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(RecipeError, match=r"no CUDA GPU .*use --device cpu or auto"):
            device.resolve(spec)


def test_a_cuda_index_beyond_the_machine_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device.resolve("auto") == "cuda" and device.resolve("cuda:0") == "cuda:0"
    with pytest.raises(RecipeError, match=r"cuda:3: this machine has 1 CUDA device\(s\)"):
        device.resolve("cuda:3")


def test_using_sets_the_device_for_its_body_only(no_cuda):
    assert device.current() == "cpu"
    with device.using("auto") as d:
        assert d == "cpu" == device.current()
    with pytest.raises(RecipeError):
        with device.using("cuda"):
            pass
    assert device.current() == "cpu"


def test_move_reaches_tensors_in_nested_outputs():
    Out = collections.namedtuple("Out", "logits hidden")
    x = Out(torch.ones(2, dtype=torch.float64), [torch.zeros(1, dtype=torch.float64), torch.arange(3)])
    y = device.move({"a": x, "b": 5}, "cpu", torch.float32)
    assert isinstance(y["a"], Out) and y["b"] == 5
    assert y["a"].logits.dtype == torch.float32 and y["a"].hidden[0].dtype == torch.float32
    assert y["a"].hidden[1].dtype == torch.int64  # integers keep their type


def test_cpu_leaves_the_modules_and_their_forward_untouched():
    m = torch.nn.Linear(3, 2)
    with device.placed({"m": m}, "cpu"):
        assert "forward" not in vars(m)
    assert next(m.parameters()).device.type == "cpu"


def _problem():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=g), torch.arange(40) % 3
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    return net, (lambda idx, epoch: torch.nn.functional.cross_entropy(net(x[idx]), y[idx])), \
        (lambda: float((net(x).argmax(1) == y).float().mean()))


def test_device_cpu_trains_bit_identically_to_the_default():
    runs = []
    for dev in (None, "cpu"):
        net, step, evaluate = _problem()
        res = fit({"m": net}, step, 40, evaluate, FitConfig(steps=9, batch_size=8, seed=3), device=dev)
        runs.append(({k: v.clone() for k, v in net.state_dict().items()}, res.history))
    (wa, ha), (wb, hb) = runs
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [h["loss"] for h in ha] == [h["loss"] for h in hb]


def test_patience_counts_validations_with_a_step_budget_and_epochs_with_an_epoch_budget():
    assert FitConfig(steps=10).patience_unit() == "validations" and FitConfig(epochs=3).patience_unit() == "epochs"
    net, step, _ = _problem()
    progress = RecordingProgress()
    # 40 examples, batch 8: 5 steps a pass; 200 steps = 40 passes, validated every 2nd: a flat metric stops
    # after 1 + patience validations
    res = fit({"m": net}, step, 40, lambda: 0.5, FitConfig(steps=200, batch_size=8, patience=3), progress=progress)
    assert res.stopped_early and res.epochs_run == 8  # validations after passes 2, 4, 6, 8
    assert any("no val improvement in 3 validations (patience" in line for line in progress.lines)
    net, step, _ = _problem()
    progress = RecordingProgress()
    res = fit({"m": net}, step, 40, lambda: 0.5, FitConfig(epochs=10, batch_size=8, patience=2), progress=progress)
    assert res.stopped_early and res.epochs_run == 3
    assert any("in 2 epochs (patience" in line for line in progress.lines)


def test_the_recipe_train_section(no_cuda):
    base = {"name": "t", "students": [{"name": "a", "arch": "cnn", "width": 4, "depth": 1}]}
    r = recipe_from_dict(base)
    assert r.train == TrainSection() and "train" not in r.to_dict()  # a default recipe's files are unchanged
    r2 = recipe_from_dict({**base, "train": {"device": "CUDA:1"}})  # checked, not resolved: the trainer resolves it
    assert r2.train.device == "cuda:1" and r2.to_dict()["train"] == {"device": "cuda:1", "nproc_per_node": 1}
    assert recipe_from_dict(r2.to_dict()) == r2
    for bad, msg in (({"device": "gpu"}, r"\[train\] device 'gpu' is not a device"),
                     ({"nproc_per_node": 2}, r"nproc_per_node = 2: .*`workbench distill --nproc-per-node N` only"),
                     ({"devices": "cpu"}, r"unknown key 'devices' in \[train\]")):
        with pytest.raises(RecipeError, match=msg):
            recipe_from_dict({**base, "train": bad})


def test_the_device_is_no_part_of_any_content_key():
    from workbench.pipeline import families  # noqa: F401  (registers image-classification)
    from workbench.pipeline.plan import plan

    base = {"name": "t", "students": [{"name": "a", "arch": "cnn", "width": 4, "depth": 1}],
            "distill": {"seeds": [0], "regimes": ["full"], "steps": 4}, "measure": {"threads": [1]}}
    keys = [{n.id: n.key for n in plan(recipe_from_dict({**base, **extra}), ["ort"], teacher_sha="a" * 64,
                                        task_fp="f" * 16, family="image-classification").nodes}
            for extra in ({}, {"train": {"device": "cuda"}}, {"train": {"device": "cpu"}})]
    assert keys[0] == keys[1] == keys[2] and any(keys[0].values())


def _one_line_exit_2(capsys, args):
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    return err


def test_commands_refuse_a_device_they_cannot_use_and_write_nothing(no_cuda, tmp_path, capsys, npz):
    out = tmp_path / "d"
    student = ["--teacher", "zoo:cnn?width=4&depth=1", "--student", "zoo:cnn?width=4&depth=1", "--task", f"npz:{npz}"]
    assert "is not a device" in _one_line_exit_2(capsys, ["distill", *student, "--device", "gpu", "--out", str(out)])
    assert "no CUDA GPU" in _one_line_exit_2(capsys, ["distill", *student, "--device", "cuda", "--out", str(out)])
    err = _one_line_exit_2(capsys, ["distill", *student, "--device", "cuda", "--nproc-per-node", "2", "--out", str(out)])
    assert "no CUDA GPU" in err  # before torchrun starts
    assert "not both" in _one_line_exit_2(capsys, ["distill", *student, "--steps", "3", "--epochs", "2", "--out", str(out)])
    assert "no CUDA GPU" in _one_line_exit_2(capsys, ["train", "--task", f"npz:{npz}", "--arch", "cnn?width=4&depth=1",
                                                      "--device", "cuda:0", "--out", str(tmp_path / "t.safetensors")])
    assert "no CUDA GPU" in _one_line_exit_2(capsys, ["run", "--device", "cuda", "--dry-run"])
    assert "is not a device" in _one_line_exit_2(capsys, ["run", "--device", "tpu", "--dry-run"])
    assert not list(tmp_path.iterdir())


def test_nproc_above_one_is_refused_for_jobs_it_does_not_split(tmp_path, capsys, npz):
    args = ["distill", "--qat", "static", "--alpha", "0", "--student", "zoo:cnn?width=4&depth=1", "--task",
            f"npz:{npz}", "--nproc-per-node", "2", "--out", str(tmp_path / "q")]
    assert "does not apply to --qat" in _one_line_exit_2(capsys, args)
    assert not list(tmp_path.iterdir())


def test_train_with_device_cpu_writes_what_it_writes_without(tmp_path, npz, capsys):
    cards = []
    for name, extra in (("default", []), ("cpu", ["--device", "cpu"])):
        out = tmp_path / f"{name}.safetensors"
        assert main(["train", "--task", f"npz:{npz}", "--arch", "cnn?width=4&depth=1", "--steps", "6",
                     "--batch-size", "16", "--out", str(out), *extra]) == 0
        cards.append(json.loads(out.with_suffix(".card.json").read_text()))
    capsys.readouterr()
    from safetensors import safe_open

    files = [safe_open(str(tmp_path / f"{n}.safetensors"), "pt") for n in ("default", "cpu")]
    assert files[0].metadata() == files[1].metadata() and set(files[0].keys()) == set(files[1].keys())
    assert all(torch.equal(files[0].get_tensor(k), files[1].get_tensor(k)) for k in files[0].keys())
    assert cards[0]["metrics"] == cards[1]["metrics"] and cards[0]["trained_on"]["device"] == "cpu"


def test_ddp_helpers_outside_a_process_group():
    assert ddp.world() == (0, 1) and ddp.is_main() and ddp.share(7) == slice(0, 7)
    with ddp.main_first():
        pass
    assert ddp.broadcast_value(0.25) == 0.25 and ddp.broadcast_value(None) is None
    argv = ["distill", "--nproc-per-node", "2", "--task", "digits", "--nproc-per-node=3", "--steps", "4"]
    assert ddp.strip_option(argv, "--nproc-per-node") == ["distill", "--task", "digits", "--steps", "4"]
    cmd = ddp.launch_command(["distill", "--task", "digits"], 2)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    assert cmd[6:] == ["workbench.cli", "distill", "--task", "digits"]


def test_shares_split_every_batch_in_order(monkeypatch):
    for size in (2, 3):
        for n in (1, 5, 33):
            parts = []
            for rank in range(size):
                monkeypatch.setattr(ddp, "world", lambda r=rank, s=size: (r, s))
                parts.append(ddp.share(n))
            assert [i for p in parts for i in range(n)[p]] == list(range(n))  # contiguous, in order, all of it
            assert max(p.stop - p.start for p in parts) - min(p.stop - p.start for p in parts) <= 1
