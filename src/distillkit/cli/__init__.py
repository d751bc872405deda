"""distillkit.cli"""
