"""The provider's HTML pages (Jinja2, autoescaped) in Vietnamese and English, and the rendering
of a :class:`~kyso.authn.oidc_flow.FlowResult` into an HTTP response."""

from __future__ import annotations

import datetime as dt
from typing import Any

import segno
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from kyso.authn.oidc_flow import FlowResult, Step

COOKIE = "__Host-kyso-session"
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "frame-ancestors 'none'; base-uri 'none'",
}

TEXTS: dict[str, dict[str, str]] = {
    "vi": {
        "title": "Đăng nhập tài khoản định danh điện tử",
        "service": "Định danh điện tử",
        "to_client": "để sử dụng dịch vụ",
        "id_number": "Số định danh cá nhân",
        "password": "Mật khẩu",
        "login": "Đăng nhập",
        "otp_title": "Nhập mã xác thực",
        "otp_intro": "Nhập mã xác thực một lần (OTP) cho tài khoản",
        "code": "Mã xác thực",
        "factor_totp": "Ứng dụng xác thực (TOTP)",
        "factor_sms": "Tin nhắn SMS",
        "send_sms": "Gửi mã qua SMS",
        "confirm": "Xác nhận",
        "error_title": "Không thể tiếp tục",
        "error_code": "Mã lỗi",
        "invalid_credentials": "Số định danh hoặc mật khẩu không đúng",
        "invalid_code": "Mã xác thực không đúng",
        "session_expired": "Phiên đăng nhập đã hết hạn. Vui lòng quay lại ứng dụng và thử lại.",
        "csrf": "Yêu cầu không hợp lệ (mã chống giả mạo không đúng). Vui lòng thử lại từ đầu.",
        "out_of_order": "Bước đăng nhập không hợp lệ. Vui lòng quay lại ứng dụng và thử lại.",
        "no_second_factor": "Tài khoản chưa có phương thức xác thực thứ hai.",
        "sms_sent": "Mã xác thực đã được gửi qua SMS.",
        "sms_refused": "Không thể gửi SMS lúc này. Vui lòng thử lại sau.",
        "bad_request": "Yêu cầu không hợp lệ.",
        "server_error": "Lỗi hệ thống. Vui lòng thử lại sau.",
        "logout_title": "Đăng xuất",
        "logout_question": "Bạn có muốn đăng xuất khỏi tài khoản định danh điện tử?",
        "logout": "Đăng xuất",
        "logged_out": "Bạn đã đăng xuất.",
        "or": "hoặc",
        "qr_option": "Đăng nhập bằng mã QR",
        "qr_title": "Đăng nhập bằng mã QR",
        "qr_intro": "Mở ứng dụng định danh điện tử mức 2 trên điện thoại đã liên kết, quét mã "
                    "QR này và xác nhận đăng nhập.",
        "qr_text": "Mã đăng nhập (dạng chữ)",
        "qr_expires": "Mã hết hạn lúc",
        "qr_local_time": "giờ Việt Nam",
        "qr_done": "Tôi đã xác nhận trên ứng dụng",
        "qr_new": "Tạo mã mới",
        "qr_use_password": "Đăng nhập bằng mật khẩu",
        "qr_pending": "Bạn chưa xác nhận trên ứng dụng. Hãy xác nhận rồi bấm lại.",
        "qr_expired": "Mã QR đã hết hạn. Vui lòng thử lại.",
        "qr_failed": "Không thể đăng nhập bằng mã QR này. Vui lòng thử lại.",
    },
    "en": {
        "title": "Log in with your electronic identity",
        "service": "Electronic identification",
        "to_client": "to continue to",
        "id_number": "Personal identification number",
        "password": "Password",
        "login": "Log in",
        "otp_title": "Enter your one-time code",
        "otp_intro": "Enter the one-time code for the account",
        "code": "One-time code",
        "factor_totp": "Authenticator app (TOTP)",
        "factor_sms": "SMS message",
        "send_sms": "Send me a code by SMS",
        "confirm": "Confirm",
        "error_title": "Cannot continue",
        "error_code": "Error code",
        "invalid_credentials": "invalid credentials",
        "invalid_code": "invalid credentials",
        "session_expired": "Your login session has expired. Go back to the application and "
                           "try again.",
        "csrf": "Invalid request (anti-forgery token mismatch). Please start again.",
        "out_of_order": "Unexpected login step. Go back to the application and try again.",
        "no_second_factor": "This account has no second factor yet.",
        "sms_sent": "A code has been sent by SMS.",
        "sms_refused": "No SMS can be sent now. Please try again later.",
        "bad_request": "Invalid request.",
        "server_error": "Internal error. Please try again later.",
        "logout_title": "Log out",
        "logout_question": "Do you want to log out of your electronic identity?",
        "logout": "Log out",
        "logged_out": "You have been logged out.",
        "or": "or",
        "qr_option": "Log in with a QR code",
        "qr_title": "Log in with a QR code",
        "qr_intro": "Open the level-2 electronic identity app on your bound phone, scan this "
                    "QR code and approve the login.",
        "qr_text": "Login code (as text)",
        "qr_expires": "The code expires at",
        "qr_local_time": "Vietnam time",
        "qr_done": "I approved it in the app",
        "qr_new": "New code",
        "qr_use_password": "Log in with a password",
        "qr_pending": "Not approved in the app yet. Approve it, then press the button again.",
        "qr_expired": "The QR code has expired. Please try again.",
        "qr_failed": "This QR code cannot be used to log in. Please try again.",
    },
}

