//! gRPC handlers of `bulwark.authz.v1.AuthzService`.
//!
//! Order of checks in every RPC: authenticate (401), validate (400), authorize (403),
//! then act. Role and grant changes record their audit event in the outbox in the same
//! transaction, and drop this instance's cached decisions after the commit.

use std::sync::Arc;

use bulwark_kernel::Kernel;
use bulwark_kernel::caller::{TokenVerifier, through_edge};
use bulwark_kernel::outbox::{self, NewAuditEvent, OutboxRelay};
use bulwark_kernel::tonic::{Request, Response, Status};
use bulwark_proto::audit::v1::Outcome;
use bulwark_proto::authz::v1::authz_service_server::AuthzService;
use bulwark_proto::authz::v1::{
    CheckRequest, CheckResponse, CreateRoleRequest, GrantRoleRequest, GrantRoleResponse,
    ListUserRolesRequest, ListUserRolesResponse, RevokeRoleRequest, RevokeRoleResponse, Role,
};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use uuid::Uuid;

use crate::decisions::Decisions;
use crate::domain::{self, Permission, RoleName};
use crate::error::Error;
use crate::{SPEC, store};

/// Needed to create roles and to grant or revoke them.
const ROLES_WRITE: &str = "roles:write";
/// Needed to check another user's permissions.
const ROLES_READ: &str = "roles:read";

/// Who asks a Check.
enum Asker {
    /// A client with a verified bearer token.
    User(Uuid),
    /// Another service calling from inside the mesh, without a token.
    Service,
}

/// The authz service's handlers.
#[derive(Debug, Clone)]
pub struct AuthzHandlers {
    kernel: Kernel,
    verifier: Arc<TokenVerifier>,
    decisions: Arc<Decisions>,
    relay: OutboxRelay,
}

impl AuthzHandlers {
    pub fn new(
        kernel: Kernel,
        verifier: Arc<TokenVerifier>,
        decisions: Arc<Decisions>,
        relay: OutboxRelay,
    ) -> Self {
        Self {
            kernel,
            verifier,
            decisions,
            relay,
        }
    }

    /// Answers `result`; internal errors go to the error bus, clients see a bare
    /// "internal error".
    fn reply<T>(&self, result: Result<T, Error>) -> Result<Response<T>, Status> {
        result.map(Response::new).map_err(|error| {
            if error.is_internal() {
                self.kernel.errors.error("grpc", &error);
            }
            Status::from(error)
        })
    }

    async fn authenticate<T>(&self, request: &Request<T>) -> Result<Uuid, Error> {
        // The verifier logs why a token was refused; the client gets one message.
        let caller = self
            .verifier
            .caller(request)
            .await
            .map_err(|_| Error::Unauthenticated)?;
        Ok(caller.user_id)
    }

    /// Token-less Checks are the other services asking on behalf of their callers (the
    /// kernel's Authz client carries no token). They are accepted only when the call
    /// did not come through the edge; from there, and whenever a token is presented,
    /// the token must be valid.
    async fn asker<T>(&self, request: &Request<T>) -> Result<Asker, Error> {
        let metadata = request.metadata();
        if metadata.contains_key("authorization") || through_edge(metadata) {
            Ok(Asker::User(self.authenticate(request).await?))
        } else {
            Ok(Asker::Service)
        }
    }

    /// Refuses callers without `roles:write` (checked here, not through a call to
    /// ourselves), recording the refusal as an audit event.
    async fn require_roles_write(
        &self,
        actor: Uuid,
        action: &str,
        target: &str,
    ) -> Result<(), Error> {
        let wanted = Permission::parse("permission", ROLES_WRITE)?;
        if self.decisions.allows(actor, &wanted).await? {
            return Ok(());
        }
        let mut conn = self.kernel.db.conn().await?;
        record(
            &mut conn,
            actor,
            action,
            target,
            Outcome::Denied,
            serde_json::json!({ "missing_permission": ROLES_WRITE }),
        )
        .await?;
        self.relay.kick();
        Err(Error::lacks(ROLES_WRITE))
    }

    async fn do_check(&self, request: Request<CheckRequest>) -> Result<CheckResponse, Error> {
        let asker = self.asker(&request).await?;
        let CheckRequest {
            subject,
            permission,
        } = request.into_inner();
        let subject = match (&asker, subject.is_empty()) {
            (Asker::User(caller), true) => *caller,
            _ => domain::user_id("subject", &subject)?,
        };
        let permission = Permission::parse("permission", &permission)?;
        if let Asker::User(caller) = asker
            && caller != subject
            && !self
                .decisions
                .allows(caller, &Permission::parse("permission", ROLES_READ)?)
                .await?
        {
            return Err(Error::PermissionDenied(format!(
                "checking another user's permissions requires permission {ROLES_READ}"
            )));
        }
        let allowed = self.decisions.allows(subject, &permission).await?;
        Ok(CheckResponse {
            allowed: Some(allowed),
        })
    }

    async fn do_create_role(&self, request: Request<CreateRoleRequest>) -> Result<Role, Error> {
        let actor = self.authenticate(&request).await?;
        let request = request.into_inner();
        let name = RoleName::parse("name", &request.name)?;
        let permissions: Vec<String> =
            domain::permission_list("permissions", &request.permissions)?
                .iter()
                .map(ToString::to_string)
                .collect();
        let target = format!("role:{name}");
        self.require_roles_write(actor, "role.create", &target)
            .await?;

        let mut conn = self.kernel.db.conn().await?;
        let row = conn
            .transaction::<_, Error, _>(async |conn| {
                let row = store::insert_role(conn, name.as_str(), &permissions)
                    .await?
                    .ok_or_else(|| Error::AlreadyExists(format!("role {name} already exists")))?;
                record(
                    conn,
                    actor,
                    "role.create",
                    &target,
                    Outcome::Success,
                    serde_json::json!({ "permissions": permissions }),
                )
                .await?;
                Ok(row)
            })
            .await?;
        self.relay.kick();
        self.decisions.forget_all();
        Ok(Role {
            name: row.name,
            permissions: row.permissions,
            created_at: Some(bulwark_kernel::timestamp::to_proto(row.created_at)),
        })
    }

