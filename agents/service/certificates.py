"""Participation certificates (参保凭证): sign and verify them, write them as JSON and as a printable PDF.

The model and its rules are `agents.domain.certificate`. Here:

- **signing** (issuing agency): Ed25519 (`broker.signing`) over the RFC 8785 canonical JSON of the
  certificate's signed content (its JSON form less ``signature`` and ``check_code``); the base64
  signature and the check code derived from it go into the JSON form, the code onto the paper;
- **verification** (receiving agency, at the counter): the JSON form parses and is consistent; it is
  signed; the signature is good under the directory's key for the issuing agency; the check code
  printed on the paper the person brings, when given, is the one derived from the signature; and,
  when a day is given, the certificate is still valid on it. Each refusal is a `CertificateRefused`
  whose ``reason_code`` says which check failed and whose text says why, never echoing personal data;
- **the PDF**: A4, Chinese text in a CJK font embedded as a subset (`find_cjk_font`: Noto Sans CJK SC
  from Debian's ``fonts-noto-cjk``, else WenQuanYi Zen Hei from ``fonts-wqy-zenhei``), the balance
  in figures and in capital numerals, the periods, the issuer, number, check code, issue date and last
  date to register. The same certificate always gives the same bytes.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import rfc8785
from fpdf import FPDF
from fpdf.enums import XPos, YPos
from pydantic import ValidationError

from agents.db.files import private_dir, private_file
from agents.domain.certificate import ParticipationCertificate, check_code_of, normalise_check_code
from agents.domain.numerals import format_yuan
from broker.consumer import KeyDirectory
from broker.signing import Ed25519PrivateKey, ed25519_sign, ed25519_verify
from schemas.common import Gender, InsuranceType
from schemas.errors import DomainRuleViolation, JiexuError

__all__ = [
    "CertificateFiles",
    "CertificateRefused",
    "CjkFont",
    "FontMissing",
    "canonical_certificate_bytes",
    "certificate_from_json",
    "certificate_to_json",
    "find_cjk_font",
    "render_pdf",
    "save_certificate",
    "sign_certificate",
    "verify_certificate",
]


class CertificateRefused(DomainRuleViolation):
    """A certificate brought to the counter is not accepted.

    ``reason_code``: ``invalid_certificate`` (not a certificate, or its fields disagree: e.g. the
    balance in figures and in words), ``unsigned``, ``unknown_issuer`` (not in the directory),
    ``bad_signature`` (altered after issue, or not signed by the issuing agency),
    ``check_code_mismatch`` (the printed code is not this signature's), ``expired``.
    """


class FontMissing(JiexuError):
    """No CJK font to embed: install Debian's ``fonts-noto-cjk`` (or ``fonts-wqy-zenhei``)."""


# -- JSON, signing, verification --------------------------------------------------------------


def canonical_certificate_bytes(certificate: ParticipationCertificate) -> bytes:
    """The bytes the issuer signs: RFC 8785 JSON of `ParticipationCertificate.signed_content`."""
    return rfc8785.dumps(certificate.signed_content())


def sign_certificate(
    certificate: ParticipationCertificate, private_key: Ed25519PrivateKey
) -> ParticipationCertificate:
    """A copy signed by the issuing agency's key, with its check code (an old signature is replaced)."""
    signature = ed25519_sign(private_key, canonical_certificate_bytes(certificate))
    return certificate.with_signature(base64.b64encode(signature).decode("ascii"))


def certificate_to_json(certificate: ParticipationCertificate) -> str:
    """The JSON form: UTF-8 text, indented, every field (the holder's in full)."""
    return certificate.model_dump_json(indent=2) + "\n"


def certificate_from_json(data: str | bytes | Mapping[str, Any]) -> ParticipationCertificate:
    """Parse a JSON form (text or decoded); `CertificateRefused` ``invalid_certificate`` naming the field."""
    try:
        if isinstance(data, Mapping):
            return ParticipationCertificate.model_validate(data)
        return ParticipationCertificate.model_validate_json(data)
    except ValidationError as exc:
        # Built from locations and messages only: pydantic's own text would echo the input.
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'certificate'}: {error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
        raise CertificateRefused("invalid_certificate", f"not a valid certificate: {problems}") from None


def verify_certificate(
    document: ParticipationCertificate | str | bytes | Mapping[str, Any],
    keys: KeyDirectory,
    *,
    printed_check_code: str | None = None,
    on: date | None = None,
) -> ParticipationCertificate:
    """The certificate, once every check of the module's list has passed; `CertificateRefused` otherwise.

    ``keys`` is the agency directory (`broker.directory.AgencyDirectory`); ``printed_check_code`` is
    the code on the paper, as typed (case, spaces, hyphens and O/0, I/L/1 do not matter); ``on`` is
    the day of registration, to refuse an expired certificate.
    """
    certificate = (
        document if isinstance(document, ParticipationCertificate) else certificate_from_json(document)
    )
    if certificate.signature is None:
        raise CertificateRefused("unsigned", "the certificate carries no signature")
    issuer = certificate.issuer.code
    # Any key of the issuer not revoked (a rotation does not void earlier certificates).
    unrevoked = getattr(keys, "unrevoked_keys", None)
    try:
        public_keys = unrevoked(issuer) if unrevoked is not None else (keys.public_key(issuer),)
    except KeyError:
        raise CertificateRefused(
            "unknown_issuer", f"agency {issuer} is not in the agency directory"
        ) from None
    signature = base64.b64decode(certificate.signature)  # its form was checked when it was parsed
    signed = canonical_certificate_bytes(certificate)
    if not any(ed25519_verify(key, signature, signed) for key in public_keys):
        raise CertificateRefused(
            "bad_signature",
            f"the signature does not match agency {issuer}'s key: the certificate was altered after "
            "it was issued, or was not issued by that agency",
        )
    if printed_check_code is not None:
        expected = check_code_of(certificate.signature)
        if normalise_check_code(printed_check_code) != expected:
            raise CertificateRefused(
                "check_code_mismatch",
                "the check code printed on the certificate is not the one its signature gives",
            )
    if on is not None and not certificate.is_valid_on(on):
        raise CertificateRefused(
            "expired",
            f"the certificate was valid from {certificate.issued_on} to {certificate.register_by}, "
            f"not on {on}",
        )
    return certificate


# -- the PDF ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CjkFont:
    """A font file to embed and, for a collection (.ttc), which face in it."""

    path: Path
    collection_index: int = 0


_FONT_CANDIDATES: tuple[tuple[str, str], ...] = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "Noto Sans CJK SC"),  # fonts-noto-cjk
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", "WenQuanYi Zen Hei"),  # fonts-wqy-zenhei
)


