"""Order intake: validate an order and store it."""

from decimal import Decimal

MAX_LINES = 200


def order_total(lines):
    # Prices are Decimal so totals match the invoice to the cent.
    return sum((Decimal(line["unit_price"]) * line["quantity"] for line in lines), Decimal(0))


def validate(order):
    problems = []
    if not order.get("customer_id"):
        problems.append("customer_id is required")
    if len(order.get("lines", [])) > MAX_LINES:
        problems.append(f"an order has at most {MAX_LINES} lines")
    for number, line in enumerate(order.get("lines", []), start=1):
        if line.get("quantity", 0) <= 0:
            problems.append(f"line {number}: quantity must be positive")
    return problems
