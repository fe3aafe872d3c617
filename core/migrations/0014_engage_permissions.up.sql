-- Issue 7: the built-in roles gain the engage permissions (knowledge, agents, notifications),
-- as c360.access.BUILT_IN_ROLES has them. Only what the code added is appended, so a role an
-- operator edited keeps its other permissions.
UPDATE governance.roles
SET permissions = permissions || ARRAY['knowledge:read', 'knowledge:write', 'agents:read',
                                       'agents:write', 'agents:operate', 'notifications:read',
                                       'notifications:write']
WHERE name = 'admin' AND built_in;

UPDATE governance.roles
SET permissions = permissions || ARRAY['knowledge:read', 'agents:read', 'notifications:read']
WHERE name = 'analyst' AND built_in;

UPDATE governance.roles
SET permissions = permissions || ARRAY['knowledge:read', 'knowledge:write', 'agents:read',
                                       'agents:write', 'agents:operate', 'notifications:read',
                                       'notifications:write']
WHERE name = 'marketer' AND built_in;
