"""distillkit.image"""
