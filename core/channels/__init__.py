"""Channels: how c360 reaches a customer and hears back (web chat, SMS, Zalo, email, push,
webhooks). Each channel is a pluggy plugin (`c360_channels`) with an outbound half that sends
one message and an inbound half (webhook routes) that turns what the provider posts into
`InboundMessage`s and delivery updates. Agents and F4 notifications share them."""
