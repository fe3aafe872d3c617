"""Notification templates: Jinja2 in a sandbox, refused at save with the line when they do not
compile or reach for Python's insides; HTML autoescaped, text not; versions and languages."""

from __future__ import annotations

import pytest
from notify_support import template

from c360.errors import InputError
from c360.notifications import templates


@pytest.mark.parametrize(
    ("body", "line", "fragment"),
    [
        ("{{ ''.__class__.__mro__ }}", 1, "is not allowed: templates see only data"),
        ("Hi\n\n{{ profile.__init__.__globals__ }}", 3, "'__globals__' is not allowed"),
        ("Hi\n{{ x|attr('__class__') }}", 2, "'__class__' is not allowed"),
        ("Hi\n{{ x['_private'] }}", 2, "'_private' is not allowed"),
        ("Hi {{ name }\nthere", 1, "unexpected '}'"),
        ("line one\n{% if %}\n", 2, "Expected an expression"),
        ("{% for i in range(10**9) %}{% endfor %}", 1, "Range too big"),
    ],
)
def test_a_template_that_breaks_out_or_does_not_compile_is_refused_with_its_line(
    runtime, body, line, fragment
):
    with pytest.raises(InputError) as refused:
        template(runtime, body=body)
    assert refused.value.code == "invalid_template"
    assert refused.value.message.startswith(f"body, line {line}: "), refused.value.message
    assert fragment in refused.value.message
    with runtime.pool.connection() as conn:
        assert templates.list_templates(conn) == []


def test_html_is_escaped_and_text_is_not():
    row = {
        "template_id": 1,
        "subject": "For {{ profile.traits.name }}",
        "body": "Hi {{ profile.traits.name }}",
        "html": "<p>Hi {{ profile.traits.name }}</p>",
    }
    rendered = templates.render(row, {"profile": {"traits": {"name": "<b>Lan</b> & co"}}})
    assert rendered.text == "Hi <b>Lan</b> & co"
    assert rendered.subject == "For <b>Lan</b> & co"
    assert rendered.html == "<p>Hi &lt;b&gt;Lan&lt;/b&gt; &amp; co</p>"


def test_a_missing_fact_renders_empty_rather_than_failing_the_send():
    row = {"template_id": 1, "body": "Hi {{ profile.traits.nickname.first }}!"}
    assert templates.render(row, {"profile": {"traits": {}}}).text == "Hi !"


def test_saving_again_makes_a_new_version_and_the_customers_language_wins(runtime):
    first = template(runtime, body="Thanks!")
    second = template(runtime, body="Thank you!")
    template(runtime, language="vi", body="Cảm ơn bạn!")
    assert (first["version"], second["version"]) == (1, 2)

    with runtime.pool.connection() as conn:
        vietnamese = templates.current_template(conn, "welcome", "email", "vi")
        french = templates.current_template(conn, "welcome", "email", "fr")
        sms = templates.current_template(conn, "welcome", "sms", "en")
    assert vietnamese["body"] == "Cảm ơn bạn!"
    assert french["body"] == "Thank you!"  # no French version: English, newest
    assert sms is None


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"name": ""}, "name must be a name"),
        ({"language": "English"}, "language must be such as en or vi"),
        ({"body": "   "}, "body must be non-empty template text"),
        ({"footer": "x"}, "unknown template fields: footer"),
        ({"body": "x" * 20_001}, "body is over 20,000 characters"),
    ],
)
def test_a_template_missing_what_it_needs_is_refused(runtime, spec, fragment):
    with pytest.raises(InputError) as refused:
        template(runtime, **spec)
    assert fragment in refused.value.message
