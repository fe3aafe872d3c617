"""SQL migrations, applied in order by F0 (`c360 migrate`); each has an up and a down file."""
