"""c360: a self-hostable Customer 360 appliance.

The core package: settings, the event model, the F-stages and the adapters they use.
It imports nothing from the appliance, the UI, connectors or plugins.
"""

__version__ = "0.1.0"
