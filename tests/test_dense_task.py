"""Dense prediction (issue 16, item 1): the page generator's ground truth is exact, the metrics are right on
hand-made cases, and bad dense specs fail with one line (exit 2)."""
from __future__ import annotations

import numpy as np
import pytest

from workbench.cli import main
from workbench.errors import TaskError
from workbench.tasks import load_task
from workbench.tasks.dense_metrics import box_f1, box_iou, dense_quality, mask_boxes, mask_iou, match_counts
from workbench.tasks.dense_pages import render_pages


def test_generated_masks_are_exactly_the_union_of_word_boxes_and_the_boxes_are_their_components():
    x, masks, boxes = render_pages(40, 64, seed=3)
    assert x.shape == (40, 1, 64, 64) and x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert sum(len(b) for b in boxes) > 100  # real text on most pages
    for m, b in zip(masks, boxes):
        union = np.zeros_like(m)
        for x0, y0, x1, y1 in b:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            union[y0:y1, x0:x1] = 1
        assert np.array_equal(union, m)
        # word boxes never touch: the mask's 8-connected components are exactly the word boxes
        assert sorted(map(tuple, mask_boxes(m).tolist())) == sorted(map(tuple, b.tolist()))


def test_generated_text_ink_lies_inside_the_word_boxes():
    """The generator is deterministic for a seed, and every word box holds glyph ink clearly darker than its page."""
    a = render_pages(6, 64, seed=5)
    b = render_pages(6, 64, seed=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    x, m, boxes = a
    for img, bx in zip(x[:, 0], boxes):
        for x0, y0, x1, y1 in bx:
            assert img[y0:y1, x0:x1].min() < np.median(img) - 0.2  # glyph ink inside each word box


def test_mask_iou_on_hand_made_masks():
    p = np.zeros((3, 4, 4), np.uint8)
    t = np.zeros((3, 4, 4), np.uint8)
    p[0, :2, :2] = 1
    t[0, :2, :] = 1  # 4 / 8
    p[1, 0, 0] = 1  # nothing true: 0
    # image 2: both empty -> 1
    assert np.allclose(mask_iou(p, t), [0.5, 0.0, 1.0])


def test_box_matching_and_f1_on_hand_made_boxes():
    assert np.allclose(box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [0, 0, 2, 2]]), [[1 / 3, 1.0]])
    # two true words; the prediction merges them into one component (IoU 0.5 with neither) + one false blob
    true = np.array([[0, 0, 4, 2], [5, 0, 9, 2]])
    pred = np.zeros((2, 4, 10), np.uint8)
    pred[0, 0:2, 0:4] = 1  # exactly word 1
    pred[0, 3, 8:10] = 1  # a false positive
    pred[1, 0:2, 0:9] = 1  # both words merged
    assert match_counts(mask_boxes(pred[0]), true) == (1, 1, 1)
    assert match_counts(mask_boxes(pred[1]), true) == (0, 1, 2)
    f = box_f1(pred, [true, true])
    assert f["tp"] == 1 and f["fp"] == 2 and f["fn"] == 3
    assert f["f1"] == pytest.approx(2 / (2 + 2 + 3))
    assert f["ci95"][0] <= f["f1"] <= f["ci95"][1]


def test_dense_quality_reads_class_one_as_text():
    masks = np.zeros((2, 4, 4), np.uint8)
    masks[:, 1:3, 1:3] = 1
    logits = np.stack([1 - masks, masks], 1).astype(np.float32)  # a perfect prediction
    q = dense_quality(logits, masks, [mask_boxes(m) for m in masks])
    assert q["metric"] == "mean IoU" and q["value"] == 1.0 and q["box_f1"] == 1.0 and q["n"] == 2


def test_dense_task_spec_loads_pages_and_npz(tmp_path):
    t = load_task("dense:pages?n_train=8&n_val=2&n_test=4&size=32")
    assert t.x_train.shape == (8, 1, 32, 32) and t.mask_test.shape == (4, 32, 32) and len(t.boxes_test) == 4
    assert t.fingerprint() == load_task("dense:pages?n_train=8&n_val=2&n_test=4&size=32").fingerprint()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 16, 16)).astype(np.uint8)
    m = np.zeros((20, 16, 16), np.uint8)
    m[:, 2:5, 3:9] = 1
    np.savez(tmp_path / "d.npz", x=x, mask=m)
    u = load_task(f"dense:{tmp_path / 'd.npz'}")
    assert len(u.x_train) + len(u.x_val) + len(u.x_test) == 20 and u.x_train.max() <= 1.0
    assert u.boxes_train[0].tolist() == [[3, 2, 9, 5]]


