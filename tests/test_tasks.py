import numpy as np
import pytest

from workbench.errors import RecipeError, TaskError
from workbench.tasks import get_task


def test_digits_split_is_fixed_stratified_and_resized(digits):
    assert (len(digits.y_train), len(digits.y_val), len(digits.y_test)) == (1257, 180, 360)
    assert digits.x_train.shape[1:] == (1, 32, 32) and digits.x_train.dtype == np.float32
    # stratified: every class appears in every split in proportion
    for y in (digits.y_train, digits.y_val, digits.y_test):
        counts = np.bincount(y, minlength=10)
        assert counts.min() >= 0.9 * counts.mean()
    # standardised with training statistics
    assert abs(float(digits.x_train.mean())) < 1e-3 and abs(float(digits.x_train.std()) - 1) < 1e-3
    # no overlap between splits (images are distinct rows of the original data set)
    tr = {a.tobytes() for a in digits.x_train}
    assert not any(a.tobytes() in tr for a in digits.x_test)


def test_digits_is_deterministic(digits):
    again = get_task("digits")
    assert again.fingerprint() == digits.fingerprint()
    assert get_task("digits", image_size=16).fingerprint() != digits.fingerprint()


def test_labelled_subset_is_balanced_and_seeded(digits):
    a = digits.labelled_subset(5, seed=0)
    assert len(a) == 50 and np.all(np.bincount(digits.y_train[a], minlength=10) == 5)
    assert np.array_equal(a, digits.labelled_subset(5, seed=0))
    assert not np.array_equal(a, digits.labelled_subset(5, seed=1))


def test_bad_task_options():
    with pytest.raises(TaskError, match="image_size"):
        get_task("digits", image_size=3)
    with pytest.raises(RecipeError, match="unknown task 'mnist'; available: digits"):
        get_task("mnist")
