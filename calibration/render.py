"""Drawing a site file's camera over a frame of that camera, for `postwatch calibrate check`.

A site file is numbers; a person can only judge it on the picture. What is drawn:

- every zone, filled translucent in its kind's colour (`KIND_COLOURS`) with its outline and a label
  "name" / "kind | role | min N";
- the door as a ring labelled with `facing_yaw_deg`, and the facing arrow (see `facing_arrows`): the
  direction, in the picture, of a person standing at the post and facing the door. Straight down means
  facing the camera (yaw 0), right means yaw +90 (turned to the person's left, which is the image's
  right, as `Features.body_yaw_deg`), up means back to the camera (yaw +-180). A right value makes the
  arrow point roughly at the door ring; the sketch is in the picture plane, so it is approximate for a
  camera that looks steeply down;
- the floor scale: its four image points labelled with their floor positions in metres, and a 1 m grid
  on the floor projected back into the image through the inverse of `FloorScale.matrix()`. Squares that
  look skewed or uneven against the real floor mean the points or the metres are wrong.

OpenCV's Hershey fonts draw ASCII only; other characters in names come out as '?'.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import supervision as sv
from shapely.geometry import Polygon

from calibration.site import Camera, FloorScale, Zone

XY = tuple[float, float]
Segment = tuple[XY, XY]

KIND_COLOURS: dict[str, sv.Color] = {
    "post": sv.Color.from_hex("#e6194b"),  # red: someone must be here
    "staff_only": sv.Color.from_hex("#911eb4"),  # purple
    "standby": sv.Color.from_hex("#f58231"),  # orange
    "work": sv.Color.from_hex("#4363d8"),  # blue
    "customer": sv.Color.from_hex("#3cb44b"),  # green
}
DOOR_COLOUR = sv.Color.from_hex("#f032e6")  # magenta: the door ring and the facing arrow
GRID_COLOUR = sv.Color.from_hex("#42d4f4")  # cyan: the floor grid
ZONE_OPACITY = 0.35
GRID_STEP_M = 1.0
GRID_MAX_M = 30.0  # the grid reaches at most this far from the calibration points
GRID_MIN_CELL_PX = 10.0  # and stops where its cells get smaller than this in the image
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _scale(image: np.ndarray) -> float:
    """Text and line size grow with the frame so a 4K frame is as readable as a 480p one."""
    return max(1.0, min(image.shape[:2]) / 600.0)


def _text_colour(bg: sv.Color) -> sv.Color:
    return sv.Color.BLACK if 0.299 * bg.r + 0.587 * bg.g + 0.114 * bg.b > 150 else sv.Color.WHITE


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def _text_metrics(image: np.ndarray) -> tuple[float, int, int]:
    k = _scale(image)
    return 0.5 * k, max(1, round(k)), round(4 * k)  # font scale, thickness, padding


def label_size(image: np.ndarray, lines: list[str]) -> tuple[int, int]:
    """Width and height of the box `draw_label` draws for these lines."""
    size, thick, pad = _text_metrics(image)
    dims = [cv2.getTextSize(_ascii(t), _FONT, size, thick) for t in lines]
    line_h = max(d[0][1] + d[1] for d in dims) + pad
    return max(d[0][0] for d in dims) + 2 * pad, line_h * len(lines) + pad


def draw_label(
    image: np.ndarray, lines: list[str], anchor: XY, bg: sv.Color, *, centred: bool = True
) -> np.ndarray:
    """Lines of text on a box at `anchor` (its centre, or its top-left corner), kept inside the frame."""
    size, thick, pad = _text_metrics(image)
    lines = [_ascii(t) for t in lines]
    dims = [cv2.getTextSize(t, _FONT, size, thick) for t in lines]
    line_h = max(d[0][1] + d[1] for d in dims) + pad
    box_w, box_h = label_size(image, lines)
    h, w = image.shape[:2]
    x0 = anchor[0] - box_w / 2 if centred else anchor[0]
    y0 = anchor[1] - box_h / 2 if centred else anchor[1]
    x0 = int(min(max(x0, 0), max(w - box_w, 0)))
    y0 = int(min(max(y0, 0), max(h - box_h, 0)))
    cv2.rectangle(image, (x0, y0), (x0 + box_w, y0 + box_h), bg.as_bgr(), -1)
    fg = _text_colour(bg).as_bgr()
    for i, (text, (_, base)) in enumerate(zip(lines, dims)):
        y = y0 + (i + 1) * line_h - base
        cv2.putText(image, text, (x0 + pad, y), _FONT, size, fg, thick, cv2.LINE_AA)
    return image


def zone_label(zone: Zone) -> list[str]:
    """The zone's name, then kind, role and min staff (min staff only where someone is expected)."""
    parts = [zone.kind]
    if zone.role:
        parts.append(zone.role)
    if zone.kind in ("post", "standby") or zone.role:
        parts.append(f"min {zone.min_staff}")
    return [zone.name, " | ".join(parts)]


