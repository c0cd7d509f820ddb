-- The orchestrator runs as the runtime role (which owns only the target schemas) and puts each change's
-- dual-write trigger functions here, beside its state (store/target.py, Names.forward_function): it needs CREATE
-- in this schema, which default privileges do not give.
GRANT CREATE ON SCHEMA {schema} TO {runtime_role};
