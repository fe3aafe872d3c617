"""Sign-in and sign-out pages: the form, the post that starts a session (through
c360.accounts.sign_in) and sets its cookie, and the post that ends it.

Touches no database itself: accounts and sessions own users and sessions.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get, post
from litestar.datastructures import State
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromQuery
from litestar.response import Redirect, Template

from c360 import accounts, sessions
from c360.api.auth import safe_next, secure_cookies
from c360.ui.pages.common import page, principal

Form = Annotated[dict[str, str], Body(media_type=RequestEncodingType.URL_ENCODED)]


@get("/login", opt={"public": True}, include_in_schema=False)
async def login_form(
    request: Request[Any, Any, Any], next: FromQuery[str | None] = None
) -> Template:
    """The sign-in form; `next` is where to go after (a path on this site)."""
    return _form(request, safe_next(next), name="", message=None)


@post("/login", opt={"public": True}, include_in_schema=False, sync_to_thread=True)
def login_submit(request: Request[Any, Any, Any], state: State, data: Form) -> Any:
    """Check the name and password; on success set the session cookie and go to `next`."""
    target = safe_next(data.get("next"))
    name = data.get("name", "").strip()
    remote = request.client.host if request.client else ""
    try:
        session_id, _ = accounts.sign_in(state.runtime, name, data.get("password", ""), remote)
    except accounts.SignInRefused as exc:
        return _form(request, target, name=name, message=exc.message, status_code=exc.status_code)
    cookie = sessions.session_cookie(session_id, secure_cookies(request))
    return Redirect(path=target, status_code=303, cookies=[cookie])


@post("/logout", opt={"public": True}, include_in_schema=False, sync_to_thread=True)
def logout(request: Request[Any, Any, Any], state: State) -> Redirect:
    """End the session (if any) and forget its cookie; public so an expired session can too."""
    who = principal(request)
    if who is not None and who.session_id:
        sessions.sign_out(state.runtime, who.session_id)
    response = Redirect(path="/login", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


HANDLERS = [login_form, login_submit, logout]


def _form(
    request: Request[Any, Any, Any],
    target: str,
    name: str,
    message: str | None,
    status_code: int = 200,
) -> Template:
    context = {"next": target, "name": name, "message": message}
    return page(request, "login.html", "Sign in", "login", context, status_code=status_code)
