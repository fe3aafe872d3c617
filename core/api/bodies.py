"""The shape of the JSON bodies (and query parameters) of engage routes whose handlers read
raw bytes, for the OpenAPI document at /schema/openapi.json.

Those handlers decode and check what they are sent themselves, so every error names the field
and what to change; Litestar sees only `bytes` and could not describe them. A route names its
body here instead:

    @post("/v1/notifications/rules", operation_class=documented(RULE))

The enumerations (triggers, item types, intents, languages...) come from the modules that
check them, so the document cannot drift from what is accepted; each body carries an example
that tests/core/test_openapi_engage.py sends to the real route. Touches nothing at run time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from litestar.openapi.spec import OpenAPIMediaType, Operation, Parameter, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType

from c360.agents import personas
from c360.knowledge.store import ITEM_TYPES
from c360.notifications import rules

JsonSchema = dict[str, Any]

#: Names of rules, templates, channels and purposes (c360.notifications.rules._NAME).
_NAME_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
#: The fields a new rule must have.
_RULE_REQUIRED = ["name", "trigger", "template", "channel", "purpose"]


@dataclasses.dataclass(frozen=True)
class Body:
    """A documented request body: its JSON Schema per media type, and an example for each."""

    description: str
    content: dict[str, JsonSchema]
    examples: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Query:
    """A documented query parameter the handler reads from the raw query string."""

    name: str
    description: str
    schema: JsonSchema = dataclasses.field(default_factory=lambda: {"type": "string"})


def documented(body: Body | None = None, query: tuple[Query, ...] = ()) -> type[Operation]:
    """An Operation class for `operation_class=` that adds `body` and `query` to what
    Litestar derived from the handler (path parameters, responses, description)."""
    request_body = _request_body(body) if body else None
    parameters = [_parameter(item) for item in query]

    @dataclasses.dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            if request_body is not None:
                self.request_body = request_body
            if parameters:
                self.parameters = [*(self.parameters or []), *parameters]

    return DocumentedOperation


def _request_body(body: Body) -> RequestBody:
    content = {
        media: OpenAPIMediaType(schema=_schema(schema), example=body.examples.get(media))
        for media, schema in body.content.items()
    }
    return RequestBody(content=content, description=body.description, required=True)


def _parameter(query: Query) -> Parameter:
    return Parameter(
        name=query.name,
        param_in="query",  # type: ignore[arg-type]  # ParamType is a str enum
        schema=_schema(query.schema),
        description=query.description,
        required=False,
    )


#: JSON Schema keywords and the Schema fields that hold them.
_KEYWORDS = {
    "description": "description",
    "enum": "enum",
    "required": "required",
    "minimum": "minimum",
    "maximum": "maximum",
    "minLength": "min_length",
    "maxLength": "max_length",
    "minItems": "min_items",
    "maxItems": "max_items",
    "pattern": "pattern",
    "format": "format",
    "default": "default",
}


def _schema(node: JsonSchema) -> Schema:
    """Litestar's Schema for a JSON Schema written as a dict (the keywords used here)."""
    fields: dict[str, Any] = {
        target: node[keyword] for keyword, target in _KEYWORDS.items() if keyword in node
    }
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        kinds = [OpenAPIType(kind) for kind in types]
        fields["type"] = kinds[0] if len(kinds) == 1 else kinds
    if "properties" in node:
        fields["properties"] = {name: _schema(sub) for name, sub in node["properties"].items()}
    if "items" in node:
        fields["items"] = _schema(node["items"])
    extra = node.get("additionalProperties")
    if isinstance(extra, bool):
        fields["additional_properties"] = extra
    elif isinstance(extra, dict):
        fields["additional_properties"] = _schema(extra)
    return Schema(**fields)


def _names(description: str) -> JsonSchema:
    return {"type": "string", "pattern": _NAME_PATTERN, "description": description}


def _object(properties: dict[str, JsonSchema], required: list[str] | None = None) -> JsonSchema:
    shape: JsonSchema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        shape["required"] = required
    return shape


_CONDITIONS = _object(
    {
        "within_hours": {
            "type": "number",
            "minimum": 1,
            "maximum": 24 * 365,
            "description": "first_purchase, cart_abandoned: how old a trigger may be.",
        },
        "wait_minutes": {
            "type": "number",
            "minimum": 1,
            "maximum": 7 * 24 * 60,
            "description": "cart_abandoned: minutes without an order after the cart.",
        },
        "events": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "description": "cart_abandoned: event names that put something in a cart.",
        },
        "field": {
            "type": "string",
            "description": "ltv_tier_changed, churn_risk_crossed: the profile path read.",
        },
        "tiers": {
            "type": "array",
            "description": "ltv_tier_changed: tier boundaries, lowest first.",
        },
        "direction": {"type": "string", "enum": ["up", "down", "any"]},
        "threshold": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "churn_risk_crossed (required): a churn risk from 0 to 1.",
        },
    }
)

_RULE_FIELDS: dict[str, JsonSchema] = {
    "name": _names("Unique among live rules."),
    "trigger": {"type": "string", "enum": list(rules.TRIGGERS)},
    "conditions": {**_CONDITIONS, "description": "What the trigger reads; see each field."},
    "template": _names("A saved template's name."),
    "channel": _names("A configured channel: email, sms, zalo, push, webhook."),
    "purpose": _names("The consent purpose the customer must have given, e.g. marketing."),
    "delay_s": {"type": "integer", "minimum": 0, "maximum": rules.MAX_DELAY_S},
    "enabled": {"type": "boolean", "default": True},
}

