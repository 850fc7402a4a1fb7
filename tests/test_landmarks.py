"""BlazePose's landmark model run directly on a square (`vision.landmarks`), against MediaPipe's graph.

The direct runner is what pose tracking (`PipelineOptions.pose_track`) uses between full
estimates, so it must put the landmarks where MediaPipe's own graph puts them, on real people.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from conftest import MEDIA, NO_MEDIA, make_pipeline

from vision.landmarks import INPUT, Roi, roi_from_points, roi_from_pose
from vision.pose import L_HIP, L_SHOULDER, R_HIP, R_SHOULDER, Pose

# Photos of one or a few people standing or sitting (labels.yaml), the whole range of sizes.
PHOTOS = (
    "1_econ_man_leaning_on_wall_texting.jpg",
    "1_ootd_woman_one_hand_on_hip.jpg",
    "1_pidm_woman_both_hands_in_dress_pockets.jpg",
    "1_stock_man_arms_crossed_street_watermarked.jpg",
    "2_pedestrian_woman_walking_texting.jpg",
    "3_control_room_operator_hardhat_at_desk.jpg",
    "3_pexels_workshop_staff_in_aprons.jpg",
    "4_stock_man_legs_crossed_on_sofa_watermarked.jpg",
    "B_coco_000536_women_phone_to_ear.jpg",
    "CD_coco_000241_man_standing_casual.jpg",
)


def test_an_upright_alignment_gives_an_unrotated_square_around_the_body():
    roi = roi_from_points(np.array([100.0, 200.0]), np.array([100.0, 120.0]))  # scale point above
    assert (roi.cx, roi.cy) == (100.0, 200.0)
    assert roi.angle == pytest.approx(0.0)
    assert roi.side == pytest.approx(2 * 80 * 1.25)
    lying = roi_from_points(np.array([100.0, 200.0]), np.array([180.0, 200.0]))  # head to the right
    assert abs(lying.angle) == pytest.approx(math.pi / 2)


def test_the_square_maps_the_model_input_onto_the_image():
    roi = Roi(300.0, 200.0, 128.0)
    m = roi.affine()
    corners = np.array([[0, 0], [INPUT, INPUT], [INPUT / 2, INPUT / 2]], float)
    assert np.allclose(corners @ m[:, :2].T + m[:, 2], [[236, 136], [364, 264], [300, 200]])
    turned = Roi(0.0, 0.0, float(INPUT), math.pi / 2).affine()
    up = np.array([INPUT / 2, 0.0]) @ turned[:, :2].T + turned[:, 2]  # top of the input ...
    assert np.allclose(up, [INPUT / 2, 0.0])  # ... is to the right of the centre in the image


def test_a_pose_without_alignment_points_is_framed_from_its_torso():
    kp = np.zeros((33, 2))
    kp[[L_SHOULDER, R_SHOULDER]] = [[90, 100], [110, 100]]
    kp[[L_HIP, R_HIP]] = [[92, 180], [108, 180]]
    kp[0] = [100, 60]  # the nose: the farthest landmark from the hips
    vis = np.zeros(33)
    vis[[0, L_SHOULDER, R_SHOULDER, L_HIP, R_HIP]] = 1.0  # the rest unseen
    pose = Pose(kp, np.zeros((33, 3)), vis)
    roi = roi_from_pose(pose)
    assert roi is not None
    assert (roi.cx, roi.cy, roi.angle) == pytest.approx((100.0, 180.0, 0.0))
    assert roi.side == pytest.approx(2 * 1.25 * 1.1 * 120)
    hidden = Pose(kp, np.zeros((33, 3)), np.where(np.arange(33) == L_HIP, 0.0, vis))
    assert roi_from_pose(hidden) == roi  # a hip behind the desk: placed where the body implies it
    assert roi_from_pose(Pose(kp, np.zeros((33, 3)), np.zeros(33))) is None  # nothing seen


@pytest.mark.media
@pytest.mark.model
def test_direct_landmarks_agree_with_mediapipe_on_real_photos():
    """Framed from MediaPipe's own landmarks and then from its own alignment points (as from one
    video frame to the next), the direct runner lands within 2 % of each person's height of
    MediaPipe's graph (median over people and visible landmarks). Its speed is bench/'s business."""
    if not MEDIA.exists():
        pytest.skip(NO_MEDIA)
    shared = make_pipeline(track=False)
    detector, estimator = shared.detector, shared.pose
    errors: list[float] = []
    for name in PHOTOS:
        image = cv2.imread(str(MEDIA / name))
        for box in detector.detect(image).of("person").xyxy[:3]:
            reference = estimator.estimate(image, box)
            if reference is None:
                continue
            roi = roi_from_pose(reference)
            assert roi is not None
            first = estimator.follow(image, box, roi)
            assert first is not None and first.aux is not None, name
            second = estimator.follow(image, box, roi_from_pose(first))  # from its own alignment points
            assert second is not None, name
            seen = reference.visibility > 0.5
            height = float(box[3] - box[1])
            apart = np.hypot(*(second.keypoints - reference.keypoints)[seen].T)
            errors.append(float(np.median(apart)) / height)
    assert len(errors) >= 12
    assert float(np.median(errors)) < 0.02, errors
    assert max(errors) < 0.06, errors


@pytest.mark.media
@pytest.mark.model
def test_an_empty_square_is_not_a_body():
    if not MEDIA.exists():
        pytest.skip(NO_MEDIA)
    shared = make_pipeline(track=False)
    image = cv2.imread(str(MEDIA / "1_econ_man_leaning_on_wall_texting.jpg"))
    box = shared.detector.detect(image).of("person").xyxy[0]
    blank = np.full_like(image, 114)
    assert shared.pose.follow(blank, box, Roi(190.0, 285.0, 500.0)) is None
    assert shared.pose.follow(image, box, Roi(190.0, 285.0, 500.0)) is not None  # the man himself


def test_mediapipes_tracking_square_is_kept_as_its_alignment_points():
    """`estimate` turns MediaPipe's `pose_rect_from_landmarks` (normalised to the crop) into the two
    alignment points, and `roi_from_pose` turns those back into the very same square."""
    from types import SimpleNamespace

    from vision.pose import _alignment_points

    rect = SimpleNamespace(x_center=0.4, y_center=0.9, width=2.5, height=2.5, rotation=0.3)
    aux = _alignment_points(rect, 100, 50, 400)
    roi = roi_from_pose(Pose(np.zeros((33, 2)), np.zeros((33, 3)), np.zeros(33), aux))
    assert (roi.cx, roi.cy, roi.side, roi.angle) == pytest.approx((260.0, 410.0, 1000.0, 0.3))
    assert (
        _alignment_points(SimpleNamespace(x_center=0, y_center=0, width=0, height=0, rotation=0), 0, 0, 9)
        is None
    )


@pytest.mark.media
@pytest.mark.model
def test_follows_start_from_mediapipes_square_and_fewer_of_them_fail_in_the_office():
    """The open-plan office's seated workers, followed after a full estimate: from MediaPipe's own
    tracking square fewer follows lose the person than from the square guessed off the hips and the
    farthest landmark (what a pose without alignment points gets), which for a worker behind a desk
    framed the body so that the landmarks left the box."""
    from conftest import media_path

    from vision.pipeline import Pipeline, PipelineOptions
    from vision.sources import open_source

    if not MEDIA.exists():
        pytest.skip(NO_MEDIA)
    shared = make_pipeline()
    with open_source(str(media_path("A_office_openplan_workers_seated.mp4")), fps=5) as source:
        frames = list(source)

    class Guessed:
        """The shared estimator with the alignment points dropped from its full estimates."""

        def estimate(self, image, box):  # noqa: ANN001, ANN202 - PoseEstimator's signature
            pose = shared.pose.estimate(image, box)
            return None if pose is None else Pose(pose.keypoints, pose.world, pose.visibility)

        def follow(self, image, box, roi):  # noqa: ANN001, ANN202
            return shared.pose.follow(image, box, roi)

    lost = {}
    for name, estimator in (("mediapipe", shared.pose), ("guessed", Guessed())):
        options = PipelineOptions(fps=5.0, wrist_crops=False, pose_reuse=False, pose_retry_s=0.0)
        p = Pipeline(shared.detector, estimator, options)  # type: ignore[arg-type]
        for f in frames:
            p.process(f)
        lost[name] = options.counts.get("pose_track_lost", 0)
        assert options.counts.get("pose_tracked", 0) > 100, (name, dict(options.counts))
    assert lost["mediapipe"] < 0.7 * lost["guessed"], lost  # 30 against 62 here
