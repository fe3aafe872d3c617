"""The MQTT gateway for IoT devices; arrives with a later issue."""
