from app.orders import order_total, validate


def test_total_is_exact():
    assert str(order_total([{"unit_price": "0.10", "quantity": 3}])) == "0.30"


def test_missing_customer_is_reported():
    assert "customer_id is required" in validate({"lines": []})
