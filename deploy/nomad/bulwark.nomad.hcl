# Bulwark on Nomad with Consul Connect: one group per service, each with its sidecar,
# its upstreams bound on loopback, and a readiness check on the admin port.
#   nomad job run -var image=registry.example/bulwark:0.1.0 deploy/nomad/bulwark.nomad.hcl
# Secrets come from Nomad variables, each task reading only its own group's path, which
# its workload identity may read without any ACL policy (nomad/jobs/<job>/<group>):
#   nomad/jobs/bulwark/<core service>  database_url (as <svc>_svc, the runtime role that
#                                      owns nothing), client_secret (its service account)
#   nomad/jobs/bulwark/<core service>/migrate
#                                      owner_database_url (as <svc>_owner, the schema's
#                                      owner): read only by the group's prestart task
#                                      `migrate`, never by the service
#   nomad/jobs/bulwark/identity        also admin_password: the bootstrap admin's; the
#                                      job runs in environment production, where Identity
#                                      refuses to start without one of your own
#   nomad/jobs/bulwark/auth            also identity_client_secret, authz_client_secret,
#                                      audit_client_secret: the same values as those
#                                      services' client_secret, which Auth checks;
#                                      kek_primary: the key that seals the signing
#                                      keys in the database (README, "Signing keys at
#                                      rest")
#   nomad/jobs/bulwark/audit           also checkpoint_key: the Ed25519 key that signs the
#                                      audit chain's checkpoints (32 random bytes in hex);
#                                      Audit refuses to start in production without one;
#                                      redis_url: where Audit counts its own limits
#   nomad/jobs/bulwark/ratelimit       redis_url
# (README, "Service accounts", has the commands that write them and rotate a secret.)
# Checked by tests/tests/e2e/deploy_files/nomad.rs (no Nomad runs there).

variable "image" {
  type    = string
  default = "bulwark:latest"
}

variable "datacenters" {
  type    = list(string)
  default = ["dc1"]
}

job "bulwark" {
  datacenters = var.datacenters
  type        = "service"

  update {
    max_parallel     = 1
    health_check     = "checks"
    min_healthy_time = "10s"
    auto_revert      = true
  }

  group "identity" {
    count = 2

    network {
      mode = "bridge"
      port "admin" {
        to = 9101
      }
    }

    service {
      name = "identity"
      port = "50051"
      tags = ["bulwark", "grpc"]

      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "auth"
              local_bind_port  = 21052
            }
            upstreams {
              destination_name = "authz"
              local_bind_port  = 21053
            }
            upstreams {
              destination_name = "audit"
              local_bind_port  = 21054
            }
          }
        }
      }

      check {
        name     = "identity readiness"
        type     = "http"
        port     = "admin"
        path     = "/ready"
        interval = "10s"
        timeout  = "2s"
      }
    }

    # `bulwark-identity migrate` before the service starts: as the schema's owner it applies
    # the migrations and grants the runtime role what the service needs (concurrent runs
    # of several allocations wait for each other on an advisory lock).
    task "migrate" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      config {
        image   = var.image
        command = "bulwark-identity"
        args    = ["migrate"]
      }

      env {
        BULWARK_SERVICE__ENVIRONMENT = "production"
      }

      template {
        destination = "secrets/migrate.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/identity" }}
BULWARK_DATABASE__URL={{ .database_url }}
{{ end }}
{{ with nomadVar "nomad/jobs/bulwark/identity/migrate" }}
BULWARK_DATABASE__OWNER_URL={{ .owner_database_url }}
{{ end }}
EOT
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }

    task "identity" {
      driver = "docker"

      config {
        image   = var.image
        command = "bulwark-identity"
      }

      env {
        BULWARK_GRPC__LISTEN          = "127.0.0.1:50051"
        BULWARK_HTTP__LISTEN          = "0.0.0.0:9101"
        BULWARK_TELEMETRY__LOG_FORMAT = "json"
        BULWARK_SERVICE__ENVIRONMENT  = "production"
        BULWARK_CLIENTS__AUTH = "http://127.0.0.1:21052"
        BULWARK_CLIENTS__AUTHZ = "http://127.0.0.1:21053"
        BULWARK_CLIENTS__AUDIT = "http://127.0.0.1:21054"
        BULWARK_SERVICE_ACCOUNT__CLIENT_ID = "identity"
      }

      template {
        destination = "secrets/service.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/identity" }}
