"""The appliance: the `c360` command, embedded engines and process supervision.
The only part of c360 that knows about processes."""
