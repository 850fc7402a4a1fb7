"""The tracker between detections: `PersonTracker.coast` on the frames the detector skips.

The boxes are the detector's own on E_caviar_OneLeaveShop1front.mp4 (384x288, 5 fps): the
shopper, 15-20 px wide, walks towards the camera and turns left at 5.6 s. With detection on
every third frame while he moved slowly, the tracker once gave him a new id at the turn.
"""

from __future__ import annotations

import numpy as np

from vision.detect import Boxes
from vision.track import PersonTracker

SHAPE = (288, 384)
# (t, box, confidence) of the walker where the detector ran; None: a frame it skipped.
WALK: list[tuple[float, tuple[int, int, int, int] | None, float]] = [
    (3.6, (306, 79, 321, 124), 0.59),
    (3.8, (306, 79, 323, 124), 0.58),
    (4.0, (307, 80, 324, 127), 0.49),
    (4.2, None, 0.0),
    (4.4, (308, 82, 327, 128), 0.62),
    (4.6, None, 0.0),
    (4.8, None, 0.0),
    (5.0, (309, 84, 326, 132), 0.63),
    (5.2, None, 0.0),
    (5.4, None, 0.0),
    (5.6, (302, 86, 322, 137), 0.44),  # he turns
    (5.8, (298, 89, 320, 141), 0.50),
    (6.0, (298, 92, 318, 142), 0.62),
]


def persons(box: tuple[int, int, int, int] | None, conf: float) -> Boxes:
    if box is None:
        return Boxes(np.zeros((0, 4)), np.zeros(0), [])
    return Boxes(np.array([box], float), np.array([conf]), ["person"])


def test_a_slow_walker_keeps_his_id_through_skipped_frames_and_a_turn() -> None:
    tracker = PersonTracker(fps=5.0)
    ids, coasted = [], []
    for _, box, conf in WALK:
        if box is None:
            coasted.append(tracker.coast())
        else:
            ids.extend(t.track_id for t in tracker.update(persons(box, conf), SHAPE))
    assert ids and set(ids) == {ids[0]}, ids
    assert all(len(c) == 1 and c[0].track_id == ids[0] for c in coasted)
    # A coasted box is the Kalman prediction: after 4.4 it moves on right and down, as he did.
    after_44 = coasted[1][0].xyxy
    assert after_44[0] > 308 - 0.5 and after_44[3] > 128 - 0.5


def test_the_lost_buffer_counts_coasted_frames() -> None:
    """Gone for longer than the buffer (1 s = 5 frames at 5 fps), coasted or detected alike, he
    comes back as someone new; back within it, he keeps his id."""
    for gap, same in ((3, True), (8, False)):
        tracker = PersonTracker(fps=5.0, lost_buffer_s=1.0)
        first = [t.track_id for _, box, conf in WALK[:3] for t in tracker.update(persons(box, conf), SHAPE)]
        tracker.update(persons(None, 0.0), SHAPE)  # he is not detected: lost
        for _ in range(gap):
            tracker.coast()
        back = [t.track_id for t in tracker.update(persons(WALK[2][1], 0.6), SHAPE)]
        back += [t.track_id for t in tracker.update(persons(WALK[2][1], 0.6), SHAPE)]
        assert (back[-1] == first[-1]) is same, (gap, first, back)


def test_pending_counts_new_tracks_until_a_second_detection_confirms_them() -> None:
    """`pending` is what every-k-th detection must not skip: a track begun on this detection that
    ByteTrack drops unless the next one finds it again. A box under the new-track threshold
    starts nothing, so it is never pending however often it is detected."""
    tracker = PersonTracker(5.0)
    first = Boxes(np.array([[10, 10, 60, 150]], float), np.array([0.9]), ["person"])
    assert len(tracker.update(first, SHAPE)) == 1 and tracker.pending == 0  # frame 1: confirmed at once
    two = Boxes(
        np.array([[10, 10, 60, 150], [200, 20, 250, 160]], float), np.array([0.9, 0.8]), ["person"] * 2
    )
    assert len(tracker.update(two, SHAPE)) == 1 and tracker.pending == 1  # the newcomer waits
    assert len(tracker.update(two, SHAPE)) == 2 and tracker.pending == 0  # seen again: a track
    faint = Boxes(
        np.array([[10, 10, 60, 150], [200, 20, 250, 160], [300, 30, 340, 140]], float),
        np.array([0.9, 0.8, 0.38]),
        ["person"] * 3,
    )
    for _ in range(3):
        assert len(tracker.update(faint, SHAPE)) == 2 and tracker.pending == 0


def test_a_tracker_leaves_numpy_blas_on_one_thread() -> None:
    """The Kalman filter's products woke OpenBLAS's second thread, which then spun through the
    pose and detector calls after every update (vision.track.single_thread_blas)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(2, user_api="blas"):  # as numpy starts on a 2-core box, wherever this runs
        PersonTracker().update(persons((10, 10, 50, 120), 0.9), (480, 640))
        blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
        assert blas, "numpy's BLAS was not found"
        assert all(lib["num_threads"] == 1 for lib in blas), blas
