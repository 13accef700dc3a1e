"""``dsfnet.teacher``: the 3DDFA_V2 teacher (MobileNetV1 ×0.5, 120×120 input, 62 3DMM parameters).

One owner for everything about the teacher; its weights (``mb05_120x120.pth``) and parameter statistics
(``param_mean_std_62d_120x120.pkl``) are **never** part of this package: the user passes their folder
(``--teacher-dir`` or ``$DSFNET_TEACHER_DIR``; 3DDFA_V2, MIT code; the parameters are BFM-derived,
non-commercial research only).

Modules: :mod:`~dsfnet.teacher.constants` (sizes, file names, environment variable; no dependencies),
:mod:`~dsfnet.teacher.files` (folder lookup, statistics), :mod:`~dsfnet.teacher.network` (torch: the network,
its checkpoint, the lite backbone's initialisation from it), :mod:`~dsfnet.teacher.roi` (crop rules),
:mod:`~dsfnet.teacher.convert` (62 parameters → ``Pose_Para``), :mod:`~dsfnet.teacher.predictor`
(:class:`Teacher`), :mod:`~dsfnet.teacher.tta` (test-time augmentation).

The constants are imported eagerly; every other public name on first use (this package is imported by the CLI
at start-up, and torch is heavy), as ``dsfnet`` itself does.
"""
from __future__ import annotations

from dsfnet._lazy import lazy_getattr
from dsfnet.teacher.constants import ENV_TEACHER_DIR, N_PARAMS, TEACHER_SIZE, TEACHER_STATS, TEACHER_WEIGHTS

_LAZY = {
    "Teacher": "dsfnet.teacher.predictor",
    "TeacherOutput": "dsfnet.teacher.predictor",
    "load_teacher": "dsfnet.teacher.predictor",
    "resolve_teacher_dir": "dsfnet.teacher.files",
    "teacher_files": "dsfnet.teacher.files",
    "load_param_stats": "dsfnet.teacher.files",
    "TeacherNet": "dsfnet.teacher.network",
    "load_teacher_network": "dsfnet.teacher.network",
    "load_teacher_backbone": "dsfnet.teacher.network",
    "read_teacher_state_dict": "dsfnet.teacher.network",
    "roi_from_landmarks": "dsfnet.teacher.roi",
    "roi_from_detection": "dsfnet.teacher.roi",
    "roi_from_calibrated_detection": "dsfnet.teacher.roi",
    "jitter_roi": "dsfnet.teacher.roi",
    "cut_roi": "dsfnet.teacher.roi",
    "params_to_image_affine": "dsfnet.teacher.convert",
    "affine_to_pose_para": "dsfnet.teacher.convert",
    "TTA_JITTER": "dsfnet.teacher.tta",
    "teacher_tta_landmarks": "dsfnet.teacher.tta",
}

__all__ = ["ENV_TEACHER_DIR", "N_PARAMS", "TEACHER_SIZE", "TEACHER_STATS", "TEACHER_WEIGHTS", *_LAZY]


__getattr__ = lazy_getattr(__name__, _LAZY)
