-- pgbench script: the raw SQL floor of one sale, the baseline of the purchase benchmark.
--
-- What a delivered single-code sale must write at the least, in one transaction, on the same tables
-- the services use: the order and its line, one available code taken with FOR UPDATE SKIP LOCKED
-- (like cards_reserve), the assignment recording who got it, a balanced journal transaction (payment
-- and cost of goods), and the order marked delivered. No ORM, no encryption, no status history,
-- payment attempt, callback log or cached account balances.
--
-- Run by bench/commerce.py with search_path set to the bench shop's schema and these variables:
--   -D variant=<id> -D product=<id> -D price=10.00 -D cost=8.00
--   -D clearing=<id> -D revenue=<id> -D cogs=<id> -D inventory=<id>   (ledger account ids)
\set number random(1, 9000000000000000)
BEGIN;
INSERT INTO orders_order (number, source, status, email, lookup_password, currency, total, payment_provider,
                          created, expires_at)
VALUES ('PGB' || :number, 'storefront', 'pending_payment', 'bench@example.test', '', 'USD', :price, '', now(),
        now() + interval '15 minutes')
RETURNING id AS order_id \gset
INSERT INTO orders_orderline (order_id, variant_id, product_id_snapshot, product_name, variant_name, sku,
                              delivery_mode, quantity, unit_price, unit_cost, price_rule, currency, checkout_input,
                              delivered_quantity, fulfilment_note)
VALUES (:order_id, :variant, :product, 'Bench card', '$10', 'BENCH-SALE', 'automatic', 1, :price, :cost,
        'list price', 'USD', '{}', 1, '')
RETURNING id AS line_id \gset
UPDATE cardvault_card SET status = 'sold', sold_at = now(), use_count = 1
WHERE id = (SELECT id FROM cardvault_card
            WHERE variant_id = :variant AND status = 'available' AND NOT reusable
            ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id AS card_id \gset
INSERT INTO cardvault_cardassignment (card_id, order_line_id, reusable, unit_cost, created)
VALUES (:card_id, :line_id, false, :cost, now());
INSERT INTO ledger_transaction (kind, idempotency_key, reference, memo, created)
VALUES ('order_payment', 'pgbench-sale:' || :order_id, 'PGB' || :number, 'pgbench', now())
RETURNING id AS txn_id \gset
INSERT INTO ledger_entry (transaction_id, account_id, amount, order_id, product_id, variant_id, created)
VALUES (:txn_id, :clearing, :price, :order_id, NULL, NULL, now()),
       (:txn_id, :revenue, 0 - :price, :order_id, NULL, NULL, now()),
       (:txn_id, :cogs, :cost, :order_id, :product, :variant, now()),
       (:txn_id, :inventory, 0 - :cost, :order_id, :product, :variant, now());
UPDATE orders_order SET status = 'delivered', paid_at = now(), delivered_at = now(), payment_provider = 'pgbench'
WHERE id = :order_id;
END;
