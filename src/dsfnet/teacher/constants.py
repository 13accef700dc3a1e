"""The 3DDFA_V2 teacher's fixed numbers and names (no dependencies: the CLI reads them at start-up).

The files are the user's own copy of 3DDFA_V2's release (MIT code; the parameters are BFM-derived,
non-commercial research only); they are never part of this package.
"""
from __future__ import annotations

#: input side of the network, px (the crop is resized to TEACHER_SIZE × TEACHER_SIZE)
TEACHER_SIZE = 120
#: number of network outputs: 12 pose (a 3×4 ``[P | t]``, row-major) + 40 shape + 10 expression
N_PARAMS = 62
#: the network weights inside a teacher folder
TEACHER_WEIGHTS = "mb05_120x120.pth"
#: the parameter statistics (mean and std of the 62 outputs) inside a teacher folder
TEACHER_STATS = "param_mean_std_62d_120x120.pkl"
#: environment variable naming the teacher folder (the default of every ``--teacher-dir``)
ENV_TEACHER_DIR = "DSFNET_TEACHER_DIR"
