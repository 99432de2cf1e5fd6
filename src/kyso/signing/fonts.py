"""The fonts of the stamps, shipped as Python packages so that ``pip install`` brings them.

Source Sans Pro and Source Serif Pro (SIL OFL 1.1) cover Vietnamese and have 1000 units per
em, which pyHanko's glyph accumulator needs for correct spacing (domain.md §2). Serif stands
in for Times New Roman, which Decree 30 names for copies but may not be redistributed.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import Enum
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pyhanko.pdf_utils.font.opentype import GlyphAccumulator, GlyphAccumulatorFactory

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


@cache
def font_bytes(face: Face) -> bytes:
    return font_path(face).read_bytes()


@dataclass(frozen=True)
class EmbeddedFont(GlyphAccumulatorFactory):
    """pyHanko's glyph accumulator fed from memory: the font file is read once per process
    (pyHanko's own factory opens the file for every stamp and never closes it)."""

    face: Face = Face.SANS

    def create_font_engine(self, writer: Any, obj_stream: Any = None) -> GlyphAccumulator:
        if obj_stream is None and writer.stream_xrefs and self.create_objstream_if_needed:
            obj_stream = writer.prepare_object_stream()
        return GlyphAccumulator(writer=writer, font_handle=io.BytesIO(font_bytes(self.face)),
                                font_size=self.font_size, obj_stream=obj_stream)


def embedded_font(face: Face, size: int) -> EmbeddedFont:
    return EmbeddedFont(font_file=str(font_path(face)), font_size=size, face=face)
