"""Visible signature stamps after Decree 30/2020/ND-CP, Appendix I (domain.md §2).

- ``official``: an official's approval: optional blue handwritten-signature image, then
  "Ký bởi / Chức vụ / Cơ quan / Thời gian ký".
- ``seal``: the agency's signature: the red seal (given, or drawn here) at the left, overlapping
  about a third of the official's stamp when placed ``over:<field>``.
- ``copy``: electronic copies: top-right of page 1, no image, agency and signing time in a
  serif face at 10 pt.

Placement is pure geometry on the page size, so it is checked before anything is written.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError
from pyhanko.pdf_utils.images import PdfImage
from pyhanko.pdf_utils.layout import AxisAlignment, InnerScaling, Margins, SimpleBoxLayoutRule
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.stamp import TextStampStyle

from kyso.clock import vn_iso
from kyso.errors import SigningError
from kyso.signing.fonts import Face, embedded_font, font_path

Box = tuple[float, float, float, float]


class StampStyle(Enum):
    OFFICIAL = "official"
    SEAL = "seal"
    COPY = "copy"


# (width, height) in points, and the default place of each style.
SIZES = {StampStyle.OFFICIAL: (210.0, 90.0), StampStyle.SEAL: (110.0, 110.0),
         StampStyle.COPY: (190.0, 34.0)}
DEFAULT_POSITION = {StampStyle.OFFICIAL: "bottom-right", StampStyle.SEAL: "bottom-right",
                    StampStyle.COPY: "top-right"}
POSITIONS = ("bottom-right", "bottom-left", "top-right", "top-left", "over:<field>")
MARGIN = 36.0
MAX_IMAGE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class StampRequest:
    """What the user asked for: a style, where (page, box or named position) and an image."""

    style: StampStyle = StampStyle.OFFICIAL
    page: int = 1  # 1-based; negative counts from the end
    box: Box | None = None
    position: str | None = None
    image: Path | None = None


# Subject markers (domain.md §1): a person's identity number, an organisation's tax or
# budget-unit code. ETSI EN 319 412-1 semantics identifiers of natural persons: IDC, PAS, PNO.
_PERSON_UIDS = ("CCCD:", "CMND:", "HC:")
_PERSON_SERIALS = ("IDC", "PAS", "PNO")
_ORGANISATION_UIDS = ("MST:", "MNS:")


def _values(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def is_legal_person(cert: x509.Certificate) -> bool:
    """An agency's seal certificate: the subject names an organisation (organizationIdentifier
    or UID=MST:/MNS:) and no person (no given name or surname, no personal ID number)."""
    uids = [u.upper() for u in _values(cert, NameOID.USER_ID)]
    if (_values(cert, NameOID.GIVEN_NAME) or _values(cert, NameOID.SURNAME)
            or any(u.startswith(_PERSON_UIDS) for u in uids)
            or any(s.upper().startswith(_PERSON_SERIALS)
                   for s in _values(cert, NameOID.SERIAL_NUMBER))):
        return False
    return bool(_values(cert, NameOID.ORGANIZATION_IDENTIFIER)) or any(
        u.startswith(_ORGANISATION_UIDS) for u in uids)


@dataclass(frozen=True)
class Holder:
    """The names a stamp shows, read from the signer's certificate."""

    name: str
    title: str | None
    agency: str | None

    @classmethod
    def of(cls, cert: x509.Certificate) -> Holder:
        def first(oid: x509.ObjectIdentifier) -> str | None:
            values = _values(cert, oid)
            return values[0] if values else None

        name = first(NameOID.COMMON_NAME) or cert.subject.rfc4514_string()
        if is_legal_person(cert):
            # A seal's CN is the agency itself; its O is the superior body (the province).
            agency: str | None = name
        else:
            agency = first(NameOID.ORGANIZATIONAL_UNIT_NAME) or first(NameOID.ORGANIZATION_NAME)
        return cls(name=name, title=first(NameOID.TITLE), agency=agency)


def stamp_lines(style: StampStyle, holder: Holder, signing_time: dt.datetime) -> list[str]:
    """The exact text of a stamp (tests compare it with what ``pdftotext`` extracts)."""
    when = vn_iso(signing_time)
    if style is StampStyle.COPY:
        return [f"Cơ quan: {holder.agency or holder.name}", f"Thời gian ký: {when}"]
    if style is StampStyle.SEAL:
        return [f"Ký bởi: {holder.name}", f"Thời gian ký: {when}"]
    lines = [f"Ký bởi: {holder.name}"]
    if holder.title:
        lines.append(f"Chức vụ: {holder.title}")
    if holder.agency and holder.agency != holder.name:
        lines.append(f"Cơ quan: {holder.agency}")
    lines.append(f"Thời gian ký: {when}")
    return lines


def parse_box(text: str) -> Box:
    """``"x1,y1,x2,y2"`` in points; the messages read well after "Invalid value for '--box':"."""
    parts = text.split(",")
    try:
        x1, y1, x2, y2 = (float(p) for p in parts)
    except ValueError:
        raise SigningError(f"a box is four numbers x1,y1,x2,y2 in points, not {text!r}") \
            from None
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise SigningError(f"a box is four finite numbers, not {text!r}")
    if not (x1 < x2 and y1 < y2):
        raise SigningError(f"box {text!r}: x1 < x2 and y1 < y2 are needed")
    return (x1, y1, x2, y2)


