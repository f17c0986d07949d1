"""The dataset layer: noise, sources, reproducible streams, samplers, files and simulators."""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from seqflows.data import (
    ArraySource,
    BouncingBalls,
    FixedSequences,
    MovingMNIST,
    Simulator,
    StoredSource,
    StoreSource,
    TrainingSequences,
    download_mnist,
    load_array,
    load_digits,
    load_moving_mnist_file,
)
from seqflows.data.bouncing_balls import disc_coverage
from seqflows.data.datasets import item_rng
from seqflows.data.mnist import MNIST_FILES, DownloadError, md5sum, read_idx
from seqflows.data.samplers import EvaluationSampler, StreamSampler, split_indices
from seqflows.data.scaling import check_frames, frames_to_unit_interval
from seqflows.data.store import ShardData, StoreWriter

from helpers import mnist_test_digits, write_idx

MNIST_TEST_IMAGES = mnist_test_digits()


def coded_sequences(num_sequences: int = 6, num_frames: int = 9) -> np.ndarray:
    """uint8 (N, T, 1, 2, 3) whose pixels hold 10 n + t: sequence n, frame t."""
    n = np.arange(num_sequences)[:, None]
    t = np.arange(num_frames)[None, :]
    codes = (10 * n + t).astype(np.uint8)
    return np.broadcast_to(codes[:, :, None, None, None], (*codes.shape, 1, 2, 3)).copy()


def decode(item: torch.Tensor) -> np.ndarray:
    """The codes 10 n + t of the frames of a noisy item (T, C, H, W) scaled by 1/255."""
    codes = np.rint(item.double().numpy() * 255).astype(int)
    assert (codes == codes[:, :1, :1, :1]).all()  # every pixel of a frame holds the same code
    return codes[:, 0, 0, 0]


# Scaling and noise


def test_gaussian_noise_moments() -> None:
    x = np.full((200, 1, 16, 16), 100, dtype=np.uint8)
    y = frames_to_unit_interval(torch.from_numpy(x), "gaussian", np.random.default_rng(0))
    assert y.dtype == torch.float32 and y.shape == x.shape
    noise = y.double() - 100 / 255
    assert abs(noise.mean().item()) < 3 * (1 / 256) / np.sqrt(noise.numel())
    assert noise.std().item() == pytest.approx(1 / 256, rel=0.02)


def test_uniform_noise_dequantizes() -> None:
    x = np.repeat(np.arange(256), 400)  # int64: x + 1 must not wrap around
    y = frames_to_unit_interval(x.astype(np.uint8), "uniform", np.random.default_rng(1))
    y = y.double().numpy()
    assert (y >= x / 256).all() and (y < (x + 1) / 256).all()
    u = y * 256 - x
    assert u.mean() == pytest.approx(0.5, abs=0.01)
    assert u.var() == pytest.approx(1 / 12, rel=0.05)


