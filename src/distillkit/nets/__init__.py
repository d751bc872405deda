"""distillkit.nets"""
