"""The package version, in a module of its own: setup.cfg reads it from here
(``attr: dfl_infer._version.__version__``), and any module can read it without importing the
package's top level."""

__version__ = "0.1.0"
