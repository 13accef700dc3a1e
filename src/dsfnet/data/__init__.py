"""Training and evaluation inputs: annotation readers, photo-set sources, landmark fitting, the training-set build
(teacher pseudo-labels and fits, :mod:`dsfnet.data.build`), ground-truth maps, augmentation, occlusion."""
