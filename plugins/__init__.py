"""Built-in c360 plugins: each implements hooks from `c360.hookspecs` like an outside plugin."""
