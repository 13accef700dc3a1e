"""Training and evaluation inputs: annotation readers, teacher pseudo-labels, ground-truth maps, augmentation."""
