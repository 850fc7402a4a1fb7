"""Uniforms: enrol a role's torso colours from a few photos, then tell staff from customers.

Why the torso: it is what a uniform (shirt, apron, vest, jacket) covers, and the pose
landmarks give it on every posed person, so no extra model is needed. The torso is the
quadrilateral between the shoulders and the hips, shrunk inward so arms, neck and the
background beside the body do not leak in; a close-up without hips uses a band below the
shoulders instead.

Why Lab with a down-weighted L: the same shirt under a window, under a fluorescent tube and
in a shadow changes mostly in lightness, far less in hue. In CIE Lab lightness is one axis
(L) and the colour two (a, b), so scaling L by `L_WEIGHT` before any distance makes the
model care about what colour the cloth is rather than how brightly it is lit, while black
and white (which differ only in L) stay apart. Dimming also shrinks a saturated colour's
chroma (a red vest at x0.6 brightness moves 30 Lab units), so the centre's chroma is scaled
by the pixel's brightness ratio before comparing (`distances`); near black, where chroma is
noise, it is not, so a dark maroon does not turn into any other near-black shirt.

The model is k-means (k = `K`) over the enrolled torso pixels: cluster centres (stored in
plain CIE Lab) and the share of pixels in each. `match` is the share of a torso's pixels
that lie within `max_distance` (the `distances` metric: Lab with L scaled by `L_WEIGHT` and
brightness-compensated chroma) of an enrolled centre: 1.0 = the torso is all uniform
colours, 0.0 = none of it is. A share, not a mean distance, so a hand or a phone in front of
the chest costs only its own area. The weights are kept for reporting and for future use;
the share does not use them (a shading split of one colour into two clusters must not lower
the score of the same shirt under other light).

Known limits: colour only. A customer dressed in the uniform's colour is taken for staff; a
uniform with a large light print also half-matches light shirts; dark uniforms (navy, black,
maroon, dark brown) sit close together. Enrol from photos under the site's own light.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import yaml

from calibration.site import Site, Uniform, Zone
from vision.observation import FrameObservation, PersonObservation
from vision.pose import L_HIP, L_SHOULDER, R_HIP, R_SHOULDER

if TYPE_CHECKING:
    from vision.pipeline import Pipeline  # heavy (the detector): imported where it is used

# -- constants -------------------------------------------------------------------------------

VISIBLE = 0.5  # landmark visibility above which shoulders/hips are trusted for the torso
# Tuned on ../shared/media (tests/test_uniform.py): at 0.35 white and mid-grey stay apart while a
# x0.6 .. x1.4 change of brightness keeps the colours enrolled there matching.
L_WEIGHT = 0.35  # lightness counts this much against colour (a, b) in every distance
CHROMA_RATIO = (0.6, 1.3)  # chroma compensation for a darker / brighter pixel (about x0.5 .. x1.4 in V)
DARK_L = 8.0  # below this L chroma is sensor noise: near-black is compared as it is, not compensated
K = 3  # k-means clusters per uniform: a main colour, its shading, and a trim/second garment
MIN_CLUSTER_WEIGHT = 0.08  # clusters smaller than this share are noise (skin, a badge, a leak)
SHRINK_SIDE = 0.18  # share of the torso width cut off each side (arms hang just outside)
SHRINK_TOP = 0.12  # share of the torso height cut off at the top (collar, neck, chin)
SHRINK_BOTTOM = 0.08  # and at the bottom (belt, hands at the hips)
CLOSEUP_DEPTH = 0.9  # without hips: the band below the shoulders is this many shoulder widths deep
MIN_WIDTH = 0.4  # side-on, the torso is at least this many torso lengths wide (chest to back)
MIN_PIXELS = 150  # fewer torso pixels than this are no evidence (far away, side-on)
MAX_PIXELS = 6000  # pixels kept per torso (evenly strided) so matching stays cheap at 1080p
MIN_MATCH = 0.5  # share of the torso in uniform colours from which a person wears the uniform
DEFAULT_MAX_DISTANCE = 12.0  # weighted-Lab radius around a centre when enrolment gives no spread
# The enrolled radius is clamped into this range. 12 keeps a maroon T-shirt and a navy one apart
# (about 18 apart) while the same shirt in another clip still matches; a wide, textured spread may
# stretch it to 24, never further (at 25 navy, maroon and dark brown all merge).
MAX_DISTANCE_RANGE = (12.0, 24.0)
SPREAD_QUANTILE = 0.9  # the radius covers this share of the enrolment pixels ...
SPREAD_MARGIN = 1.25  # ... times this margin for the lighting and fabric of other frames
WINDOW_S = 3.0  # the staff vote averages the matches of this many seconds
FORGET_S = 10.0  # a track unseen this long is dropped from the classifier


# -- torso pixels ----------------------------------------------------------------------------


def _seen(person: PersonObservation, *idx: int) -> bool:
    vis = person.visibility
    return vis is not None and all(float(vis[i]) >= VISIBLE for i in idx)


def _bilinear(quad: np.ndarray, u: float, v: float) -> np.ndarray:
    """A point inside the quad (top-left, top-right, bottom-right, bottom-left) at (u, v) in [0, 1]^2."""
    top = quad[0] + u * (quad[1] - quad[0])
    bottom = quad[3] + u * (quad[2] - quad[3])
    return top + v * (bottom - top)


def _widen(a: np.ndarray, b: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray]:
    """The segment a-b (a left of b) stretched about its middle to at least `width` pixels.

    Side-on the two shoulders (and hips) nearly coincide although the body is still a chest
    deep; the joints sit about mid-depth, so the torso spreads evenly around them.
    """
    gap = float(np.linalg.norm(b - a))
    if gap >= width:
        return a, b
    mid = (a + b) / 2
    unit = (b - a) / gap if gap > 1e-6 else np.array([1.0, 0.0])
    return mid - unit * width / 2, mid + unit * width / 2


def torso_quad(person: PersonObservation) -> np.ndarray | None:
    """The shrunk torso quadrilateral (4x2 image pixels, clockwise from the top-left in the image),
    or None when the shoulders are not both visible.

    Image-left/right rather than the person's left/right, so a person seen from the back gives the
    same quad. Without visible hips (a close-up, a desk hiding the waist) the torso is a band below
    the shoulders `CLOSEUP_DEPTH` shoulder widths deep, perpendicular to the shoulder line.
    """
    kp = person.keypoints
    if kp is None or not _seen(person, L_SHOULDER, R_SHOULDER):
        return None
    sh = sorted((kp[L_SHOULDER], kp[R_SHOULDER]), key=lambda p: float(p[0]))
    if _seen(person, L_HIP, R_HIP):
        hips = sorted((kp[L_HIP], kp[R_HIP]), key=lambda p: float(p[0]))
        length = float(np.linalg.norm((sh[0] + sh[1]) / 2 - (hips[0] + hips[1]) / 2))
        top, bottom = _widen(*sh, MIN_WIDTH * length), _widen(*hips, MIN_WIDTH * length)
        quad = np.array([top[0], top[1], bottom[1], bottom[0]], dtype=float)
    else:
        across = sh[1] - sh[0]
        width = float(np.linalg.norm(across))
        if width < 1.0:
            return None
        down = np.array([-across[1], across[0]]) / width  # perpendicular, pointing down the image
        if down[1] < 0:
            down = -down
        depth = CLOSEUP_DEPTH * width * down
        quad = np.array([sh[0], sh[1], sh[1] + depth, sh[0] + depth], dtype=float)
    u0, u1 = SHRINK_SIDE, 1.0 - SHRINK_SIDE
    v0, v1 = SHRINK_TOP, 1.0 - SHRINK_BOTTOM
    return np.array([_bilinear(quad, u, v) for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))])


def torso_pixels(image: np.ndarray, person: PersonObservation) -> np.ndarray | None:
    """The BGR pixels (N x 3, uint8) of the person's torso, or None when there is no torso to read.

    None when the shoulders are not visible (no pose, turned away, hidden), or when the torso is
    too small or too thin (side-on, far away) to give `MIN_PIXELS`: a handful of pixels is noise,
    not a uniform. The mask is also clipped to the person's box so a wrong landmark cannot pull
    in a neighbour. At most `MAX_PIXELS` are kept, evenly strided.
    """
    quad = torso_quad(person)
    if quad is None:
        return None
    h, w = image.shape[:2]
    mask = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(quad).astype(np.int32)], 1)
    x1, y1, x2, y2 = (int(round(float(v))) for v in person.box)
    keep = np.zeros_like(mask)
    keep[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = 1
    mask &= keep
    pixels = image[mask.astype(bool)]
    if len(pixels) < MIN_PIXELS:
        return None
    if len(pixels) > MAX_PIXELS:
        pixels = pixels[:: int(np.ceil(len(pixels) / MAX_PIXELS))]
    return np.ascontiguousarray(pixels, dtype=np.uint8)


# -- colour model ----------------------------------------------------------------------------


def to_lab(pixels: np.ndarray) -> np.ndarray:
    """BGR uint8 pixels (N x 3) to CIE Lab (L in 0..100, a and b about -128..127), float32."""
    bgr = np.asarray(pixels, dtype=np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab).reshape(-1, 3)


def _weighted(lab: np.ndarray) -> np.ndarray:
    out = np.array(lab, dtype=np.float32, copy=True).reshape(-1, 3)
    out[:, 0] *= L_WEIGHT
    return out


def distances(lab: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Lighting-tolerant distance (N x K) from every pixel (Lab) to every centre (Lab).

    Lightness counts `L_WEIGHT`. Colour (a, b) is compared after scaling the centre's chroma by
    the pixel's brightness ratio (L + 16) / (L_centre + 16), clamped to `CHROMA_RATIO`: dimming
    a colour scales L + 16, a and b alike (Lab's cube root), so a saturated red in a dark corner
    has less chroma than at the window although it is the same cloth. Without this, a x0.6
    darker room moves a saturated colour further than a different hue.
    """
    lab = np.asarray(lab, dtype=np.float32).reshape(-1, 3)
    centres = np.asarray(centres, dtype=np.float32).reshape(-1, 3)
    lit = np.maximum(lab[:, 0], DARK_L)  # near black, chroma is noise: no compensation there
    ratio = (lit[:, None] + 16.0) / (np.maximum(centres[None, :, 0], DARK_L) + 16.0)
    ratio = np.clip(ratio, *CHROMA_RATIO)[..., None]
    d_l = L_WEIGHT * (lab[:, None, 0] - centres[None, :, 0])
    d_ab = np.linalg.norm(lab[:, None, 1:] - ratio * centres[None, :, 1:], axis=2)
    return np.sqrt(d_l**2 + d_ab**2)


