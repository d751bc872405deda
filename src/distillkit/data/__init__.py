"""distillkit.data"""