def test_no_noise_and_unknown_noise() -> None:
    x = torch.tensor([0, 51, 255], dtype=torch.uint8)
    y = frames_to_unit_interval(x, "none", np.random.default_rng(0))
    torch.testing.assert_close(y, torch.tensor([0.0, 0.2, 1.0]))
    with pytest.raises(ValueError, match="gaussian, uniform, none"):
        frames_to_unit_interval(x, "salt", np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        frames_to_unit_interval(x.float(), "none", np.random.default_rng(0))


# Sources and files


@pytest.mark.parametrize(
    "shape, frame_shape",
    [((3, 5, 2, 4, 6), (2, 4, 6)), ((3, 5, 4, 6), (1, 4, 6)), ((3, 5, 7), (7,))],
)
def test_array_source_shapes(shape: tuple, frame_shape: tuple) -> None:
    source = ArraySource(np.arange(np.prod(shape)).astype(np.uint8).reshape(shape))
    assert (len(source), source.num_sequences, source.num_frames) == (3, 3, 5)
    assert source.frame_shape == frame_shape
    item = source[2]
    assert item.shape == (5, *frame_shape) and item.dtype == np.uint8
    assert item.flags.c_contiguous
    item[:] = 0  # a copy: the source is untouched
    assert source.array[2].any()
    with pytest.raises(IndexError):
        source[3]


def test_array_source_rejects_wrong_dtype_and_ndim() -> None:
    with pytest.raises(ValueError, match=r"frames\.npy.*uint8.*float32.*multiply by 255"):
        ArraySource(np.zeros((2, 3, 4, 4), np.float32), name="frames.npy")
    with pytest.raises(ValueError, match=r"codes\.npy.*uint8, got int64"):
        ArraySource(np.zeros((2, 3, 4, 4), np.int64), name="codes.npy")
    with pytest.raises(ValueError, match=r"flat\.npy.*\(2, 3\)"):
        ArraySource(np.zeros((2, 3), np.uint8), name="flat.npy")


def test_load_array(tmp_path: Path) -> None:
    array = coded_sequences()
    np.save(tmp_path / "a.npy", array)
    loaded = load_array(tmp_path / "a.npy")
    assert isinstance(loaded, np.memmap) and np.array_equal(loaded, array)
    source = pickle.loads(pickle.dumps(ArraySource(loaded)))  # reopens the file
    assert isinstance(source.array, np.memmap) and np.array_equal(source[4], array[4])
    np.savez(tmp_path / "b.npz", frames=array, other=array[:1])
    assert np.array_equal(load_array(tmp_path / "b.npz", key="frames"), array)
    with pytest.raises(ValueError, match=r"b\.npz.*key="):
        load_array(tmp_path / "b.npz")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        load_array(tmp_path / "missing.npy")


def test_load_array_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cut.npy"
    np.save(path, coded_sequences())
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(size - 100)
    with pytest.raises(ValueError, match=r"cut\.npy.*corrupt or truncated"):
        load_array(path)
    path.write_bytes(b"not numpy")
    with pytest.raises(ValueError, match=r"cut\.npy.*corrupt or truncated"):
        load_array(path)


# The training stream


def test_item_rng_streams() -> None:
    draws = {
        (stream, index): item_rng(3, stream, index).random()
        for stream in ("train", "test")
        for index in (0, 1)
    }
    assert len(set(draws.values())) == 4
    assert item_rng(3, "train", 1).random() == draws["train", 1]


def test_training_stream_is_reproducible() -> None:
    source = ArraySource(coded_sequences())
    data = TrainingSequences(source, length=4, seed=5)
    assert data[3].shape == (4, 1, 2, 3) and data[3].dtype == torch.float32
    assert torch.equal(data[3], TrainingSequences(source, length=4, seed=5)[3])
    assert not torch.equal(data[3], data[4])
    assert not torch.equal(data[3], TrainingSequences(source, length=4, seed=6)[3])


def test_training_epochs_visit_every_sequence_once_with_contiguous_crops() -> None:
    num_sequences, num_frames, length = 6, 9, 4
    source = ArraySource(coded_sequences(num_sequences, num_frames))
    data = TrainingSequences(source, length, noise="none")
    starts = set()
    orders = []
    for epoch in range(3):
        order = []
        for place in range(num_sequences):
            codes = decode(data[epoch * num_sequences + place])
            n, start = divmod(int(codes[0]), 10)
            assert np.array_equal(codes, 10 * n + start + np.arange(length))  # one sequence
            assert 0 <= start <= num_frames - length
            order.append(n)
            starts.add(start)
        assert sorted(order) == list(range(num_sequences))
        orders.append(order)
    assert orders[0] != orders[1] or orders[1] != orders[2]  # epochs are reshuffled
    assert len(starts) > 1


def test_training_stream_rejects_long_crops() -> None:
    with pytest.raises(ValueError, match=r"short\.npy.*12.*9"):
        TrainingSequences(ArraySource(coded_sequences(), name="short.npy"), length=12)


def test_training_stream_ignores_workers() -> None:
    data = TrainingSequences(BouncingBalls(num_frames=6, size=8), length=4, num_items=12)
    sampler = StreamSampler(batch_size=3, num_steps=4)
    batches = [
        torch.cat(list(DataLoader(data, batch_size=3, sampler=sampler, num_workers=workers)))
        for workers in (0, 2)
    ]
    assert batches[0].shape == (12, 4, 1, 8, 8)
    assert torch.equal(batches[0], batches[1])
    assert torch.equal(batches[0][5], data[5])


def test_stream_sampler_shards_global_batches() -> None:
    single = list(StreamSampler(batch_size=4, num_steps=5))
    assert single == list(range(20))
    ranks = [list(StreamSampler(2, 5, rank=r, world_size=2)) for r in range(2)]
    assert len(ranks[0]) == len(StreamSampler(2, 5, rank=0, world_size=2)) == 10
    for step in range(5):  # the global batch of each step is the same as with one process
        merged = ranks[0][2 * step : 2 * step + 2] + ranks[1][2 * step : 2 * step + 2]
        assert merged == single[4 * step : 4 * step + 4]


def test_stream_sampler_resumes() -> None:
    full = list(StreamSampler(batch_size=3, num_steps=6, rank=1, world_size=2))
    sampler = StreamSampler(batch_size=3, num_steps=6, rank=1, world_size=2)
    sampler.start_step = 4
    assert list(sampler) == full[4 * 3 :] and len(sampler) == 6
    with pytest.raises(ValueError, match="start_step"):
        sampler.start_step = 7


@pytest.mark.parametrize("count, world_size", [(10, 3), (2, 4), (7, 1)])
def test_evaluation_split_has_no_padding(count: int, world_size: int) -> None:
    shares = [split_indices(count, r, world_size) for r in range(world_size)]
    assert sorted(i for share in shares for i in share) == list(range(count))
    assert [list(EvaluationSampler(count, r, world_size)) for r in range(world_size)] == shares
    assert sum(len(EvaluationSampler(count, r, world_size)) for r in range(world_size)) == count


# The evaluation set


def test_fixed_sequences_are_deterministic() -> None:
    source = ArraySource(coded_sequences())
    data = FixedSequences(source, length=4, seed=2, stream="validation", noise="none")
    assert len(data) == 6
    for j in range(6):
        assert torch.equal(data[j], data[j])
        codes = decode(data[j])
        frames, start = data.raw(j)
        assert frames.dtype == np.uint8 and frames.shape == (4, 1, 2, 3)
        assert np.array_equal(codes, 10 * j + start + np.arange(4))
        assert np.array_equal(frames[:, 0, 0, 0], codes)
    other = FixedSequences(source, length=4, seed=2, stream="test", noise="none")
    assert any(data.raw(j)[1] != other.raw(j)[1] for j in range(6))  # another stream
    noisy = FixedSequences(source, length=4, seed=2, stream="validation")
    assert torch.equal(noisy[1], noisy[1]) and not torch.equal(noisy[1], data[1])
    assert all(noisy.raw(j)[1] == data.raw(j)[1] for j in range(6))


def test_fixed_sequences_crops_and_counts() -> None:
    source = ArraySource(coded_sequences(num_frames=9), name="codes.npy")
    last = FixedSequences(source, length=4, crop="last", count=3, noise="none")
    first = FixedSequences(source, length=4, crop="first")
    assert len(last) == 3 and last.raw(2)[1] == 5 and first.raw(2)[1] == 0
    assert np.array_equal(decode(last[1]), 10 + np.arange(5, 9))
    with pytest.raises(IndexError):
        last[3]
    with pytest.raises(ValueError, match=r"codes\.npy.*1\.\.6.*7"):
        FixedSequences(source, length=4, count=7)
    with pytest.raises(ValueError, match="crop"):
        FixedSequences(source, length=4, crop="middle")
    with pytest.raises(ValueError, match="count"):
        FixedSequences(BouncingBalls(num_frames=5, size=8), length=4)
    rendered = FixedSequences(BouncingBalls(num_frames=5, size=8), length=4, count=2)
    assert torch.equal(rendered[1], rendered[1]) and not torch.equal(rendered[0], rendered[1])


def test_check_frames() -> None:
    x = torch.rand(2, 3, 1, 4, 4)
    check_frames(x, (1, 4, 4), "moving_mnist")
    with pytest.raises(
        ValueError, match=r"moving_mnist.*\(1, 4, 4\).*\(3, 4, 4\).*data\.channels"
    ):
        check_frames(x, (3, 4, 4), "moving_mnist")
    with pytest.raises(ValueError, match="bair.*not finite"):
        check_frames(torch.where(x > 0.9, float("nan"), x), (1, 4, 4), "bair")
    with pytest.raises(ValueError, match=r"kth.*out of range.*\[0, 1\]"):
        check_frames(x * 255, (1, 4, 4), "kth")


# MNIST files


@pytest.mark.parametrize("name, compress", [("a-idx3-ubyte", False), ("a-idx3-ubyte.gz", True)])
def test_idx_round_trip(tmp_path: Path, name: str, compress: bool) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    write_idx(tmp_path / name, images, compress)
    assert np.array_equal(read_idx(tmp_path / name), images)
    assert np.array_equal(load_digits(tmp_path / name, 1, 3), images[1:3])
    with pytest.raises(ValueError, match=r"a-idx3-ubyte.*5 digits"):
        load_digits(tmp_path / name, 0, 6)
    labels = tmp_path / "labels"
    write_idx(labels, np.arange(5))
    with pytest.raises(ValueError, match="not an images file"):
        load_digits(labels)


def test_idx_errors(tmp_path: Path) -> None:
    path = tmp_path / "cut-idx3-ubyte"
    write_idx(path, np.zeros((3, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"cut-idx3-ubyte.*2352 bytes.*2342"):
        read_idx(path)
    path.write_bytes(b"\x01\x02\x08\x01" + bytes(8))
    with pytest.raises(ValueError, match=r"cut-idx3-ubyte.*magic"):
        read_idx(path)
    gz = tmp_path / "cut.gz"
    write_idx(gz, np.zeros((3, 28, 28), np.uint8), compress=True)
    gz.write_bytes(gz.read_bytes()[:20])
    with pytest.raises(ValueError, match=r"cut\.gz.*gzip"):
        read_idx(gz)
    with pytest.raises(FileNotFoundError, match="nothing.gz"):
        read_idx(tmp_path / "nothing.gz")


def test_real_mnist_test_images() -> None:
    if not MNIST_TEST_IMAGES.is_file():
        pytest.skip(f"{MNIST_TEST_IMAGES} is not on this machine")
    assert md5sum(MNIST_TEST_IMAGES) == MNIST_FILES[MNIST_TEST_IMAGES.name]
    images = read_idx(MNIST_TEST_IMAGES)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8


@pytest.fixture
def mirrors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, str]:
    """Three file:// mirrors: a missing folder, one with a corrupt copy, one with a good copy."""
    content = b"pretend these are MNIST training images"
    name = "train-images-idx3-ubyte.gz"
    monkeypatch.setitem(MNIST_FILES, name, hashlib.md5(content).hexdigest())
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / name).write_bytes(content[:-1] + b"!")
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / name).write_bytes(content)
    return tuple((tmp_path / folder).as_uri() + "/" for folder in ("absent", "corrupt", "good"))


