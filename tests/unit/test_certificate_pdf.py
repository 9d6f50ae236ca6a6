"""The printable certificate: its text as a person reads it, its glyphs, its page as an image.

Needs Debian's ``fonts-noto-cjk`` (or ``fonts-wqy-zenhei``) for the font it embeds and
``poppler-utils`` for ``pdftotext`` and ``pdftoppm``, as a person's PDF viewer would read it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from fontTools.ttLib import TTCollection, TTFont
from PIL import Image

from agents.domain.certificate import ParticipationCertificate
from agents.service.certificates import (
    CjkFont,
    FontMissing,
    certificate_from_json,
    find_cjk_font,
    render_pdf,
    save_certificate,
    sign_certificate,
)
from tests.unit.certificate_samples import ID_NUMBER, issuer_key, sample_certificate


def _poppler(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is missing: apt-get install poppler-utils"
    return path


@pytest.fixture(scope="module")
def signed() -> ParticipationCertificate:
    private, _ = issuer_key()
    return sign_certificate(sample_certificate(), private)


@pytest.fixture(scope="module")
def pdf(signed: ParticipationCertificate) -> bytes:
    return render_pdf(signed)


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    result = subprocess.run(
        [_poppler("pdftotext"), "-layout", "-enc", "UTF-8", str(path), "-"],
        capture_output=True, check=True, timeout=60,
    )
    return result.stdout.decode("utf-8")


def test_the_pdf_reads_as_the_certificate(
    pdf: bytes, signed: ParticipationCertificate, tmp_path: Path
) -> None:
    text = _text(pdf, tmp_path)
    for expected in (
        "基本医疗保险参保凭证",
        "买买提·艾力",
        ID_NUMBER,
        "¥12,345.67",
        "人民币壹万贰仟叁佰肆拾伍元陆角柒分",
        "440300-2026-000123",
        f"校验码：{signed.check_code}",
        "签发日期：2026年11月30日",
        "2027年02月28日（含当日）",
        "深圳市社会保险基金管理局",
        "2015年07月",
        "职工基本医疗保险",
    ):
        assert expected in text, expected
    rows = [line.split() for line in text.splitlines() if line.strip().startswith(("1 ", "2 "))]
    assert rows == [
        ["1", "2015年07月", "2020年12月", "360400", "职工基本医疗保险", "66"],
        ["2", "2021年03月", "2026年10月", "440300", "职工基本医疗保险", "64"],
    ]


def test_the_embedded_font_has_a_glyph_for_every_character_printed(pdf: bytes, tmp_path: Path) -> None:
    # A character without a glyph prints as an empty box (tofu); the chosen face must have them all.
    font = find_cjk_font()
    face: TTFont = (
        TTCollection(str(font.path)).fonts[font.collection_index]
        if font.path.suffix == ".ttc"
        else TTFont(str(font.path))
    )
    cmap = face.getBestCmap()
    missing = {char for char in _text(pdf, tmp_path) if not char.isspace() and ord(char) not in cmap}
    assert not missing


def test_the_font_is_embedded_as_a_subset(pdf: bytes, tmp_path: Path) -> None:
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    listing = subprocess.run(
        [_poppler("pdffonts"), str(path)], capture_output=True, check=True, timeout=60
    ).stdout.decode("utf-8")
    fonts = [line.split() for line in listing.splitlines()[2:]]
    assert len(fonts) == 1
    name, *_, embedded, subset, unicode_map, _object, _generation = fonts[0]
    assert name.split("+")[1] in {"NotoSansCJKSC", "WenQuanYiZenHei"}
    assert (embedded, subset, unicode_map) == ("yes", "yes", "yes")


def test_the_first_page_renders_to_an_image_with_ink_on_it(pdf: bytes, tmp_path: Path) -> None:
    # The image was also looked at when this test was written: every glyph Chinese, no boxes.
    path = tmp_path / "certificate.pdf"
    path.write_bytes(pdf)
    subprocess.run(
        [_poppler("pdftoppm"), "-r", "60", "-png", "-f", "1", "-l", "1", "-singlefile", str(path),
         str(tmp_path / "page")],
        check=True, timeout=60,
    )
    with Image.open(tmp_path / "page.png") as image:
        grey = image.convert("L")
        width, height = grey.size
        assert abs(height / width - 297 / 210) < 0.01  # A4
        ink = sum(count for value, count in enumerate(grey.histogram()) if value < 128)
    assert 2_000 < ink < grey.size[0] * grey.size[1] // 5


def test_the_same_certificate_gives_the_same_pdf(signed: ParticipationCertificate, pdf: bytes) -> None:
    assert render_pdf(signed) == pdf


def test_an_unsigned_certificate_is_not_rendered() -> None:
    with pytest.raises(ValueError, match="sign the certificate"):
        render_pdf(sample_certificate())


def test_a_certificate_without_itemised_periods_says_so(tmp_path: Path) -> None:
    private, _ = issuer_key()
    certificate = sign_certificate(sample_certificate(periods=()), private)
    rows = [line.split() for line in _text(render_pdf(certificate), tmp_path).splitlines()]
    assert ["—", "缴费期间未逐段记载", "130"] in rows


def test_save_writes_the_pdf_and_the_json_beside_it(signed: ParticipationCertificate, tmp_path: Path) -> None:
    files = save_certificate(signed, tmp_path / "certificates")
    assert files.pdf.name == "440300-2026-000123.pdf"
    assert files.pdf.read_bytes().startswith(b"%PDF-")
    assert certificate_from_json(files.json.read_text(encoding="utf-8")) == signed


def test_without_a_cjk_font_the_error_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(FontMissing, match="fonts-noto-cjk"):
        find_cjk_font([(str(tmp_path / "none.ttc"), "Noto Sans CJK SC")])


def test_a_font_is_picked_from_a_collection_by_its_family_name() -> None:
    font = find_cjk_font()
    assert isinstance(font, CjkFont)
    face = TTCollection(str(font.path)).fonts[font.collection_index] if font.path.suffix == ".ttc" else None
    if face is not None:
        assert face["name"].getDebugName(1) in {"Noto Sans CJK SC", "WenQuanYi Zen Hei"}
