"""Former home of the image pictures; they live in `distillkit.plots` now (this name stays for old imports)."""

from distillkit.plots import accuracy_bars, accuracy_lines, cost_bars, cross_arch_bars, curve, image_grid

__all__ = ["accuracy_bars", "accuracy_lines", "cost_bars", "cross_arch_bars", "curve", "image_grid"]