def find_cjk_font(candidates: Sequence[tuple[str, str]] = _FONT_CANDIDATES) -> CjkFont:
    """The first installed font of ``candidates`` (path, family name): `FontMissing` when none is."""
    from fontTools.ttLib import TTCollection, TTFont  # fpdf2's own dependency; only needed here

    for path_text, family in candidates:
        path = Path(path_text)
        if not path.is_file():
            continue
        if path.suffix.lower() != ".ttc":
            return CjkFont(path)
        collection = TTCollection(str(path), lazy=True)
        faces: list[TTFont] = collection.fonts
        for index, face in enumerate(faces):
            if face["name"].getDebugName(1) == family:
                return CjkFont(path, index)
    raise FontMissing(
        "no CJK font found to embed in the certificate PDF: install the Debian package fonts-noto-cjk "
        "(or fonts-wqy-zenhei)"
    )


_INSURANCE = {InsuranceType.EMPLOYEE: "职工基本医疗保险", InsuranceType.RESIDENT: "城乡居民基本医疗保险"}
_GENDER = {Gender.MALE: "男", Gender.FEMALE: "女"}


def _day(value: date) -> str:
    return f"{value.year}年{value.month:02d}月{value.day:02d}日"


def _month(value: str) -> str:
    return f"{value[:4]}年{value[5:7]}月"


