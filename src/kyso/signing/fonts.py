"""The fonts of the stamps, shipped as Python packages so that ``pip install`` brings them.

Source Sans Pro and Source Serif Pro (SIL OFL 1.1) cover Vietnamese and have 1000 units per
em, which pyHanko's glyph accumulator needs for correct spacing (domain.md §2). Serif stands
in for Times New Roman, which Decree 30 names for copies but may not be redistributed.
"""

from __future__ import annotations

from enum import Enum
from functools import cache
from importlib import resources
from pathlib import Path

from kyso.errors import SigningError


class Face(Enum):
    SANS = ("font_source_sans_pro", "SourceSansPro-Regular.ttf")
    SERIF = ("font_source_serif_pro", "SourceSerifPro-Regular.ttf")


@cache
def font_path(face: Face) -> Path:
    package, filename = face.value
    try:
        path = Path(str(resources.files(package) / "files" / filename))
    except ModuleNotFoundError:
        raise SigningError(f"the font package {package} is missing; reinstall kyso") from None
    if not path.is_file():
        raise SigningError(f"the font file {filename} is missing from {package}; reinstall kyso")
    return path
