"""distillkit.lm"""
