-- The app's role may read products, add and read orders, and work the mail outbox; nothing else
-- (no DDL, no deletes, no other databases' objects). Applied once, after schema.sql.
REVOKE ALL ON DATABASE shop FROM PUBLIC;
REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
REVOKE CONNECT ON DATABASE template1 FROM PUBLIC;
GRANT CONNECT ON DATABASE shop TO shop_app;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO shop_app;
GRANT SELECT ON products TO shop_app;
GRANT SELECT, INSERT ON orders TO shop_app;
GRANT SELECT, INSERT ON mail_outbox TO shop_app;
GRANT UPDATE (attempts, next_attempt_at, last_error, sent_at) ON mail_outbox TO shop_app;
