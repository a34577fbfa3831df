"""
The build plane: handler code → cargo project → binary stored by digest.

``Builder`` is the face other planes use (docs/internals.md); the modules
behind it are private to this package.
"""

from .builder import BuildResult, Builder
from .cargo import BuildError, CargoNotFound, CompileFailed
from .project import InvalidDependency, check_dependencies

__all__ = [
    "Builder",
    "BuildResult",
    "BuildError",
    "CargoNotFound",
    "CompileFailed",
    "InvalidDependency",
    "check_dependencies",
]
