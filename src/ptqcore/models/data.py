"""Labelled image data: where it comes from, how it is preprocessed, and how it is split.

Sources (``load_dataset``):

* ``digits`` (offline default): scikit-learn's 1,797 real handwritten digits, 8x8 grey, shipped
  inside the scikit-learn package; upsampled to the model's input size and repeated to RGB.
* ``imagefolder``: any class-per-folder tree (ImageNet val, Flowers-102 laid out that way, ...).
  If the root has ``train/`` and ``val/`` (or ``test/``) trees those are the splits, else one
  pool is split.
* ``cifar100`` and ``flowers102``: torchvision's loaders on a local root (never downloaded).

Every source ends as a :class:`DataSet` with a train part and an evaluation part. The calibration
subsets are drawn from the train part and the evaluation subset from the evaluation part, both
seeded, so they are disjoint by construction (:func:`split_pool`, :func:`seeded_sample`). The
calibration subsets of every size are prefixes of one seeded order of the train part
(:func:`calibration_order`), so they are nested: the 32 images are among the 128, which are among
the 512, and a calibration-size sweep measures the size, not a different sample. When nothing is
trained on the data (a model file, ImageNet weights) one pool is not split: calibration is drawn
from all of it and every other image is evaluated.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ptqcore.case import DEFAULT_CALIBRATION_SIZE
from ptqcore.errors import DataError, UsageError, error_line
from ptqcore.models.registry import Preprocess

DATASETS = ("digits", "imagefolder", "cifar100", "flowers102")
DEFAULT_EVAL_FRACTION = 0.25
#: The study measured latency and accuracy over about 2,500 test images.
DEFAULT_MAX_EVAL = 2500


def split_pool(n: int, eval_fraction: float, seed: int) -> Tuple[List[int], List[int]]:
    """Split ``range(n)`` into (train, evaluation) index lists, disjoint and covering all of it.

    The split is a seeded permutation, so the same ``(n, eval_fraction, seed)`` always gives the
    same lists. Both parts get at least one item when ``n >= 2``.
    """
    if n < 2:
        raise ValueError(f"a pool of {n} items cannot be split into train and evaluation parts")
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_eval = min(n - 1, max(1, round(n * eval_fraction)))
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def seeded_sample(indices: Sequence[int], k: Optional[int], seed: int) -> List[int]:
    """``k`` items of ``indices`` drawn without replacement by a seeded RNG (all of them if ``k`` is None).

    Raises ValueError if ``k`` is larger than what there is: an evaluation size the data set cannot
    give is an error, never silently shrunk.
    """
    if k is None:
        return list(indices)
    if k < 1:
        raise ValueError(f"sample size must be >= 1, got {k}")
    if k > len(indices):
        raise ValueError(f"asked for {k} items but the split has only {len(indices)}")
    return sorted(random.Random(seed).sample(list(indices), k))


def calibration_order(indices: Sequence[int], seed: int, head: int = DEFAULT_CALIBRATION_SIZE) -> List[int]:
    """One seeded order of all of ``indices``; the calibration subset of size ``k`` is its first ``k``.

    The order starts with the ``head`` items :func:`seeded_sample` draws (in the order drawn),
    then the rest in a seeded shuffle, so ``sorted(order[:head]) == seeded_sample(indices, head,
    seed)``: the study's 128 images are the ones drawn before sizes could be swept, and results
    cached then stay valid. Every prefix is a seeded random subset, and smaller ones lie in larger.
    """
    rng = random.Random(seed)
    first = rng.sample(list(indices), min(head, len(indices)))
    chosen = set(first)
    rest = [i for i in indices if i not in chosen]
    rng.shuffle(rest)
    return first + rest


def _fingerprint(identity: str, calibration: Sequence[int], evaluation: Sequence[int]) -> str:
    return hashlib.sha256(f"{identity}|cal={list(calibration)}|eval={list(evaluation)}".encode()).hexdigest()[:16]


class ImageSource:
    """Items ``0..len-1`` of one split; ``load(i)`` gives (CHW float32 array, label)."""

    def __init__(self, n: int, load: Callable[[int], Tuple[np.ndarray, int]], describe: str) -> None:
        self._n = n
        self._load = load
        self.describe = describe

    def __len__(self) -> int:
        return self._n

    def arrays(self, indices: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
        """Images (N, 3, H, W) float32 and labels (N,) int64 for ``indices``, in that order."""
        items = [self._load(i) for i in indices]
        images = np.stack([x for x, _ in items]).astype(np.float32, copy=False)
        labels = np.asarray([y for _, y in items], dtype=np.int64)
        return images, labels

    def batches(self, indices: Sequence[int], batch_size: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(indices), batch_size):
            yield self.arrays(indices[start : start + batch_size])

    def relabelled(self, outputs: Sequence[int]) -> "ImageSource":
        """The same images, with label ``k`` read as ``outputs[k]``."""
        load = self._load

        def relabel(i: int) -> Tuple[np.ndarray, int]:
            image, label = load(i)
            return image, outputs[label]

        return ImageSource(self._n, relabel, self.describe)


@dataclass
class DataSet:
    """A data set ready for the suite: its parts, its subsets and a content fingerprint.

    ``train`` and ``evaluation`` index into ``train_part`` and ``eval_part``; ``calibration_order``
    orders all of ``train`` (:func:`calibration_order`), and a calibration subset is a prefix of it.
    ``fingerprint`` changes when the data, the split or the labels change, and is part of every cache
    key built from this data; :meth:`calibration_fingerprint` also tells calibration subsets apart.
    ``class_names`` are an image folder's class folders (label ``k`` is ``class_names[k]``; None for
    the other sources); ``label_outputs`` is set by :meth:`relabelled`: the model output each class's
    label now is.
    """

    name: str
    num_classes: int
    train_part: ImageSource
    eval_part: ImageSource
    train: List[int]
    calibration_order: List[int]
    evaluation: List[int]
    #: content, preprocessing, seed (and labels, once relabelled): with the subsets, what the fingerprints hash
    identity: str
    class_names: Optional[Tuple[str, ...]] = None
    label_outputs: Optional[Tuple[int, ...]] = None

    def relabelled(self, outputs: Sequence[int]) -> "DataSet":
        """This data set with class ``k`` labelled ``outputs[k]`` wherever labels are read (training and
        evaluation alike); the fingerprints cover the new labels. The images and subsets are the same."""
        table = tuple(int(output) for output in outputs)
        if len(table) != self.num_classes:
            raise ValueError(f"{len(table)} outputs given for {self.num_classes} classes")
        return replace(self, train_part=self.train_part.relabelled(table), eval_part=self.eval_part.relabelled(table),
                       identity=f"{self.identity}|labels={','.join(map(str, table))}", label_outputs=table)

    @property
    def fingerprint(self) -> str:
        """The data, the split and the calibration order (keyed by the study's subset, as it always was)."""
        return self.calibration_fingerprint(min(DEFAULT_CALIBRATION_SIZE, len(self.train)))

    def calibration_subset(self, size: int = DEFAULT_CALIBRATION_SIZE) -> List[int]:
        """The ``size`` calibration images (indices into ``train_part``, sorted): the first ``size`` of
        the calibration order. Raises :class:`DataError` when the train part has fewer."""
        available = len(self.calibration_order)
        if not 1 <= size <= available:
            problem = ("is below 1" if size < 1
                       else f"is larger than the calibration split (the train part: {available} images)")
            raise DataError(f"{self.name}: calibration size {size} {problem}",
                            f"use --ptq-calibration-size between 1 and {available}, or a larger data set")
        return sorted(self.calibration_order[:size])

    def calibration_fingerprint(self, size: int = DEFAULT_CALIBRATION_SIZE) -> str:
        """A fingerprint of the data with the ``size`` calibration images: part of every cache key
        computed from those images, so two sizes never share an entry."""
        return _fingerprint(self.identity, self.calibration_subset(size), self.evaluation)

    def calibration_arrays(self, size: int = DEFAULT_CALIBRATION_SIZE) -> np.ndarray:
        """The ``size`` calibration images (N, 3, H, W), in index order."""
        return self.train_part.arrays(self.calibration_subset(size))[0]

    def evaluation_batches(self, batch_size: int) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        return self.eval_part.batches(self.evaluation, batch_size)

    def sample_batch(self, batch_size: int) -> np.ndarray:
        """The first ``batch_size`` evaluation images: the fixed input that latency is timed on."""
        picked = [self.evaluation[i % len(self.evaluation)] for i in range(batch_size)]
        return self.eval_part.arrays(picked)[0]


def load_dataset(
    name: str,
    preprocess: Preprocess,
    root: Optional[Path] = None,
    calibration_sizes: Sequence[int] = (DEFAULT_CALIBRATION_SIZE,),
    evaluation_size: Optional[int] = None,
    seed: int = 0,
    trains: bool = True,
) -> DataSet:
    """Load data set ``name`` preprocessed for a model input, with seeded disjoint subsets.

    ``calibration_sizes`` are the calibration subset sizes the run will ask for (each checked here
    against the train part). ``evaluation_size`` None takes the whole evaluation part, capped at
    :data:`DEFAULT_MAX_EVAL`. ``trains`` False says nothing will be trained on the data: a single pool
    (digits, an image folder without ``train/`` and ``val/``) is then not split; calibration is drawn
    from all of it (``train`` is the largest calibration subset) and the evaluation part is every
    other image. Sources with their own splits keep them (calibration from the train split,
    evaluation from the held-out one).
    Everything is checked here, before any training: an ImageFolder's files are read once (their
    bytes make the fingerprint, and each image is decoded), so a corrupt or non-image file, or a
    data set of fewer than two classes, is a :class:`DataError` now (listing every bad file).
    Raises :class:`DataError` (missing root, missing files, bad files, too few images or classes)
    or :class:`UsageError` (unknown name) with the fix.
    """
    if name not in DATASETS:
        raise UsageError(f"unknown data set {name!r}", f"use one of {', '.join(DATASETS)}")
    if name == "digits":
        parts = _digits(preprocess)
    else:
        if root is None:
            raise DataError(f"data set {name!r} needs a local root", "pass --ptq-data-root DIR")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise DataError(f"data root {root} does not exist", "pass the folder that holds the data set")
        parts = {"imagefolder": _imagefolder, "cifar100": _cifar100, "flowers102": _flowers102}[name](root, preprocess)
    train_part, eval_part, shared, num_classes, content_id, class_names = parts
    if num_classes < 2:
        raise DataError(
            f"data set {name!r} has {num_classes} class(es): a classifier needs at least two",
            "give the data set two or more class folders (ROOT/CLASS/IMAGE)",
        )
    if shared and trains:
        train, evaluation_pool = split_pool(len(train_part), DEFAULT_EVAL_FRACTION, seed)
        sizes = f"train part {len(train)}, evaluation part {len(evaluation_pool)}"
    elif shared:  # nothing to train: the pool is calibration first, and every other image is evaluated
        train, evaluation_pool = list(range(len(train_part))), None
        sizes = f"{len(train_part)} images, calibration and evaluation together"
    else:
        train, evaluation_pool = list(range(len(train_part))), list(range(len(eval_part)))
        sizes = f"train split {len(train)}, evaluation split {len(evaluation_pool)}"
    try:
        order = calibration_order(train, seed + 1)
        if evaluation_pool is None:
            largest = max(calibration_sizes)
            if largest >= len(train):
                raise ValueError(f"calibration size {largest} leaves no image to evaluate")
            calibrated = set(order[:largest])
            order = order[:largest]
            train, evaluation_pool = sorted(calibrated), [i for i in train if i not in calibrated]
        if evaluation_size is None:
            evaluation_size = min(len(evaluation_pool), DEFAULT_MAX_EVAL)
        evaluation = seeded_sample(evaluation_pool, evaluation_size, seed + 2)
    except ValueError as err:
        raise DataError(f"{name}: {err} ({sizes})",
                        "lower --ptq-calibration-size / --ptq-eval-size or use a larger data set") from None
    data = DataSet(name, num_classes, train_part, eval_part, train, order, evaluation,
                   identity=f"{content_id}|{preprocess}|seed={seed}", class_names=class_names)
    for size in calibration_sizes:
        data.calibration_subset(size)  # a size the train part cannot give is an error now, not at calibration
    return data


def _normalize(chw: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    mean = np.asarray(preprocess.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(preprocess.std, dtype=np.float32)[:, None, None]
    return ((chw - mean) / std).astype(np.float32)


def _digits(preprocess: Preprocess):
    try:
        from sklearn.datasets import load_digits
    except ImportError:  # pragma: no cover - scikit-learn is a declared dependency
        raise DataError("scikit-learn is not installed", "pip install scikit-learn") from None
    import torch
    import torch.nn.functional as F

    bunch = load_digits()
    images = torch.from_numpy(bunch.images.astype(np.float32) / 16.0)  # (N, 8, 8), real scans, 0..1
    rgb = images[:, None].repeat(1, 3, 1, 1)
    resized = F.interpolate(rgb, size=(preprocess.size, preprocess.size), mode="bilinear", align_corners=False)
    normalized = _normalize(resized.numpy(), preprocess)  # (N, 3, size, size)
    labels = bunch.target.astype(np.int64)
    source = ImageSource(len(labels), lambda i: (normalized[i], int(labels[i])), "sklearn digits")
    content = hashlib.sha256(bunch.images.tobytes() + bunch.target.tobytes()).hexdigest()[:16]
    return source, source, True, 10, f"digits:{content}", None


def _pil_transform(preprocess: Preprocess):
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(int(round(preprocess.size * 256 / 224))),
            transforms.CenterCrop(preprocess.size),
            transforms.ToTensor(),
            transforms.Normalize(preprocess.mean, preprocess.std),
        ]
    )


def _torchvision_source(dataset, describe: str) -> ImageSource:
    def load(i: int):
        image, label = dataset[i]
        return image.numpy(), int(label)

    return ImageSource(len(dataset), load, describe)


def _imagefolder(root: Path, preprocess: Preprocess):
    from torchvision.datasets import ImageFolder

    transform = _pil_transform(preprocess)
    split_dirs = [root / "train", next((root / d for d in ("val", "test") if (root / d).is_dir()), root / "val")]
    try:
        if split_dirs[0].is_dir() and split_dirs[1].is_dir():
            train = ImageFolder(str(split_dirs[0]), transform=transform)
            evaluation = ImageFolder(str(split_dirs[1]), transform=transform)
            if train.classes != evaluation.classes:
                raise DataError(
                    f"{split_dirs[0]} and {split_dirs[1]} have different class folders",
                    "give both splits the same class-per-folder layout",
                )
            shared = False
        else:
            train = evaluation = ImageFolder(str(root), transform=transform)
            shared = True
    except (FileNotFoundError, RuntimeError) as err:
        raise DataError(f"{root} is not a class-per-folder image tree ({err})", "lay it out as ROOT/CLASS/IMAGE") from None
    splits = [train] if shared else [train, evaluation]
    content = _scan_imagefolder(root, splits, [str(root)] if shared else [str(d) for d in split_dirs])
    return (
        _torchvision_source(train, f"imagefolder {root}"),
        _torchvision_source(evaluation, f"imagefolder {root}"),
        shared,
        len(train.classes),
        f"imagefolder:{content}",
        tuple(train.classes),
    )


def _scan_imagefolder(root: Path, splits: Sequence, split_roots: Sequence[str]) -> str:
    """A digest of every image's path and bytes; :class:`DataError` listing every bad file.

    Bad files: an image that does not decode (JPEGs are decoded at reduced scale, which still
    reads every block), and a non-hidden file of a type ImageFolder would silently skip.
    """
    import io

    from PIL import Image
    from torchvision.datasets.folder import IMG_EXTENSIONS

    digest = hashlib.sha256()
    bad: List[str] = []
    for split, split_root in zip(splits, split_roots):
        for path, _ in split.samples:
            relative = Path(path).relative_to(root).as_posix()
            try:
                data = Path(path).read_bytes()
                with Image.open(io.BytesIO(data)) as image:
                    image.draft("RGB", (64, 64))
                    image.load()
            except Exception as err:  # noqa: BLE001 - PIL raises many kinds for a bad file: each is a bad file
                bad.append(f"{relative} ({error_line(err)})")
                continue
            digest.update(f"{relative}\0{len(data)}\0".encode())
            digest.update(data)
        for folder in split.classes:
            for path in sorted(Path(split_root, folder).rglob("*")):
                if path.is_file() and not path.name.startswith(".") and not path.name.lower().endswith(IMG_EXTENSIONS):
                    bad.append(f"{path.relative_to(root).as_posix()} (not an image file type)")
    if bad:
        raise DataError(
            f"{root} has {len(bad)} bad file(s): {'; '.join(bad)}",
            f"remove or replace them: every file under ROOT/CLASS/ must be an image ({', '.join(IMG_EXTENSIONS)})",
        )
    return digest.hexdigest()[:16]


def _digest_files(paths: Sequence[Path]) -> str:
    """The first 16 hex digits of a SHA-256 over the names and bytes of ``paths`` (in that order)."""
    from ptqcore.store import file_sha256

    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{Path(path).name}\0{file_sha256(Path(path))}\n".encode())
    return digest.hexdigest()[:16]


def _cifar100(root: Path, preprocess: Preprocess):
    from torchvision import transforms
    from torchvision.datasets import CIFAR100

    transform = transforms.Compose(
        [transforms.Resize(preprocess.size), transforms.ToTensor(), transforms.Normalize(preprocess.mean, preprocess.std)]
    )
    try:
        train = CIFAR100(str(root), train=True, transform=transform, download=False)
        test = CIFAR100(str(root), train=False, transform=transform, download=False)
    except RuntimeError as err:
        raise DataError(
            f"CIFAR-100 not found under {root} ({err})",
            "put the extracted 'cifar-100-python' folder under --ptq-data-root",
        ) from None
    folder = root / CIFAR100.base_folder
    content = _digest_files([folder / name for name in ("train", "test", "meta")])
    return _torchvision_source(train, "cifar100 train"), _torchvision_source(test, "cifar100 test"), False, 100, f"cifar100:{content}", None


def _flowers102(root: Path, preprocess: Preprocess):
    from torchvision.datasets import Flowers102

    transform = _pil_transform(preprocess)
    try:
        train = Flowers102(str(root), split="train", transform=transform, download=False)
        test = Flowers102(str(root), split="test", transform=transform, download=False)
    except RuntimeError as err:
        raise DataError(
            f"Flowers-102 not found under {root} ({err})",
            "put the 'flowers-102' folder (jpg/, imagelabels.mat, setid.mat) under --ptq-data-root",
        ) from None
    folder = root / "flowers-102"
    content = _digest_files([folder / "imagelabels.mat", folder / "setid.mat", *sorted((folder / "jpg").glob("*.jpg"))])
    return _torchvision_source(train, "flowers102 train"), _torchvision_source(test, "flowers102 test"), False, 102, f"flowers102:{content}", None