def test_download_falls_back_to_a_good_mirror(tmp_path: Path, mirrors: tuple) -> None:
    root = tmp_path / "mnist"
    paths = download_mnist(root, mirrors=mirrors)
    path = paths["train-images-idx3-ubyte.gz"]
    assert path == root / "train-images-idx3-ubyte.gz"
    assert md5sum(path) == MNIST_FILES[path.name]
    assert sorted(p.name for p in root.iterdir()) == [path.name]  # no temporary files left
    shutil.rmtree(tmp_path / "good")  # present with the right checksum: kept, no download
    assert download_mnist(root, mirrors=mirrors) == paths


def test_download_failure_names_file_and_folder(tmp_path: Path, mirrors: tuple) -> None:
    root = tmp_path / "mnist"
    with pytest.raises(DownloadError) as error:
        download_mnist(root, mirrors=mirrors[:2])
    message = str(error.value)
    name = "train-images-idx3-ubyte.gz"
    assert name in message and MNIST_FILES[name] in message and str(root) in message
    assert mirrors[0] in message and "checksum" in message
    assert list(root.iterdir()) == []  # no temporary files left
    (root / name).write_bytes(b"an old, damaged copy")
    with pytest.raises(DownloadError, match="present, but with the wrong checksum"):
        download_mnist(root, mirrors=mirrors[:2])
    assert md5sum(download_mnist(root, mirrors=mirrors)[name]) == MNIST_FILES[name]  # replaced
    with pytest.raises(ValueError, match="unknown MNIST files"):
        download_mnist(root, files=("mnist.zip",), mirrors=mirrors)


