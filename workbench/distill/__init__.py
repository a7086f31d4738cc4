"""Distillation: losses, augmentation views, the teacher-output cache and the trainer."""
