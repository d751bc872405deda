"""distillkit.dialogbench"""
