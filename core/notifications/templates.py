"""Notification templates: Jinja2 source per channel and language, versioned, rendered in a
sandbox (HTML autoescaped). A template that does not compile, or reaches for Python's insides
(`''.__class__`, `x|attr('__globals__')`), is refused when saved, with the line that does it.

What a customer's data prints as, so no Python spelling reaches a mail:
- null is missing: `{{ profile.traits.first_name|default("there") }}` falls back for a null
  first name as for an absent one, `is defined` is false, and a bare `{{ }}` prints nothing;
- a list (or any sequence a filter makes) prints its items joined with ", ", skipping empty
  ones: ["Lan", "Anh"] prints "Lan, Anh";
- a mapping prints its values the same way: {"vi": "Lan"} prints "Lan", {} prints nothing;
- true and false print as JSON spells them ("true", "false"), not as Python's True and False.
Items nested in lists and mappings follow the same rules; in HTML each item is escaped.

Reads and writes `notify.templates`; renders with jinja2.sandbox only.
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from dataclasses import dataclass
from types import GeneratorType
from typing import Any

import psycopg
from jinja2 import (
    ChainableUndefined,
    TemplateError,
    Undefined,
    UndefinedError,
    meta,
    nodes,
    pass_eval_context,
)
from jinja2.sandbox import SandboxedEnvironment, SecurityError, safe_range
from markupsafe import Markup
from psycopg.rows import dict_row

from c360.errors import InputError

#: Longest template source kept: a notification is a few sentences, not a document.
MAX_SOURCE_CHARS = 20_000
#: Longest rendered text sent; a longer one means a template loops where it should not.
MAX_RENDERED_CHARS = 100_000
#: Largest whole number a template may compute (in bits): a price or a count, never a number
#: whose digits alone take seconds to work out.
MAX_NUMBER_BITS = 4096
#: Items all of one render's range() loops may go through: a template lists things, it does
#: not compute.
MAX_LOOP_ITEMS = 100_000

FIELDS = ("subject", "body", "html")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")

#: What a template sees, with made-up values: a save renders the template once on it, so a
#: template that fails on ordinary data is refused before any customer would get it.
SAMPLE_CONTEXT: dict[str, Any] = {
    "profile": {
        "profile_id": "00000000-0000-4000-8000-000000000000",
        "traits": {"name": "Lan", "first_name": "Lan", "email": "lan@example.com"},
        "attributes": {},
        "order_count": 1,
        "revenue": 25.0,
        "first_order_at": "2026-01-01T09:00:00+00:00",
        "last_order_at": "2026-01-01T09:00:00+00:00",
    },
    "trigger": {"name": "first_purchase"},
    "rule": "sample",
    "unsubscribe_url": "https://c360.example.com/u/sample",
}

#: A width or precision this long in a format string ("%1000000000s", "{:>99999999}") pads
#: text past MAX_RENDERED_CHARS.
_HUGE_WIDTH = re.compile(r"\d{6,}")
#: Characters left for the render in progress (and range() items), per thread and render.
_BUDGET: contextvars.ContextVar[list[int]] = contextvars.ContextVar("template_budget")
#: What prints as its items joined: sequences, sets and dict views (mappings print their
#: values). Iterators only when Python's own (map(), reversed()) or generators (the map,
#: select and unique filters): Jinja's loop and cycler objects iterate by moving on.
_SEQUENCES = (list, tuple, set, frozenset, range, KeysView, ValuesView, ItemsView)
_DONE = object()


class TooBig(SecurityError):
    """A template asked for more text, repetitions or digits than a notification needs."""


class _Bounded(SandboxedEnvironment):
    """The sandbox, with the operators and calls that build big values bounded: repeating
    or joining text and lists, powers, products, %-formatting, padding methods and filters,
    and range() (a budget per render). Jinja then also cannot fold them when compiling."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.filters = {name: _bounded_filter(name, fn) for name, fn in self.filters.items()}
        self.globals["range"] = _bounded_range

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        target = getattr(__obj, "__wrapped__", __obj)
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str | bytes | list | tuple):
            if getattr(target, "__name__", "") in ("format", "format_map"):
                _check_format(owner)
            else:
                _check_sizes(f"{getattr(target, '__name__', 'a method')}()", args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`x.name`, with null read as missing (so default() and `is defined` see it so)."""
        return self._present(obj, attribute, super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        """`x[key]`, with null read as missing."""
        return self._present(obj, argument, super().getitem(obj, argument))

    def _present(self, obj: Any, name: Any, value: Any) -> Any:
        return self.undefined(obj=obj, name=name) if value is None else value


@dataclass(frozen=True, slots=True)
class Rendered:
    """A template filled in for one customer."""

    template_id: int
    subject: str | None
    text: str
    html: str | None


def save_template(conn: psycopg.Connection, actor: str, spec: Any) -> dict[str, Any]:
    """Check a template and store it as the next version of (name, channel, language)."""
    clean = check_spec(spec)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # two saves at once must not both take the same next version
        cur.execute(
            "SELECT pg_advisory_xact_lock(hashtext('notify.templates:' || %s))", (clean["name"],)
        )
        row = cur.execute(
            "INSERT INTO notify.templates (name, channel, language, version, subject, body,"
            " html, created_by) SELECT %(name)s, %(channel)s, %(language)s,"
            " coalesce(max(version), 0) + 1, %(subject)s, %(body)s, %(html)s, %(actor)s"
            " FROM notify.templates WHERE name = %(name)s AND channel = %(channel)s"
            " AND language = %(language)s RETURNING *",
            {**clean, "actor": actor},
        ).fetchone()
    assert row is not None  # INSERT ... SELECT with an aggregate always yields one row
    return row


def check_spec(spec: Any) -> dict[str, Any]:
    """The template's fields, checked; InputError naming the field and line otherwise."""
    if not isinstance(spec, dict):
        raise InputError("invalid_template", "a template is a JSON object")
    unknown = sorted(set(spec) - {"name", "channel", "language", *FIELDS})
    if unknown:
        raise InputError("invalid_template", f"unknown template fields: {', '.join(unknown)}")
    clean = {
        "name": _match(spec.get("name"), _NAME, "name", "a name such as first-purchase"),
        "channel": _match(spec.get("channel"), _NAME, "channel", "a channel such as email"),
        "language": _match(spec.get("language", "en"), _LANGUAGE, "language", "such as en or vi"),
    }
    for field in FIELDS:
        source = spec.get(field)
        if source is None and field != "body":
            clean[field] = None
            continue
        if not isinstance(source, str) or not source.strip():
            raise InputError("invalid_template", f"{field} must be non-empty template text")
        check_source(source, field, html=field == "html")
        clean[field] = source
    return clean


def check_source(source: str, field: str, *, html: bool = False) -> None:
    """Refuse source that does not compile, touches private attributes, or fails to render on
    the sample context; the message names the field and the line."""
    if len(source) > MAX_SOURCE_CHARS:
        raise InputError(
            "invalid_template", f"{field} is over {MAX_SOURCE_CHARS:,} characters: shorten it"
        )
    env = _CHECK_HTML if html else _CHECK_TEXT
    try:
        tree = env.parse(source)
    except TemplateError as exc:
        raise _refusal(field, getattr(exc, "lineno", None), str(exc)) from None
    for line, what in _private_access(tree):
        raise _refusal(field, line, f"{what} is not allowed: templates see only data")
    unknown = sorted(meta.find_undeclared_variables(tree) - KNOWN_NAMES)
    if unknown:
        raise _refusal(
            field,
            _first_use(tree, unknown),
            f"unknown variable {', '.join(unknown)}: a template sees "
            f"{', '.join(sorted(SAMPLE_CONTEXT))} (e.g. profile.traits.name, trigger.name)",
        )
    try:
        _render(env, source, SAMPLE_CONTEXT)
    except RecursionError:
        raise _refusal(
            field, None, "the template calls itself (a macro or recursive loop) without end"
        ) from None
    except SecurityError as exc:
        raise _refusal(field, _error_line(exc), str(exc)) from None
    except TemplateError as exc:
        # a missing fact renders empty when sent; anything else fails the same way for a
        # customer as here
        if not isinstance(exc, UndefinedError):
            raise _refusal(field, _error_line(exc), str(exc)) from None
    except (ArithmeticError, TypeError, ValueError) as exc:
        raise _refusal(field, _error_line(exc), f"{type(exc).__name__}: {exc}") from None


def current_template(
    conn: psycopg.Connection, name: str, channel: str, language: str | None
) -> dict[str, Any] | None:
    """The newest version of a template in the customer's language, else in English, else in
    any language it has; None when the template has no version for this channel."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM notify.templates WHERE name = %s AND channel = %s"
            " ORDER BY (language = %s) DESC, (language = 'en') DESC, language, version DESC"
            " LIMIT 1",
            (name, channel, (language or "en").lower()),
        ).fetchone()


def render(template: dict[str, Any], context: dict[str, Any]) -> Rendered:
    """Fill a stored template in; raises TemplateError (or a Python error a filter raised) for
    a template that fails on this customer's data."""
    subject = _render(_TEXT, template.get("subject"), context)
    text = _render(_TEXT, template["body"], context)
    html = _render(_HTML, template.get("html"), context)
    assert text is not None  # body is NOT NULL
    return Rendered(template["template_id"], subject, text, html)


def list_templates(conn: psycopg.Connection, name: str | None = None) -> list[dict[str, Any]]:
    """Every version of every template (or of one name), newest first within each."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM notify.templates WHERE %(name)s::text IS NULL OR name = %(name)s"
            " ORDER BY name, channel, language, version DESC",
            {"name": name},
        ).fetchall()


def _render(env: SandboxedEnvironment, source: str | None, context: dict[str, Any]) -> str | None:
    """Render, stopping as soon as the text passes MAX_RENDERED_CHARS (not after building it)."""
    if source is None:
        return None
    context = {name: value for name, value in context.items() if value is not None}
    token = _BUDGET.set([MAX_LOOP_ITEMS])
    try:
        return "".join(_capped(env.from_string(source).generate(context)))
    finally:
        _BUDGET.reset(token)


def _capped(pieces: Iterator[str]) -> Iterator[str]:
    left = MAX_RENDERED_CHARS
    for piece in pieces:
        left -= len(piece)
        if left < 0:
            raise TooBig(f"the template renders over {MAX_RENDERED_CHARS:,} characters")
        yield piece


@pass_eval_context
def _printable(eval_ctx: nodes.EvalContext, value: Any) -> Any:
    """What `{{ value }}` prints: the rules in the module docstring."""
    if isinstance(value, str | Undefined):
        return value
    if not _is_container(value):
        return _leaf_text(value) if value is None or isinstance(value, bool) else value
    items = _leaves(value)
    return Markup(", ").join(items) if eval_ctx.autoescape else ", ".join(items)


def _is_container(value: Any) -> bool:
    if isinstance(value, (Mapping, GeneratorType, *_SEQUENCES)):
        return True
    return isinstance(value, Iterator) and type(value).__module__ == "builtins"


def _leaves(value: Any) -> list[str]:
    """The non-empty texts of a container's items, depth first. A container met again inside
    itself is skipped, and items and characters together are bounded like the rendered text
    (a list of a list repeated is small to build and huge to print)."""
    found: list[str] = []
    left = MAX_RENDERED_CHARS
    stack, open_ids = [_children(value)], {id(value)}
    while stack:
        left -= 1
        item = next(stack[-1][1], _DONE)
        if item is _DONE:
            open_ids.discard(stack.pop()[0])
        elif _is_container(item):
            if id(item) not in open_ids:
                stack.append(_children(item))
                open_ids.add(id(item))
        elif text := _leaf_text(item):
            left -= len(text)
            found.append(text)
        if left < 0:
            raise TooBig(f"the template prints over {MAX_RENDERED_CHARS:,} items at once")
    return found


def _children(value: Any) -> tuple[int, Iterator[Any]]:
    items: Iterable[Any] = value.values() if isinstance(value, Mapping) else value
    return id(value), iter(items)


def _leaf_text(value: Any) -> str:
    """One item's text: Markup stays Markup (HTML escaping then keeps it as it is)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be too big, before Python builds it."""
    sized = (str, bytes, list, tuple)
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if (
                isinstance(seq, sized)
                and isinstance(times, int)
                and len(seq) * max(times, 0) > MAX_RENDERED_CHARS
            ):
                raise TooBig(
                    f"repeating {type(seq).__name__} {times:,} times makes over "
                    f"{MAX_RENDERED_CHARS:,} items"
                )
        if _whole(left) and _whole(right):
            _check_bits(left.bit_length() + right.bit_length())
    elif operator == "**" and _whole(left) and _whole(right) and abs(left) > 1 and right > 0:
        _check_bits(right * math.log2(abs(left)))
    elif operator == "+" and isinstance(left, sized) and isinstance(right, sized):
        if len(left) + len(right) > MAX_RENDERED_CHARS:
            raise TooBig(f"joining these makes over {MAX_RENDERED_CHARS:,} items")
    elif operator == "%" and isinstance(left, str):
        _check_format(left)


def _check_bits(bits: float) -> None:
    if bits > MAX_NUMBER_BITS:
        raise TooBig(f"the number would have over {MAX_NUMBER_BITS:,} bits: far too big")


def _check_format(pattern: str | bytes) -> None:
    text = pattern.decode(errors="replace") if isinstance(pattern, bytes) else pattern
    if _HUGE_WIDTH.search(text):
        raise TooBig("a format width or precision of six digits or more pads text too far")


def _check_sizes(what: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        if _whole(value) and abs(value) > MAX_RENDERED_CHARS:
            raise TooBig(f"{what} with {value:,} would build over {MAX_RENDERED_CHARS:,} items")


def _bounded_filter(name: str, fn: Any) -> Any:
    """A filter whose size arguments (a width, a count; not the value filtered) are bounded."""
    skip = 2 if getattr(fn, "jinja_pass_arg", None) is not None else 1

    @functools.wraps(fn)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_sizes(f"the filter {name}", args[skip:], kwargs)
        if name == "format" and len(args) >= skip:
            _check_format(str(args[skip - 1]))
        return fn(*args, **kwargs)

    return bounded


def _bounded_range(*args: int) -> range:
    """range(), counted against the render's budget of MAX_LOOP_ITEMS."""
    found = safe_range(*args)
    budget = _BUDGET.get(None)
    if budget is not None:
        budget[0] -= len(found)
        if budget[0] < 0:
            raise TooBig(f"range() loops over more than {MAX_LOOP_ITEMS:,} items in all")
    return found


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _first_use(tree: nodes.Template, names: list[str]) -> int | None:
    for node in tree.find_all(nodes.Name):
        if node.name in names:
            return node.lineno
    return None


def _private_access(tree: nodes.Template) -> list[tuple[int, str]]:
    """Places where a template names an attribute or key starting with '_' (a way into
    Python's object graph), as (line, description)."""
    found = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        name = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            first = node.args[0]
            name = first.value if isinstance(first, nodes.Const) else None
        if isinstance(name, str) and name.startswith("_"):
            found.append((node.lineno, f"the attribute {name!r}"))
    return found


def _error_line(exc: BaseException) -> int | None:
    """The template line an error was raised on, read from the traceback Jinja rewrites."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _refusal(field: str, line: int | None, message: str) -> InputError:
    where = f"{field}, line {line}" if line else field
    return InputError("invalid_template", f"{where}: {message}")


def _match(value: Any, pattern: re.Pattern[str], field: str, hint: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InputError("invalid_template", f"{field} must be {hint}; got {value!r}")
    return value.lower() if field == "language" else value


# (built last: they wrap the filters with the functions above)
# the strict environments refuse at save; the lenient ones render missing facts as empty text
# all print data the same way (_printable)
_CHECK_TEXT = _Bounded(undefined=Undefined, autoescape=False, finalize=_printable)
_CHECK_HTML = _Bounded(undefined=Undefined, autoescape=True, finalize=_printable)
_TEXT = _Bounded(undefined=ChainableUndefined, autoescape=False, finalize=_printable)
_HTML = _Bounded(undefined=ChainableUndefined, autoescape=True, finalize=_printable)
#: What a template may name: the context's keys and the sandbox's own functions.
KNOWN_NAMES = frozenset(SAMPLE_CONTEXT) | frozenset(_TEXT.globals)
