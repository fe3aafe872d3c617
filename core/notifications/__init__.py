"""F4 notifications: rules over profile updates choose a template and a channel; consent,
quiet hours, frequency caps and a global throttle decide whether and when it is sent."""
