"""Issue 12, item 5: the API's documentation for the app developers.

With `API_DOCS=true` the OpenAPI document is served with a docs UI (Scalar, through
flask-openapi3's plug-in, its script bundled: no CDN); without it only `/openapi.json`.
"""

from __future__ import annotations

from tests.support.api import assert_problem, make_app


def test_the_docs_ui_is_scalar_on_our_document_when_api_docs_is_on(db, monkeypatch):
    assert_problem(make_app().test_client().get("/openapi/scalar"), 404)
    monkeypatch.setenv("API_DOCS", "true")
    client = make_app().test_client()
    page = client.get("/openapi/scalar")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "scalar" in html.lower() and "openapi.json" in html
    assert "cdn." not in html  # the script is served from the package, not fetched from a CDN
