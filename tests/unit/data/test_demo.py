"""The digits demo: 1,797 real images, a seeded stratified split, byte-identical PNGs."""

from __future__ import annotations

from pathlib import Path

import pytest

from reproexec.data.demo import encode_png_gray, write_digits_demo
from reproexec.data.manifest import verify_snapshot
from reproexec.errors import DataError


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo") / "digits"
    return out, write_digits_demo(out)


def test_demo_writes_1797_pngs_in_class_folders(demo) -> None:
    out, result = demo
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == 1797 == result.manifest.count
    assert {p.parent.name for p in pngs} == {str(d) for d in range(10)}
    assert {p.parent.parent.name for p in pngs} == {"train", "val"}
    assert (out / "train/0/00000.png").is_file()  # image 0 of load_digits is a 0
    assert all(len(p.stem) == 5 and p.stem.isdigit() for p in pngs)
    assert (out / "manifest.json").is_file() and (out / "SHA256SUMS").is_file()
    assert verify_snapshot(out).ok


def test_split_is_stratified_at_the_requested_fraction(demo) -> None:
    out, _ = demo
    for d in range(10):
        n_train = len(list((out / "train" / str(d)).iterdir()))
        n_val = len(list((out / "val" / str(d)).iterdir()))
        assert n_val == round((n_train + n_val) * 0.2)
    assert len(list(out.glob("val/*/*.png"))) == 359


def test_pngs_decode_to_the_scaled_digits(demo) -> None:
    np = pytest.importorskip("numpy")
    Image = pytest.importorskip("PIL.Image")
    from sklearn.datasets import load_digits

    out, _ = demo
    digits = load_digits()
    for idx in (0, 42, 1796):
        p = next(out.glob(f"*/*/{idx:05d}.png"))
        assert p.parent.name == str(digits.target[idx])
        with Image.open(p) as im:
            assert im.mode == "L" and im.size == (8, 8)
            pixels = np.asarray(im)
        assert np.array_equal(pixels, np.rint(digits.images[idx] * 255 / 16).astype(np.uint8))
        assert pixels.max() <= 255


def test_two_writes_give_the_same_manifest_id_and_seed_changes_it(demo, tmp_path: Path) -> None:
    _, first = demo
    again = write_digits_demo(tmp_path / "again")
    assert again.manifest_id == first.manifest_id
    other = write_digits_demo(tmp_path / "other", seed=1)
    assert other.manifest_id != first.manifest_id


def test_png_encoder_is_fixed_bytes() -> None:
    png = encode_png_gray(bytes(range(64)))
    import hashlib

    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) == 140
    # golden: a change to the encoder changes every demo manifest id, so make it deliberate
    assert hashlib.sha256(png).hexdigest() == "b0eb4945328da0f6a155a9246905713af8277632e60ed7ee9bca9bcdf82977de"


def test_demo_manifest_id_is_golden(demo) -> None:
    # The same on every machine: pixels from scikit-learn's bundled file, our own PNG bytes, a split
    # driven by random.random(). If this changes, every recorded run's dataset id changes with it.
    assert demo[1].manifest_id == "f4f594f2015921fbb428909c291ef4f25d3a7a6668728a3e36bf498e6e9781e9"


def test_refuses_non_empty_out_and_force_replaces_only_a_snapshot(demo, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError) as exc:
        write_digits_demo(out)
    assert exc.value.message == f"{out} is not empty; refusing to write the demo dataset into it"
    with pytest.raises(DataError) as exc:
        write_digits_demo(out, force=True)
    assert (
        exc.value.message == f"{out} is not empty and holds no manifest.json; --force only replaces a previous snapshot"
    )
    assert (out / "notes.txt").read_text() == "mine"

    prev = tmp_path / "prev"
    write_digits_demo(prev, seed=3)
    (prev / "stray.bin").write_bytes(b"x")
    assert write_digits_demo(prev, force=True).manifest_id == demo[1].manifest_id
    assert not (prev / "stray.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "prev"]  # no temp folders left


@pytest.mark.parametrize("frac", [0.0, 1.0, -0.1])
def test_val_fraction_out_of_range(tmp_path: Path, frac: float) -> None:
    with pytest.raises(DataError, match="out of range"):
        write_digits_demo(tmp_path / "x", val_fraction=frac)
