"""The controlled bouncing balls and conditioned datasets: actions drive the balls, crops align."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqflows import metrics
from seqflows.data import ArraySource, FixedSequences, TrainingSequences
from seqflows.data.controlled import ControlledBalls, controlled_centres


def centre_of_mass(frames: np.ndarray) -> np.ndarray:
    """(row, column) centre of mass of frames (..., C, H, W), in float64
    (:func:`seqflows.metrics.centre_of_mass`)."""
    return metrics.centre_of_mass(torch.from_numpy(np.asarray(frames, np.float64))).numpy()


def test_actions_move_the_ball_by_what_they_command() -> None:
    simulator = ControlledBalls(num_frames=6, size=16, radius=2.0, speed=1.0)
    frames, actions = simulator.render_with_conditions(np.random.default_rng(3))
    assert frames.shape == (6, 1, 16, 16) and actions.shape == (6, 2)
    assert np.all(actions[0] == 0) and np.all(np.abs(actions) <= 1.0)
    # Away from the walls the centre of mass moves by the action (up to the rendering).
    still = np.zeros((6, 2), np.float32)
    pushed = still.copy()
    pushed[1:, 1] = 1.0  # one pixel to the right per frame
    start = np.random.default_rng(0)
    centred = simulator.render_frames(pushed, start)
    steps = np.diff(centre_of_mass(centred), axis=0)
    moved = (steps[:, 1] > 0.9) & (np.abs(steps[:, 0]) < 1e-6)
    at_wall = np.abs(steps[:, 1]) < 1e-6  # clipped: the ball stops at the wall
    assert np.all(moved | at_wall) and moved.any()
    # The same generator gives the same sequence; the actions are drawn anew every step.
    again, same_actions = simulator.render_with_conditions(np.random.default_rng(3))
    assert np.array_equal(again, frames) and np.array_equal(same_actions, actions)
    assert np.array_equal(simulator.render(np.random.default_rng(3)), frames)
    assert len(np.unique(actions[1:, 0])) == 5


def test_balls_stop_at_the_walls() -> None:
    actions = np.array([[0.0, 0.0], [5.0, -5.0], [5.0, 0.0]])
    centres = controlled_centres(np.array([[2.0, 2.0]]), actions, 1.0, 4.0)
    assert centres[:, 0].tolist() == [[2.0, 2.0], [4.0, 1.0], [4.0, 1.0]]


def test_datasets_give_frames_and_conditions_of_the_same_crop() -> None:
    frames = np.arange(3 * 8 * 2, dtype=np.uint8).reshape(3, 8, 2)
    conditions = np.arange(3 * 8, dtype=np.float32).reshape(3, 8, 1)  # frame index in the set
    source = ArraySource(frames, conditions=conditions)
    for data in [
        TrainingSequences(source, length=4, noise="none", conditions=True),
        FixedSequences(source, length=4, noise="none", conditions=True),
    ]:
        for index in range(3):
            crop, crop_conditions = data[index]
            assert crop.shape == (4, 2) and crop_conditions.shape == (4, 1)
            assert crop_conditions.dtype == torch.float32
            # frame f of sequence n holds 2 * (8 n + f) and 2 * (8 n + f) + 1
            expected = (crop[:, 0] * 255).round() / 2
            torch.testing.assert_close(crop_conditions[:, 0], expected)
    plain = FixedSequences(source, length=4, noise="none")
    assert isinstance(plain[0], torch.Tensor)  # without conditions: the frames alone
    torch.testing.assert_close(plain[1], data.with_conditions(1)[0])


def test_simulated_items_keep_their_frames_with_conditions() -> None:
    simulator = ControlledBalls(num_frames=8, size=8)
    plain = FixedSequences(simulator, length=5, count=2, noise="none")
    conditioned = FixedSequences(simulator, length=5, count=2, noise="none", conditions=True)
    for j in range(2):
        frames, actions = conditioned[j]
        torch.testing.assert_close(frames, plain[j])
        rendered, all_actions = simulator.render_with_conditions(
            np.random.default_rng([0, *_stream("test"), j])
        )
        start = plain.raw(j)[1]
        torch.testing.assert_close(actions, torch.from_numpy(all_actions[start : start + 5]))
    item = TrainingSequences(simulator, length=5, conditions=True)[3]
    assert item[0].shape == (5, 1, 8, 8) and item[1].shape == (5, 2)


def _stream(name: str) -> list[int]:
    import zlib

    return [zlib.crc32(name.encode())]


def test_conditions_that_do_not_match_get_a_clear_error() -> None:
    frames = np.zeros((3, 8, 2), np.uint8)
    with pytest.raises(ValueError, match=r"conditions must have shape \(N, T, A\) = \(3, 8, A\)"):
        ArraySource(frames, name="x.npz", conditions=np.zeros((3, 7, 1)))
    with pytest.raises(ValueError, match="sequence 1, frame 2 are not finite"):
        bad = np.zeros((3, 8, 1))
        bad[1, 2, 0] = np.nan
        ArraySource(frames, name="x.npz", conditions=bad)
    with pytest.raises(ValueError, match="x.npz: conditions were asked for but the sequences"):
        FixedSequences(ArraySource(frames, name="x.npz"), length=4, conditions=True)


def test_store_actions_are_the_conditions_of_the_same_frames(tmp_path) -> None:
    from seqflows.data import StoreSource, open_dataset
    from seqflows.data.store import ShardData, StoreError, StoreWriter

    def shard(frames: int, actions: int) -> ShardData:  # the writer checks the lengths
        sequence = np.arange(frames, dtype=np.uint8).reshape(frames, 1)  # pixel = frame index
        action = np.stack([np.arange(actions), -np.arange(actions)], -1).astype(np.float32)
        position = np.arange(actions, dtype=np.float32)[:, None] * 10
        return ShardData(
            sequences=[sequence],
            metadata=[{}],
            arrays={"action": [action], "endeffector_pos": [position]},
        )

    writer = StoreWriter(tmp_path, "robot", 1, frame_shape=(1,))
    writer.write_shard("train", "a", shard(9, 9))
    source = StoreSource(tmp_path, "train", conditions=("action", "endeffector_pos"))
    assert source.condition_dim == 3
    data = TrainingSequences(source, length=4, noise="none", conditions=True)
    for i in range(4):
        frames, conditions = data[i]
        index = (frames[:, 0] * 255).round()  # the frames' indices in the sequence
        torch.testing.assert_close(conditions, torch.stack([index, -index, 10 * index], -1))
    frames, conditions = open_dataset(tmp_path, "train", conditions=("action",))[0]
    assert frames.shape == (9, 1) and conditions.shape == (9, 2)
    with pytest.raises(StoreError, match="no per-frame array 'force'.*action, endeffector_pos"):
        StoreSource(tmp_path, "train", conditions=("force",))


def test_an_npz_of_frames_and_conditions_is_a_conditioned_source(tmp_path) -> None:
    from seqflows.data.sources import load_conditioned_array

    frames = np.zeros((3, 6, 1, 4, 4), np.uint8)
    path = tmp_path / "robot.npz"
    np.savez(path, frames=frames, conditions=np.ones((3, 6, 4)))
    source = load_conditioned_array(path)
    assert source.condition_dim == 4 and source.read_conditions(2, 1, 4).shape == (3, 4)
    np.savez(path, frames=frames, conditions=np.ones((3, 5, 4)))
    with pytest.raises(ValueError, match=r"robot.npz: conditions must have shape .* got \(3, 5"):
        load_conditioned_array(path)
    np.savez(path, frames=frames)
    with pytest.raises(
        ValueError, match=r"robot.npz: no array 'conditions', it holds \['frames'\]"
    ):
        load_conditioned_array(path)
