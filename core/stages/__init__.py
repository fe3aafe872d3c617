"""The F-stages. Each is a plain function over a batch; actors and pumps feed them from the bus.
A stage imports no other stage: stages talk through topics."""
