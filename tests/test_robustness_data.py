"""Issue #10 (data): the fingerprint follows the pixels, and bad data sets fail before any training."""

import numpy as np
import pytest
from PIL import Image

from ptqcore.errors import DataError
from ptqcore.models.data import load_dataset
from ptqcore.models.registry import Preprocess


def image_tree(root, classes=("cat", "dog"), per_class=4, seed=0):
    rng = np.random.default_rng(seed)
    for label in classes:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)).save(root / label / f"{i}.bmp")
    return root


def load(root, **kwargs):
    return load_dataset("imagefolder", Preprocess(16), root=root, calibration_sizes=(2,), **kwargs)


def test_fingerprint_changes_with_pixels_at_equal_file_size(tmp_path):
    root = image_tree(tmp_path)
    before = load(root).fingerprint
    target = root / "cat" / "0.bmp"
    size = target.stat().st_size
    pixels = np.asarray(Image.open(target)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(target)  # BMP: same size, other bytes
    assert target.stat().st_size == size
    assert load(root).fingerprint != before
    assert load(root).fingerprint == load(root).fingerprint


def test_fingerprint_follows_the_split_folders_too(tmp_path):
    image_tree(tmp_path / "train")
    image_tree(tmp_path / "val", per_class=2, seed=1)
    before = load(tmp_path).fingerprint
    image_tree(tmp_path / "val", per_class=2, seed=2)
    assert load(tmp_path).fingerprint != before


def test_one_class_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="1 class.*at least two"):
        load(image_tree(tmp_path, classes=("only",)))


def test_every_bad_file_is_listed_in_one_error(tmp_path):
    root = image_tree(tmp_path, per_class=3)
    (root / "cat" / "broken.jpg").write_bytes(b"not a jpeg at all")
    good = root / "dog" / "0.bmp"
    (root / "dog" / "truncated.bmp").write_bytes(good.read_bytes()[:60])
    (root / "dog" / "notes.txt").write_text("a note")
    (root / "dog" / ".hidden").write_text("ignored")
    with pytest.raises(DataError) as info:
        load(root)
    message = str(info.value)
    assert "3 bad file(s)" in message and "\n" not in message
    for name in ("cat/broken.jpg", "dog/truncated.bmp", "dog/notes.txt (not an image file type)"):
        assert name in message
    assert ".hidden" not in message and "fix: remove or replace them" in message
