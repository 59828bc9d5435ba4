"""The package version, in a module of its own so that any module can read it without importing the package's
`__init__` (which imports the models and the pipeline task, and through them the data modules)."""

__version__ = "0.1.0"
