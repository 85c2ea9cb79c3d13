"""cl-analyze: study how a loss shapes learned features, epoch by epoch."""

__version__ = "0.1.0"
