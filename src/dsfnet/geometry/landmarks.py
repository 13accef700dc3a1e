"""The 68-point landmark layout (iBUG / 300-W order, as in AFLW2000-3D and 3DDFA): the index groups.

Index ranges as slices of the 68 points (0-based). "Right"/"left" are the subject's: the subject's right eye is
on the image's left in a frontal photo. The nose tip, which defines nose-relative depth, is
:data:`dsfnet.geometry.posmap.NOSE_LANDMARK`; the left-right mirror permutation is
:data:`dsfnet.facemodel.uv.FLIP_68`.

>>> list(range(68))[MOUTH][:2], len(list(range(68))[INNER])
([48, 49], 51)
"""
from __future__ import annotations

__all__ = ["BROWS", "CHIN", "EYES", "EYE_LEFT", "EYE_RIGHT", "INNER", "JAW", "MOUTH", "NOSE", "REGIONS"]

#: the face outline, from the subject's right ear to the left one
JAW = slice(0, 17)
#: the chin point of the outline
CHIN = 8
#: both eyebrows (17–21 right, 22–26 left)
BROWS = slice(17, 27)
#: nose bridge 27–30 and nostrils 31–35
NOSE = slice(27, 36)
#: the subject's right eye (image left in a frontal photo)
EYE_RIGHT = slice(36, 42)
#: the subject's left eye
EYE_LEFT = slice(42, 48)
#: both eyes
EYES = slice(36, 48)
#: outer and inner lips
MOUTH = slice(48, 68)
#: the 51 inner points (everything but the outline): what 2D- and 3D-convention annotations agree on
INNER = slice(17, 68)
#: the inner points by region
REGIONS = {"brows": BROWS, "nose": NOSE, "eyes": EYES, "mouth": MOUTH}