def _nearest(lab: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Distance from every pixel to its nearest centre (see `distances`)."""
    return distances(lab, centres).min(axis=1)


def fit(pixels: np.ndarray, k: int = K, images: Sequence[str] = ()) -> Uniform:
    """A uniform model from torso pixels (BGR, N x 3): k-means centres, their shares, and a radius.

    Clusters under `MIN_CLUSTER_WEIGHT` are dropped (a hand or the edge of the background, not the
    uniform) and the weights renormalised. `max_distance` comes from the enrolment itself: the
    `SPREAD_QUANTILE` of pixel-to-centre distances times `SPREAD_MARGIN`, clamped to
    `MAX_DISTANCE_RANGE`, so a plain shirt gets a tight radius and a patterned one a wider one.
    """
    lab = to_lab(pixels)
    if len(lab) < max(k, 1):
        raise ValueError(f"too few torso pixels to enrol a uniform ({len(lab)})")
    k = max(1, min(k, len(lab)))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.1)
    cv2.setRNGSeed(0)  # the same photos give the same model
    _, labels, centres_w = cv2.kmeans(_weighted(lab), k, None, criteria, 5, cv2.KMEANS_PP_CENTERS)
    labels = labels.ravel()
    weights = np.bincount(labels, minlength=k).astype(float) / len(labels)
    keep = weights >= MIN_CLUSTER_WEIGHT
    if not keep.any():
        keep = weights == weights.max()
    centres = centres_w.astype(float).copy()
    centres[:, 0] /= L_WEIGHT
    centres, weights = centres[keep], weights[keep] / weights[keep].sum()
    order = np.argsort(-weights)
    centres, weights = centres[order], weights[order]
    spread = float(np.quantile(_nearest(lab, centres), SPREAD_QUANTILE)) * SPREAD_MARGIN
    lo, hi = MAX_DISTANCE_RANGE
    radius = float(np.clip(spread, lo, hi)) if np.isfinite(spread) else DEFAULT_MAX_DISTANCE
    return Uniform(
        colours_lab=[tuple(round(float(c), 2) for c in centre) for centre in centres],
        weights=[round(float(x), 4) for x in weights],
        max_distance=round(radius, 2),
        images=list(images),
    )


def enroll(images_and_persons: Iterable[tuple[np.ndarray, PersonObservation]], k: int = K) -> Uniform:
    """A uniform from a few (image, person) pairs of people wearing it.

    Every photo contributes the same number of pixels (the smallest torso's count, at least
    `MIN_PIXELS`), so one close-up does not outvote the others. Raises ValueError when none of
    the persons shows a torso.
    """
    torsos = [px for image, person in images_and_persons if (px := torso_pixels(image, person)) is not None]
    if not torsos:
        raise ValueError("no torso visible in the enrolment photos (shoulders must be in view)")
    n = max(min(len(px) for px in torsos), MIN_PIXELS)
    pooled = np.concatenate([px[:: max(1, len(px) // n)][:n] for px in torsos])
    return fit(pooled, k=k)


def match_pixels(uniform: Uniform, pixels: np.ndarray) -> float:
    """Share of the pixels (BGR) within `uniform.max_distance` of an enrolled centre, in [0, 1]."""
    if len(pixels) == 0:
        return 0.0
    centres = np.asarray(uniform.colours_lab, dtype=float)
    return float(np.mean(_nearest(to_lab(pixels), centres) <= uniform.max_distance))


def match(uniform: Uniform, image: np.ndarray, person: PersonObservation) -> float | None:
    """Share of the person's torso in the uniform's colours, in [0, 1]; None when no torso is visible.

    None rather than 0.0, because "cannot see the chest" is no evidence of a missing uniform.
    """
    pixels = torso_pixels(image, person)
    return None if pixels is None else match_pixels(uniform, pixels)


def is_uniform(
    uniform: Uniform, image: np.ndarray, person: PersonObservation, min_match: float = MIN_MATCH
) -> bool | None:
    """Whether the person wears the uniform (match >= `min_match`); None when no torso is visible."""
    score = match(uniform, image, person)
    return None if score is None else score >= min_match


# -- enrolment from files and the site file --------------------------------------------------


def largest_person(obs: FrameObservation) -> PersonObservation | None:
    """The tallest posed person of the frame (enrolment photos show the uniform up front)."""
    posed = [p for p in obs.persons if p.keypoints is not None] or obs.persons
    return max(posed, key=lambda p: p.height_px, default=None)


def enroll_from_files(paths: Sequence[str | Path], pipeline: Pipeline, k: int = K) -> Uniform:
    """Enrol a uniform from photos (or the first frame of videos): the largest person of each.

    Each photo is looked at on its own: a tracking pipeline is swapped for an untracked one on
    the same models, because a tracker sees unrelated photos as one jumpy stream and drops the
    persons of every photo after the first. `uniform.images` lists the photos that gave a torso
    (a caller can tell the user which ones did not). Raises ValueError naming the photos when
    none gave a torso.
    """
    from vision.pipeline import Pipeline as _Pipeline
    from vision.sources import open_source

    if pipeline.tracker is not None:
        pipeline = _Pipeline(
            pipeline.detector, pipeline.pose, pipeline.options, camera="calibrate", track=False
        )

    pairs: list[tuple[np.ndarray, PersonObservation]] = []
    used: list[str] = []
    missed: list[str] = []
    for path in paths:
        with open_source(str(path), camera="calibrate") as source:
            frame = next(iter(source), None)
        if frame is None:
            missed.append(str(path))
            continue
        person = largest_person(pipeline.process(frame))
        if person is None or torso_pixels(frame.image, person) is None:
            missed.append(str(path))
            continue
        pairs.append((frame.image, person))
        used.append(str(path))
    if not pairs:
        raise ValueError("no person with a visible torso in " + ", ".join(missed or [str(p) for p in paths]))
    uniform = enroll(pairs, k=k)
    uniform.images = used
    return uniform


def write_uniform(site_path: str | Path, role: str, uniform: Uniform) -> None:
    """Write the uniform into the site YAML under roles.<role>.uniform, keeping the rest of the file.

    The file is re-validated with `load_site` afterwards; when the result would not load (an
    unknown role, say) the original text is restored and the SiteError is raised, so a failed
    calibration never leaves a broken site file behind. Comments in the YAML are not kept
    (safe_dump cannot keep them).
    """
    from calibration.site import load_site

    path = Path(site_path)
    original = path.read_text(encoding="utf-8")
    data = yaml.safe_load(original) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path} must be a mapping")
    roles = data.get("roles")
    if not isinstance(roles, dict):
        roles = data["roles"] = {}
    entry = roles.get(role)
    if not isinstance(entry, dict):
        entry = roles[role] = {}
    entry["uniform"] = {
        "colours_lab": [[float(c) for c in centre] for centre in uniform.colours_lab],
        "weights": [float(x) for x in uniform.weights],
        "max_distance": float(uniform.max_distance),
        "images": [str(i) for i in uniform.images],
    }
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    try:
        load_site(path)
    except Exception:
        path.write_text(original, encoding="utf-8")
        raise


# -- staff or customer -----------------------------------------------------------------------


@dataclass
class _TrackVotes:
    """The recent uniform matches of one track, per role, as (t, match) samples."""

    last_t: float
    samples: dict[str, deque[tuple[float, float]]] = field(default_factory=dict)


class StaffClassifier:
    """Per track: which role's uniform the person wears, voted over the last few seconds.

    Why a vote: one frame can fail (a phone across the chest, motion blur, a landmark on the
    wrong arm) and a staff member must not become a customer for that frame. Each role keeps
    the track's matches of the last `window_s` seconds *of that track's own evidence* (frames
    without a visible torso add nothing and take nothing away), and the decision is their mean
    against `min_match`. So a torso hidden for a while leaves the last decision standing, and
    a track unseen for `forget_s` is dropped.
    """

    def __init__(
        self,
        site: Site,
        window_s: float = WINDOW_S,
        min_match: float = MIN_MATCH,
        forget_s: float = FORGET_S,
    ) -> None:
        self.site = site
        self.window_s = float(window_s)
        self.min_match = float(min_match)
        self.forget_s = float(forget_s)
        self.uniforms: dict[str, Uniform] = {
            name: role.uniform for name, role in site.roles.items() if role.uniform is not None
        }
        self._tracks: dict[int, _TrackVotes] = {}

    def update(self, obs: FrameObservation, image: np.ndarray) -> dict[int, str | None]:
        """Add this frame's uniform matches; return every person's current role (None = not staff)."""
        t = float(obs.t)
        for person in obs.persons:
            track = int(person.track_id)
            votes = self._tracks.setdefault(track, _TrackVotes(t))
            votes.last_t = max(votes.last_t, t)
            pixels = torso_pixels(image, person) if self.uniforms else None
            if pixels is None:
                continue
            for role, uniform in self.uniforms.items():
                self.add(track, role, t, match_pixels(uniform, pixels))
        for track in [k for k, v in self._tracks.items() if t - v.last_t > self.forget_s]:
            del self._tracks[track]
        return {int(p.track_id): self.role_of(int(p.track_id)) for p in obs.persons}

    def add(self, track_id: int, role: str, t: float, score: float) -> None:
        """Record one match of a track against one role's uniform (what `update` does per person)."""
        votes = self._tracks.setdefault(int(track_id), _TrackVotes(t))
        votes.last_t = max(votes.last_t, t)
        window = votes.samples.setdefault(role, deque())
        window.append((t, float(score)))
        while window and window[0][0] < t - self.window_s:
            window.popleft()

    def match_of(self, track_id: int, role: str) -> float | None:
        """The track's mean match against the role's uniform over the window; None without evidence.

        This is the number to feed `rules.appearance.uniform_missing`: steadier than one frame's.
        """
        votes = self._tracks.get(int(track_id))
        window = votes.samples.get(role) if votes else None
        return float(np.mean([s for _, s in window])) if window else None

    def wears(self, track_id: int, role: str) -> bool | None:
        """Whether the track wears the role's uniform by the vote; None before its torso was seen."""
        m = self.match_of(track_id, role)
        return None if m is None else m >= self.min_match

    def role_of(self, track_id: int) -> str | None:
        """The role whose uniform the track wears (best mean match of those that pass), or None."""
        scores = {r: self.match_of(track_id, r) for r in self.uniforms}
        passed = {r: m for r, m in scores.items() if m is not None and m >= self.min_match}
        return max(passed, key=passed.__getitem__, default=None)

    def is_staff(self, person: PersonObservation, zone: Zone | None) -> bool | None:
        """Whether the person is staff of the zone's role.

        With a uniform enrolled for the zone's role: the track's vote (None until its torso has
        been seen). Without one, presence stands in for the uniform: anyone in a `post` zone counts
        as that post's staff (True), elsewhere it is unknown (None). With no zone (or a zone without
        a role): True when the track wears any enrolled uniform, False when uniforms are enrolled
        and its torso has been seen in none of them, None when there is nothing to judge by.
        """
        track = int(person.track_id)
        if zone is not None and zone.role is not None:
            if zone.role in self.uniforms:
                return self.wears(track, zone.role)
            return True if zone.kind == "post" else None
        votes = [self.wears(track, r) for r in self.uniforms]
        known = [v for v in votes if v is not None]
        return any(known) if known else None
