"""Seeded, disjoint splits (property-tested) and the digits data set as loaded for a model."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ptqcore.errors import DataError, UsageError
from ptqcore.models.data import calibration_order, load_dataset, seeded_sample, split_pool
from ptqcore.models.registry import Preprocess


@given(st.integers(min_value=2, max_value=5000), st.floats(min_value=0.01, max_value=0.99), st.integers(0, 2**31))
def test_split_pool_is_disjoint_complete_and_seeded(n, fraction, seed):
    train, evaluation = split_pool(n, fraction, seed)
    assert set(train).isdisjoint(evaluation)
    assert sorted(train + evaluation) == list(range(n))
    assert train and evaluation
    assert (train, evaluation) == split_pool(n, fraction, seed)


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=300, unique=True), st.data(), st.integers(0, 2**31))
def test_seeded_sample_is_a_reproducible_subset(indices, data, seed):
    k = data.draw(st.integers(min_value=1, max_value=len(indices)))
    picked = seeded_sample(indices, k, seed)
    assert len(picked) == len(set(picked)) == k
    assert set(picked) <= set(indices)
    assert picked == seeded_sample(indices, k, seed)


def test_seeded_sample_refuses_more_than_there_is():
    with pytest.raises(ValueError, match="only 3"):
        seeded_sample([1, 2, 3], 4, 0)


def test_digits_subsets_are_disjoint_real_and_preprocessed():
    data = load_dataset("digits", Preprocess(32), calibration_sizes=(128,), seed=3)
    assert data.num_classes == 10
    assert len(data.calibration_subset(128)) == 128
    assert set(data.calibration_subset(128)) <= set(data.train)
    # one pool: evaluation indices must never be used for training or calibration
    assert set(data.evaluation).isdisjoint(data.train)
    assert len(data.train) + len(data.evaluation) == 1797
    images, labels = data.eval_part.arrays(data.evaluation[:5])
    assert images.shape == (5, 3, 32, 32) and images.dtype == np.float32
    assert set(labels.tolist()) <= set(range(10))
    assert data.calibration_arrays().shape == (128, 3, 32, 32)
    assert data.sample_batch(4).shape == (4, 3, 32, 32)


def test_digits_fingerprint_follows_seed_and_preprocessing():
    a = load_dataset("digits", Preprocess(32), seed=0)
    assert a.fingerprint == load_dataset("digits", Preprocess(32), seed=0).fingerprint
    assert a.fingerprint != load_dataset("digits", Preprocess(32), seed=1).fingerprint
    assert a.fingerprint != load_dataset("digits", Preprocess(40), seed=0).fingerprint


def test_bad_data_requests_name_the_fix(tmp_path):
    with pytest.raises(UsageError, match="use one of"):
        load_dataset("mnist", Preprocess(32))
    with pytest.raises(DataError, match="--ptq-data-root"):
        load_dataset("imagefolder", Preprocess(32))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar100", Preprocess(32), root=tmp_path / "missing")
    with pytest.raises(DataError, match="CIFAR-100 not found"):
        load_dataset("cifar100", Preprocess(32), root=tmp_path)
    with pytest.raises(DataError, match=r"^digits: calibration size 5000 is larger than the calibration split \(the"
                       r" train part: 1348 images\); fix: use --ptq-calibration-size between 1 and 1348"):
        load_dataset("digits", Preprocess(32), calibration_sizes=(32, 5000))


def test_imagefolder_from_a_class_per_folder_tree(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(6):
            pixels = rng.integers(0, 255, size=(20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    data = load_dataset("imagefolder", Preprocess(16), root=tmp_path, calibration_sizes=(4,), seed=0)
    assert data.num_classes == 2
    assert set(data.evaluation).isdisjoint(data.train)
    images, labels = data.eval_part.arrays(data.evaluation)
    assert images.shape[1:] == (3, 16, 16)
    assert len(labels) == 3  # a quarter of 12


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=700, unique=True), st.integers(0, 2**31), st.data())
def test_calibration_subsets_are_nested_prefixes_of_one_seeded_order(indices, seed, data):
    order = calibration_order(indices, seed)
    assert sorted(order) == sorted(indices) and order == calibration_order(indices, seed)
    small = data.draw(st.integers(1, len(indices)))
    large = data.draw(st.integers(small, len(indices)))
    assert set(order[:small]) <= set(order[:large])  # the smaller subset lies in the larger
    # the study's 128 are the images drawn before sizes could be swept: cached results stay valid
    head = min(128, len(indices))
    assert sorted(order[:head]) == seeded_sample(indices, head, seed)


def test_digits_calibration_sizes_are_nested_and_keyed_apart():
    data = load_dataset("digits", Preprocess(32), calibration_sizes=(32, 128, 512), seed=0)
    subsets = {size: data.calibration_subset(size) for size in (32, 128, 512)}
    assert set(subsets[32]) < set(subsets[128]) < set(subsets[512]) <= set(data.train)
    assert [len(subsets[size]) for size in (32, 128, 512)] == [32, 128, 512]
    assert data.calibration_arrays(32).shape == (32, 3, 32, 32)
    np.testing.assert_array_equal(data.calibration_arrays(32), data.train_part.arrays(subsets[32])[0])
    fingerprints = {data.calibration_fingerprint(size) for size in (32, 128, 512)}
    assert len(fingerprints) == 3  # which images calibrated is part of every key computed from them
    assert data.calibration_fingerprint(128) == data.fingerprint  # the data's own key: the study's subset
    # the data's key does not depend on the sizes a run sweeps (no base model is retrained for a sweep)
    assert load_dataset("digits", Preprocess(32), calibration_sizes=(32,), seed=0).fingerprint == data.fingerprint


def test_with_nothing_to_train_every_image_outside_the_largest_calibration_subset_is_evaluated():
    """A model file on one pool (digits): calibration subsets stay nested, and evaluation is the rest."""
    data = load_dataset("digits", Preprocess(8), calibration_sizes=(32, 128), seed=3, trains=False)
    small, large = set(data.calibration_subset(32)), set(data.calibration_subset(128))
    assert small < large and set(data.train) == large and not large & set(data.evaluation)
    assert len(large) + len(data.evaluation) == 1797  # every digit image is used once
    with pytest.raises(DataError, match="leaves no image to evaluate"):
        load_dataset("digits", Preprocess(8), calibration_sizes=(1797,), trains=False)