def _inside_point(zone: Zone) -> XY:
    """The centroid, or a point surely inside where the polygon is too concave for its centroid."""
    shape: Polygon = zone.shape
    c = shape.centroid
    p = c if shape.contains(c) else shape.representative_point()
    return float(p.x), float(p.y)


def draw_zone(image: np.ndarray, zone: Zone) -> np.ndarray:
    colour = KIND_COLOURS[zone.kind]
    poly = np.round(np.array(zone.polygon, dtype=float)).astype(np.int32)
    sv.draw_filled_polygon(image, poly, colour, opacity=ZONE_OPACITY)
    sv.draw_polygon(image, poly, colour, thickness=max(2, round(2 * _scale(image))))
    return image


def facing_arrows(camera: Camera, length: float) -> list[Segment]:
    """Where the facing arrows go: (start, tip) from each post and standby zone, or from the door itself
    when the camera has no such zone. Empty without a door.

    Yaw 0 (facing the camera) points down the image, +90 (turned to the person's left) points right,
    +-180 points up: the tip is start + length * (sin yaw, cos yaw) in image x (right) and y (down).
    """
    if camera.door is None:
        return []
    yaw = math.radians(camera.door.facing_yaw_deg)
    d = (math.sin(yaw) * length, math.cos(yaw) * length)
    starts = [_inside_point(z) for z in camera.zones if z.kind in ("post", "standby")] or [camera.door.point]
    return [((x, y), (x + d[0], y + d[1])) for x, y in starts]


def draw_door(image: np.ndarray, camera: Camera) -> np.ndarray:
    """The door ring, its label, and the facing arrows (see `facing_arrows`)."""
    if camera.door is None:
        return image
    k = _scale(image)
    h, w = image.shape[:2]
    for (x0, y0), (x1, y1) in facing_arrows(camera, length=0.18 * min(h, w)):
        p0, p1 = (round(x0), round(y0)), (round(x1), round(y1))
        cv2.arrowedLine(image, p0, p1, (0, 0, 0), round(6 * k), cv2.LINE_AA, tipLength=0.3)
        cv2.arrowedLine(image, p0, p1, DOOR_COLOUR.as_bgr(), round(3 * k), cv2.LINE_AA, tipLength=0.3)
    x, y = camera.door.point
    centre, r = (round(x), round(y)), round(10 * k)
    cv2.circle(image, centre, r + round(2 * k), (255, 255, 255), round(3 * k), cv2.LINE_AA)
    cv2.circle(image, centre, r, DOOR_COLOUR.as_bgr(), round(3 * k), cv2.LINE_AA)
    label = [f"door: facing_yaw {camera.door.facing_yaw_deg:g} deg"]
    width = label_size(image, label)[0]
    gap = r + 4 * k
    lx = x + gap if x + gap + width <= w else x - gap - width  # beside the ring, inside the frame
    draw_label(image, label, (lx, y - 8 * k), DOOR_COLOUR, centred=False)
    return image


