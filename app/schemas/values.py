"""What a value in a request may be: the length caps of every string, http(s) URLs, short keywords, and
what a legacy caller sends loosely, read in the contract's types before validation."""
from __future__ import annotations

import re

from marshmallow import ValidationError, fields, validate

from app.domain.events import normalize
from app.domain.probes import MAX_KEYWORD_CHARS

# Every string field has a cap (422 past it, `maxLength` in the OpenAPI document): a column's VARCHAR(n)
# where one stores it, else room for any real value. Keywords: app.domain.probes.MAX_KEYWORD_CHARS.
NAME_CHARS = 128  # ids, names, accounts, creators, event names: VARCHAR(128) columns
URL_CHARS = 2048
MESSAGE_CHARS = 4096  # a text sent to a customer
NOTE_CHARS = 1000  # reasons, link descriptions
TITLE_CHARS = 256
FILE_NAME_CHARS = 255
TIME_CHARS = 64


def not_blank(value: str) -> None:
    if not value.strip():
        raise ValidationError("must not be empty or whitespace")


def http_url(value: str) -> None:
    if not re.fullmatch(r"https?://[^\s/$.?#][^\s]*", value, re.IGNORECASE):
        raise ValidationError("must be an http or https URL")


def short_keyword(value: str) -> None:
    """Not blank, and short enough once normalised (NFKC can lengthen a character: ﷺ is 18)."""
    not_blank(value)
    if len(value) <= MAX_KEYWORD_CHARS < len(normalize(value)):  # longer as given: Length says so
        raise ValidationError(f"longer than {MAX_KEYWORD_CHARS} characters once normalised")


def text_field(limit: int, *more, **kwargs) -> fields.String:
    """A string field of at most `limit` characters."""
    return fields.String(validate=[validate.Length(max=limit), *more], **kwargs)


def url_field(**kwargs) -> fields.String:
    return text_field(URL_CHARS, http_url, **kwargs)


# -- values a legacy caller sends loosely ------------------------------------------------------------
# Read where the meaning is unambiguous, before validation, and stored in the form the contract gives:
# the stored body is what matching reads, and two spellings of one task hash as one body.
DECIMAL = "[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)"  # "24", "1.5": no exponent, no inf/nan, ASCII digits
LOOSE_TEXT = "text; a whole number is taken as its decimal text (123 -> \"123\")"
LOOSE_NUMBER = "a number; a decimal numeric string is taken as its number (\"24\" -> 24)"


def as_text(value):
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _as_number(value):
    if isinstance(value, str) and re.fullmatch(DECIMAL, value):
        number = float(value)
        return int(number) if number.is_integer() else number
    return value


def _as_boolean(value):
    """What marshmallow's Boolean reads ("true", "False", "1", 0 ...) stored as the boolean it means."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return value
    if value in fields.Boolean.truthy:
        return True
    if value in fields.Boolean.falsy:
        return False
    return value


# (object or None for the top level, field, how it is read)
LOOSE_TASK_FIELDS = (
    (None, "timeout_hours", _as_number),
    ("customer", "id", as_text),
    ("trigger", "customer_id", as_text),
    ("trigger", "exact_match", _as_boolean),
)


def loosen_task_body(body):
    """The task body with its loosely typed values in the contract's types (a copy, if any changed).

    Without this a stored `"exact_match": "false"` would read as true, and a customer id sent as a
    number would never equal the text id a message carries.
    """
    if not isinstance(body, dict):
        return body
    changes = []
    for section, name, read in LOOSE_TASK_FIELDS:
        holder = body if section is None else body.get(section)
        if isinstance(holder, dict) and name in holder and read(holder[name]) is not holder[name]:
            changes.append((section, name, read(holder[name])))
    if not changes:
        return body
    loosened = dict(body)
    for section, name, value in changes:
        if section is None:
            loosened[name] = value
        else:
            loosened[section] = {**loosened[section], name: value}
    return loosened


class StrictFloat(fields.Float):
    """A JSON number only: true is rejected, and so is "24" (for timeout_hours `loosen_task_body` has
    read it as 24 already), unlike marshmallow's Float."""

    def _validated(self, value):
        if isinstance(value, (str, bool)):
            raise self.make_error("invalid")
        return super()._validated(value)


class LooseText(fields.String):
    """A text field a legacy caller may send as a whole number (read before validation). The OpenAPI
    document gives both forms: app.extensions registers this class without a type of its own."""

    def __init__(self, max_length: int = 128, **kwargs):
        alternatives = [{"type": "string", "maxLength": max_length}, {"type": "integer"}]
        super().__init__(validate=[validate.Length(max=max_length), *kwargs.pop("validate", [])],
                         metadata={"anyOf": alternatives, "description": LOOSE_TEXT}, **kwargs)


class LooseNumber(StrictFloat):
    """A number a legacy caller may send as a numeric string (read before validation); documented as
    either, like LooseText."""

    def __init__(self, minimum: float, maximum: float, **kwargs):
        alternatives = [{"type": "number", "minimum": minimum, "exclusiveMinimum": True, "maximum": maximum},
                        {"type": "string", "pattern": f"^{DECIMAL}$"}]
        super().__init__(validate=validate.Range(min=minimum, max=maximum, min_inclusive=False),
                         metadata={"anyOf": alternatives, "description": LOOSE_NUMBER}, **kwargs)
