"""cl-analyze: study how a loss shapes learned features, epoch by epoch."""

# The package's one version number: pyproject.toml reads it from here (a dynamic version).
__version__ = "0.1.0"