RULE = Body(
    "A notification rule: when its trigger holds for a profile, the template is sent on the "
    "channel, subject to consent, quiet hours and caps.",
    {"application/json": _object(_RULE_FIELDS, _RULE_REQUIRED)},
    {
        "application/json": {
            "name": "first-purchase",
            "trigger": "first_purchase",
            "conditions": {"within_hours": 48},
            "template": "welcome",
            "channel": "email",
            "purpose": "marketing",
        }
    },
)

RULE_CHANGE = Body(
    "Fields of the rule to change; the others keep their values.",
    {"application/json": _object(_RULE_FIELDS)},
    {"application/json": {"enabled": False}},
)

TEMPLATE = Body(
    "A template, saved as the next version of (name, channel, language). Jinja2 (sandboxed); "
    "variables a profile cannot have are refused at save.",
    {
        "application/json": _object(
            {
                "name": _names("The name rules refer to."),
                "channel": _names("email, sms, zalo, push or webhook."),
                "language": {"type": "string", "default": "en", "description": "e.g. en, vi"},
                "subject": {"type": "string", "description": "Email only."},
                "body": {"type": "string", "description": "The text (plain text for email)."},
                "html": {"type": "string", "description": "Email only: the HTML part."},
            },
            ["name", "channel", "body"],
        )
    },
    {
        "application/json": {
            "name": "welcome",
            "channel": "email",
            "language": "vi",
            "subject": "Cảm ơn {{ profile.traits.name }}",
            "body": "Chào {{ profile.traits.name }}, cảm ơn bạn đã đặt hàng.",
        }
    },
)

TEST_SEND = Body(
    "Send a template to one address now (consent and quiet hours do not apply; an address "
    "that unsubscribed is still refused).",
    {
        "application/json": _object(
            {
                "template": _names("A saved template's name."),
                "channel": _names("The template's channel."),
                "to": {"type": "string", "description": "The address: email, E.164 phone..."},
                "language": {"type": "string", "description": "The template's language."},
                "profile_id": {
                    "type": "string",
                    "format": "uuid",
                    "description": "Render with this profile's data instead of sample data.",
                },
            },
            ["template", "channel", "to"],
        )
    },
    {"application/json": {"template": "welcome", "channel": "email", "to": "lan@example.com"}},
)

PERSONA = Body(
    "A new active version of the agent's persona; fields left out keep their current values.",
    {
        "application/json": _object(
            {
                "name": {"type": "string", "maxLength": personas.MAX_TEXT},
                "tone": {"type": "string", "maxLength": personas.MAX_TEXT},
                "languages": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(personas.LANGUAGES)},
                    "minItems": 1,
                },
                "allowed_topics": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(personas.INTENTS)},
                },
                "escalation": _object(
                    {
                        "human_request": {"type": "boolean"},
                        "low_confidence_turns": {"type": "integer", "minimum": 0, "maximum": 10},
                        "negative_sentiment": {"type": "boolean"},
                        "complaint_tiers": {"type": "array", "items": {"type": "string"}},
                    }
                ),
                "opening_hours": _object(
                    {
                        "timezone": {"type": "string", "description": "e.g. Asia/Ho_Chi_Minh"},
                        "days": {
                            "type": "array",
                            "items": {"type": "integer", "minimum": 1, "maximum": 7},
                            "description": "1 = Monday .. 7 = Sunday",
                        },
                        "from": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
                        "to": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"},
                    }
                ),
                "greeting": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": 'Text per language, e.g. {"vi": "Xin chào!"}',
                },
            }
        )
    },
    {"application/json": {"name": "Mai", "tone": "warm, brief", "languages": ["vi", "en"]}},
)

OPERATOR_REPLY = Body(
    "The operator's answer, sent through the channel the customer last wrote from.",
    {"application/json": _object({"text": {"type": "string", "minLength": 1}}, ["text"])},
    {"application/json": {"text": "Chào chị Lan, em kiểm tra đơn hàng ngay ạ."}},
)

_ITEM = _object(
    {
        "id": {"type": "string", "pattern": "^[A-Za-z0-9.:/@+_-]{1,200}$"},
        "type": {"type": "string", "enum": list(ITEM_TYPES)},
        "title": {"type": "string"},
        "body": {"type": "string"},
        "language": {"type": "string", "description": "e.g. en, vi"},
        "attributes": {
            "type": "object",
            "description": "price, currency, stock, valid_from, valid_to, region (a list), "
            "related (a list), sku, code, percent, address, hours... any other names are kept",
        },
    },
    ["id", "type", "title"],
)

KNOWLEDGE_ITEMS = Body(
    "Items to insert or update by id (at most 1,000 per request); only changed text is "
    "embedded again.",
    {"application/json": {"type": "array", "items": _ITEM, "minItems": 1, "maxItems": 1000}},
    {
        "application/json": [
            {
                "id": "sku-ao-dai-01",
                "type": "product",
                "title": "Áo dài lụa",
                "body": "Áo dài lụa tơ tằm, may đo.",
                "language": "vi",
                "attributes": {"price": "1290000", "currency": "VND", "stock": 12},
            }
        ]
    },
)

KNOWLEDGE_FILE = Body(
    "A CSV file (header row: id, type, title, body, language, then attribute columns) or a "
    "JSON array / JSON Lines file of items.",
    {
        "text/csv": {"type": "string"},
        "application/json": {"type": "array", "items": _ITEM},
        "application/x-ndjson": {"type": "string"},
    },
    {"text/csv": "id,type,title,price\nsku-1,product,Áo dài lụa,1290000\n"},
)

KNOWLEDGE_FILE_QUERY = (
    Query(
        "type",
        "The item type for rows without a type column.",
        {"type": "string", "enum": list(ITEM_TYPES)},
    ),
    Query("name", "The file's name, shown in errors (and read for its extension)."),
)
