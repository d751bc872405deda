"""distillkit.text"""