    async fn do_grant_role(
        &self,
        request: Request<GrantRoleRequest>,
    ) -> Result<GrantRoleResponse, Error> {
        let actor = self.authenticate(&request).await?;
        let request = request.into_inner();
        // Only the id's form is checked: Authz does not ask Identity whether the user
        // exists (no cross-service call on this path; a grant to an id nobody logs in
        // as grants nothing to anyone).
        let user = domain::user_id("user_id", &request.user_id)?;
        let role = RoleName::parse("role", &request.role)?;
        let target = user.to_string();
        self.require_roles_write(actor, "role.grant", &target)
            .await?;

        let mut conn = self.kernel.db.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            if !store::role_exists(conn, role.as_str(), false).await? {
                return Err(Error::NotFound(format!("role {role} does not exist")));
            }
            let new = store::insert_grant(conn, user, role.as_str()).await?;
            record(
                conn,
                actor,
                "role.grant",
                &target,
                Outcome::Success,
                serde_json::json!({ "role": role.as_str(), "already_held": !new }),
            )
            .await
        })
        .await?;
        self.relay.kick();
        self.decisions.forget(user);
        Ok(GrantRoleResponse {})
    }

    async fn do_revoke_role(
        &self,
        request: Request<RevokeRoleRequest>,
    ) -> Result<RevokeRoleResponse, Error> {
        let actor = self.authenticate(&request).await?;
        let request = request.into_inner();
        let user = domain::user_id("user_id", &request.user_id)?;
        let role = RoleName::parse("role", &request.role)?;
        let target = user.to_string();
        self.require_roles_write(actor, "role.revoke", &target)
            .await?;

        let mut conn = self.kernel.db.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            // Locking the admin role row serialises concurrent admin revokes (and
            // grants), so two of them cannot both see "another admin remains".
            if !store::role_exists(conn, role.as_str(), role.is_admin()).await? {
                return Err(Error::NotFound(format!("role {role} does not exist")));
            }
            let held = store::holds(conn, user, role.as_str()).await?;
            if held && role.is_admin() && store::count_holders(conn, role.as_str()).await? <= 1 {
                return Err(Error::FailedPrecondition(
                    "cannot revoke admin from its last holder; grant it to someone else first"
                        .to_owned(),
                ));
            }
            if held {
                store::delete_grant(conn, user, role.as_str()).await?;
            }
            record(
                conn,
                actor,
                "role.revoke",
                &target,
                Outcome::Success,
                serde_json::json!({ "role": role.as_str(), "was_held": held }),
            )
            .await
        })
        .await?;
        self.relay.kick();
        self.decisions.forget(user);
        Ok(RevokeRoleResponse {})
    }

    async fn do_list_user_roles(
        &self,
        request: Request<ListUserRolesRequest>,
    ) -> Result<ListUserRolesResponse, Error> {
        if through_edge(request.metadata()) {
            return Err(Error::PermissionDenied(
                "ListUserRoles is internal and not available through the edge".to_owned(),
            ));
        }
        let user = domain::user_id("user_id", &request.get_ref().user_id)?;
        let mut conn = self.kernel.db.conn().await?;
        let rows = store::user_roles(&mut conn, user).await?;
        let roles = rows.iter().map(|row| row.name.clone()).collect();
        let mut permissions: Vec<String> =
            rows.into_iter().flat_map(|row| row.permissions).collect();
        permissions.sort();
        permissions.dedup();
        Ok(ListUserRolesResponse { roles, permissions })
    }
}

/// Records an audit event of this service in the outbox, on `conn` (inside the
/// transaction of the change it describes, when there is one).
async fn record(
    conn: &mut AsyncPgConnection,
    actor: Uuid,
    action: &str,
    target: &str,
    outcome: Outcome,
    details: serde_json::Value,
) -> Result<(), Error> {
    outbox::record(
        conn,
        SPEC.name,
        NewAuditEvent {
            actor_id: actor.to_string(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome,
            details,
        },
    )
    .await?;
    Ok(())
}

#[bulwark_kernel::tonic::async_trait]
impl AuthzService for AuthzHandlers {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        self.reply(self.do_check(request).await)
    }

    async fn create_role(
        &self,
        request: Request<CreateRoleRequest>,
    ) -> Result<Response<Role>, Status> {
        self.reply(self.do_create_role(request).await)
    }

    async fn grant_role(
        &self,
        request: Request<GrantRoleRequest>,
    ) -> Result<Response<GrantRoleResponse>, Status> {
        self.reply(self.do_grant_role(request).await)
    }

    async fn revoke_role(
        &self,
        request: Request<RevokeRoleRequest>,
    ) -> Result<Response<RevokeRoleResponse>, Status> {
        self.reply(self.do_revoke_role(request).await)
    }

    async fn list_user_roles(
        &self,
        request: Request<ListUserRolesRequest>,
    ) -> Result<Response<ListUserRolesResponse>, Status> {
        self.reply(self.do_list_user_roles(request).await)
    }
}
