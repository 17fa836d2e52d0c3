"""The shop: a products page, an order form and order intake with a transactional mail outbox.

Configuration comes from the JSON file the start script writes (HOPLAB_WEB_CONFIG): this node's
name, the lab's domain, the db peer and the mail peer (or none). Every query is parameterized.
Database connections come from a bounded pool per worker (psycopg2's ThreadedConnectionPool):
a page costs no TCP handshake, no SCRAM exchange and no forked backend. A pooled connection the
server has closed (a restart, a terminated session) is seen before use (its socket is readable
at EOF) and replaced; one that fails on first use is retried once on a fresh connection.
Orders: the order row and its outbox row commit in one transaction and the page answers at once;
the mail is the outbox sender's (a thread in every worker, woken by each new order and every
RETRY_EVERY seconds). A row is claimed with FOR UPDATE SKIP LOCKED and marked sent in the same
transaction as the delivery, so two workers (or two web nodes) never send the same confirmation
twice, and an order committed before a crash is mailed after it.
"""

from __future__ import annotations

import io
import json
import os
import re
import select
import smtplib
import threading
import time
from contextlib import contextmanager
from email.message import EmailMessage

import psycopg2
import psycopg2.extensions
import psycopg2.pool
from flask import Flask, Response, abort, has_request_context, request

CONFIG = json.loads(open(os.environ.get("HOPLAB_WEB_CONFIG", "/run/hoplab/web.json")).read())
NODE = CONFIG["node"]
DOMAIN = CONFIG["domain"]
MAIL = CONFIG.get("mail")
SENDER = f"shop@{DOMAIN}"
MAX_BODY = 16 * 1024
RETRY_EVERY = 2.0  # seconds between the background sender's passes
POOL_SIZE = int(os.environ.get("HOPLAB_WEB_POOL", "4"))  # per worker process: one per thread

app = Flask(__name__)
app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
app.jinja_env.trim_blocks = True
app.jinja_env.lstrip_blocks = True



class BoundedBody:
    """WSGI middleware: a body sent without Content-Length (chunked) is read up to the limit
    here, so the 16 KiB cap holds for it too (Werkzeug only checks a declared length)."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if not environ.get("CONTENT_LENGTH") and environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            body = environ["wsgi.input"].read(MAX_BODY + 1)
            if len(body) > MAX_BODY:
                start_response("413 Request Entity Too Large", [
                    ("Content-Type", "text/plain"), ("X-Served-By", NODE), ("Cache-Control", "no-store"),
                    ("Connection", "close")])
                return [b"request body over 16 KiB\n"]
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.wsgi_app(environ, start_response)


app.wsgi_app = BoundedBody(app.wsgi_app)

# ------------------------------------------------------------------ database

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


class TracedCursor(psycopg2.extensions.cursor):
    """Tags each statement made for a request with its W3C traceparent, the sqlcommenter way
    (`/*traceparent='...'*/`), so a packet trace can tell which database hop belongs to
    which page load. Only a well-formed header is copied: it is request data."""

    def execute(self, query, vars=None):
        traceparent = request.headers.get("traceparent", "") if has_request_context() else ""
        if TRACEPARENT.match(traceparent):
            query = f"{query} /*traceparent='{traceparent}'*/"
        return super().execute(query, vars)


class DatabaseDown(psycopg2.OperationalError):
    """The database cannot be reached: the page answers 503, not 500."""


def connect(purpose: str = "pages"):
    """A new connection: for the pages' pool, the outbox sender, or a health check (named so
    in pg_stat_activity: hoplab-web-NODE-PURPOSE)."""
    db = CONFIG["db"]
    try:
        return psycopg2.connect(host=db["host"], port=db["port"], dbname=db["dbname"], user=db["user"],
                                password=db["password"], connect_timeout=3,
                                application_name=f"hoplab-web-{NODE}-{purpose}", cursor_factory=TracedCursor)
    except psycopg2.OperationalError as exc:
        raise DatabaseDown(str(exc)) from exc


class Pool(psycopg2.pool.ThreadedConnectionPool):
    """psycopg2's pool, opening connections with `connect` (bounded, lazily: none at start)."""

    def _connect(self, key=None):
        conn = connect()
        if key is not None:
            self._used[key] = conn
            self._rused[id(conn)] = key
        else:
            self._pool.append(conn)
        return conn


