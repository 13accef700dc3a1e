"""Test doubles of the dsfnet tests and benchmarks (not shipped: this folder is outside ``src/``).

* :mod:`testing.face_model`: the synthetic face model (:func:`~testing.face_model.toy_face_model`, a mesh
  ``FaceModel`` whose UV layout goes through the product's code) and :func:`~testing.face_model.toy_face`.
* :mod:`testing.analytic_face`: an analytic surface at fractional UV cells, for exact image-space ground truth.
* :mod:`testing.untrained`: :func:`~testing.untrained.make_all_visible`, an untrained DSFNet whose image-space
  path runs on any crop.
* :mod:`testing.toy_network`: :class:`~testing.toy_network.ToyNet` / :class:`~testing.toy_network.ToyDataset`,
  the millisecond network the trainer tests run, registered as model ``"toy"`` by ``tests/conftest.py``.
* :mod:`testing.aligner`: :class:`~testing.aligner.StaticRunner` and :func:`~testing.aligner.toy_aligner`, a
  ``FaceAligner`` whose network returns a known posed face.

Imported from the repository root (``pyproject.toml`` puts it on pytest's ``pythonpath``).
"""
