"""BlazePose's landmark model run directly on a square (`vision.landmarks`), against MediaPipe's graph.

The direct runner is what pose tracking (`PipelineOptions.pose_track`) uses between full
estimates, so it must put the landmarks where MediaPipe's own graph puts them, on real people.
"""

from __future__ import annotations

import math
from pathlib import Path

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


def test_followed_hips_behind_the_desk_count_in_the_box_itself_not_the_one_opened_at_the_edge():
    """A followed pose's hips may lie `hips_below` of the person's box height below the box. A box
    that touches the top of the frame is opened upward for the check (`_beyond`); the allowance
    stays a share of the box itself, not of the opened one (which is several times taller)."""
    from vision.pose import PoseEstimator

    kp = np.zeros((33, 2))
    kp[[L_SHOULDER, R_SHOULDER]] = [[90, 20], [110, 20]]
    vis = np.zeros(33)
    vis[[L_SHOULDER, R_SHOULDER, L_HIP, R_HIP]] = 1.0

    class Landmarks:
        def run(self, image, roi, keep):  # noqa: ANN001, ANN202 - LandmarkModel's signature
            return Pose(kp.copy(), np.zeros((33, 3)), vis), 1.0

    estimator = PoseEstimator.__new__(PoseEstimator)  # no MediaPipe graph: follow only
    estimator.attempts, estimator.min_tracking, estimator._landmarks = ((0.15, 0.08),), 0.5, Landmarks()
    image = np.zeros((480, 640, 3), np.uint8)
    box = np.array([70.0, 0.0, 130.0, 100.0])  # touches the top edge; 100 px tall
    roi = Roi(100.0, 50.0, 200.0)
    # 0.5 and 1.5 of the box below it (plus the box's own 10 % margin, not the opened box's 30 px)
    for hips_y, kept in ((150.0, True), (250.0, False)):
        kp[[L_HIP, R_HIP]] = [[94, hips_y], [106, hips_y]]
        assert (estimator.follow(image, box, roi, hips_below=0.7) is not None) is kept, hips_y
    assert estimator.follow(image, box, roi) is None  # strict: hips must be in the box