# Moving MNIST


def fake_moving_mnist(path: Path, num_sequences: int = 40) -> None:
    """A small file shaped like the standard one, each sequence filled with its index."""
    codes = np.arange(num_sequences, dtype=np.uint8)[None, :, None, None]
    np.save(path, np.broadcast_to(codes, (20, num_sequences, 64, 64)))


def test_moving_mnist_file_splits(tmp_path: Path) -> None:
    path = tmp_path / "mnist_test_seq.npy"
    fake_moving_mnist(path)
    splits = {
        split: load_moving_mnist_file(path, split, validation=6, expected_sequences=40)
        for split in ("train", "validation", "test")
    }
    assert {split: len(source) for split, source in splits.items()} == {
        "train": 30,
        "validation": 6,
        "test": 4,
    }
    assert isinstance(splits["train"].array.array, np.memmap)  # a lazy view of the file
    copy = pickle.loads(pickle.dumps(splits["validation"]))  # e.g. to a spawned worker
    assert len(pickle.dumps(splits["validation"])) < 4096  # the file's name, not its data
    assert all(np.array_equal(copy[n], splits["validation"][n]) for n in range(6))
    seen = []
    for source in splits.values():
        assert source.frame_shape == (1, 64, 64) and source.num_frames == 20
        for n in range(len(source)):
            sequence = source[n]
            assert sequence.shape == (20, 1, 64, 64) and (sequence == sequence.flat[0]).all()
            seen.append(int(sequence.flat[0]))
    assert seen == list(range(40))  # train, validation, test: disjoint, in order
    data = FixedSequences(splits["test"], length=10, crop="last", noise="none")
    assert data[0].shape == (10, 1, 64, 64) and data[0].max().item() == pytest.approx(36 / 255)


