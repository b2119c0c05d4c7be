"""The ``provstore`` command line: ``provstore.cli.main:main`` and its commands."""
