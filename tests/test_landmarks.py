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
