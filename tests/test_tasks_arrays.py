"""The user's own image data as tasks: image folders (flat or train/val/test) and .npz arrays."""
import numpy as np
import pytest

from workbench.errors import RecipeError, TaskError
from workbench.tasks import load_task
from workbench.tasks.arrays import split_stratified

PATTERNS = ("checker", "hstripes", "vstripes")


def _pattern(kind: str, i: int, side: int = 12) -> np.ndarray:
    """An RGB uint8 image of a class pattern, shifted and tinted per example so no two are equal."""
    yy, xx = np.mgrid[:side, :side]
    phase = i % 4
    if kind == "checker":
        on = ((yy + phase) // 3 + xx // 3) % 2 == 0
    elif kind == "hstripes":
        on = (yy + phase) % 4 < 2
    else:
        on = (xx + phase) % 4 < 2
    img = np.zeros((side, side, 3), np.uint8)
    img[on] = (200, 180 + i % 50, 160)
    img[~on] = (20 + i, 10, 30)
    return img


def make_image_folder(root, per_class=15, classes=PATTERNS, start=0):
    from PIL import Image

    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_class):
            Image.fromarray(_pattern(c, i)).save(root / c / f"{c}_{i:02d}.png")
    return root


def test_image_folder_flat_layout(tmp_path):
    make_image_folder(tmp_path / "imgs")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    (tmp_path / "imgs" / ".hidden").mkdir()
    t = load_task(f"images:{tmp_path / 'imgs'}?size=16")
    assert t.name == "images:imgs" and t.num_classes == 3 and t.options["classes"] == list(PATTERNS)
    assert t.sample_shape == (3, 16, 16) and t.x_train.dtype == np.float32
    sizes = (len(t.y_train), len(t.y_val), len(t.y_test))
    assert sum(sizes) == 45 and min(sizes) >= 3 and sizes[0] == 31  # 70/10/20, stratified
    for y in (t.y_train, t.y_val, t.y_test):
        assert set(y.tolist()) == {0, 1, 2}
    # standardised per channel with the training split's statistics
    assert np.allclose(t.x_train.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    assert np.allclose(t.x_train.std(axis=(0, 2, 3)), 1, atol=1e-3)
    assert len(t.options["normalise_mean"]) == 3
    # no example in two splits; deterministic
    seen = [a.tobytes() for a in np.concatenate([t.x_train, t.x_val, t.x_test])]
    assert len(set(seen)) == 45
    assert load_task(f"images:{tmp_path / 'imgs'}?size=16").fingerprint() == t.fingerprint()
    assert load_task(f"images:{tmp_path / 'imgs'}?size=20").fingerprint() != t.fingerprint()


def test_image_folder_grey_and_base_dir(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "imgs", per_class=10, classes=PATTERNS[:2])
    monkeypatch.chdir(tmp_path.parent)
    t = load_task("images:imgs?size=8&grey=true", base_dir=tmp_path)
    assert t.sample_shape == (1, 8, 8) and t.num_classes == 2 and t.options["grey"] is True
    assert "grey" in t.description


def test_image_folder_own_splits(tmp_path):
    root = tmp_path / "split"
    make_image_folder(root / "train", per_class=8)
    make_image_folder(root / "val", per_class=2, start=20)
    make_image_folder(root / "test", per_class=3, start=30)
    t = load_task(f"images:{root}?size=8")
    assert (len(t.y_train), len(t.y_val), len(t.y_test)) == (24, 6, 9)
    assert "own splits" in t.description
    assert np.array_equal(np.bincount(t.y_val), [2, 2, 2])


@pytest.mark.parametrize("present", [(), ("val",), ("test",)])
def test_image_folder_missing_splits_are_carved_from_train(tmp_path, present):
    root = tmp_path / "split"
    make_image_folder(root / "train", per_class=15)
    for i, s in enumerate(present):
        make_image_folder(root / s, per_class=2, start=40 + 10 * i)
    t = load_task(f"images:{root}?size=8")
    n = (len(t.y_train), len(t.y_val), len(t.y_test))
    assert min(n) > 0
    # every image is used exactly once: a split that exists is kept, only missing ones come out of train
    assert sum(n) == 45 + 6 * len(present)
    for s in present:
        assert len(getattr(t, f"y_{s}")) == 6


def test_image_folder_errors(tmp_path):
    with pytest.raises(TaskError, match="not found"):
        load_task(f"images:{tmp_path / 'nowhere'}")
    make_image_folder(tmp_path / "one", per_class=5, classes=("only",))
    with pytest.raises(TaskError, match="found 1 class folder"):
        load_task(f"images:{tmp_path / 'one'}")
    make_image_folder(tmp_path / "imgs", per_class=10, classes=PATTERNS[:2])
    with pytest.raises(TaskError, match="size must be an integer"):
        load_task(f"images:{tmp_path / 'imgs'}?size=4")
    with pytest.raises(RecipeError, match="unknown option"):
        load_task(f"images:{tmp_path / 'imgs'}?colour=1")
    (tmp_path / "imgs" / "checker" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(TaskError, match="cannot read image .*broken.png"):
        load_task(f"images:{tmp_path / 'imgs'}?size=8")


def test_image_folder_with_too_few_examples(tmp_path):
    root = tmp_path / "split"
    make_image_folder(root / "train", per_class=6, classes=PATTERNS[:2])
    (root / "val" / "checker").mkdir(parents=True)  # a split folder without images
    make_image_folder(root / "test", per_class=2, classes=PATTERNS[:2])
    with pytest.raises(TaskError, match="the val split is empty"):
        load_task(f"images:{root}?size=8")


# ---------------------------------------------------------------- npz
def _blobs(n, rng, hw=(6, 6)):
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 1, *hw)).astype(np.float32) + y[:, None, None, None]
    return x, y


