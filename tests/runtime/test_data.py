"""Dataset reading and the per-sample seeded augmentation (no training)."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
import torch
from trainkit import make_config

from reproexec.errors import ConfigError, DataError
from reproexec.runtime.datasets import EpochSampler, SeededImageDataset, load_cifar_pickle, load_dataset


def test_imagefolder_classes_are_sorted_folder_names_and_rgb(digits):
    b = load_dataset(make_config(data={"subset": None}), digits)
    assert b.classes == [str(i) for i in range(10)]
    assert len(b.train.labels) + len(b.val.labels) == 1797
    img = b.train.images[0]
    assert img.dtype == torch.uint8 and tuple(img.shape) == (3, 16, 16)  # grayscale PNG → RGB, resized
    assert b.train.images.ids[0].startswith("train/0/")


def test_subset_and_split_are_seeded(digits):
    cfg = make_config(data={"val_dir": None, "val_fraction": 0.2, "subset": 100})
    a, b = load_dataset(cfg, digits), load_dataset(cfg, digits)
    assert a.train.images.ids == b.train.images.ids and len(a.train.labels) == 100
    assert not set(a.train.images.ids) & set(a.val.images.ids)
    c = load_dataset(make_config(seed=1, data={"val_dir": None, "val_fraction": 0.2, "subset": 100}), digits)
    assert c.train.images.ids != a.train.images.ids


def test_num_classes_mismatch_is_a_config_error(digits):
    with pytest.raises(ConfigError, match=r"model.num_classes = 3, but the dataset has 10 classes"):
        load_dataset(make_config(model={"num_classes": 3}), digits)


def test_augmentation_depends_only_on_seed_epoch_and_index(digits):
    cfg = make_config()
    ds = SeededImageDataset(load_dataset(cfg, digits).train, cfg, train=True)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    x1, _, _ = ds.__getitems__([(1, 5), (1, 6)])
    assert torch.equal(torch.get_rng_state(), before)  # the global generator is untouched
    x2, _, _ = ds.__getitems__([(1, 6), (2, 5), (1, 5)])  # other order, other company
    assert torch.equal(x1[0], x2[2]) and torch.equal(x1[1], x2[0])
    assert not torch.equal(x1[0], x2[1])  # another epoch, another augmentation


def test_sampler_reshuffles_per_epoch_deterministically():
    s = EpochSampler(50, seed=3)
    s.set_epoch(1)
    e1 = list(s)
    s.set_epoch(2)
    e2 = list(s)
    s.set_epoch(1)
    assert list(s) == e1 and [i for _, i in e1] != [i for _, i in e2]
    assert sorted(i for _, i in e2) == list(range(50))


def test_cifar_batches_load(cifar):
    cfg = make_config(data={"format": "cifar10", "subset": None}, augment={"resize": None, "random_crop": None})
    b = load_dataset(cfg, cifar)
    assert b.classes == [f"class{i}" for i in range(10)]
    assert len(b.train.labels) == 100 and len(b.val.labels) == 20
    assert tuple(b.train.images[0].shape) == (3, 32, 32)
    assert b.train.images.ids[0] == "cifar-10-batches-py/data_batch_1#0"


class _Evil:
    def __reduce__(self):
        return (os.system, (f"echo pwned > {_Evil.marker}",))


def test_cifar_reader_refuses_a_malicious_pickle(tmp_path):
    _Evil.marker = tmp_path / "pwned"  # where the payload would write, were it run
    p = tmp_path / "data_batch_1"
    p.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}, protocol=2))
    assert not _Evil.marker.exists()
    with pytest.raises(DataError, match=r"refusing to load global (posix|os)\.system"):
        load_cifar_pickle(p)
    assert not _Evil.marker.exists()


def test_cifar_reader_refuses_wrong_array_types(cifar, tmp_path):
    import shutil

    root = tmp_path / "c"
    shutil.copytree(cifar, root)
    bad = root / "cifar-10-batches-py" / "data_batch_2"
    bad.write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), dtype=np.float32), b"labels": [0, 1]}, protocol=2))
    cfg = make_config(data={"format": "cifar10", "subset": None})
    with pytest.raises(DataError, match=r"data_batch_2: 'data' must be a uint8 array"):
        load_dataset(cfg, root)


def test_cifar_reader_accepts_protocol5_numpy(tmp_path):
    p = tmp_path / "b"
    buf = io.BytesIO()
    pickle.dump({"data": np.arange(6, dtype=np.uint8), "labels": [1]}, buf, protocol=5)
    p.write_bytes(buf.getvalue())
    assert load_cifar_pickle(p)["data"].tolist() == list(range(6))
