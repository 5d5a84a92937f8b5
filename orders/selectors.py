"""Reads of orders: who may see an order's codes, and the codes themselves (logged as reveals)."""

from __future__ import annotations

from dataclasses import dataclass

from cardvault.models import CardAssignment
from cardvault.services import cards_reveal
from core.crypto import decrypt
from orders.models import Order, OrderLine

SESSION_KEY = "orders_authorized"


@dataclass
class DeliveredLine:
    line: OrderLine
    codes: list[tuple[str, str]]  # (code, secret)
    notes: list[str]


def order_authorize_session(request, order: Order) -> None:
    """Remember in this browser's session that it may see ``order``'s codes (placed or looked up here)."""
    allowed = request.session.get(SESSION_KEY, [])
    if order.number not in allowed:
        request.session[SESSION_KEY] = [*allowed[-49:], order.number]


def order_viewer_may_see_codes(request, order: Order) -> bool:
    """Codes are shown only to the customer account that owns the order or to a browser that placed
    it or passed the guest lookup (number + e-mail + lookup password). A link alone is not enough."""
    user = getattr(request, "user", None)
    if order.customer_id and user is not None and user.is_authenticated and user.pk == order.customer_id:
        return True
    return order.number in request.session.get(SESSION_KEY, [])


def order_delivered_codes(
    order: Order, *, channel: str, user=None, ip: str | None = None, user_agent: str = ""
) -> list[DeliveredLine]:
    """Every delivered code of ``order``, decrypted, each reveal logged with channel and viewer."""
    lines = list(order.lines.prefetch_related("manual_deliveries").order_by("pk"))
    assignments = list(
        CardAssignment.objects.filter(order_line__order=order).select_related("card").order_by("order_line_id", "pk")
    )
    revealed = cards_reveal(
        cards=[a.card for a in assignments],
        channel=channel,
        order_number=order.number,
        user=user,
        ip=ip,
        user_agent=user_agent,
    )
    by_line: dict[int, list[tuple[str, str]]] = {}
    for assignment, code in zip(assignments, revealed, strict=True):
        by_line.setdefault(assignment.order_line_id, []).append((code.code, code.secret))
    result = []
    for line in lines:
        notes, codes = [], list(by_line.get(line.pk, []))
        for delivery in line.manual_deliveries.all():
            if delivery.content_encrypted:
                text = decrypt(delivery.content_encrypted, aad=f"manual|{line.pk}")
                codes.extend((code.strip(), "") for code in text.splitlines() if code.strip())
            if delivery.note:
                notes.append(delivery.note)
        result.append(DeliveredLine(line=line, codes=codes, notes=notes))
    return result
