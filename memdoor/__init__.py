"""memdoor: keep the evidence of an out-of-memory kill before the kernel erases it."""

__version__ = "0.1.0"