POOL = Pool(0, POOL_SIZE)
# psycopg2 opens `minconn` connections at once and keeps at most `minconn` idle: none up front
# (the database may be down when a worker starts), every one kept once opened.
POOL.minconn = POOL_SIZE


def _closed_by_server(conn) -> bool:
    """A pooled connection whose server went away: closed, or its socket readable while no
    query is outstanding (EOF, or the server's goodbye). Costs no round trip."""
    if conn.closed:
        return True
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    return bool(readable)


def _take():
    try:
        conn = POOL.getconn()
    except psycopg2.pool.PoolError as exc:
        raise DatabaseDown(f"no database connection free: {exc}") from exc
    if _closed_by_server(conn):
        POOL.putconn(conn, close=True)
        conn = POOL.getconn()
    return conn


@contextmanager
def database():
    """A pooled connection for one unit of work (a transaction), back to the pool after. A
    connection that breaks is closed, not pooled; a connection error is DatabaseDown."""
    conn = _take()
    try:
        yield conn
    except DatabaseDown:
        POOL.putconn(conn, close=True)
        raise
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
        POOL.putconn(conn, close=True)
        raise DatabaseDown(str(exc)) from exc
    except BaseException:
        POOL.putconn(conn, close=conn.closed != 0)
        raise
    else:
        POOL.putconn(conn, close=conn.closed != 0)


def query(work):
    """Run `work(cursor)` in one transaction and return its result. A pooled connection that
    fails (the server restarted since it was opened; nothing was committed) is replaced once; a
    new connection that fails is the answer."""
    for attempt in (1, 2):
        reused = bool(POOL._pool)  # an idle pooled connection is there to take
        try:
            with database() as conn, conn, conn.cursor() as cur:
                return work(cur)
        except DatabaseDown:
            if attempt == 2 or not reused:
                raise


def products():
    return query(lambda cur: (cur.execute("SELECT id, name, description, price_cents FROM products ORDER BY id"),
                              cur.fetchall())[1])


# ------------------------------------------------------------------ responses

@app.after_request
def served_by(response: Response) -> Response:
    response.headers["X-Served-By"] = NODE
    response.headers.setdefault("Cache-Control", "no-store")
    return response


@app.errorhandler(DatabaseDown)
def database_down(exc):
    app.logger.error("database unreachable: %s", exc)
    return Response("database unavailable\n", status=503, mimetype="text/plain")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }} - {{ domain }}</title></head>
