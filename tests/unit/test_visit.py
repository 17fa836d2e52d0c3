from hoplab.visit import phases

CURL = {"time_namelookup": 0.002, "time_connect": 0.003, "time_appconnect": 0.025,
        "time_starttransfer": 0.040, "time_total": 0.041, "scheme": "HTTPS"}


def test_https_phases_are_durations_not_cumulative():
    assert phases(CURL) == {"dns": 2.0, "connect": 1.0, "tls": 22.0, "first byte": 15.0, "total": 41.0}


def test_plain_http_has_no_tls_phase():
    metrics = {**CURL, "scheme": "HTTP", "time_appconnect": 0.0}
    assert phases(metrics) == {"dns": 2.0, "connect": 1.0, "first byte": 37.0, "total": 41.0}
