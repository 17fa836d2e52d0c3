"""`hoplab ui`: the lab in a browser, served on loopback by the CLI's host process.

    topo     the topology as a graph the page draws (nodes, networks, links, a layout)
    watch    polls the backend's status and the chaos journal; the page's live state
    guard    loopback hosts only; state-changing requests only from the page's own origin
    api      the routes: JSON for the page, server-sent events, downloads
    app      builds the Starlette app and serves it with uvicorn
    static/  the page: plain HTML, CSS and JavaScript, no build step, nothing from elsewhere

The UI is a client of the same library the CLI calls (backends, control client, renderers) and
checks every input with the CLI's own functions (`hoplab.cli.check_*`)."""

DEFAULT_PORT = 8350  # here, not in app: the CLI's parser reads it without importing Starlette
