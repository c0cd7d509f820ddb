"""How the browser routes (pages, sign-in, grants, NDA) are described in the OpenAPI document.

They are published next to the JSON API so the document names every route the portal answers (and schemathesis
can exercise them all); the answers below are what those routes give: a page, a redirect, or a problem document.
"""

from ig_portal.api.audit import ERRORS

REDIRECT: dict[str, object] = {
    "description": "Redirect (Location): sign in first, accept the grant's NDA first, or the page after a form",
    "headers": {"Location": {"schema": {"type": "string"}}},
}
HTML_PAGE: dict[str, object] = {"description": "The page", "content": {"text/html": {}}}

# Pages: 200 with HTML, 303 to /login (no session or token) or to the release's NDA, or an error.
PAGE_RESPONSES: dict[int | str, dict[str, object]] = {**ERRORS, 200: HTML_PAGE, 303: REDIRECT}
# Sign-in: a redirect (to the provider, to the public URL, back to the page), or an error.
SIGN_IN_RESPONSES: dict[int | str, dict[str, object]] = {**ERRORS, 303: REDIRECT}
# Forms (POST with the session's CSRF token): a redirect after the change, or an error; a grant refused for its
# content answers the grants page again with 400 and the reason.
FORM_RESPONSES: dict[int | str, dict[str, object]] = {
    **ERRORS, 303: REDIRECT,
    400: {"description": "Refused input", "content": {"application/problem+json": {}, "text/html": {}}},
}