def test_a_box_at_the_frames_edge_keeps_its_own_margins_on_its_other_sides():
    """A box touching the frame's left edge is opened leftward (`_beyond`: the person goes on past
    the edge); its other sides keep margins of the person's own size. From the opened box, five
    times as wide, the right margin was 39 px instead of 9, and a neighbour's torso 20 px right of
    the box passed as this person's."""
    from vision.pose import _belongs_to_box, _beyond

    image = np.zeros((480, 640, 3), np.uint8)
    box = np.array([2.0, 100.0, 62.0, 200.0])  # 60 x 100 px, at the left edge
    judged = _beyond(box, image)
    assert judged[0] < -100 and list(judged[1:]) == [100.0, 62.0, 200.0]
    vis = np.zeros(33)
    vis[[L_SHOULDER, R_SHOULDER, L_HIP, R_HIP]] = 1.0

    def torso(x: float) -> np.ndarray:
        kp = np.zeros((33, 2))
        kp[[L_SHOULDER, R_SHOULDER, L_HIP, R_HIP]] = [[x - 8, 120], [x + 8, 120], [x - 6, 170], [x + 6, 170]]
        return kp

    assert not _belongs_to_box(torso(90.0), vis, judged, own=box)  # the neighbour's, right of the box
    assert _belongs_to_box(torso(90.0), vis, judged)  # what the opened box's margins let in
    assert _belongs_to_box(torso(30.0), vis, judged, own=box)  # this person's
    assert _belongs_to_box(torso(-10.0), vis, judged, own=box)  # past the edge: the opened side


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
def _refine_one_by_one(xy: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """MediaPipe's RefineLandmarksFromHeatmap written out landmark by landmark: the reference."""
    from vision.landmarks import HEATMAP_KERNEL, HEATMAP_MIN

    hh, hw, _ = heat.shape
    half = HEATMAP_KERNEL // 2
    for i in range(len(xy)):
        cx, cy = int(xy[i, 0] / INPUT * hw), int(xy[i, 1] / INPUT * hh)
        x0, x1 = max(cx - half, 0), min(cx + half + 1, hw)
        y0, y1 = max(cy - half, 0), min(cy + half + 1, hh)
        if x0 >= x1 or y0 >= y1:
            continue
        window = 1 / (1 + np.exp(-heat[y0:y1, x0:x1, i].astype(np.float64)))
        if window.max() < HEATMAP_MIN:
            continue
        xy[i, 0] = (window.sum(axis=0) * np.arange(x0, x1)).sum() / window.sum() / hw * INPUT
        xy[i, 1] = (window.sum(axis=1) * np.arange(y0, y1)).sum() / window.sum() / hh * INPUT
    return xy


def test_heatmap_refinement_moves_each_landmark_as_mediapipe_does():
    """All 39 windows at once (`refine_from_heatmap`) against the landmark-by-landmark reference,
    on random heatmaps with landmarks everywhere, beyond the map's edges included: equal to
    float32 rounding. Confident windows move their landmark; unsure ones and ones off the map
    leave it where it was."""
    from vision.landmarks import refine_from_heatmap

    rng = np.random.default_rng(7)
    moved = kept = 0
    for _ in range(60):
        heat = (rng.normal(0, 2, (64, 64, 39)) + rng.normal(0, 3)).astype(np.float32)
        xy = rng.uniform(-40, INPUT + 40, (39, 2)).astype(np.float32)
        got, want = refine_from_heatmap(xy.copy(), heat), _refine_one_by_one(xy.copy(), heat)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
        same = np.all(got == xy, axis=1)
        moved, kept = moved + int((~same).sum()), kept + int(same.sum())
    assert moved > 300 and kept > 300


def test_an_empty_square_is_not_a_body():
    if not MEDIA.exists():
        pytest.skip(NO_MEDIA)
    shared = make_pipeline(track=False)
    image = cv2.imread(str(MEDIA / "1_econ_man_leaning_on_wall_texting.jpg"))
    box = shared.detector.detect(image).of("person").xyxy[0]
    blank = np.full_like(image, 114)
    assert shared.pose.follow(blank, box, Roi(190.0, 285.0, 500.0)) is None
    assert shared.pose.follow(image, box, Roi(190.0, 285.0, 500.0)) is not None  # the man himself


def test_mediapipes_square_is_kept_as_its_alignment_points():
    """`estimate` turns MediaPipe's `pose_rect_from_detection` (normalised to the crop) into the two
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
    """The open-plan office's seated workers, followed after a full estimate: from the square
    MediaPipe's landmark model ran on, fewer follows lose the person than from one guessed off the
    hips and the farthest landmark (what a pose without alignment points gets), which for a worker
    behind a desk framed the body so that the landmarks left the box."""
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

        def follow(self, image, box, roi, hips_below=0.0):  # noqa: ANN001, ANN202
            return shared.pose.follow(image, box, roi, hips_below)

    lost = {}
    for name, estimator in (("mediapipe", shared.pose), ("guessed", Guessed())):
        options = PipelineOptions(
            fps=5.0, wrist_crops=False, pose_reuse=False, pose_retry_s=0.0, follow_hips_below=0.0
        )
        p = Pipeline(shared.detector, estimator, options)  # type: ignore[arg-type]
        for f in frames:
            p.process(f)
        lost[name] = options.counts.get("pose_track_lost", 0)
        assert options.counts.get("pose_tracked", 0) > 100, (name, dict(options.counts))
    assert lost["mediapipe"] < 0.7 * lost["guessed"], lost  # 24 against 62 here


@pytest.mark.media
@pytest.mark.model
def test_a_seated_workers_followed_hips_may_lie_behind_the_desk():
    """The open-plan office's workers show a box that ends at their desk; followed, BlazePose
    places their hips behind it, below the box, and the strict check rejected the pose, after
    which a full estimate (two to three times the cost) found the same worker again. With the
    hips allowed 0.7 of the box's height below it, most of those follows hold, so the clip needs
    far fewer full estimates; the shoulders of every kept follow stay inside its box."""
    from conftest import media_path

    from vision.pipeline import Pipeline, PipelineOptions
    from vision.sources import open_source

    if not MEDIA.exists():
        pytest.skip(NO_MEDIA)
    shared = make_pipeline()
    with open_source(str(media_path("A_office_openplan_workers_seated.mp4")), fps=5) as source:
        frames = list(source)[:40]

    class Counting:
        """The shared estimator, counting full estimates and checking each kept follow."""

        def __init__(self) -> None:
            self.estimates = 0

        def estimate(self, image, box):  # noqa: ANN001, ANN202 - PoseEstimator's signature
            self.estimates += 1
            return shared.pose.estimate(image, box)

        def follow(self, image, box, roi, hips_below=0.0):  # noqa: ANN001, ANN202
            pose = shared.pose.follow(image, box, roi, hips_below)
            if pose is not None:
                x1, y1, x2, y2 = box
                shoulders = pose.keypoints[[L_SHOULDER, R_SHOULDER]]
                h, w = y2 - y1, x2 - x1
                assert (shoulders[:, 1] <= y2 + 0.1 * h).all() and (shoulders[:, 1] >= y1 - 0.1 * h).all()
                assert (shoulders[:, 0] >= x1 - 0.15 * w).all() and (shoulders[:, 0] <= x2 + 0.15 * w).all()
            return pose

    lost, estimates = {}, {}
    for below in (0.0, 0.7):
        options = PipelineOptions(fps=5.0, wrist_crops=False, follow_hips_below=below)
        estimator = Counting()
        p = Pipeline(shared.detector, estimator, options)  # type: ignore[arg-type]
        for f in frames:
            p.process(f)
        lost[below], estimates[below] = options.counts.get("pose_track_lost", 0), estimator.estimates
    assert lost[0.7] < 0.5 * lost[0.0], lost  # 6 against 30 here
    assert estimates[0.7] < 0.85 * estimates[0.0], estimates  # 65 against 89


@pytest.mark.media
@pytest.mark.model
def test_a_full_estimate_does_not_depend_on_the_people_estimated_before():
    """The same person gives the same landmarks and the same square whoever the graph saw before.
    (MediaPipe's `pose_rect_from_landmarks` did not: the graph smooths the points behind it over
    time even on still images, and the square drifted toward the previous person.)"""
    if not MEDIA.exists():
        pytest.skip(NO_MEDIA)
    shared = make_pipeline(track=False)
    detector, estimator = shared.detector, shared.pose

    def first_pose(name: str) -> Pose:
        image = cv2.imread(str(MEDIA / name))
        pose = estimator.estimate(image, detector.detect(image).of("person").xyxy[0])
        assert pose is not None and pose.aux is not None, name
        return pose

    before = first_pose(PHOTOS[0])
    for name in PHOTOS[1:5]:
        first_pose(name)
    after = first_pose(PHOTOS[0])
    np.testing.assert_array_equal(after.keypoints, before.keypoints)
    np.testing.assert_array_equal(after.aux, before.aux)


def test_the_landmark_model_without_its_mask_gives_the_same_outputs():
    """`without_segmentation` cuts off only the person-mask head: on a real person's square the
    landmarks, pose flag, heatmaps and world landmarks are exactly those of the whole model, in
    the same output slots (the mask's slot holds the flag again, for MediaPipe's graph)."""
    from ai_edge_litert.interpreter import Interpreter
    from ultralytics.utils import ASSETS

    from vision.landmarks import model_path, without_segmentation

    image = cv2.imread(str(ASSETS / "bus.jpg"))
    square = cv2.resize(image[380:930, 0:550], (INPUT, INPUT))
    x = cv2.cvtColor(square, cv2.COLOR_BGR2RGB).astype(np.float32)[None] / 255.0
    outputs = []
    for model in (dict(model_path=str(model_path())), dict(model_content=without_segmentation(model_path()))):
        it = Interpreter(**model, num_threads=1)
        it.allocate_tensors()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outputs.append([(d["name"], it.get_tensor(d["index"]).copy()) for d in it.get_output_details()])
    whole, lean = outputs
    assert [n for n, _ in whole] == ["Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4"]
    assert [n for n, _ in lean] == ["Identity", "Identity_1", "Identity_1", "Identity_3", "Identity_4"]
    for slot in (0, 1, 3, 4):
        np.testing.assert_array_equal(lean[slot][1], whole[slot][1], err_msg=whole[slot][0])
    np.testing.assert_array_equal(lean[2][1], whole[1][1])
    assert float(whole[1][1].reshape(-1)[0]) > 0.5  # a body is there: the outputs mean something


@pytest.mark.media
@pytest.mark.model
def test_full_estimates_on_the_lean_model_are_mediapipes_own():
    """The pose graph on the lean resource folder gives exactly the landmarks of
    `mp.solutions.pose.Pose(static_image_mode=True)` on the whole model, person by person."""
    import mediapipe as mp

    from vision.pose import PoseEstimator, crop_square, padded_square

    if not MEDIA.exists():
        pytest.skip(NO_MEDIA)
    ours = PoseEstimator()
    reference = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1)
    compared = 0
    for name in PHOTOS[:5]:
        image = cv2.imread(str(MEDIA / name))
        for box in make_pipeline(track=False).detector.detect(image).of("person").xyxy[:2]:
            x0, y0, side = padded_square(box, 0.3, image.shape[:2])
            crop = cv2.cvtColor(crop_square(image, x0, y0, side), cv2.COLOR_BGR2RGB)
            a, b = ours._pose.process(crop), reference.process(crop)
            assert (a.pose_landmarks is None) == (b.pose_landmarks is None), name
            if a.pose_landmarks is None:
                continue
            got = np.array([[p.x, p.y, p.z, p.visibility] for p in a.pose_landmarks.landmark])
            want = np.array([[p.x, p.y, p.z, p.visibility] for p in b.pose_landmarks.landmark])
            np.testing.assert_array_equal(got, want, err_msg=name)
            compared += 1
    ours.close()
    reference.close()
    assert compared >= 4


def test_without_a_writable_cache_the_whole_model_is_used(tmp_path, monkeypatch, caplog):
    from vision.landmarks import LandmarkModel, lean_resources

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("POSTWATCH_CACHE", str(blocked))
    with caplog.at_level("WARNING"):
        assert lean_resources() is None
    assert "using the whole model" in caplog.text
    model = LandmarkModel()  # still runs, on the wheel's model
    pose, flag = model.run(np.full((300, 300, 3), 114, np.uint8), Roi(150.0, 150.0, 280.0))
    assert pose.keypoints.shape == (33, 2) and 0.0 <= flag <= 1.0


def test_without_a_home_folder_the_whole_model_is_used(monkeypatch, caplog):
    from vision.landmarks import lean_resources

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("POSTWATCH_CACHE", raising=False)
    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    with caplog.at_level("WARNING"):
        assert lean_resources() is None
    assert "set POSTWATCH_CACHE" in caplog.text


def test_the_lean_folder_is_written_once_and_reused(tmp_path, monkeypatch):
    from vision.landmarks import LANDMARK_MODEL, lean_resources

    monkeypatch.setenv("POSTWATCH_CACHE", str(tmp_path))
    root = lean_resources()
    assert root is not None and (root / LANDMARK_MODEL).is_file()
    written = (root / LANDMARK_MODEL).stat().st_mtime_ns
    assert lean_resources() == root and (root / LANDMARK_MODEL).stat().st_mtime_ns == written
    assert not list(root.rglob("*.part"))


def test_a_model_without_a_mask_output_is_refused_with_a_reason():
    from vision.landmarks import DETECTOR_MODEL, wheel_resources, without_segmentation

    with pytest.raises(ValueError, match="not BlazePose's landmark model"):
        without_segmentation(str(wheel_resources() / DETECTOR_MODEL))


@pytest.mark.media
@pytest.mark.model
def test_a_close_up_cut_off_by_the_frame_gets_a_full_estimate():
    """The warehouse worker on the phone fills the frame from top to bottom: BlazePose places his
    hips below the picture, outside his box. A full estimate judges belonging against the box
    opened beyond the frame's edges, as a followed pose does, so he gets landmarks; judged against
    the box itself he got none on every try (two MediaPipe runs each, every 0.6 s)."""
    from conftest import media_path

    from vision.pose import _belongs_to_box
    from vision.sources import open_source

    if not MEDIA.exists():
        pytest.skip(NO_MEDIA)
    shared = make_pipeline(track=False)
    with open_source(str(media_path("2_worker_hivis_hardhat_phone_call_warehouse.mp4")), fps=5) as source:
        image = next(iter(source)).image
    box = shared.detector.detect(image).of("person").xyxy[0]
    assert box[3] > 0.97 * image.shape[0]  # reaches the bottom edge
    pose = shared.pose.estimate(image, box)
    assert pose is not None
    hips = pose.keypoints[[L_HIP, R_HIP]]
    assert (hips[:, 1] > box[3]).all()  # below the picture
    assert not _belongs_to_box(pose.keypoints, pose.visibility, box)  # what rejected him before
