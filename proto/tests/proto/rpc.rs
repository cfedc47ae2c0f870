//! A generated client talks to a generated server in memory, through the
//! prost codec, without any network.

use bulwark_proto::authz::v1::authz_service_client::AuthzServiceClient;
use bulwark_proto::authz::v1::authz_service_server::{AuthzService, AuthzServiceServer};
use bulwark_proto::authz::v1::{
    CheckRequest, CheckResponse, CreateRoleRequest, GrantRoleRequest, GrantRoleResponse,
    ListUserRolesRequest, ListUserRolesResponse, ResolveRolesRequest, ResolveRolesResponse,
    RevokeRoleRequest, RevokeRoleResponse, Role,
};
use tonic::{Request, Response, Status};

/// Allows exactly `ada` to `users:read`.
#[derive(Debug)]
struct OnlyAdaReads;

#[tonic::async_trait]
impl AuthzService for OnlyAdaReads {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let request = request.into_inner();
        if request.permission.is_empty() {
            return Err(Status::invalid_argument("permission is required"));
        }
        let allowed = request.subject == "ada" && request.permission == "users:read";
        Ok(Response::new(CheckResponse {
            allowed: Some(allowed),
        }))
    }

    async fn create_role(&self, _: Request<CreateRoleRequest>) -> Result<Response<Role>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn grant_role(
        &self,
        _: Request<GrantRoleRequest>,
    ) -> Result<Response<GrantRoleResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn revoke_role(
        &self,
        _: Request<RevokeRoleRequest>,
    ) -> Result<Response<RevokeRoleResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn list_user_roles(
        &self,
        _: Request<ListUserRolesRequest>,
    ) -> Result<Response<ListUserRolesResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn resolve_roles(
        &self,
        _: Request<ResolveRolesRequest>,
    ) -> Result<Response<ResolveRolesResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

fn check(subject: &str, permission: &str) -> CheckRequest {
    CheckRequest {
        subject: subject.to_owned(),
        permission: permission.to_owned(),
    }
}

#[tokio::test(flavor = "current_thread")]
async fn generated_client_and_server_exchange_messages_and_statuses() {
    let mut client = AuthzServiceClient::new(AuthzServiceServer::new(OnlyAdaReads));

    let allowed = client
        .check(check("ada", "users:read"))
        .await
        .expect("a well-formed check succeeds")
        .into_inner();
    assert_eq!(allowed.allowed, Some(true), "ada may read users");

    let denied = client
        .check(check("bob", "users:read"))
        .await
        .expect("a denied check is still a successful call")
        .into_inner();
    assert_eq!(denied.allowed, Some(false), "bob may not read users");

    let status = client
        .check(check("ada", ""))
        .await
        .expect_err("an empty permission is rejected");
    assert_eq!(
        status.code(),
        tonic::Code::InvalidArgument,
        "the server's status code must reach the client: {status:?}"
    );
}