def test_moving_mnist_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "mnist_test_seq.npy"
    fake_moving_mnist(path)
    with pytest.raises(ValueError, match=r"mnist_test_seq\.npy.*\(20, 10000, 64, 64\).*40"):
        load_moving_mnist_file(path, "train")
    with pytest.raises(ValueError, match="split"):
        load_moving_mnist_file(path, "dev", expected_sequences=40)
    with pytest.raises(FileNotFoundError, match=r"other\.npy.*toronto"):
        load_moving_mnist_file(tmp_path / "other.npy", "train")


def test_moving_mnist_simulator() -> None:
    digits = np.zeros((3, 28, 28), np.uint8)
    digits[:] = 255  # a full square: any clipping at the border would lose pixels
    simulator = MovingMNIST(digits, num_frames=30, size=40, num_digits=1, speed=5.0)
    assert simulator.frame_shape == (1, 40, 40)
    for seed in range(5):
        video = simulator.render(np.random.default_rng(seed))
        assert video.shape == (30, 1, 40, 40) and video.dtype == np.uint8
        assert ((video == 255).sum(axis=(1, 2, 3)) == 28 * 28).all()
        corners = np.array([np.argwhere(frame[0])[0] for frame in video])  # (T, 2)
        steps = np.abs(np.diff(corners, axis=0))
        assert steps.max() <= 5 + 1  # speed, plus rounding
        assert steps.sum() > 0
        assert np.array_equal(video, simulator.render(np.random.default_rng(seed)))


def test_moving_mnist_two_digits_and_errors() -> None:
    digits = np.random.default_rng(0).integers(0, 256, (4, 28, 28)).astype(np.uint8)
    simulator = MovingMNIST(digits)
    video = simulator.render(np.random.default_rng(1))
    assert video.shape == (20, 1, 64, 64) and simulator.speed == pytest.approx(3.6)
    assert not np.array_equal(video, simulator.render(np.random.default_rng(2)))
    with pytest.raises(ValueError, match="size must be at least 28"):
        MovingMNIST(digits, size=20)
    with pytest.raises(ValueError, match="uint8"):
        MovingMNIST(digits.astype(np.float32))