BULWARK_DATABASE__URL={{ .database_url }}
BULWARK_SERVICE_ACCOUNT__CLIENT_SECRET={{ .client_secret }}
BULWARK_ADMIN_PASSWORD={{ .admin_password }}
{{ end }}
EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }

  group "auth" {
    count = 2

    network {
      mode = "bridge"
      port "admin" {
        to = 9102
      }
    }

    service {
      name = "auth"
      port = "50052"
      tags = ["bulwark", "grpc"]

      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "identity"
              local_bind_port  = 21051
            }
            upstreams {
              destination_name = "authz"
              local_bind_port  = 21053
            }
            upstreams {
              destination_name = "audit"
              local_bind_port  = 21054
            }
          }
        }
      }

      check {
        name     = "auth readiness"
        type     = "http"
        port     = "admin"
        path     = "/ready"
        interval = "10s"
        timeout  = "2s"
      }
    }

    # `bulwark-auth migrate` before the service starts: as the schema's owner it applies
    # the migrations and grants the runtime role what the service needs (concurrent runs
    # of several allocations wait for each other on an advisory lock).
    task "migrate" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      config {
        image   = var.image
        command = "bulwark-auth"
        args    = ["migrate"]
      }

      env {
        BULWARK_SERVICE__ENVIRONMENT = "production"
      }

      template {
        destination = "secrets/migrate.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/auth" }}
BULWARK_DATABASE__URL={{ .database_url }}
{{ end }}
{{ with nomadVar "nomad/jobs/bulwark/auth/migrate" }}
BULWARK_DATABASE__OWNER_URL={{ .owner_database_url }}
{{ end }}
EOT
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }

    task "auth" {
      driver = "docker"

      config {
        image   = var.image
        command = "bulwark-auth"
      }

      env {
        BULWARK_GRPC__LISTEN          = "127.0.0.1:50052"
        BULWARK_HTTP__LISTEN          = "0.0.0.0:9102"
        BULWARK_TELEMETRY__LOG_FORMAT = "json"
        BULWARK_SERVICE__ENVIRONMENT  = "production"
        BULWARK_CLIENTS__IDENTITY = "http://127.0.0.1:21051"
        BULWARK_CLIENTS__AUTHZ = "http://127.0.0.1:21053"
        BULWARK_CLIENTS__AUDIT = "http://127.0.0.1:21054"
        BULWARK_SERVICE_ACCOUNT__CLIENT_ID = "auth"
      }

      template {
        destination = "secrets/service.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/auth" }}
BULWARK_DATABASE__URL={{ .database_url }}
BULWARK_SERVICE_ACCOUNT__CLIENT_SECRET={{ .client_secret }}
BULWARK_AUTH__SERVICE_CLIENTS__IDENTITY={{ .identity_client_secret }}
BULWARK_AUTH__SERVICE_CLIENTS__AUTH={{ .client_secret }}
BULWARK_AUTH__SERVICE_CLIENTS__AUTHZ={{ .authz_client_secret }}
BULWARK_AUTH__SERVICE_CLIENTS__AUDIT={{ .audit_client_secret }}
BULWARK_AUTH__KEY_ENCRYPTION__KEYS__PRIMARY={{ .kek_primary }}
BULWARK_REDIS__URL={{ .redis_url }}
{{ end }}
EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }

  group "authz" {
    count = 2

    network {
      mode = "bridge"
      port "admin" {
        to = 9103
      }
    }

    service {
      name = "authz"
      port = "50053"
      tags = ["bulwark", "grpc"]

      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "auth"
              local_bind_port  = 21052
            }
            upstreams {
              destination_name = "audit"
              local_bind_port  = 21054
            }
          }
        }
      }

      check {
        name     = "authz readiness"
        type     = "http"
        port     = "admin"
        path     = "/ready"
        interval = "10s"
        timeout  = "2s"
      }
    }

    # `bulwark-authz migrate` before the service starts: as the schema's owner it applies
    # the migrations and grants the runtime role what the service needs (concurrent runs
    # of several allocations wait for each other on an advisory lock).
    task "migrate" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      config {
        image   = var.image
        command = "bulwark-authz"
        args    = ["migrate"]
      }

      env {
        BULWARK_SERVICE__ENVIRONMENT = "production"
      }

      template {
        destination = "secrets/migrate.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/authz" }}
BULWARK_DATABASE__URL={{ .database_url }}
{{ end }}
{{ with nomadVar "nomad/jobs/bulwark/authz/migrate" }}
BULWARK_DATABASE__OWNER_URL={{ .owner_database_url }}
{{ end }}
EOT
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }

    task "authz" {
      driver = "docker"

      config {
        image   = var.image
        command = "bulwark-authz"
      }

      env {
        BULWARK_GRPC__LISTEN          = "127.0.0.1:50053"
        BULWARK_HTTP__LISTEN          = "0.0.0.0:9103"
        BULWARK_TELEMETRY__LOG_FORMAT = "json"
        BULWARK_SERVICE__ENVIRONMENT  = "production"
        BULWARK_CLIENTS__AUTH = "http://127.0.0.1:21052"
        BULWARK_CLIENTS__AUDIT = "http://127.0.0.1:21054"
        BULWARK_SERVICE_ACCOUNT__CLIENT_ID = "authz"
      }

      template {
        destination = "secrets/service.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/authz" }}
