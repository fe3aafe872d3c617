"""The F-stages. Each is a plain function over a batch; actors and pumps feed them from the bus.
A stage imports no other stage: stages talk through topics."""

#: Consumer groups of the stages: (topic, group). The worker runs a pump for each; the metrics
#: endpoint reports each one's backlog.
F2_GROUP, LAKE_GROUP, F3_GROUP = "f2", "lake", "f3"
