"""distillkit: small synthetic datasets that do the job of big ones, measured honestly."""

__version__ = "0.1.0"
