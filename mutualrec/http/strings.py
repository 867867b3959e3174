"""Every string the web pages show, Chinese first and English second, in one catalog; and which
language a request reads (its cookie, else its Accept-Language, else Chinese)."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request

from mutualrec.matching.language import Language, preferred_language

ZH = Language.ZH.value
EN = Language.EN.value
LANGUAGES = (ZH, EN)
LANGUAGE_COOKIE = "mrlang"

# key: (Chinese, English)
_CATALOG: Mapping[str, tuple[str, str]] = {
    "app_name": ("区域检查检验结果互认 · 云胶片", "Regional result recognition · Cloud film"),
    "language_switch": ("English", "中文"),
    "nav_history": ("我的影像", "My imaging"),
    "nav_shares": ("分享链接", "Share links"),
    "nav_accesses": ("访问记录", "Who accessed my data"),
    "sign_out": ("退出登录", "Sign out"),
    "sign_in": ("登录", "Sign in"),
    "signin_title": ("登录", "Sign in"),
    "signin_help": (
        "请粘贴身份认证平台签发的患者令牌、医生收到的分享令牌，或机构 API 密钥。",
        "Paste the patient token the identity provider issued, a share token a doctor "
        "received, or an institution's API key.",
    ),
    "credential": ("凭证", "Credential"),
    "signed_in_as": ("当前身份", "Signed in as"),
    "continue": ("继续", "Continue"),
    "role_patient": ("患者", "patient"),
    "role_share": ("分享链接（只读，一项检查）", "share link (read-only, one study)"),
    "role_hospital": ("医疗机构", "hospital"),
    "role_regulator": ("监管部门", "regulator"),
    "role_admin": ("管理员", "administrator"),
    "open_title": ("正在打开…", "Opening…"),
    "open_working": ("正在验证链接，请稍候。", "Checking the link, one moment."),
    "open_no_token": (
        "链接不完整：缺少 # 之后的令牌。",
        "The link is incomplete: the token after # is missing.",
    ),
    "open_failed": ("无法打开此链接：", "This link cannot be opened: "),
    "history_title": ("我的影像检查", "My imaging studies"),
    "history_empty": ("没有符合条件的检查。", "No studies match."),
    "filter_modality": ("检查类型", "Modality"),
    "filter_hospital": ("医院代码", "Hospital code"),
    "filter_from": ("起始日期", "From"),
    "filter_to": ("截止日期", "To"),
    "filter_any": ("全部", "Any"),
    "filter_apply": ("筛选", "Filter"),
    "filter_clear": ("清除", "Clear"),
    "next_page": ("下一页", "Next page"),
    "study_date": ("检查日期", "Date"),
    "hospital": ("医院", "Hospital"),
    "description": ("检查名称", "Study"),
    "series_images": ("序列 / 图像", "Series / images"),
    "recognized_items": ("可互认项目", "Recognized items"),
    "valid_until": ("有效期至", "valid until"),
    "expired": ("已过期", "expired"),
    "open_viewer": ("在阅片器中打开", "Open in viewer"),
    "thumbnail_alt": ("缩略图", "Thumbnail"),
    "share_this": ("分享给医生", "Share with a doctor"),
    "share_days": ("有效天数", "Valid for (days)"),
    "share_note": ("备注（仅自己可见）", "Note (only you see it)"),
    "share_create": ("生成分享链接", "Create share link"),
    "share_created_title": ("分享链接已生成", "Share link created"),
    "share_created_help": (
        "把此链接或二维码交给医生。链接只显示这一次，请现在复制。",
        "Give this link or QR code to the doctor. It is shown this once: copy it now.",
    ),
    "share_url": ("链接", "Link"),
    "shares_title": ("我的分享链接", "My share links"),
    "shares_empty": ("还没有分享链接。", "No share links yet."),
    "share_study": ("检查", "Study"),
    "share_created_at": ("创建时间", "Created"),
    "share_expires_at": ("到期时间", "Expires"),
    "share_state": ("状态", "State"),
    "share_openings": ("打开次数", "Opened"),
    "share_revoke": ("撤销", "Revoke"),
    "state_active": ("有效", "active"),
    "state_expired": ("已过期", "expired"),
    "state_revoked": ("已撤销", "revoked"),
    "accesses_title": ("谁访问了我的数据", "Who accessed my data"),
    "accesses_empty": ("暂无访问记录。", "No accesses recorded."),
    "access_at": ("时间", "When"),
    "access_who": ("访问者", "Who"),
    "access_what": ("内容", "What"),
    "access_outcome": ("结果", "Outcome"),
    "problem_title": ("出错了", "Something went wrong"),
    "problem_back": ("返回首页", "Back to the start"),
    "problem_sign_in": ("重新登录", "Sign in again"),
}


def strings(language: str) -> Mapping[str, str]:
    """The catalog in ``language`` (Chinese when it is not one we have)."""
    index = 1 if language == EN else 0
    return {key: pair[index] for key, pair in _CATALOG.items()}


def language_of(request: Request) -> str:
    """The language the request reads: the toggle's cookie, else the first of ours its
    Accept-Language names, else Chinese."""
    chosen = request.cookies.get(LANGUAGE_COOKIE, "")
    if chosen in LANGUAGES:
        return chosen
    # The header's first 20 ranges, as the check reads a HIS's preference.
    ranges = ",".join(request.headers.get("accept-language", "").split(",")[:20])
    return preferred_language(ranges).value