def _recipe(tmp_path, task="dense:pages?n_train=8&n_val=2&n_test=4&size=32", student="dense:fcn?width=4&depth=2",
            teacher="dense:unet?width=4&depth=1&steps=2") -> str:
    p = tmp_path / "dense.toml"
    p.write_text(f'''schema_version = 1
[task]
name = "{task}"
[teacher]
source = "{teacher}"
[[students]]
name = "s"
arch = "{student}"
[distill]
seeds = [0]
regimes = ["full"]
steps = 2
[measure]
runtimes = ["ort"]
''')
    return str(p)


@pytest.mark.parametrize("kw, words", [
    ({"task": "dense:pages?n_train=1"}, "n_train=1 must be an integer >= 4"),
    ({"task": "dense:pages?colour=1"}, "unknown option"),
    ({"task": "dense:nothing-here.npz"}, "not found"),
    ({"student": "dense:vgg?width=4"}, "not a dense architecture"),
    ({"student": "dense:fcn?width=0"}, "width = 0 must be an integer in 1..64"),
    ({"student": "pyg:mlp?hidden=8"}, "is not a dense network"),
    ({"teacher": "onnx:teacher.onnx"}, "must be white-box"),
])
def test_bad_dense_recipes_fail_with_one_line_before_any_work(kw, words, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    rc = main(["run", _recipe(tmp_path, **kw), "--quiet", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_workbench_train_refuses_a_dense_task_in_one_line(capsys, tmp_path):
    rc = main(["train", "--task", "dense:pages", "--out", str(tmp_path / "m.safetensors")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "workbench/recipes/dense.toml" in err, err


def test_npz_with_bad_masks_is_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((12, 8, 8), np.float32), mask=np.full((12, 8, 8), 2, np.uint8))
    with pytest.raises(TaskError, match="mask values must be 0"):
        load_task(f"dense:{tmp_path / 'bad.npz'}")


def test_workbench_distill_on_a_dense_task_distils_and_exports(capsys, tmp_path, monkeypatch):
    """`workbench distill` on dense: the U-Net teacher trained once (cached), per-pixel KD + hint into an FCN,
    student.onnx judged by ONNX Runtime (mean IoU with its CI, box F1); a student that is not dense: one line."""
    import json

    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "cache"))
    task = "dense:pages?n_train=8&n_val=2&n_test=4&size=32"
    rc = main(["distill", "--task", task, "--teacher", "dense:unet?width=4&depth=1&steps=10", "--student",
               "kws:cnn", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "must be an untrained dense network" in err, err
    assert not (tmp_path / "bad").exists()
    assert main(["distill", "--task", task, "--teacher", "dense:unet?width=4&depth=1&steps=10", "--student",
                 "dense:fcn?width=2&depth=1", "--hint", "1", "--steps", "4", "--out", str(tmp_path / "d")]) == 0
    card = json.loads((tmp_path / "d" / "card.json").read_text())
    q = card["metrics"]["test_onnx"]
    assert card["kind"] == "dense-distillation" and q["metric"] == "mean IoU" and q["n"] == 4
    assert q["ci95"][0] <= q["value"] <= q["ci95"][1] and 0 <= q["box_f1"] <= 1
    assert card["fit"]["steps_run"] == 4 and card["loss"]["hint"] == 1
    assert (tmp_path / "d" / "student.onnx").is_file() and card["student"]["onnx_parity_max_abs"] < 1e-3


def test_dense_folder_of_images_and_masks(tmp_path):
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(10):
        m = np.zeros((20, 20), np.uint8)
        m[3:7, 2 + i:10 + i] = 255
        Image.fromarray(255 - m // 2).save(tmp_path / "images" / f"p{i}.png")
        Image.fromarray(m).save(tmp_path / "masks" / f"p{i}.png")
    t = load_task(f"dense:{tmp_path}?size=16")
    assert t.x_train.shape[1:] == (1, 16, 16) and len(t.x_train) == 7 and len(t.x_val) == 1 and len(t.x_test) == 2
    assert set(np.unique(t.mask_train)) == {0, 1} and all(len(b) == 1 for b in t.boxes_test)
    (tmp_path / "masks" / "p3.png").unlink()
    with pytest.raises(TaskError, match="masks/ lacks p3.png"):
        load_task(f"dense:{tmp_path}")
