//! gRPC handlers of `bulwark.authz.v1.AuthzService`.
//!
//! Order of checks in every RPC: authenticate (401), validate (400), authorize (403),
//! then act; the kernel's request layer does the first and the last. Role and grant
//! changes record their audit event in the outbox in the same transaction, and drop this
//! instance's cached decisions after the commit. `ListUserRoles` and `ResolveRoles` are
//! internal: only a service account with `roles:read` may call them.

use std::sync::Arc;

use bulwark_kernel::Kernel;
use bulwark_kernel::caller::{Caller, TokenVerifier};
use bulwark_kernel::outbox::{self, NewAuditEvent, OutboxRelay};
use bulwark_kernel::request::{PermissionSource, Refusal, RequestLayer};
use bulwark_kernel::tonic::{Request, Response, Status};
use bulwark_proto::audit::v1::Outcome;
use bulwark_proto::authz::v1::authz_service_server::AuthzService;
use bulwark_proto::authz::v1::{
    CheckRequest, CheckResponse, CreateRoleRequest, GrantRoleRequest, GrantRoleResponse,
    ListUserRolesRequest, ListUserRolesResponse, ResolveRolesRequest, ResolveRolesResponse,
    RevokeRoleRequest, RevokeRoleResponse, Role,
};
use diesel_async::{AsyncConnection as _, AsyncPgConnection};

use crate::decisions::Decisions;
use crate::domain::{self, Permission, PermissionSet, RoleName};
use crate::error::Error;
use crate::{SPEC, store};

/// Needed to create roles and to grant or revoke them.
const ROLES_WRITE: &str = "roles:write";
/// Needed to check another user's permissions, and by services to read roles.
const ROLES_READ: &str = "roles:read";
/// Most roles one `ResolveRoles` may name.
const MAX_RESOLVED_ROLES: usize = 20;