def _project(m: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 2) through the homography `m`: the mapped points and the homogeneous w (its sign says
    which side of the horizon a point is on)."""
    q = m @ np.c_[pts, np.ones(len(pts))].T
    with np.errstate(divide="ignore", invalid="ignore"):
        return (q[:2] / q[2]).T, q[2]


def floor_grid(floor: FloorScale, width: int, height: int, step_m: float = GRID_STEP_M) -> list[list[XY]]:
    """The floor's grid lines (every `step_m` metres) as image polylines.

    Each line is sampled on the floor and mapped into the image by the inverse of `floor.matrix()`;
    pieces beyond the horizon (where the homography's w changes sign) are dropped. The grid covers the
    calibration points and the floor seen in the frame up to where its cells shrink below
    `GRID_MIN_CELL_PX` (towards the horizon they only make a solid band), at most `GRID_MAX_M` away.
    """
    to_floor = floor.matrix().astype(np.float64)
    to_image = np.linalg.inv(to_floor)
    flr = np.array(floor.floor_m, dtype=np.float64)
    img_sign = np.sign(np.mean(_project(to_floor, np.array(floor.image, dtype=np.float64))[1]))
    flr_sign = np.sign(np.mean(_project(to_image, flr)[1]))

    gx, gy = np.meshgrid(np.linspace(0, width - 1, 33), np.linspace(0, height - 1, 33))
    on_floor, w = _project(to_floor, np.c_[gx.ravel(), gy.ravel()])
    on_floor = on_floor[(w * img_sign > 1e-12) & np.all(np.isfinite(on_floor), axis=1)]
    if len(on_floor):  # keep the floor seen with cells of a useful size
        here = _project(to_image, on_floor)[0]
        along_x = _project(to_image, on_floor + [step_m, 0.0])[0] - here
        along_y = _project(to_image, on_floor + [0.0, step_m])[0] - here
        area = np.abs(along_x[:, 0] * along_y[:, 1] - along_x[:, 1] * along_y[:, 0])
        # The gap between neighbouring grid lines is the cell's area over its side along them.
        gap = area / np.maximum(
            np.maximum(np.linalg.norm(along_x, axis=1), np.linalg.norm(along_y, axis=1)), 1e-9
        )
        on_floor = on_floor[gap >= GRID_MIN_CELL_PX]
    pts = np.concatenate([flr, on_floor])
    centre = flr.mean(axis=0)
    lo = np.maximum(pts.min(axis=0), centre - GRID_MAX_M)
    hi = np.minimum(pts.max(axis=0), centre + GRID_MAX_M)
    lo, hi = np.floor(lo / step_m) * step_m, np.ceil(hi / step_m) * step_m

    lines: list[list[XY]] = []
    t = np.linspace(0.0, 1.0, 80)
    for axis in (0, 1):
        other = 1 - axis
        for v in np.arange(lo[axis], hi[axis] + step_m / 2, step_m):
            f = np.empty((len(t), 2))
            f[:, axis] = v
            f[:, other] = lo[other] + t * (hi[other] - lo[other])
            uv, w = _project(to_image, f)
            ok = (w * flr_sign > 1e-12) & np.all(np.isfinite(uv) & (np.abs(uv) < 1e5), axis=1)
            run: list[XY] = []
            for good, (x, y) in zip(ok, uv):
                if good:
                    run.append((float(x), float(y)))
                    continue
                if len(run) > 1:
                    lines.append(run)
                run = []
            if len(run) > 1:
                lines.append(run)
    return lines


def draw_floor(image: np.ndarray, floor: FloorScale) -> np.ndarray:
    """The 1 m floor grid and the four calibration points with their floor positions."""
    h, w = image.shape[:2]
    k = _scale(image)
    polylines = [np.round(np.array(line)).astype(np.int32) for line in floor_grid(floor, w, h)]
    cv2.polylines(image, polylines, False, GRID_COLOUR.as_bgr(), max(1, round(k)), cv2.LINE_AA)
    for (x, y), (fx, fy) in zip(floor.image, floor.floor_m):
        cv2.circle(image, (round(x), round(y)), round(5 * k), (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(image, (round(x), round(y)), round(3 * k), GRID_COLOUR.as_bgr(), -1, cv2.LINE_AA)
        draw_label(image, [f"({fx:g}, {fy:g}) m"], (x + 6 * k, y + 6 * k), GRID_COLOUR, centred=False)
    return image


def render_camera(camera: Camera, image: np.ndarray, caption: str | None = None) -> np.ndarray:
    """A copy of `image` with the camera's zones, door and floor grid drawn on it (see the module doc).

    Order matters: grid first (under the zones), zone fills, labels, then the door and its arrows on top.
    `caption` (default: the camera id and frame size) goes in the top-left corner.
    """
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    if camera.floor is not None:
        draw_floor(out, camera.floor)
    for zone in camera.zones:
        draw_zone(out, zone)
    for zone in camera.zones:
        draw_label(out, zone_label(zone), _inside_point(zone), KIND_COLOURS[zone.kind])
    draw_door(out, camera)
    lines = [caption or f"camera {camera.id}  {w}x{h}"]
    if camera.door is not None:
        lines.append("arrow: facing the door (down = camera)")
    if camera.floor is not None:
        lines.append(f"floor grid: {GRID_STEP_M:g} m")
    draw_label(out, lines, (0, 0), sv.Color.BLACK, centred=False)
    return out


def fit_problems(camera: Camera, width: int, height: int) -> list[str]:
    """What in the camera's config does not fit its real frames: a `frame_size` that differs from the
    source's, or zone, door or floor points outside the frame. The drawing still shows them."""
    problems = []
    if camera.frame_size is not None and tuple(camera.frame_size) != (width, height):
        fw, fh = camera.frame_size
        problems.append(
            f"frame_size says {fw}x{fh} but the source's frames are {width}x{height}, so the zones, door "
            "and floor points are not where they were drawn"
        )

    def outside(points: list[XY]) -> str:
        return ", ".join(f"({x:g}, {y:g})" for x, y in points if not (0 <= x <= width and 0 <= y <= height))

    for zone in camera.zones:
        if bad := outside(zone.polygon):
            problems.append(f"zone {zone.name!r} has points outside the {width}x{height} frame: {bad}")
    if camera.door is not None and (bad := outside([camera.door.point])):
        problems.append(f"door point {bad} is outside the {width}x{height} frame")
    if camera.floor is not None and (bad := outside(camera.floor.image)):
        problems.append(f"floor image points outside the {width}x{height} frame: {bad}")
    return problems