BULWARK_DATABASE__URL={{ .database_url }}
BULWARK_SERVICE_ACCOUNT__CLIENT_SECRET={{ .client_secret }}
{{ end }}
EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }

  group "audit" {
    count = 2

    # Keeps the checkpoint files across updates of the allocation.
    ephemeral_disk {
      sticky  = true
      migrate = true
    }

    network {
      mode = "bridge"
      port "admin" {
        to = 9104
      }
    }

    service {
      name = "audit"
      port = "50054"
      tags = ["bulwark", "grpc"]

      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "auth"
              local_bind_port  = 21052
            }
            upstreams {
              destination_name = "authz"
              local_bind_port  = 21053
            }
          }
        }
      }

      check {
        name     = "audit readiness"
        type     = "http"
        port     = "admin"
        path     = "/ready"
        interval = "10s"
        timeout  = "2s"
      }
    }

    # `bulwark-audit migrate` before the service starts: as the schema's owner it applies
    # the migrations and grants the runtime role what the service needs (concurrent runs
    # of several allocations wait for each other on an advisory lock).
    task "migrate" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      config {
        image   = var.image
        command = "bulwark-audit"
        args    = ["migrate"]
      }

      env {
        BULWARK_SERVICE__ENVIRONMENT = "production"
      }

      template {
        destination = "secrets/migrate.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/audit" }}
BULWARK_DATABASE__URL={{ .database_url }}
{{ end }}
{{ with nomadVar "nomad/jobs/bulwark/audit/migrate" }}
BULWARK_DATABASE__OWNER_URL={{ .owner_database_url }}
{{ end }}
EOT
      }

      resources {
        cpu    = 200
        memory = 128
      }
    }

    task "audit" {
      driver = "docker"

      config {
        image   = var.image
        command = "bulwark-audit"
      }

      env {
        BULWARK_GRPC__LISTEN          = "127.0.0.1:50054"
        BULWARK_HTTP__LISTEN          = "0.0.0.0:9104"
        BULWARK_TELEMETRY__LOG_FORMAT = "json"
        BULWARK_SERVICE__ENVIRONMENT  = "production"
        BULWARK_CLIENTS__AUTH = "http://127.0.0.1:21052"
        BULWARK_CLIENTS__AUTHZ = "http://127.0.0.1:21053"
        BULWARK_SERVICE_ACCOUNT__CLIENT_ID = "audit"
        # The checkpoint files, on the allocation's sticky disk; ship them off the
        # host (README, Audit checkpoints).
        BULWARK_AUDIT__CHECKPOINT_DIR = "${NOMAD_ALLOC_DIR}/data/audit-checkpoints"
        # Audit's own limits (VerifyChain per caller), counted in Redis (redis_url,
        # dialled directly like the rate-limit service does); required in production.
        BULWARK_AUDIT__LIMITS_PATH = "/local/limits.yaml"
      }

      template {
        destination = "secrets/service.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/audit" }}
