"""The languages a doctor reads reasons in, and choosing one from the HIS's preference."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Language(enum.Enum):
    """The languages reasons are written in."""

    ZH = "zh"
    EN = "en"


# What a check answers in when the HIS states no preference it can be given.
DEFAULT_LANGUAGE = Language.ZH


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason in every language."""

    en: str
    zh: str

    def text(self, language: Language) -> str:
        """The reason in ``language``."""
        return self.zh if language is Language.ZH else self.en


def preferred_language(accept_language: str) -> Language:
    """The language an ``Accept-Language``-style preference asks for (RFC 9110 12.5.4): the
    supported language of highest weight, Chinese when it names none we write."""
    ranked: list[tuple[float, int, Language]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        name, _, value = params.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                weight = float(value)
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        language = next((lang for lang in Language if lang.value == primary), None)
        if language is not None and weight > 0:
            ranked.append((-weight, position, language))
    return min(ranked)[2] if ranked else DEFAULT_LANGUAGE
