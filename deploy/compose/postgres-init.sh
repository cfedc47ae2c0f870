#!/bin/sh
# Two roles and one schema per service, as the local mesh provisions them: <svc>_owner
# owns schema <svc> and is used only by the <svc>-migrate job (`bulwark-<svc> migrate`:
# the migrations, then the runtime role's grants). The service runs as <svc>_svc, which
# owns nothing and holds only the grants in services/<svc>/grants.sql.
#
# The passwords come from the environment compose.yaml gives this container
# (BULWARK_<SVC>_DB_PASSWORD for <svc>_svc, BULWARK_<SVC>_OWNER_DB_PASSWORD for
# <svc>_owner), none is written here; psql quotes them as literals (:'name'). Run once,
# by the image's entrypoint, when the data volume is empty.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v identity_owner="${BULWARK_IDENTITY_OWNER_DB_PASSWORD:?}" \
  -v auth_owner="${BULWARK_AUTH_OWNER_DB_PASSWORD:?}" \
  -v authz_owner="${BULWARK_AUTHZ_OWNER_DB_PASSWORD:?}" \
  -v audit_owner="${BULWARK_AUDIT_OWNER_DB_PASSWORD:?}" \
  -v identity_svc="${BULWARK_IDENTITY_DB_PASSWORD:?}" \
  -v auth_svc="${BULWARK_AUTH_DB_PASSWORD:?}" \
  -v authz_svc="${BULWARK_AUTHZ_DB_PASSWORD:?}" \
  -v audit_svc="${BULWARK_AUDIT_DB_PASSWORD:?}" <<'SQL'
CREATE ROLE identity_owner LOGIN PASSWORD :'identity_owner';
CREATE ROLE auth_owner LOGIN PASSWORD :'auth_owner';
CREATE ROLE authz_owner LOGIN PASSWORD :'authz_owner';
CREATE ROLE audit_owner LOGIN PASSWORD :'audit_owner';
CREATE ROLE identity_svc LOGIN PASSWORD :'identity_svc';
CREATE ROLE auth_svc LOGIN PASSWORD :'auth_svc';
CREATE ROLE authz_svc LOGIN PASSWORD :'authz_svc';
CREATE ROLE audit_svc LOGIN PASSWORD :'audit_svc';
CREATE SCHEMA identity AUTHORIZATION identity_owner;
CREATE SCHEMA auth AUTHORIZATION auth_owner;
CREATE SCHEMA authz AUTHORIZATION authz_owner;
CREATE SCHEMA audit AUTHORIZATION audit_owner;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
SQL
