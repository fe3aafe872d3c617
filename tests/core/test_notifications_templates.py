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


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("{{ 'a' * 1000000000 }}", "repeating str 1,000,000,000 times makes over 100,000"),
        ("{{ [0] * 1000000000 }}", "repeating list 1,000,000,000 times"),
        ("{{ 2 ** 1000000000 }}", "the number would have over 4,096 bits"),
        (
            "{% set ns = namespace(x=2**4000) %}{% for i in range(40) %}"
            "{% set ns.x = ns.x * ns.x %}{% endfor %}{{ ns.x }}",
            "the number would have over 4,096 bits",
        ),
        ("{{ '%1000000000s' % 'a' }}", "a format width or precision of six digits"),
        ("{{ '{:>1000000000}'.format('a') }}", "a format width or precision of six digits"),
        ("{{ 'a'.ljust(1000000000) }}", "ljust() with 1,000,000,000 would build"),
        ("{{ 'a'|center(1000000000) }}", "the filter center with 1,000,000,000"),
        ("{{ [1]|batch(1000000000, 'x')|list }}", "the filter batch with 1,000,000,000"),
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "range() loops over more than 100,000 items in all",
        ),
        ("{% for i in range(50000) %}abc{% endfor %}", "renders over 100,000 characters"),
    ],
)
def test_a_template_that_would_build_something_huge_is_refused_at_save(runtime, body, fragment):
    # before the bound, the first of these took 30 s and a gigabyte, then was saved
    with pytest.raises(InputError) as refused:
        template(runtime, name="t-bigstr", body=body)
    assert refused.value.code == "invalid_template"
    assert refused.value.message.startswith("body"), refused.value.message
    assert fragment in refused.value.message, refused.value.message
    with runtime.pool.connection() as conn:
        assert templates.list_templates(conn) == []


def test_ordinary_arithmetic_and_repetition_still_render():
    row = {
        "template_id": 1,
        "body": "{{ '-' * 10 }} {{ 3 * 'ab' }} {{ 2 ** 10 }} {{ [1] + [2] }} "
        "{{ '%05.1f' % 2.5 }} {{ '{:,}'.format(1234567) }} {{ 'x'|center(5) }}|",
    }
    assert templates.render(row, {}).text == (
        # a list prints its items, as customers read them (not Python's [1, 2])
        "---------- ababab 1024 1, 2 002.5 1,234,567   x  |"
    )


def test_a_render_over_the_limits_at_send_time_raises_rather_than_building_it():
    # the repetition comes from the customer's data, so the save could not see it
    row = {"template_id": 1, "body": "{{ 'ab' * (profile.traits.reps|int) }}"}
    assert templates.render(row, {"profile": {"traits": {"reps": 3}}}).text == "ababab"
    with pytest.raises(templates.TooBig, match="repeating str 1,000,000,000 times"):
        templates.render(row, {"profile": {"traits": {"reps": 10**9}}})
    twice = {"template_id": 1, "body": "{{ 'a' * profile.traits.reps }}" * 2}
    with pytest.raises(templates.TooBig, match="renders over 100,000 characters"):
        templates.render(twice, {"profile": {"traits": {"reps": 60_000}}})


@pytest.mark.parametrize(
    ("body", "unknown"),
    [
        ("Hi {{ nope.deeper.still }}", "nope"),
        ("Hi\n{% if customer %}{{ customer.name }}{% endif %} {{ nope }}", "customer, nope"),
    ],
)
def test_a_variable_the_template_is_not_given_is_refused_listing_what_exists(
    runtime, body, unknown
):
    with pytest.raises(InputError) as refused:
        template(runtime, body=body)
    message = refused.value.message
    assert f"unknown variable {unknown}: " in message, message
    assert "profile, rule, trigger, unsubscribe_url" in message
    # its own names, loop variables and the sandbox's functions are not unknown
    template(
        runtime,
        body="{% set n = 2 %}{% for x in range(n) %}{{ loop.index }}{{ x }}{% endfor %}"
        "{{ profile.traits.nickname }} {{ trigger.name }} {{ rule }} {{ unsubscribe_url }}",
    )


@pytest.mark.parametrize(
    "body",
    [
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "{% for x in [[1]] recursive %}{{ loop([x]) }}{% endfor %}",
    ],
)
def test_a_template_that_calls_itself_without_end_is_refused_with_a_template_message(runtime, body):
    with pytest.raises(InputError) as refused:
        template(runtime, body=body)
    assert refused.value.code == "invalid_template"
    assert "the template calls itself (a macro or recursive loop) without end" in (
        refused.value.message
    )