def test_bouncing_balls() -> None:
    radius, size = 3.0, 24
    simulator = BouncingBalls(num_frames=40, size=size, num_balls=1, radius=radius, channels=3)
    assert simulator.frame_shape == (3, size, size)
    rows = np.arange(size) + 0.5
    for seed in range(3):
        video = simulator.render(np.random.default_rng(seed))
        assert video.shape == (40, 3, size, size) and video.dtype == np.uint8
        assert (video[:, 0] == video[:, 2]).all()
        assert (video.reshape(40, -1).max(axis=1) == 255).all()  # every frame shows the ball
        mass = video[:, 0].astype(float)
        total = mass.sum(axis=(1, 2))
        centre_row = (mass.sum(axis=2) * rows).sum(axis=1) / total
        centre_column = (mass.sum(axis=1) * rows).sum(axis=1) / total
        for centre in (centre_row, centre_column):
            assert (centre >= radius - 0.1).all() and (centre <= size - radius + 0.1).all()
            assert np.abs(np.diff(centre)).max() <= simulator.speed + 0.2
        assert np.array_equal(video, simulator.render(np.random.default_rng(seed)))
    two = BouncingBalls(num_frames=5, size=16).render(np.random.default_rng(0))
    assert two.shape == (5, 1, 16, 16) and (two.reshape(5, -1).max(axis=1) == 255).all()


def test_balls_are_rendered_by_their_coverage_of_each_pixel() -> None:
    """Each pixel is the share of its area that the ball covers (anti-aliased): close to a
    brute-force count of 128 x 128 points per pixel, and the ball's area in total."""
    size, radius = 8, 2.7
    rng = np.random.default_rng(3)
    centres = rng.uniform(radius, size - radius, size=(3, 2))
    fine = (np.arange(size * 128) + 0.5) / 128
    for centre in [*centres, np.array([0.5, 7.2])]:  # the last one leaves the frame
        inside = (fine[:, None] - centre[0]) ** 2 + (fine[None, :] - centre[1]) ** 2 <= radius**2
        reference = inside.reshape(size, 128, size, 128).mean(axis=(1, 3))
        coverage = disc_coverage(centre, radius, size)
        assert np.abs(coverage - reference).max() < 0.005
    for centre in centres:  # inside the frame: the whole disc
        assert disc_coverage(centre, radius, size).sum() == pytest.approx(np.pi * radius**2)
    # The rendered frames are that coverage (maximum over balls), as uint8; the random stream
    # (positions and velocities) is the simulator's own.
    simulator = BouncingBalls(num_frames=6, size=16, num_balls=2)
    video = simulator.render(np.random.default_rng(5))
    positions = simulator.centres(np.random.default_rng(5))
    expected = disc_coverage(positions, simulator.radius, 16).max(axis=1)
    np.testing.assert_array_equal(video[:, 0], np.rint(255 * expected).astype(np.uint8))
    np.testing.assert_array_equal(
        positions[0], np.random.default_rng(5).uniform(2.0, 14.0, size=(2, 2))
    )


# The Source protocol: stored sources and simulators say which they are


class CodedStore(StoredSource):
    """A stored source written by a user: sequence n has 5 + n frames whose pixels hold 10 n + t.

    It counts the frames it reads, and has a ``render`` method (a thumbnail, say) that does not
    make it a simulator: ``stored`` says what it is.
    """

    name = "coded store"
    frame_shape = (1, 2, 2)

    def __init__(self, count: int) -> None:
        self.lengths = [5 + n for n in range(count)]
        self.num_frames = min(self.lengths)
        self.frames_read = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def read(self, n: int, start: int, stop: int) -> np.ndarray:
        self.frames_read += stop - start
        codes = (10 * n + np.arange(start, stop)).astype(np.uint8)
        return np.broadcast_to(codes[:, None, None, None], (stop - start, 1, 2, 2)).copy()

    def render(self) -> np.ndarray:
        return self.read(0, 0, 1)[0, 0]


