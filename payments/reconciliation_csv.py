"""Gateway statements uploaded as CSV (any channel): tolerant of header names, encodings and
separators, strict about every row — a file with one unreadable row is refused whole, with the rows named."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

from django.utils import timezone
from django.utils.translation import gettext as _

from payments.errors import ReconciliationFileInvalid
from payments.reconciliation import CENT, GatewayRecord, day_bounds

MAX_CSV_BYTES = 5 * 1024 * 1024
MAX_CSV_ROWS = 50_000
MAX_REPORTED_PROBLEMS = 10
# Header names seen in gateways' exports, normalised (lower case, spaces for "_" and "-").
COLUMNS = {
    "reference": (
        "trade no", "trade number", "transaction id", "transaction", "gateway reference", "reference",
        "payment id", "charge id", "id", "交易号", "流水号", "平台订单号", "支付订单号", "交易单号",
        "out trade no", "our reference", "order reference", "merchant order no", "order no", "order id",
        "商户订单号", "订单号",
    ),
    "amount": (
        "amount", "money", "total", "total amount", "gross", "金额", "交易金额", "订单金额", "支付金额", "实付金额",
    ),
    "currency": ("currency", "ccy", "币种", "货币"),
    "time": (
        "time", "date", "paid at", "paid time", "created", "created at", "datetime", "timestamp",
        "交易时间", "支付时间", "付款时间", "创建时间", "时间", "日期",
    ),
    "status": ("status", "state", "trade status", "result", "状态", "交易状态", "支付状态"),
}  # fmt: skip
PAID = {"paid", "success", "succeeded", "successful", "trade_success", "trade_finished", "completed", "complete",
        "settled", "captured", "1", "true", "yes", "成功", "已支付", "支付成功", "交易成功", "已付款"}  # fmt: skip
NOT_PAID = {"unpaid", "not paid", "failed", "failure", "fail", "closed", "cancelled", "canceled", "pending",
            "expired", "refunded", "wait_buyer_pay", "trade_closed", "0", "false", "no", "失败", "未支付",
            "待支付", "已关闭", "关闭", "已退款", "退款", "取消"}  # fmt: skip
TIME_FORMATS = ("%Y/%m/%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y")


def _normalise(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace("\ufeff", "").replace("_", " ").replace("-", " ")).strip().lower()


def _decode(content: bytes) -> str:
    # Chinese gateways export GB18030 (GBK) from Excel as often as UTF-8.
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return content.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ReconciliationFileInvalid(_("The file is neither UTF-8 nor GB18030 text."), field="file", code="csv_encoding")


def _header_map(header: list[str]) -> dict[str, list[int]]:
    """Column indexes per meaning; the reference may come from several columns (trade no, our ref)."""
    found: dict[str, list[int]] = {}
    names = [_normalise(name) for name in header]
    for meaning, aliases in COLUMNS.items():
        for alias in aliases:
            for position, name in enumerate(names):
                if name == alias and position not in found.get(meaning, []):
                    found.setdefault(meaning, []).append(position)
    return found


def _csv_amount(value: str) -> Decimal:
    cleaned = re.sub(r"[\s,¥￥$€£]|CNY|RMB|USD|EUR|元", "", value, flags=re.IGNORECASE)
    amount = Decimal(cleaned)  # InvalidOperation is reported by the caller
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(CENT):
        raise InvalidOperation
    return amount


def _csv_time(value: str) -> datetime:
    value = value.strip()
    if value.isdigit() and len(value) in (10, 13):
        return datetime.fromtimestamp(int(value[:10]), tz=timezone.get_current_timezone())
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        for pattern in TIME_FORMATS:
            try:
                moment = datetime.strptime(value, pattern)  # noqa: DTZ007 (shop time, made aware below)
                break
            except ValueError:
                continue
        else:
            raise
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


def csv_records(content: bytes, *, day: date) -> list[GatewayRecord]:
    """Parse a gateway statement. Needs a reference and an amount column; currency (default: the
    shop's), time (rows outside the day only match our payments) and status (default: paid) are
    optional. Every problem is reported, by row; nothing is half read."""
    from ledger.services import shop_currency

    if not content:
        raise ReconciliationFileInvalid(_("The file is empty."), field="file", code="csv_empty")
    if len(content) > MAX_CSV_BYTES:
        raise ReconciliationFileInvalid(
            _("The file is larger than %(size)d MB.") % {"size": MAX_CSV_BYTES // (1024 * 1024)},
            field="file",
            code="csv_too_large",
        )
    if b"\x00" in content[:4096]:
        raise ReconciliationFileInvalid(_("This is not a CSV text file."), field="file", code="csv_not_text")
    text = _decode(content)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = csv.reader(io.StringIO(text), dialect, strict=True)
    try:
        header = next(rows, None)
        while header is not None and not any(cell.strip() for cell in header):
            header = next(rows, None)
        if header is None:
            raise ReconciliationFileInvalid(_("The file is empty."), field="file", code="csv_empty")
        columns = _header_map(header)
        missing = [meaning for meaning in ("reference", "amount") if meaning not in columns]
        if missing:
            raise ReconciliationFileInvalid(
                _(
                    "The first row must name the columns; found no %(missing)s column. Accepted names include "
                    "trade_no / out_trade_no / reference, amount / money, currency, time, status."
                )
                % {"missing": _(" and no ").join(missing)},
                field="file",
                code="csv_missing_columns",
            )
        since, until = day_bounds(day)
        default_currency = shop_currency()
        problems: list[str] = []
        records: list[GatewayRecord] = []
        seen: dict[str, int] = {}

        def cell(row: list[str], meaning: str) -> str:
            return next((row[i].strip() for i in columns.get(meaning, []) if i < len(row) and row[i].strip()), "")

        for number, row in enumerate(rows, start=2):
            if not any(value.strip() for value in row):
                continue
            if len(records) + len(problems) >= MAX_CSV_ROWS:
                raise ReconciliationFileInvalid(
                    _("The file has more than %(rows)d rows.") % {"rows": MAX_CSV_ROWS},
                    field="file",
                    code="csv_too_many_rows",
                )
            references = [row[i].strip()[:128] for i in columns["reference"] if i < len(row) and row[i].strip()]
            if not references:
                problems.append(_("row %(row)d: no trade number or reference") % {"row": number})
                continue
            reference = references[0]
            if reference in seen:
                problems.append(
                    _("row %(row)d: %(ref)s appears again (first in row %(first)d)")
                    % {"row": number, "ref": reference, "first": seen[reference]}
                )
                continue
            seen[reference] = number
            raw_amount = cell(row, "amount")
            try:
                amount = _csv_amount(raw_amount)
            except (InvalidOperation, ValueError):
                problems.append(
                    _("row %(row)d: %(value)s is not a positive amount with at most two decimals")
                    % {"row": number, "value": raw_amount or '""'}
                )
                continue
            currency = (cell(row, "currency") or default_currency).upper()
            if not re.fullmatch(r"[A-Z]{3}", currency):
                problems.append(_("row %(row)d: %(value)s is not a currency code") % {"row": number, "value": currency})
                continue
            raw_status = cell(row, "status")
            status = raw_status.lower() or "paid"
            if status not in PAID and status not in NOT_PAID:
                problems.append(_("row %(row)d: unknown status %(value)s") % {"row": number, "value": raw_status})
                continue
            occurred_at = None
            raw_time = cell(row, "time")
            if raw_time:
                try:
                    occurred_at = _csv_time(raw_time)
                except (ValueError, OverflowError, OSError):
                    problems.append(_("row %(row)d: %(value)s is not a date/time") % {"row": number, "value": raw_time})
                    continue
            records.append(
                GatewayRecord(
                    reference=reference,
                    other_references=tuple(references[1:]),
                    amount=amount,
                    currency=currency,
                    paid=status in PAID,
                    status=raw_status or "paid",
                    occurred_at=occurred_at,
                    in_day=occurred_at is None or since <= occurred_at < until,
                )
            )
    except csv.Error as exc:
        raise ReconciliationFileInvalid(
            _("The file is not valid CSV (%(reason)s).") % {"reason": exc}, field="file", code="csv_malformed"
        ) from None
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        if len(problems) > len(shown):
            shown.append(_("… and %(count)d more") % {"count": len(problems) - len(shown)})
        raise ReconciliationFileInvalid("; ".join(shown), field="file", code="csv_bad_rows")
    if not records:
        raise ReconciliationFileInvalid(_("The file has a header but no rows."), field="file", code="csv_empty")
    return records