BULWARK_DATABASE__URL={{ .database_url }}
BULWARK_SERVICE_ACCOUNT__CLIENT_SECRET={{ .client_secret }}
BULWARK_AUDIT__CHECKPOINT_KEY={{ .checkpoint_key }}
BULWARK_REDIS__URL={{ .redis_url }}
{{ end }}
EOT
      }

      # services/audit/limits.yaml, word for word (the tests keep the two in step);
      # change_mode = "noop": Audit reads the file again every second and swaps in
      # changed limits itself.
      template {
        destination = "local/limits.yaml"
        change_mode = "noop"
        data        = <<EOT
# Audit's own limits, read by bulwark-audit from audit.limits_path
# (BULWARK_AUDIT__LIMITS_PATH), reloaded on change and counted in Redis (redis.url), so
# they hold across every Audit instance.
#
# The format is Envoy ratelimit's, as in services/ratelimit/limits.yaml. For each
# VerifyChain call whose bearer token verifies, Audit (domain "bulwark-audit") sends
#   [("rpc", "VerifyChain"), ("caller", "<user id, or client:<id> for a service>")]
# and answers a call over the limit RESOURCE_EXHAUSTED with retry-after (429 at the
# edge). Audit refuses to start with a file that sets no limit for VerifyChain; to
# lift it, say so with `unlimited: true` in place of the rate_limit.
domain: bulwark-audit
descriptors:
  # VerifyChain reads and re-hashes the whole audit log: 6 per minute per caller (a
  # burst of 6, then one every 10 s). Checking the log every few minutes needs far less.
  - key: rpc
    value: VerifyChain
    descriptors:
      - key: caller
        rate_limit: { unit: minute, requests_per_unit: 6 }
EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }

  # The rate-limit service answers the edge's gateway filter (cluster `ratelimit`,
  # reached through the bulwark-edge ingress gateway). It calls no other service, so its
  # sidecar has no upstreams; its counters live in Redis, which is not a mesh service and
  # is dialled directly at redis_url.
  group "ratelimit" {
    count = 2

    network {
      mode = "bridge"
      port "admin" {
        to = 9105
      }
    }

    service {
      name = "ratelimit"
      port = "50055"
      tags = ["bulwark", "grpc"]

      connect {
        sidecar_service {}
      }

      check {
        name     = "ratelimit readiness"
        type     = "http"
        port     = "admin"
        path     = "/ready"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "ratelimit" {
      driver = "docker"

      config {
        image   = var.image
        command = "bulwark-ratelimit"
      }

      env {
        BULWARK_GRPC__LISTEN           = "127.0.0.1:50055"
        BULWARK_HTTP__LISTEN           = "0.0.0.0:9105"
        BULWARK_TELEMETRY__LOG_FORMAT  = "json"
        BULWARK_SERVICE__ENVIRONMENT   = "production"
        BULWARK_RATELIMIT__CONFIG_PATH = "/local/limits.yaml"
      }

      template {
        destination = "secrets/redis.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/ratelimit" }}
BULWARK_REDIS__URL={{ .redis_url }}
{{ end }}
EOT
      }

      # services/ratelimit/limits.yaml, word for word (the tests keep the two in step).
      # change_mode = "noop": the service hot-reloads the file itself (it reads it again
      # every ratelimit.reload_interval_ms, 1 s, and swaps in changed limits), so a
      # re-render needs neither a signal nor a restart.
      template {
        destination = "local/limits.yaml"
        change_mode = "noop"
        data        = <<EOT
# Bulwark's edge limits (CONTRACT.md "Rate limits"), read by bulwark-ratelimit from
# ratelimit.config_path (BULWARK_RATELIMIT__CONFIG_PATH) and reloaded on change.
#
# The format is Envoy ratelimit's: a domain and a tree of descriptors. A request
# descriptor's entries walk the tree in order; a node with `value` matches that value
# only and wins over a node without one, which matches any value and counts each value
# separately. The node reached by the last entry decides; no node, or a node without a
# limit, means no limit. Units: second, minute, hour, day. `unlimited: true` never
# limits; `shadow_mode: true` counts and reports but never refuses.
#
# The gateway filter (domain "bulwark-edge") sends
#   [("route", "<route>"), ("client_ip", "<ip>")]  on the public auth routes, and
#   [("user_id", "<uuid>")]                         on bearer routes.
domain: bulwark-edge
descriptors:
  # Public auth routes: 10 requests per minute per client IP and route.
  - key: route
    value: /v1/auth/login
    descriptors:
      - key: client_ip
        rate_limit: { unit: minute, requests_per_unit: 10 }
  - key: route
    value: /v1/auth/refresh
    descriptors:
      - key: client_ip
        rate_limit: { unit: minute, requests_per_unit: 10 }
  - key: route
    value: /v1/users
    descriptors:
      - key: client_ip
        rate_limit: { unit: minute, requests_per_unit: 10 }
  # The OAuth 2.0 token endpoint (client credentials), like login: 10 per minute per IP.
  - key: route
    value: /v1/oauth2/token
    descriptors:
      - key: client_ip
        rate_limit: { unit: minute, requests_per_unit: 10 }
  # The public account routes (issue 11), like login: 10 per minute per IP.
  - key: route
    value: /v1/users/verify-email
    descriptors:
      - key: client_ip
        rate_limit: { unit: minute, requests_per_unit: 10 }
  - key: route
    value: /v1/auth/password-reset
    descriptors:
      - key: client_ip
        rate_limit: { unit: minute, requests_per_unit: 10 }
  - key: route
    value: /v1/auth/password-reset/confirm
    descriptors:
      - key: client_ip
        rate_limit: { unit: minute, requests_per_unit: 10 }
  - key: route
    value: /v1/auth/login/mfa
    descriptors:
      - key: client_ip
        rate_limit: { unit: minute, requests_per_unit: 10 }
  # Bearer routes: 100 requests per second per user.
  - key: user_id
    rate_limit: { unit: second, requests_per_unit: 100 }
EOT
      }

      resources {
        cpu    = 250
        memory = 128
      }
    }
  }
}