/// The authz service's handlers.
#[derive(Debug, Clone)]
pub struct AuthzHandlers {
    kernel: Kernel,
    access: RequestLayer,
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
        // Users' permissions come from this service's own tables, never from a call to
        // itself.
        let source: Arc<dyn PermissionSource> = decisions.clone();
        Self {
            kernel,
            access: RequestLayer::new(verifier, source),
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

    /// Refuses callers without `roles:write`, recording the refusal as an audit event.
    async fn require_roles_write(
        &self,
        actor: &Caller,
        action: &str,
        target: &str,
    ) -> Result<(), Error> {
        match self.access.require(actor, ROLES_WRITE).await {
            Err(Refusal::PermissionDenied(_)) => {}
            other => return Ok(other?),
        }
        let mut conn = self.kernel.db.conn().await?;
        record(
            &mut conn,
            &actor.actor_id(),
            action,
            target,
            Outcome::Denied,
            serde_json::json!({ "missing_permission": ROLES_WRITE }),
        )
        .await?;
        self.relay.kick();
        Err(Error::lacks(ROLES_WRITE))
    }

    /// A subject may check itself (an empty subject means the caller); checking another
    /// user needs `roles:read`.
    async fn do_check(&self, request: Request<CheckRequest>) -> Result<CheckResponse, Error> {
        let caller = self.access.caller(&request).await?;
        let CheckRequest {
            subject,
            permission,
        } = request.into_inner();
        let permission = Permission::parse("permission", &permission)?;
        let allowed = if subject.is_empty() {
            match caller.user_id() {
                Some(user) => self.decisions.allows(user, &permission).await?,
                // A service account's permissions are the ones its token carries.
                None => PermissionSet::from_texts(caller.permissions.iter().map(String::as_str))
                    .allows(&permission),
            }
        } else {
            let subject = domain::user_id("subject", &subject)?;
            if caller.user_id() != Some(subject) {
                self.access
                    .require(&caller, ROLES_READ)
                    .await
                    .map_err(|refusal| match refusal {
                        Refusal::PermissionDenied(_) => Error::PermissionDenied(format!(
                            "checking another user's permissions requires permission {ROLES_READ}"
                        )),
                        other => other.into(),
                    })?;
            }
            self.decisions.allows(subject, &permission).await?
        };
        Ok(CheckResponse {
            allowed: Some(allowed),
        })
    }

    async fn do_create_role(&self, request: Request<CreateRoleRequest>) -> Result<Role, Error> {
        let actor = self.access.caller(&request).await?;
        let request = request.into_inner();
        let name = RoleName::parse("name", &request.name)?;
        let permissions: Vec<String> =
            domain::permission_list("permissions", &request.permissions)?
                .iter()
                .map(ToString::to_string)
                .collect();
        let target = format!("role:{name}");
        self.require_roles_write(&actor, "role.create", &target)
            .await?;
        let actor = actor.actor_id();

        let mut conn = self.kernel.db.conn().await?;
        let row = conn
            .transaction::<_, Error, _>(async |conn| {
                let row = store::insert_role(conn, name.as_str(), &permissions)
                    .await?
                    .ok_or_else(|| Error::AlreadyExists(format!("role {name} already exists")))?;
                record(
                    conn,
                    &actor,
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
        let actor = self.access.caller(&request).await?;
        let request = request.into_inner();
        // Only the id's form is checked: Authz does not ask Identity whether the user
        // exists (no cross-service call on this path; a grant to an id nobody logs in
        // as grants nothing to anyone).
        let user = domain::user_id("user_id", &request.user_id)?;
        let role = RoleName::parse("role", &request.role)?;
        let target = user.to_string();
        self.require_roles_write(&actor, "role.grant", &target)
            .await?;
        let actor = actor.actor_id();

        let mut conn = self.kernel.db.conn().await?;
        conn.transaction::<_, Error, _>(async |conn| {
            if !store::role_exists(conn, role.as_str(), false).await? {
                return Err(Error::NotFound(format!("role {role} does not exist")));
            }
            let new = store::insert_grant(conn, user, role.as_str()).await?;
            record(
                conn,
                &actor,
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
        let actor = self.access.caller(&request).await?;
        let request = request.into_inner();
        let user = domain::user_id("user_id", &request.user_id)?;
        let role = RoleName::parse("role", &request.role)?;
        let target = user.to_string();
        self.require_roles_write(&actor, "role.revoke", &target)
            .await?;
        let actor = actor.actor_id();

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
                &actor,
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
        self.access.service(&request, ROLES_READ).await?;
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

    async fn do_resolve_roles(
        &self,
        request: Request<ResolveRolesRequest>,
    ) -> Result<ResolveRolesResponse, Error> {
        self.access.service(&request, ROLES_READ).await?;
        let requested = request.into_inner().roles;
        if requested.len() > MAX_RESOLVED_ROLES {
            return Err(Error::invalid(
                "roles",
                format!("must name at most {MAX_RESOLVED_ROLES} roles"),
            ));
        }
        let names = requested
            .iter()
            .enumerate()
            .map(|(i, name)| RoleName::parse(&format!("roles[{i}]"), name).map(|n| n.as_str().to_owned()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.kernel.db.conn().await?;
        let rows = store::roles_named(&mut conn, &names).await?;
        let unknown = names
            .iter()
            .filter(|name| !rows.iter().any(|row| &row.name == *name))
            .cloned()
            .collect();
        let mut permissions: Vec<String> =
            rows.into_iter().flat_map(|row| row.permissions).collect();
        permissions.sort();
        permissions.dedup();
        Ok(ResolveRolesResponse {
            permissions,
            unknown,
        })
    }
}

/// Records an audit event of this service in the outbox, on `conn` (inside the
/// transaction of the change it describes, when there is one).
async fn record(
    conn: &mut AsyncPgConnection,
    actor: &str,
    action: &str,
    target: &str,
    outcome: Outcome,
    details: serde_json::Value,
) -> Result<(), Error> {
    outbox::record(
        conn,
        SPEC.name,
        NewAuditEvent {
            actor_id: actor.to_owned(),
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

    async fn resolve_roles(
        &self,
        request: Request<ResolveRolesRequest>,
    ) -> Result<Response<ResolveRolesResponse>, Status> {
        self.reply(self.do_resolve_roles(request).await)
    }
}