def render_pdf(certificate: ParticipationCertificate, font: CjkFont | None = None) -> bytes:
    """The signed certificate as a one-page A4 PDF a person can print (`ValueError` if unsigned)."""
    if certificate.check_code is None:
        raise ValueError("sign the certificate before rendering it: its check code is printed")
    font = font or find_cjk_font()
    pdf = FPDF(format="A4")
    pdf.set_creation_date(datetime.combine(certificate.issued_on, datetime.min.time(), UTC))
    pdf.set_title(f"基本医疗保险参保凭证 {certificate.certificate_number}")
    pdf.set_author(certificate.issuer.name)
    pdf.set_lang("zh-CN")
    pdf.set_margins(20, 18, 20)
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_font("cjk", "", str(font.path), collection_font_number=font.collection_index)
    pdf.add_page()

    def line(text: str, size: float = 11, height: float = 7, align: str = "L") -> None:
        pdf.set_font("cjk", size=size)
        pdf.cell(0, height, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def heading(text: str) -> None:
        pdf.ln(3)
        line(text, size=13, height=8)

    holder = certificate.holder
    line("基本医疗保险参保凭证", size=20, height=12, align="C")
    line(f"凭证编号：{certificate.certificate_number}        签发日期：{_day(certificate.issued_on)}", 10)
    heading("一、参保人员")
    line(f"姓名：{holder.name}    性别：{_GENDER[holder.gender]}    公民身份号码：{holder.id_number}")
    heading("二、参保情况")
    line(f"险种：{_INSURANCE[certificate.insurance_type]}（{certificate.insurance_type.value}）")
    line(
        f"参保起止年月：{_month(certificate.participation_start)} 至 "
        f"{_month(certificate.participation_end)}"
    )
    line(f"实际缴费月数：{certificate.months_paid} 个月    视同缴费月数：{certificate.deemed_months} 个月")
    pdf.ln(2)
    pdf.set_font("cjk", size=10)
    with pdf.table(
        col_widths=(10, 24, 24, 24, 48, 20), text_align="CENTER", line_height=7, first_row_as_headings=False
    ) as table:
        table.row(("序号", "起始年月", "终止年月", "参保地区", "险种", "缴费月数"))
        for number, period in enumerate(certificate.periods, 1):
            table.row(
                (
                    str(number),
                    _month(period.from_month),
                    _month(period.to_month),
                    period.region,
                    _INSURANCE[period.insurance_type],
                    str(period.months),
                )
            )
        if not certificate.periods:
            row = table.row()
            row.cell("—")
            row.cell("缴费期间未逐段记载", colspan=4)
            row.cell(str(certificate.months_paid))
    heading("三、个人账户余额")
    line(f"小写：{format_yuan(certificate.balance_fen)}")
    line(f"大写：人民币{certificate.balance_in_words}")
    heading("四、签发机构")
    line(f"{certificate.issuer.name}（医保区划 {certificate.issuer.code}）")
    heading("五、有效期")
    line(f"本凭证自签发之日起 3 个月内有效，请于 {_day(certificate.register_by)}（含当日）前")
    line("到新参保地医保经办机构办理转移接续登记。")
    heading(f"校验码：{certificate.check_code}")
    pdf.set_font("cjk", size=8)
    pdf.multi_cell(
        0,
        5,
        "核验方法：接收地经办机构取本凭证的电子文本（JSON），核对其电子签名为签发机构在机构目录中登记的公钥"
        "所签，且由签名导出的校验码与本页所印校验码相同；任一项不符，本凭证无效。",
    )
    return bytes(pdf.output())


# -- files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertificateFiles:
    pdf: Path
    json: Path


def save_certificate(
    certificate: ParticipationCertificate, folder: Path, font: CjkFont | None = None
) -> CertificateFiles:
    """Write ``<number>.pdf`` and ``<number>.json`` into ``folder`` (created if need be)."""
    private_dir(folder)  # certificates carry the person's name and ID number: 0600 in 0700
    stem = re.sub(r"[^0-9A-Za-z_.-]", "_", certificate.certificate_number).lstrip(".") or "certificate"
    files = CertificateFiles(pdf=folder / f"{stem}.pdf", json=folder / f"{stem}.json")
    private_file(files.pdf).write_bytes(render_pdf(certificate, font))
    private_file(files.json).write_text(certificate_to_json(certificate), encoding="utf-8")
    return files

