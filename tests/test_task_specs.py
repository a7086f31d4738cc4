"""One task resolution for every command: train / distill / quantize / bench / run accept the same specs
(images:, npz: with images or flat features); a kind a command cannot use fails with one line."""
import json

import numpy as np
import pytest

from workbench.cli import main
from workbench.errors import RecipeError, TaskError
from workbench.measure import Protocol
from workbench.tasks import ARRAYS, LABELS, SPEC_KINDS, TaskKind, check_task_spec, load_task

from test_tasks_arrays import make_image_folder  # tests/ is on sys.path (rootdir conftest, prepend mode)

SHORT = Protocol(warmup_runs=2, warmup_s=0.02, min_runs=10, min_s=0.1, max_s=0.3, memory_runs=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """An image folder (3 classes x 10 PNGs, 12x12 RGB), image arrays and flat features, all learnable."""
    root = tmp_path_factory.mktemp("data")
    make_image_folder(root / "imgs", per_class=10)
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    x = (rng.normal(size=(60, 1, 12, 12)) * 0.5 + y[:, None, None, None]).astype(np.float32)
    np.savez(root / "img.npz", x=x, y=y)
    np.savez(root / "feat.npz", x=(rng.normal(size=(60, 7)) + 2 * y[:, None]).astype(np.float32), y=y)
    return root


def _cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(rc, err, *words):
    assert rc == 2 and err.startswith("error: ") and err.strip().count("\n") == 0, err
    for w in words:
        assert w in err, err


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """`workbench train --task npz:FILE --arch cnn --steps 20` (in process): weights + card."""
    out = tmp_path_factory.mktemp("teacher") / "cnn.safetensors"
    assert main(["train", "--task", f"npz:{data / 'img.npz'}", "--arch", "cnn", "--steps", "20", "--out", str(out)]) == 0
    return out, json.loads(out.with_suffix(".card.json").read_text())


@pytest.fixture(scope="module")
def distilled(data, trained, tmp_path_factory):
    """Trained teachers in `workbench distill`: the npz cnn, one on the image folder, an mlp on flat features."""
    base = tmp_path_factory.mktemp("distill")
    img_teacher, feat_teacher = base / "img-teacher.safetensors", base / "feat-teacher.safetensors"
    assert main(["train", "--task", f"images:{data / 'imgs'}?size=12", "--arch", "cnn?width=4&depth=1", "--steps", "10",
                 "--out", str(img_teacher)]) == 0
    assert main(["train", "--task", f"npz:{data / 'feat.npz'}", "--steps", "10", "--out", str(feat_teacher)]) == 0
    outs = {}
    for name, teacher, student, task, shift in (
            ("npz", trained[1]["teacher_spec"], "zoo:cnn?width=4&depth=1", f"npz:{data / 'img.npz'}", "0"),
            ("images", f"zoo:cnn?width=4&depth=1&weights={img_teacher}", "zoo:cnn?width=4&depth=1",
             f"images:{data / 'imgs'}?size=12", "0"),
            ("features", f"zoo:mlp?weights={feat_teacher}", "zoo:mlp?hidden=8", f"npz:{data / 'feat.npz'}", "1")):
        outs[name] = base / name  # features with --shift 1: nothing to shift, one view
        assert main(["distill", "--teacher", teacher, "--student", student, "--task", task, "--epochs", "1",
                     "--shift", shift, "--cache", str(base / "cache"), "--out", str(outs[name]), "--quiet"]) == 0
    return outs


# ------------------------------------------------------------------ the resolver itself
def test_spec_kinds_are_registered_and_declare_what_they_provide():
    assert {"images", "npz", "text", "corpus"} <= set(SPEC_KINDS)
    assert {ARRAYS, LABELS} <= SPEC_KINDS.get("npz").provides and ARRAYS not in SPEC_KINDS.get("corpus").provides
    with pytest.raises(ValueError, match="registered twice"):
        SPEC_KINDS.register("npz", SPEC_KINDS.get("npz"))


def test_a_registered_kind_is_resolved_without_any_if_on_names(monkeypatch, data):
    items = dict(SPEC_KINDS._items)
    monkeypatch.setattr(SPEC_KINDS, "_items", items)
    seen = {}

    def load(target, base_dir, **options):
        seen.update(target=target, options=options)
        return load_task(f"npz:{data / 'feat.npz'}")

    SPEC_KINDS.register("toy", TaskKind("toy", load, frozenset({ARRAYS, LABELS}), frozenset({"n"}), "a toy"))
    task = load_task("toy:anything?n=3", command="train", needs={ARRAYS, LABELS})
    assert seen == {"target": "anything", "options": {"n": 3}} and task.sample_shape == (7,)
    with pytest.raises(RecipeError, match="unknown option"):
        load_task("toy:x?m=1")


def test_bad_specs_and_options_are_one_clear_error():
    with pytest.raises(RecipeError, match="unknown task 'mnist'.*images:"):
        load_task("mnist")
    with pytest.raises(RecipeError, match="unknown task kind 'csv'.*digits, .*images:DIR.*npz:FILE"):
        load_task("csv:data.csv")
    with pytest.raises(RecipeError, match="unexpected keyword argument 'foo'; valid options: image_size"):
        load_task("digits?foo=1")
    with pytest.raises(RecipeError, match="unknown option.*colour"):
        check_task_spec("images:x?colour=1")
    # a kind the command cannot use: refused before any data is read (the files do not exist)
    with pytest.raises(TaskError, match="workbench train needs a task with array inputs and class labels; "
                                        "corpus:notes.txt is unlabelled text.*workbench distill"):
        load_task("corpus:notes.txt", command="train", needs={ARRAYS, LABELS})
    with pytest.raises(TaskError, match="text:nowhere.csv is labelled texts.*hf:DIR\\?task=classification"):
        load_task("text:nowhere.csv", command="run", needs={ARRAYS, LABELS})


def test_flat_feature_npz_is_a_task(data):
    t = load_task(f"npz:{data / 'feat.npz'}")
    assert t.sample_shape == (7,) and t.num_classes == 3 and t.input_shape == (1, 7)
    assert np.allclose(t.x_train.mean(axis=0), 0, atol=1e-5)  # standardised per feature


# ------------------------------------------------------------------ workbench train
def test_train_on_npz_writes_a_teacher_that_distill_and_recipes_load(data, trained):
    out, card = trained
    assert out.is_file() and card["architecture"]["arch"] == "cnn"
    assert card["task"]["spec"] == f"npz:{data / 'img.npz'}" and card["task"]["num_classes"] == 3
    assert card["task"]["input_shape"] == [1, 1, 12, 12] and 0 <= card["metrics"]["test_accuracy"] <= 1
    assert card["teacher_spec"] == f"zoo:cnn?weights={out.as_posix()}"
    from workbench.zoo.sources import load_model

    task = load_task(card["task"]["spec"])
    m = load_model(card["teacher_spec"], in_channels=1, num_classes=3)
    acc = float((m.predict(task.x_test).argmax(1) == task.y_test).mean())
    assert acc == pytest.approx(card["metrics"]["test_accuracy"])  # the card's number, from the saved weights


def test_train_on_images_and_flat_features_takes_shapes_from_the_task(data, tmp_path, capsys):
    rc, out, err = _cli(capsys, "train", "--task", f"images:{data / 'imgs'}?size=16&grey=true",
                        "--arch", "resnet?channels=8,16&blocks=1,1", "--steps", 5, "--out", tmp_path / "r.safetensors")
    assert rc == 0, err
    card = json.loads((tmp_path / "r.card.json").read_text())
    assert card["task"]["input_shape"] == [1, 1, 16, 16] and card["architecture"]["options"] == {
        "channels": [8, 16], "blocks": [1, 1]}
    assert "--teacher \"zoo:resnet?blocks=1,1&channels=8,16&weights=" in out
    rc, out, err = _cli(capsys, "train", "--task", f"npz:{data / 'feat.npz'}", "--steps", 30,
                        "--out", tmp_path / "f.safetensors")
    assert rc == 0, err
    card = json.loads((tmp_path / "f.card.json").read_text())
    assert card["architecture"]["arch"] == "mlp" and card["recipe"]["train_config"]["augment_shift"] == 0
    assert card["metrics"]["test_accuracy"] > 0.5  # separable classes: far above chance (1/3)
    # an mlp on images flattens them: in_features comes from the task and is part of the teacher spec
    rc, out, err = _cli(capsys, "train", "--task", f"npz:{data / 'img.npz'}", "--arch", "mlp?hidden=8", "--steps", 3,
                        "--out", tmp_path / "m.safetensors")
    assert rc == 0, err
    assert json.loads((tmp_path / "m.card.json").read_text())["teacher_spec"].startswith(
        "zoo:mlp?hidden=8&in_features=144&weights=")


@pytest.mark.parametrize("task, arch, words", [
    ("corpus:pydoc", "auto", ("workbench train needs", "unlabelled text", "workbench distill --teacher hf:DIR")),
    ("text:reviews.csv?text=t&label=l", "auto", ("labelled texts", "workbench distill --teacher \"hf:DIR?task=")),
    ("npz:{data}/feat.npz", "resnet", ("--arch resnet is a convolutional net", "use --arch mlp")),
    ("npz:{data}/img.npz", "vit", ("unknown architecture 'vit'",)),
    ("images:{data}/imgs?size=2", "cnn", ("size must be an integer between 8 and 1024",)),
])
def test_train_refuses_what_it_cannot_use_in_one_line(data, tmp_path, capsys, task, arch, words):
    out = tmp_path / "sub" / "x.safetensors"
    rc, _, err = _cli(capsys, "train", "--task", task.format(data=data), "--arch", arch, "--out", out)
    _one_line_error(rc, err, *words)
    assert not out.parent.exists()  # nothing written


# ------------------------------------------------------------------ distill, bench, quantize
def test_distill_uses_the_trained_teacher_on_npz_images_and_features(distilled, trained):
    for name, out in distilled.items():
        card = json.loads((out / "card.json").read_text())
        assert (out / "student.onnx").is_file() and card["task"]["num_classes"] == 3
        assert card["task"]["input_shape"] == {"npz": [1, 1, 12, 12], "images": [1, 3, 12, 12], "features": [1, 7]}[name]
    npz_card = json.loads((distilled["npz"] / "card.json").read_text())
    assert npz_card["teacher"]["test_accuracy"] == pytest.approx(trained[1]["metrics"]["test_accuracy"])


@pytest.mark.parametrize("kind", ["npz", "images"])
def test_bench_feeds_the_tasks_test_split(distilled, data, kind, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("workbench.pipeline.bench.default_protocol", lambda max_s=None: SHORT)
    spec = f"npz:{data / 'img.npz'}" if kind == "npz" else f"images:{data / 'imgs'}?size=12"
    rc, out, err = _cli(capsys, "bench", distilled[kind] / "student.onnx", "--task", spec, "--json", tmp_path / "b.json")
    assert rc == 0, err
    row = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert row["input"]["shapes"] == {"input": [1, 1 if kind == "npz" else 3, 12, 12]}
    assert row["input"]["source"].startswith(f"task {kind}:") and "test split example 0" in row["input"]["source"]


def test_bench_refuses_text_tasks_and_size_mismatches(distilled, data, capsys):
    rc, _, err = _cli(capsys, "bench", distilled["npz"] / "student.onnx", "--task", "corpus:pydoc")
    _one_line_error(rc, err, "workbench bench needs a task with array inputs", "--inputs X.npz")
    rc, _, err = _cli(capsys, "bench", distilled["images"] / "student.onnx", "--task", f"images:{data / 'imgs'}?size=16")
    _one_line_error(rc, err, "gives one input of shape [1, 3, 16, 16]")


@pytest.mark.parametrize("kind", ["npz", "images"])
def test_quantize_calibrates_on_the_tasks_training_split(distilled, data, kind, tmp_path, capsys):
    spec = f"npz:{data / 'img.npz'}" if kind == "npz" else f"images:{data / 'imgs'}?size=12"
    out = tmp_path / "q.onnx"
    rc, stdout, err = _cli(capsys, "quantize", distilled[kind] / "student.onnx", "--method", "static", "--task", spec,
                           "--no-measure", "--out", out)
    assert rc == 0, err
    assert out.is_file() and f"task {kind}:" in stdout


# ------------------------------------------------------------------ workbench run
def _recipe(data, trained, task=None):
    return {"name": "specs", "task": {"name": task or f"npz:{data / 'img.npz'}"},
            "teacher": {"source": trained[1]["teacher_spec"]},
            "students": [{"name": "s", "arch": "cnn", "width": 4, "depth": 1}],
            "distill": {"seeds": [0], "regimes": ["full"], "steps": 5, "few_steps": 5, "augment_shift": 0},
            "quantize": {"teacher": ["dynamic"], "students": [], "calib_samples": 8},
            "export": {"parity_samples": 4},
            "measure": {"runtimes": ["ort"], "threads": [1], "warmup_runs": 2, "warmup_s": 0.02, "min_runs": 10,
                        "min_s": 0.05, "max_s": 0.2, "rounds": 1, "memory_runs": 2}}


def test_recipe_task_spec_is_checked_when_the_recipe_loads(data, trained):
    from workbench.recipe import recipe_from_dict

    assert recipe_from_dict(_recipe(data, trained)).task.name.startswith("npz:")
    # a corpus is a sentence-embedding task now (issue 14): it loads; its teacher is checked at preflight
    assert recipe_from_dict(_recipe(data, trained, "corpus:pydoc")).task.name == "corpus:pydoc"
    with pytest.raises(RecipeError, match="unknown task kind 'nzp'"):
        recipe_from_dict(_recipe(data, trained, "nzp:x.npz"))


def test_run_dry_run_with_an_npz_recipe(data, trained, tmp_path, capsys):
    import tomli_w

    recipe = tmp_path / "r.toml"
    recipe.write_text(tomli_w.dumps(_recipe(data, trained)))
    rc, out, err = _cli(capsys, "run", recipe, "--dry-run", "--out", tmp_path / "run")
    assert rc == 0, err
    assert "npz:" in out and "# plan:" in out and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_run_a_recipe_whose_task_is_npz(data, trained, tmp_path):
    from workbench.pipeline.runner import run
    from workbench.progress import Progress
    from workbench.recipe import recipe_from_dict

    path = run(recipe_from_dict(_recipe(data, trained)), tmp_path / "run", command="pytest", progress=Progress(quiet=True))
    doc = json.loads(path.read_text())
    assert doc["run"]["task"]["name"] == "npz:img.npz" and doc["run"]["task"]["num_classes"] == 3
    teacher = next(r for r in doc["results"] if r["artifact"]["id"] == "teacher.fp32")
    assert teacher["input"]["shapes"] == {"input": [1, 1, 12, 12]} and teacher["quality"]["value"] is not None
    assert {r["artifact"]["id"] for r in doc["results"]} >= {"teacher.fp32", "teacher.int8-dynamic"}
