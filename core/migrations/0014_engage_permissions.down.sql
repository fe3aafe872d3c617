-- Take the engage permissions away from every role again (they name routes that no longer
-- exist once the engage migrations are rolled back).
UPDATE governance.roles
SET permissions = ARRAY(
    SELECT p FROM unnest(permissions) AS p
    WHERE p NOT IN ('knowledge:read', 'knowledge:write', 'agents:read', 'agents:write',
                    'agents:operate', 'notifications:read', 'notifications:write')
);