def test_npz_with_its_own_splits(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for s, n in (("train", 30), ("val", 6), ("test", 9)):
        arrays[f"x_{s}"], arrays[f"y_{s}"] = _blobs(n, rng)
    np.savez(tmp_path / "d.npz", **arrays)
    t = load_task("npz:d.npz", base_dir=tmp_path)
    assert t.name == "npz:d.npz" and t.num_classes == 3 and t.sample_shape == (1, 6, 6)
    assert (len(t.y_train), len(t.y_val), len(t.y_test)) == (30, 6, 9)
    assert np.array_equal(t.y_val, arrays["y_val"])
    mean, std = arrays["x_train"].mean(), arrays["x_train"].std()
    assert np.allclose(t.x_test, (arrays["x_test"] - mean) / (std + 1e-6), atol=1e-5)


def test_npz_x_y_nhwc_uint8(tmp_path):
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(2), 20)
    x = rng.integers(0, 100, size=(40, 5, 7, 3)).astype(np.uint8)
    x[y == 1] += 120
    np.savez(tmp_path / "hwc.npz", x=x, y=y)
    t = load_task(f"npz:{tmp_path / 'hwc.npz'}")
    assert t.sample_shape == (3, 5, 7)  # NHWC -> NCHW
    assert (len(t.y_train), len(t.y_val), len(t.y_test)) == (28, 4, 8)
    i_tr, _, i_te = split_stratified(y)
    raw = x.transpose(0, 3, 1, 2).astype(np.float32) / 255.0  # uint8 scaled to [0, 1] first
    mean = raw[i_tr].mean(axis=(0, 2, 3), keepdims=True)
    std = raw[i_tr].std(axis=(0, 2, 3), keepdims=True) + 1e-6
    assert np.allclose(t.x_test, (raw[i_te] - mean) / std, atol=1e-5)
    # (N, H, W) grey images get a channel axis
    np.savez(tmp_path / "hw.npz", x=x[..., 0], y=y)
    assert load_task(f"npz:{tmp_path / 'hw.npz'}").sample_shape == (1, 5, 7)


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((4, 2, 2)), "labels": np.zeros(4)}, "expected x_train"),
    ({"x": np.zeros((10, 4, 4)), "y": np.zeros(9)}, "x has 10 rows but y has 9"),
    ({"x": np.zeros((30, 4, 4)), "y": np.arange(30) % 3 - 1}, "labels must be integers >= 0"),
    ({"x": np.zeros((30, 1, 1, 4, 4)), "y": np.arange(30) % 3}, r"must be \(N, C, H, W\) or \(N, H, W\) images or \(N, F\)"),
    ({"x": np.zeros((30, 4, 4)), "y": np.zeros(30)}, "found 1 class"),
])
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(TaskError, match=message):
        load_task(f"npz:{tmp_path / 'bad.npz'}")


def test_npz_unreadable_or_missing(tmp_path):
    with pytest.raises(TaskError, match="not found"):
        load_task(f"npz:{tmp_path / 'none.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(TaskError, match="is it a numpy .npz"):
        load_task(f"npz:{tmp_path / 'junk.npz'}")
    with pytest.raises(RecipeError, match="unknown option"):
        load_task(f"npz:{tmp_path / 'junk.npz'}?size=3")


def test_load_task_builtin_and_unknown():
    t = load_task("digits?image_size=8")
    assert t.sample_shape == (1, 8, 8)
    with pytest.raises(RecipeError, match="unknown task 'mnist'.*images:"):
        load_task("mnist")
    with pytest.raises(RecipeError, match="unknown task kind 'csv'"):
        load_task("csv:data.csv")


def test_too_few_examples_to_split_is_a_task_error(tmp_path):
    np.savez(tmp_path / "few.npz", x=np.zeros((4, 3, 3)), y=np.array([0, 1, 0, 1]))
    with pytest.raises(TaskError, match="cannot split 4 examples"):
        load_task(f"npz:{tmp_path / 'few.npz'}")
    make_image_folder(tmp_path / "imgs", per_class=2, classes=PATTERNS[:2])
    with pytest.raises(TaskError, match="cannot split 4 examples"):
        load_task(f"images:{tmp_path / 'imgs'}?size=8")