<body>
<h1>{{ title }}</h1>
{% block body %}{% endblock %}
<footer><p>served by {{ node }}</p></footer>
</body></html>
"""

PRODUCTS = PAGE.replace("{% block body %}{% endblock %}", """
<table>
<thead><tr><th>id</th><th>product</th><th>description</th><th>price</th></tr></thead>
<tbody>
{% for id, name, description, cents in rows %}
<tr><td>{{ id }}</td><td class="product">{{ name }}</td><td>{{ description }}</td><td>{{ '%d.%02d' % (cents // 100, cents % 100) }}</td></tr>
{% endfor %}
</tbody>
</table>
<p><a href="/order">Order</a></p>
""")

ORDER_FORM = PAGE.replace("{% block body %}{% endblock %}", """
<form method="post" action="/order">
<p><label>E-mail <input type="email" name="buyer_email" required maxlength="254"></label></p>
<p><label>Product <select name="product_id">
{% for id, name, description, cents in rows %}<option value="{{ id }}">{{ name }}</option>
{% endfor %}</select></label></p>
<p><label>Quantity <input type="number" name="quantity" min="1" max="100" value="1" required></label></p>
<p><button type="submit">Place order</button></p>
</form>
""")

ORDER_DONE = PAGE.replace("{% block body %}{% endblock %}", """
<p>Order <span id="order-id">{{ order_id }}</span> placed: {{ quantity }} x {{ product }}.
A confirmation goes to {{ email }}.</p>
""")


# Compiled once per worker, not per request.
TEMPLATES = {name: app.jinja_env.from_string(text)
             for name, text in (("products", PRODUCTS), ("order", ORDER_FORM), ("done", ORDER_DONE))}


@app.get("/")
def index():
    body = TEMPLATES["products"].render(title="Products", rows=products(), node=NODE, domain=DOMAIN)
    return Response(body, mimetype="text/html", headers={"Cache-Control": "public, max-age=30"})


@app.get("/order")
def order_form():
    body = TEMPLATES["order"].render(title="Order", rows=products(), node=NODE, domain=DOMAIN)
    return Response(body, mimetype="text/html", headers={"Cache-Control": "no-store"})


@app.get("/health")
def health():
    # A connection of its own, as a new client would make one: the check is the database's
    # answer to a login, and it leaves the pages' pool alone.
    try:
        conn = connect("health")
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT 1")
        finally:
            conn.close()
    except psycopg2.Error as exc:
        return Response(f"db unreachable: {exc}".strip() + "\n", status=503, mimetype="text/plain")
    return Response("ok", mimetype="text/plain", headers={"Cache-Control": "no-store"})


# ------------------------------------------------------------------ orders

FIELDS = ("buyer_email", "product_id", "quantity")
INTEGER = re.compile(r"[1-9][0-9]{0,8}")
LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def bad(reason: str):
    abort(Response(f"bad request: {reason}\n", status=400, mimetype="text/plain"))


def valid_email(value: str) -> bool:
    if len(value) > 254 or value.count("@") != 1:
        return False
    local, domain = value.split("@")
    return (0 < len(local) <= 64 and LOCAL.fullmatch(local) is not None
            and all(LABEL.fullmatch(label) for label in domain.split(".")))


def order_fields() -> tuple[str, int, int]:
    if request.mimetype not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        bad("expected a form (application/x-www-form-urlencoded or multipart/form-data)")
    form = request.form  # raises 413 past MAX_CONTENT_LENGTH
    if request.files:
        bad("unexpected file upload")
    unknown = sorted(set(form) - set(FIELDS))
    if unknown:
        bad(f"unknown field(s): {', '.join(unknown)}")
    values = {}
    for name in FIELDS:
        got = form.getlist(name)
        if len(got) != 1:
            bad(f"field {name} must be given exactly once")
        values[name] = got[0]
    email = values["buyer_email"]
    if not valid_email(email):
        bad("buyer_email must look like local@domain")
    for name in ("product_id", "quantity"):
        if not INTEGER.fullmatch(values[name]):
            bad(f"{name} must be a positive integer")
    quantity = int(values["quantity"])
    if not 1 <= quantity <= 100:
        bad("quantity must be between 1 and 100")
    return email, int(values["product_id"]), quantity


@app.post("/order")
def place_order():
    email, product_id, quantity = order_fields()

    def take(cur):
        cur.execute("SELECT name FROM products WHERE id = %s", (product_id,))
        row = cur.fetchone()
        if row is None:
            bad(f"unknown product {product_id}")
        cur.execute("INSERT INTO orders (buyer_email, product_id, quantity) VALUES (%s, %s, %s) "
                    "RETURNING id", (email, product_id, quantity))
        order_id = cur.fetchone()[0]
        subject, body = confirmation(order_id, row[0], quantity)
        cur.execute("INSERT INTO mail_outbox (order_id, recipient, subject, body) VALUES (%s, %s, %s, %s)",
                    (order_id, email, subject, body))
        return order_id, row[0]

    order_id, product = query(take)
    # Committed: the order and its mail are durable. The sender mails it now, off this request.
    MAIL_WAITING.set()
    app.logger.info("order %s: %s x product %s for %s", order_id, quantity, product_id, email)
    page = TEMPLATES["done"].render(title="Thank you", order_id=order_id, quantity=quantity,
                                    product=product, email=email, node=NODE, domain=DOMAIN)
    return Response(page, status=201, mimetype="text/html",
                    headers={"Cache-Control": "no-store", "Location": f"/order/{order_id}"})


def confirmation(order_id: int, product: str, quantity: int) -> tuple[str, str]:
    subject = f"Your order {order_id} at {DOMAIN}"
    body = (f"Thank you for your order.\n\nOrder: {order_id}\nProduct: {product}\n"
            f"Quantity: {quantity}\n\n-- the shop at {DOMAIN}\n")
    return subject, body


# ------------------------------------------------------------------ the outbox

def send_mail(outbox_id: int, order_id: int, recipient: str, subject: str, body: str) -> None:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = recipient
    message["Subject"] = subject
    message["Message-ID"] = f"<order-{order_id}.outbox-{outbox_id}@{DOMAIN}>"
    message.set_content(body)
    with smtplib.SMTP(MAIL["host"], MAIL["port"], timeout=5, local_hostname=f"{NODE}.{DOMAIN}") as smtp:
        smtp.send_message(message)


def deliver_pending(conn, batch: int = 20) -> int:
    """Claim pending outbox rows (skipping rows another worker holds), send each, and mark it
    sent or reschedule it, one transaction per row. Returns how many were sent."""
    sent = 0
    for _ in range(batch):
        with conn, conn.cursor() as cur:
            cur.execute("SELECT id, order_id, recipient, subject, body, attempts FROM mail_outbox "
                        "WHERE sent_at IS NULL AND next_attempt_at <= now() "
                        "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED")
            row = cur.fetchone()
            if row is None:
                break
            outbox_id, order_id, recipient, subject, body, attempts = row
            try:
                send_mail(outbox_id, order_id, recipient, subject, body)
            except (OSError, smtplib.SMTPException) as exc:
                delay = min(60, 2 ** min(attempts, 6))
                cur.execute("UPDATE mail_outbox SET attempts = attempts + 1, last_error = %s, "
                            "next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s",
                            (f"{type(exc).__name__}: {exc}"[:500], delay, outbox_id))
                app.logger.warning("mail for order %s not sent (attempt %s): %s", order_id, attempts + 1, exc)
                break  # the mail server is likely down: leave the rest for the next pass
            cur.execute("UPDATE mail_outbox SET attempts = attempts + 1, sent_at = now(), last_error = NULL "
                        "WHERE id = %s", (outbox_id,))
            sent += 1
            app.logger.info("mail for order %s sent to %s", order_id, recipient)
    return sent


MAIL_WAITING = threading.Event()  # set by each new order: the sender's next pass starts now


def sender_loop() -> None:
    conn = None  # the sender's own connection, kept across passes and replaced when it breaks
    while True:
        MAIL_WAITING.wait(RETRY_EVERY)
        MAIL_WAITING.clear()
        try:
            if conn is None or _closed_by_server(conn):
                if conn is not None:
                    conn.close()
                conn = connect("outbox")
            deliver_pending(conn)
        except psycopg2.Error as exc:
            if conn is not None:
                conn.close()
            conn = None
            app.logger.debug("outbox pass skipped: %s", exc)
        except Exception:  # the sender must outlive any one bad pass
            app.logger.exception("outbox pass failed")


if MAIL:
    threading.Thread(target=sender_loop, name="outbox-sender", daemon=True).start()

if __name__ != "__main__":
    import logging
    gunicorn_logger = logging.getLogger("gunicorn.error")
    app.logger.handlers = gunicorn_logger.handlers
    app.logger.setLevel(logging.INFO)