def test_every_source_declares_its_kind(tmp_path: Path) -> None:
    writer = StoreWriter(tmp_path, "test", 1, frame_shape=(1, 2, 2))
    writer.write_shard("train", "a", ShardData([np.zeros((3, 1, 2, 2), np.uint8)]))
    stored = [ArraySource(coded_sequences()), StoreSource(tmp_path, "train"), CodedStore(2)]
    simulators = [
        BouncingBalls(num_frames=5, size=8),
        MovingMNIST(np.full((3, 28, 28), 255, np.uint8), num_frames=5),
    ]
    for source in stored:
        assert StoredSource in type(source).__mro__ and source.stored is True  # explicit
        assert len(source.lengths) == len(source) and min(source.lengths) == source.num_frames
    for source in simulators:
        assert Simulator in type(source).__mro__ and source.stored is False
        assert source.name == repr(source)
        assert source.render(np.random.default_rng(0)).shape == (5, *source.frame_shape)


def test_datasets_read_only_the_crop_of_any_stored_source() -> None:
    source = CodedStore(4)
    data = TrainingSequences(source, length=4, noise="none", seed=1)
    for i in range(8):  # two epochs: every sequence once per epoch
        codes = decode(data[i])
        n = codes[0] // 10
        assert np.array_equal(codes, codes[0] + np.arange(4)) and codes[-1] % 10 < 5 + n
    assert source.frames_read == 8 * 4
    assert sorted(decode(data[i])[0] // 10 for i in range(4)) == [0, 1, 2, 3]
    last = FixedSequences(source, length=4, crop="last", noise="none")
    assert len(last) == 4 and [last.raw(j)[1] for j in range(4)] == [1, 2, 3, 4]


def test_array_source_reads_a_crop() -> None:
    source = ArraySource(coded_sequences(), name="codes.npy")
    np.testing.assert_array_equal(source.read(2, 3, 7), source[2][3:7])
    assert source.read(-1, 0, 2)[0, 0, 0, 0] == 50 and source.read(1, 4, 4).shape == (0, 1, 2, 3)
    with pytest.raises(IndexError, match=r"codes\.npy: frames 5\.\.10"):
        source.read(0, 5, 10)
    with pytest.raises(IndexError, match=r"codes\.npy: sequence 6"):
        source.read(6, 0, 1)


def test_an_object_that_is_not_a_source_is_refused() -> None:
    class Renders:  # render() alone does not make a simulator: it must say so
        frame_shape, num_frames = (1, 4, 4), 5

        def render(self, rng: np.random.Generator) -> np.ndarray:
            return np.zeros((5, 1, 4, 4), np.uint8)

    for make in (TrainingSequences, FixedSequences):
        with pytest.raises(TypeError, match=r"seqflows\.data\.Source.*got Renders"):
            make(Renders(), length=3)


def test_evaluation_set_takes_all_of_a_stored_source_whatever_its_methods(monkeypatch) -> None:
    from seqflows.app import datasets
    from seqflows.app.config import Config

    config = Config.from_dict({"data": {"size": 2, "length": 4, "test_sequences": 50}})
    monkeypatch.setattr(datasets, "build_source", lambda data, split: CodedStore(3))
    test = datasets.evaluation_set(config, "test")
    assert len(test) == 3 and test.raw(2)[0].shape == (4, 1, 2, 2)  # all of it, not 50


# Layout of the data layer


def isort_key(name: str) -> tuple[int, str]:
    """CONSTANTS, then Classes, then everything else, each alphabetically (ruff's RUF022)."""
    return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)


def test_data_modules_have_a_docstring_a_sorted_all_and_no_private_imports() -> None:
    import ast
    import importlib
    import pkgutil

    import seqflows.data

    names = ["seqflows.data"] + [
        f"seqflows.data.{info.name}" for info in pkgutil.iter_modules(seqflows.data.__path__)
    ]
    assert {"seqflows.data.sources", "seqflows.data.datasets"} <= set(names)
    assert "seqflows.data.sequences" not in names
    for name in names:
        module = importlib.import_module(name)
        assert module.__doc__, name
        assert module.__all__ == sorted(module.__all__, key=isort_key), name
        assert all(hasattr(module, item) for item in module.__all__), name
        tree = ast.parse(Path(module.__file__).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                private = [alias.name for alias in node.names if alias.name.startswith("_")]
                assert not private, f"{name} imports {private} from .{node.module}"
