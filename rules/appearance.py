"""Appearance checks: the uniform (d1.image.01, d5.dress.01, d11.uniform.01) and the tie (d5.dress.04).

Pure functions like `rules.checks`, returning the same `Check`: they never read pixels. The
uniform match is measured by `calibration.uniform` (the share of the torso in the enrolled
colours, best taken as a `StaffClassifier.match_of` mean over a few seconds) and handed in as a
number, so these checks can be tested on recorded observations and a fixed match.

Three-valued as everywhere in rules: True breaks the clause, False keeps it, None is "cannot
tell" (no torso, no uniform enrolled, chest turned away) and neither fires nor clears.

Parameters (catalogue defaults, site-overridable): `min_match_share` (uniform) and
`min_tie_share` (tie detector confidence).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from calibration.site import Role
from rules.checks import Check, GateSpec, PersonHistory
from vision.observation import PersonObservation
from vision.pose import L_SHOULDER, R_SHOULDER

MIN_MATCH_SHARE = 0.5  # as calibration.uniform.MIN_MATCH: half the torso in uniform colours is the uniform
MIN_TIE_SHARE = 0.3  # a worn-tie confidence from which the tie counts as present
TIE_MIN_HEIGHT_PX = 120  # a person shorter than this in the image is too small to see a tie on
TIE_FACING_DEG = 60.0  # chest turned further than this from the camera hides the tie
CHEST_VISIBLE = 0.5  # both shoulders at least this visible = the chest is in view


def _param(params: Mapping[str, Any], key: str, default: float) -> float:
    value = params.get(key)
    return default if value is None else float(value)


def uniform_missing(person: PersonObservation, match: float | None, params: Mapping[str, Any]) -> Check:
    """A person on post whose torso does not match the enrolled uniform.

    `match` is the share of the torso in the uniform's colours (0..1), None when there is no
    torso to judge or no uniform enrolled: then the clause is unknown, never a violation, because
    a hidden chest is no evidence of a missing uniform. Confidence grows with the distance from
    the threshold, so a torso in entirely other colours is the clearest snapshot.
    """
    limit = _param(params, "min_match_share", MIN_MATCH_SHARE)
    details: dict[str, Any] = {"match": None if match is None else round(float(match), 3), "min_match": limit}
    if match is None:
        return Check(None, message="unknown: no torso visible or no uniform enrolled", details=details)
    m = min(max(float(match), 0.0), 1.0)
    if m >= limit:
        conf = 0.5 + 0.5 * (m - limit) / max(1.0 - limit, 1e-6)
        text = f"uniform worn ({m:.0%} of the torso in uniform colours)"
        return Check(False, conf, message=text, details=details)
    conf = 0.5 + 0.5 * (limit - m) / max(limit, 1e-6)
    text = f"not in uniform: {m:.0%} of the torso in uniform colours (needs {limit:.0%})"
    details["behaviours"] = {"uniform_missing": text}
    return Check(True, conf, score=conf, message=text, details=details)


def tie_missing(person: PersonObservation, role: Role, params: Mapping[str, Any]) -> Check:
    """d5.dress.04: a staff member of a role that requires a tie wears none.

    The tie comes from the detector (`Features.objects["tie"]`, the worn-tie confidence). A tie
    seen keeps the clause whatever the pose. No tie fires only when the chest is in view: both
    shoulders visible, the chest turned toward the camera (when the yaw is known) and the person
    tall enough in the image for the detector to find a tie. Without landmarks and without a tie
    the answer is unknown: the detector missing a tie on an unposed, perhaps turned-away person
    says nothing.
    """
    if not role.tie_required:
        return Check(False, 1.0, message="the role does not require a tie", details={"tie_required": False})
    limit = _param(params, "min_tie_share", MIN_TIE_SHARE)
    tie = float(person.features.objects.get("tie", 0.0))
    details: dict[str, Any] = {"tie": round(tie, 3), "min_tie": limit, "tie_required": True}
    if tie >= limit:
        return Check(False, tie, message=f"tie worn ({tie:.2f})", details=details)
    vis = person.visibility
    if person.keypoints is None or vis is None:
        return Check(None, message="unknown: no landmarks and no tie seen", details=details)
    chest = min(float(vis[L_SHOULDER]), float(vis[R_SHOULDER]))
    if chest < CHEST_VISIBLE:
        return Check(None, message="unknown: chest not in view", details=details)
    yaw = person.features.body_yaw_deg
    if yaw.value is not None and abs(yaw.value) > TIE_FACING_DEG:
        details["yaw_deg"] = round(float(yaw.value), 1)
        return Check(None, message="unknown: chest turned away from the camera", details=details)
    if person.height_px < TIE_MIN_HEIGHT_PX:
        return Check(None, message="unknown: person too small in the image to see a tie", details=details)
    # A weak tie detection below the limit lowers the confidence that there is none.
    conf = chest * (1.0 - 0.5 * tie / max(limit, 1e-6))
    text = "no tie (男士上班时应系领带)"
    details["behaviours"] = {"tie_missing": text}
    return Check(True, conf, score=conf, message=text, details=details)


# --- engine adapters ---------------------------------------------------------------------------
# The engine's checks see one person; the site context they need travels in the person's evidence,
# put there by whoever knows the site (service.session.CameraRules): "uniform_match" (the rolling
# share for the role of the post they stand on) and "tie_required" (that role needs a tie).


def uniform_rule(person: PersonObservation, history: PersonHistory, params: Mapping[str, Any]) -> Check:
    match = person.evidence.get("uniform_match")
    return uniform_missing(person, None if match is None else float(match), params)


def tie_rule(person: PersonObservation, history: PersonHistory, params: Mapping[str, Any]) -> Check:
    return tie_missing(person, Role(tie_required=bool(person.evidence.get("tie_required"))), params)


APPEARANCE_RULES: dict[str, tuple[GateSpec, ...]] = {
    "uniform_missing": (GateSpec(uniform_rule),),
    "tie_missing": (GateSpec(tie_rule),),
}