_env = Environment(loader=PackageLoader("kyso.server", "templates"),
                   autoescape=select_autoescape(["html"], default=True), auto_reload=False)

VIETNAM_TIME = dt.timezone(dt.timedelta(hours=7))
_TEMPLATES = {Step.PASSWORD: "login.html", Step.OTP: "otp.html", Step.QR: "qr.html",
              Step.ERROR: "error.html",
              Step.LOGOUT_CONFIRM: "logout.html", Step.LOGGED_OUT: "logged_out.html"}


def page(template: str, lang: str, status: int = 200, **context: Any) -> HTMLResponse:
    texts = TEXTS.get(lang, TEXTS["vi"])
    html = _env.get_template(template).render(t=texts, lang=lang if lang in TEXTS else "vi",
                                              **context)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def error_page(lang: str, status: int, error: str, description: str = "",
               message: str = "bad_request") -> HTMLResponse:
    return page("error.html", lang, status, error=error, description=description,
                message=message)


def qr_context(result: FlowResult) -> dict[str, Any]:
    """The QR page's code as inline SVG (segno: plain ``<svg>``/``<path>``, no script or
    style, so the CSP stays ``default-src 'none'``), its text and its expiry."""
    if result.step is not Step.QR:
        return {}
    svg = segno.make(result.qr_payload, error="m").svg_inline(scale=4, title="QR")
    expires = result.qr_expires.astimezone(VIETNAM_TIME) if result.qr_expires else None
    return {"qr_svg": Markup(svg),  # noqa: S704 - generated by segno from escaped data
            "qr_payload": result.qr_payload,
            "qr_expires": expires.strftime("%H:%M:%S") if expires else "",
            "qr_expires_iso": result.qr_expires.isoformat() if result.qr_expires else ""}


def render(result: FlowResult, *, after_post: bool) -> Response:
    """The response for a flow result: a page, or a redirect (303 after a POST)."""
    response: Response
    if result.step is Step.REDIRECT:
        response = RedirectResponse(result.location, status_code=303 if after_post else 302,
                                    headers={"Cache-Control": "no-store",
                                             "Referrer-Policy": "no-referrer"})
    else:
        message = result.message or ("" if result.step is not Step.ERROR else "bad_request")
        response = page(_TEMPLATES[result.step], result.lang, result.status,
                        csrf=result.csrf, message=message, error=result.error,
                        description=result.error_description, factors=result.factors,
                        selected=result.selected, client_name=result.client_name,
                        id_hint=result.id_hint, **qr_context(result))
    if result.retry_after is not None:
        response.headers["Retry-After"] = str(result.retry_after)
    if result.set_cookie is not None:
        response.set_cookie(COOKIE, result.set_cookie, path="/", secure=True, httponly=True,
                            samesite="lax")
    elif result.clear_cookie:
        response.delete_cookie(COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return response