def place(request: StampRequest, page_box: Box, other_fields: dict[str, Box]) -> Box:
    """The stamp's rectangle on its page; a box outside the page is refused."""
    px1, py1, px2, py2 = page_box
    if request.box is not None:
        box = request.box
    else:
        w, h = SIZES[request.style]
        where = request.position or DEFAULT_POSITION[request.style]
        if where.startswith("over:"):
            target = where.removeprefix("over:")
            if target not in other_fields:
                known = ", ".join(sorted(other_fields)) or "none"
                raise SigningError(f"--position {where}: no visible field {target!r} on that "
                                   f"page (visible fields: {known})")
            tx1, ty1, tx2, ty2 = other_fields[target]
            # The seal covers the left third of the official's stamp, reaching out to its left.
            x2 = tx1 + (tx2 - tx1) / 3
            cy = (ty1 + ty2) / 2
            box = (x2 - w, cy - h / 2, x2, cy + h / 2)
        else:
            match = re.fullmatch(r"(top|bottom)-(left|right)", where)
            if match is None:
                raise SigningError(f"unknown --position {where!r}; use one of "
                                   f"{', '.join(POSITIONS)}")
            x1 = px1 + MARGIN if match[2] == "left" else px2 - MARGIN - w
            y1 = py1 + MARGIN if match[1] == "bottom" else py2 - MARGIN - h
            box = (x1, y1, x1 + w, y1 + h)
    bx1, by1, bx2, by2 = box
    if bx1 < px1 or by1 < py1 or bx2 > px2 or by2 > py2:
        raise SigningError(f"the stamp box {_fmt(box)} lies outside the page {_fmt(page_box)}")
    return box


def _fmt(box: Box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def load_image(path: Path) -> Image.Image:
    try:
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise SigningError(f"image {path} is larger than {MAX_IMAGE_BYTES // 2**20} MiB")
        with path.open("rb") as fh:
            image = Image.open(io.BytesIO(fh.read()))
            image.load()
    except FileNotFoundError:
        raise SigningError(f"image not found: {path}") from None
    except IsADirectoryError:
        raise SigningError(f"image {path} is a directory") from None
    except UnidentifiedImageError:  # its message names the BytesIO, not the file
        raise SigningError(f"image {path} is not a readable PNG/JPEG image (not an image "
                           "format Pillow recognises)") from None
    except Image.DecompressionBombError:
        raise SigningError(f"image {path} is not a readable PNG/JPEG image (too many pixels)") \
            from None
    except PermissionError:
        raise SigningError(f"image {path} is not readable (permission denied)") from None
    except (OSError, ValueError) as exc:
        detail = str(exc).strip() or type(exc).__name__
        raise SigningError(f"image {path} is not a readable PNG/JPEG image ({detail})") \
            from None
    return image.convert("RGBA")


def drawn_seal(agency: str, size: int = 330) -> Image.Image:
    """A red round seal with the agency's name, for agencies without a scanned seal."""
    red = (205, 16, 26, 235)
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((6, 6, size - 6, size - 6), outline=red, width=10)
    draw.ellipse((30, 30, size - 30, size - 30), outline=red, width=4)
    font = ImageFont.truetype(str(font_path(Face.SANS)), size // 11)
    words, lines, line = agency.upper().split(), [], ""
    for word in words:
        if line and draw.textlength(f"{line} {word}", font=font) > size * 0.66:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    step = size // 9
    top = size / 2 - step * len(lines) / 2
    for i, text in enumerate(lines[:4]):
        draw.text((size / 2, top + i * step + step / 2), text, fill=red, font=font, anchor="mm")
    return image


def stamp_style(style: StampStyle, holder: Holder, image: Image.Image | None) -> TextStampStyle:
    """The pyHanko style for one stamp, with the embedded Vietnamese font."""
    face, size = (Face.SERIF, 10) if style is StampStyle.COPY else (Face.SANS, 8)
    text_box = TextBoxStyle(
        font=embedded_font(face, size), font_size=size,
        leading=size + 2,
    )
    if style is StampStyle.SEAL:
        image = image if image is not None else drawn_seal(holder.agency or holder.name)
    if style is StampStyle.COPY or image is None:
        return TextStampStyle(stamp_text="%(kyso_text)s", text_box_style=text_box,
                              border_width=0, background=None)
    align = AxisAlignment.ALIGN_MIN if style is StampStyle.SEAL else AxisAlignment.ALIGN_MID
    return TextStampStyle(
        stamp_text="%(kyso_text)s",
        text_box_style=text_box,
        border_width=0,
        background=PdfImage(image),
        background_opacity=1.0,
        background_layout=SimpleBoxLayoutRule(x_align=align, y_align=AxisAlignment.ALIGN_MID,
                                              inner_content_scaling=InnerScaling.SHRINK_TO_FIT),
        inner_content_layout=SimpleBoxLayoutRule(
            x_align=AxisAlignment.ALIGN_MIN, y_align=AxisAlignment.ALIGN_MIN,
            margins=Margins(left=2, bottom=2),
        ),
    )
