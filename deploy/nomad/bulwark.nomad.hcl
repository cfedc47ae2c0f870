# Bulwark on Nomad with Consul Connect: one group per service, each with its sidecar and
# its upstreams on the loopback ports of consul/services/<name>.json, and the edge group
# (Envoy with the gateway filter, the only way in, on port 8080). Each admin listener
# stays on loopback; its /ready (the check) and /metrics are exposed through the
# sidecar. Write the config entries first (README, "Consul and Nomad"), then:
#   nomad job run -var image=registry.example/bulwark:0.1.0 \
#     -var edge_image=registry.example/bulwark-edge:0.1.0 deploy/nomad/bulwark.nomad.hcl
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

variable "edge_image" {
  type        = string
  default     = "bulwark-edge:latest"
  description = "The Dockerfile's `edge` target: Envoy with the descriptor and the gateway filter"
}

variable "edge_count" {
  type        = number
  default     = 1
  description = "Edge allocations; each takes the static port 8080 of its client node"
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

    # Consul deregisters the instances first, so that callers stop picking them,
    # then the tasks get their signal.
    shutdown_delay = "5s"

    network {
      mode = "bridge"
      # The sidecar's expose listener for /ready and /metrics (same port inside and on
      # the host); the service's own admin listener stays on loopback.
      port "admin" {
        to = -1
      }
    }

    service {
      name = "identity"
      port = "50051"
      tags = ["bulwark", "grpc"]

      # What the shipped Prometheus configuration scrapes (consul_sd_configs: the
      # service's address and this port), the host port of the admin expose listener.
      meta {
        admin_port = "${NOMAD_HOST_PORT_admin}"
      }

      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "auth"
              local_bind_port  = 18152
            }
            upstreams {
              destination_name = "authz"
              local_bind_port  = 18153
            }
            upstreams {
              destination_name = "audit"
              local_bind_port  = 18154
            }
            # The admin listener is on loopback; only these two paths are reachable
            # from outside, through the sidecar.
            expose {
              path {
                path            = "/ready"
                protocol        = "http"
                local_path_port = 9101
                listener_port   = "admin"
              }
              path {
                path            = "/metrics"
                protocol        = "http"
                local_path_port = 9101
                listener_port   = "admin"
              }
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
        task     = "identity"

        # A task whose readiness keeps failing is restarted (grace covers start-up and
        # migrations).
        check_restart {
          limit = 3
          grace = "60s"
        }
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

      # Above the drain (grpc.drain_delay_ms and shutdown_grace_ms, 3 + 10 s by default) plus the shutdown
      # hooks: Nomad's default of 5 s would kill the task mid-drain.
      kill_timeout = "20s"

      config {
        image   = var.image
        command = "bulwark-identity"
      }

      env {
        BULWARK_GRPC__LISTEN          = "127.0.0.1:50051"
        BULWARK_HTTP__LISTEN          = "127.0.0.1:9101"
        BULWARK_TELEMETRY__LOG_FORMAT = "json"
        BULWARK_SERVICE__ENVIRONMENT  = "production"
        BULWARK_CLIENTS__AUTH = "http://127.0.0.1:18152"
        BULWARK_CLIENTS__AUTHZ = "http://127.0.0.1:18153"
        BULWARK_CLIENTS__AUDIT = "http://127.0.0.1:18154"
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

    # Consul deregisters the instances first, so that callers stop picking them,
    # then the tasks get their signal.
    shutdown_delay = "5s"

    network {
      mode = "bridge"
      # The sidecar's expose listener for /ready and /metrics (same port inside and on
      # the host); the service's own admin listener stays on loopback.
      port "admin" {
        to = -1
      }
    }

    service {
      name = "auth"
      port = "50052"
      tags = ["bulwark", "grpc"]

      # What the shipped Prometheus configuration scrapes (consul_sd_configs: the
      # service's address and this port), the host port of the admin expose listener.
      meta {
        admin_port = "${NOMAD_HOST_PORT_admin}"
      }

      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "identity"
              local_bind_port  = 18251
            }
            upstreams {
              destination_name = "authz"
              local_bind_port  = 18253
            }
            upstreams {
              destination_name = "audit"
              local_bind_port  = 18254
            }
            # The admin listener is on loopback; only these two paths are reachable
            # from outside, through the sidecar.
            expose {
              path {
                path            = "/ready"
                protocol        = "http"
                local_path_port = 9102
                listener_port   = "admin"
              }
              path {
                path            = "/metrics"
                protocol        = "http"
                local_path_port = 9102
                listener_port   = "admin"
              }
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
        task     = "auth"

        # A task whose readiness keeps failing is restarted (grace covers start-up and
        # migrations).
        check_restart {
          limit = 3
          grace = "60s"
        }
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

      # Above the drain (grpc.drain_delay_ms and shutdown_grace_ms, 3 + 10 s by default) plus the shutdown
      # hooks: Nomad's default of 5 s would kill the task mid-drain.
      kill_timeout = "20s"

      config {
        image   = var.image
        command = "bulwark-auth"
      }

      env {
        BULWARK_GRPC__LISTEN          = "127.0.0.1:50052"
        BULWARK_HTTP__LISTEN          = "127.0.0.1:9102"
        BULWARK_TELEMETRY__LOG_FORMAT = "json"
        BULWARK_SERVICE__ENVIRONMENT  = "production"
        BULWARK_CLIENTS__IDENTITY = "http://127.0.0.1:18251"
        BULWARK_CLIENTS__AUTHZ = "http://127.0.0.1:18253"
        BULWARK_CLIENTS__AUDIT = "http://127.0.0.1:18254"
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

    # Consul deregisters the instances first, so that callers stop picking them,
    # then the tasks get their signal.
    shutdown_delay = "5s"

    network {
      mode = "bridge"
      # The sidecar's expose listener for /ready and /metrics (same port inside and on
      # the host); the service's own admin listener stays on loopback.
      port "admin" {
        to = -1
      }
    }

    service {
      name = "authz"
      port = "50053"
      tags = ["bulwark", "grpc"]

      # What the shipped Prometheus configuration scrapes (consul_sd_configs: the
      # service's address and this port), the host port of the admin expose listener.
      meta {
        admin_port = "${NOMAD_HOST_PORT_admin}"
      }

      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "auth"
              local_bind_port  = 18352
            }
            upstreams {
              destination_name = "audit"
              local_bind_port  = 18354
            }
            # The admin listener is on loopback; only these two paths are reachable
            # from outside, through the sidecar.
            expose {
              path {
                path            = "/ready"
                protocol        = "http"
                local_path_port = 9103
                listener_port   = "admin"
              }
              path {
                path            = "/metrics"
                protocol        = "http"
                local_path_port = 9103
                listener_port   = "admin"
              }
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
        task     = "authz"

        # A task whose readiness keeps failing is restarted (grace covers start-up and
        # migrations).
        check_restart {
          limit = 3
          grace = "60s"
        }
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

      # Above the drain (grpc.drain_delay_ms and shutdown_grace_ms, 3 + 10 s by default) plus the shutdown
      # hooks: Nomad's default of 5 s would kill the task mid-drain.
      kill_timeout = "20s"

      config {
        image   = var.image
        command = "bulwark-authz"
      }

      env {
        BULWARK_GRPC__LISTEN          = "127.0.0.1:50053"
        BULWARK_HTTP__LISTEN          = "127.0.0.1:9103"
        BULWARK_TELEMETRY__LOG_FORMAT = "json"
        BULWARK_SERVICE__ENVIRONMENT  = "production"
        BULWARK_CLIENTS__AUTH = "http://127.0.0.1:18352"
        BULWARK_CLIENTS__AUDIT = "http://127.0.0.1:18354"
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

    # Consul deregisters the instances first, so that callers stop picking them,
    # then the tasks get their signal.
    shutdown_delay = "5s"

    # Keeps the checkpoint files across updates of the allocation.
    ephemeral_disk {
      sticky  = true
      migrate = true
    }

    network {
      mode = "bridge"
      # The sidecar's expose listener for /ready and /metrics (same port inside and on
      # the host); the service's own admin listener stays on loopback.
      port "admin" {
        to = -1
      }
    }

    service {
      name = "audit"
      port = "50054"
      tags = ["bulwark", "grpc"]

      # What the shipped Prometheus configuration scrapes (consul_sd_configs: the
      # service's address and this port), the host port of the admin expose listener.
      meta {
        admin_port = "${NOMAD_HOST_PORT_admin}"
      }

      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "auth"
              local_bind_port  = 18452
            }
            upstreams {
              destination_name = "authz"
              local_bind_port  = 18453
            }
            # The admin listener is on loopback; only these two paths are reachable
            # from outside, through the sidecar.
            expose {
              path {
                path            = "/ready"
                protocol        = "http"
                local_path_port = 9104
                listener_port   = "admin"
              }
              path {
                path            = "/metrics"
                protocol        = "http"
                local_path_port = 9104
                listener_port   = "admin"
              }
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
        task     = "audit"

        # A task whose readiness keeps failing is restarted (grace covers start-up and
        # migrations).
        check_restart {
          limit = 3
          grace = "60s"
        }
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

      # Above the drain (grpc.drain_delay_ms and shutdown_grace_ms, 3 + 10 s by default) plus the shutdown
      # hooks: Nomad's default of 5 s would kill the task mid-drain.
      kill_timeout = "20s"

      config {
        image   = var.image
        command = "bulwark-audit"
      }

      env {
        BULWARK_GRPC__LISTEN          = "127.0.0.1:50054"
        BULWARK_HTTP__LISTEN          = "127.0.0.1:9104"
        BULWARK_TELEMETRY__LOG_FORMAT = "json"
        BULWARK_SERVICE__ENVIRONMENT  = "production"
        BULWARK_CLIENTS__AUTH = "http://127.0.0.1:18452"
        BULWARK_CLIENTS__AUTHZ = "http://127.0.0.1:18453"
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

  # The rate-limit service answers the edge's gateway filter (cluster `ratelimit`, the
  # edge sidecar's upstream). It calls no other service, so its sidecar has no
  # upstreams; its counters live in Redis, which is not a mesh service and is dialled
  # directly at redis_url.
  group "ratelimit" {
    count = 2

    # Consul deregisters the instances first, so that callers stop picking them,
    # then the tasks get their signal.
    shutdown_delay = "5s"

    network {
      mode = "bridge"
      # The sidecar's expose listener for /ready and /metrics (same port inside and on
      # the host); the service's own admin listener stays on loopback.
      port "admin" {
        to = -1
      }
    }

    service {
      name = "ratelimit"
      port = "50055"
      tags = ["bulwark", "grpc"]

      # What the shipped Prometheus configuration scrapes (consul_sd_configs: the
      # service's address and this port), the host port of the admin expose listener.
      meta {
        admin_port = "${NOMAD_HOST_PORT_admin}"
      }

      connect {
        sidecar_service {
          proxy {
            # The admin listener is on loopback; only these two paths are reachable
            # from outside, through the sidecar.
            expose {
              path {
                path            = "/ready"
                protocol        = "http"
                local_path_port = 9105
                listener_port   = "admin"
              }
              path {
                path            = "/metrics"
                protocol        = "http"
                local_path_port = 9105
                listener_port   = "admin"
              }
            }
          }
        }
      }

      check {
        name     = "ratelimit readiness"
        type     = "http"
        port     = "admin"
        path     = "/ready"
        interval = "10s"
        timeout  = "2s"
        task     = "ratelimit"

        # A task whose readiness keeps failing is restarted (grace covers start-up and
        # migrations).
        check_restart {
          limit = 3
          grace = "60s"
        }
      }
    }

    task "ratelimit" {
      driver = "docker"

      # Above the drain (grpc.drain_delay_ms and shutdown_grace_ms, 3 + 10 s by default) plus the shutdown
      # hooks: Nomad's default of 5 s would kill the task mid-drain.
      kill_timeout = "20s"

      config {
        image   = var.image
        command = "bulwark-ratelimit"
      }

      env {
        BULWARK_GRPC__LISTEN           = "127.0.0.1:50055"
        BULWARK_HTTP__LISTEN           = "127.0.0.1:9105"
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

  # The way in: the Envoy edge with the gateway filter (envoy/edge-mesh.yaml), a mesh
  # service of its own whose sidecar's upstreams are the five services. Its clusters
  # point at those local ports, so every call it routes crosses the mesh under
  # bulwark-edge's identity, which the intentions admit (consul/config-entries).
  # Port 8080 is static: one allocation per client node (raise edge_count with nodes).
  group "edge" {
    count = var.edge_count

    # Consul deregisters the instance first, so that load balancers following it stop
    # sending, then Envoy gets its signal.
    shutdown_delay = "5s"

    network {
      mode = "bridge"
      port "http" {
        static = 8080
        to     = 8080
      }
      # The sidecar's expose listener for Envoy's /ready and /stats/prometheus; the
      # Envoy admin interface itself stays on loopback.
      port "admin" {
        to = -1
      }
    }

    service {
      name = "bulwark-edge"
      port = "8080"
      tags = ["bulwark", "edge"]

      meta {
        admin_port = "${NOMAD_HOST_PORT_admin}"
      }

      connect {
        sidecar_service {
          proxy {
            upstreams {
              destination_name = "identity"
              local_bind_port  = 18951
            }
            upstreams {
              destination_name = "auth"
              local_bind_port  = 18952
            }
            upstreams {
              destination_name = "authz"
              local_bind_port  = 18953
            }
            upstreams {
              destination_name = "audit"
              local_bind_port  = 18954
            }
            upstreams {
              destination_name = "ratelimit"
              local_bind_port  = 18955
            }
            expose {
              path {
                path            = "/ready"
                protocol        = "http"
                local_path_port = 9901
                listener_port   = "admin"
              }
              path {
                path            = "/stats/prometheus"
                protocol        = "http"
                local_path_port = 9901
                listener_port   = "admin"
              }
            }
          }
        }
      }

      check {
        name     = "bulwark-edge readiness"
        type     = "http"
        port     = "admin"
        path     = "/ready"
        interval = "10s"
        timeout  = "2s"
        task     = "edge"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }

      # The public listener itself (answered by Envoy, no service involved).
      check {
        name     = "bulwark-edge liveness"
        type     = "http"
        port     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "edge" {
      driver = "docker"

      # Envoy stops at once on SIGTERM; shutdown_delay above did the draining.
      kill_timeout = "10s"

      config {
        image   = var.edge_image
        command = "envoy"
        args    = ["-c", "/local/edge.yaml"]
      }

      # envoy/edge-mesh.yaml, word for word (the tests keep the two in step and have
      # the real Envoy validate it): envoy/edge.yaml rendered with the sidecar's
      # upstream ports above.
      template {
        destination = "local/edge.yaml"
        change_mode = "restart"
        data        = <<EDGE_MESH_YAML
# GENERATED from envoy/edge.yaml for the edge as Consul mesh service bulwark-edge
# (consul/services/bulwark-edge.json, the Nomad job's edge group); do not edit.
# After changing the template, regenerate it with `BULWARK_REGENERATE=1 cargo nextest run -p bulwark-e2e -E 'test(/deploy_files::/)'`.
# Every cluster is an upstream of the edge's sidecar on 127.0.0.1; the
# descriptor and the Wasm filter are in the edge image (deploy/docker/Dockerfile).
# Set CORS origins of your own: allow_origin_string_match below.
# Bulwark edge proxy: Envoy v3 bootstrap TEMPLATE (Envoy 1.40).
#
# Not loadable as is: deploy/local/mesh and the e2e harness (tests/src/envoy.rs)
# replace each placeholder below, written in double braces in the config, and refuse
# to start Envoy if one is left. deploy/compose/envoy-compose.yaml is its rendering
# for Docker Compose (an end-to-end test keeps the two in step):
#
#   EDGE_ADDRESS       public listener address: 127.0.0.1 locally, 0.0.0.0 in a container
#   EDGE_PORT          public listener port (HTTP/1.1 JSON and HTTP/2 gRPC)
#   ADMIN_PORT         Envoy admin port on 127.0.0.1 (/ready, /stats, /clusters)
#   DESCRIPTOR         absolute path of the FileDescriptorSet written by `bulwark-descriptor`
#   CORS_ORIGIN_REGEX  RE2 regex (full match) of the browser origins CORS allows
#   IDENTITY_ENDPOINTS, AUTH_ENDPOINTS, AUTHZ_ENDPOINTS, AUDIT_ENDPOINTS,
#   RATELIMIT_ENDPOINTS  the gRPC addresses of each service's replicas, as a YAML flow
#                      list of LbEndpoints, one per replica:
#                      [{ endpoint: { address: { socket_address: { address: "127.0.0.1",
#                      port_value: 50051 } } } }, ...]
#   CLUSTER_TYPE       discovery of those five upstreams: STATIC for IP addresses (local
#                      mesh, tests), STRICT_DNS for host names (Compose: identity, auth, ...)
#   WASM               absolute path of the gateway filter (bulwark_gateway_filter.wasm)
#   OTLP_HOST, OTLP_PORT  OTLP/gRPC trace collector (the services' telemetry.otlp_endpoint)
#   TRACE_SAMPLING     percentage of requests the edge starts a sampled trace for: 100
#                      when a collector is configured, 0 when not (a client's sampled
#                      traceparent is still followed, and exports to a missing collector
#                      are dropped)
#   RATELIMIT_TIMEOUT_MS  the gateway filter's budget for a rate-limit call, past which the
#                      route's failure mode decides: 50 in every shipped rendering
#
# Request path through the HTTP filters (responses pass them in reverse order):
#   header_mutation  security headers; first, so that its response side runs last and
#                    also covers local replies produced by every later filter. Also
#                    drops client-supplied identity headers (x-bulwark-user-id/-roles)
#   compressor       gzip; before the transcoder so that it compresses the JSON it produces
#   buffer           1 MiB request limit -> 413
#   bulwark.oauth_token_errors  the gateway filter's Wasm module, second instance, only on
#                    /v1/oauth2/token: RFC 6749 error bodies on the way back (it sees the
#                    transcoded JSON there, being before the transcoder)
#   grpc_json_transcoder  REST -> gRPC; rewrites :path to /<package>.<Service>/<Method> and
#                    clears the route cache, so routing happens on the gRPC path
#   cors             after the transcoder: it then sees the proxied gRPC route of a REST
#                    call (not the 404 catch-all) and adds CORS headers to its response
#   wasm             the gateway filter (gateway-filter/): JWT, identity headers, rate limits,
#                    all decided on the route (the gRPC path), never on the method
#   router
admin:
  address:
    socket_address: { address: 127.0.0.1, port_value: 9901 }

static_resources:
  listeners:
  - name: edge
    address:
      socket_address: { address: "0.0.0.0", port_value: 8080 }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          # HTTP/1.1 (REST/JSON) and HTTP/2 prior knowledge (gRPC) on one port.
          codec_type: AUTO
          use_remote_address: true
          normalize_path: true
          merge_slashes: true
          # The edge never trusts a client's x-request-id: Envoy makes a fresh one,
          # forwards it upstream and returns it on every response, local replies included.
          generate_request_id: true
          preserve_external_request_id: false
          always_set_request_id_in_response: true
          # CONTRACT: no `server` header naming the proxy. PASS_THROUGH sends the
          # upstream's header if it has one (the services send none) and adds none.
          server_header_transformation: PASS_THROUGH
          stream_idle_timeout: 60s
          request_timeout: 30s
          common_http_protocol_options:
            headers_with_underscores_action: REJECT_REQUEST
          http2_protocol_options:
            max_concurrent_streams: 128
          # Every request gets a server span here: the root of its trace (or the child of
          # a client's traceparent), also when the edge answers itself (401, 429, 413, CORS
          # preflight). The router propagates its context as traceparent, so the services'
          # spans are its children. The gateway filter records what it decided in request
          # headers (x-bulwark-decision, -reason, -token-cache) only when it differs from
          # the common case, allowed with the token answered by its cache, so that case
          # costs no host call; the span's attributes read them, absent meaning the
          # default. Clients' own such headers are dropped on arrival (header_mutation).
          tracing:
            random_sampling: { value: 0 }
            custom_tags:
            - tag: bulwark.decision
              request_header: { name: x-bulwark-decision, default_value: allowed }
            - tag: bulwark.reason
              request_header: { name: x-bulwark-reason }
            - tag: bulwark.token_cache
              request_header: { name: x-bulwark-token-cache, default_value: hit }
            - tag: bulwark.route
              value: "%ROUTE_NAME%"
            - tag: rpc.path
              value: "%REQ(:PATH)%"
            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                grpc_service:
                  envoy_grpc: { cluster_name: otlp_collector }
                  timeout: 2s
                service_name: bulwark-edge
          access_log:
          - name: envoy.access_loggers.stdout
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
              log_format:
                json_format:
                  timestamp: "%START_TIME%"
                  component: "edge"
                  request_id: "%REQ(X-REQUEST-ID)%"
                  trace_id: "%TRACE_ID%"
                  traceparent: "%REQ(TRACEPARENT)%"
                  method: "%REQ(:METHOD)%"
                  path: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
                  upstream_path: "%REQ(:PATH)%"
                  protocol: "%PROTOCOL%"
                  status: "%RESPONSE_CODE%"
                  grpc_status: "%GRPC_STATUS%"
                  response_flags: "%RESPONSE_FLAGS%"
                  details: "%RESPONSE_CODE_DETAILS%"
                  upstream_cluster: "%UPSTREAM_CLUSTER%"
                  route: "%ROUTE_NAME%"
                  # The gateway filter's facts; null means allowed, and a token answered by
                  # its cache (see tracing above).
                  decision: "%REQ(X-BULWARK-DECISION)%"
                  reason: "%REQ(X-BULWARK-REASON)%"
                  token_cache: "%REQ(X-BULWARK-TOKEN-CACHE)%"
                  duration_ms: "%DURATION%"
                  bytes_received: "%BYTES_RECEIVED%"
                  bytes_sent: "%BYTES_SENT%"
                  user_agent: "%REQ(USER-AGENT)%"
          # Envoy's own error answers (404 no route, 413 too large, 503 upstream down,
          # 400 malformed JSON, ...) get the CONTRACT's JSON error body
          # {"code": <grpc code>, "message": "..."}, the reply's text becoming the
          # message. The first mapper that matches wins; a reply a filter already made
          # JSON (the Wasm gateway filter's 401/429/503) is left as it is. Headers of a
          # reply are kept (WWW-Authenticate, Retry-After, ...).
          local_reply_config:
            mappers:
            - filter:
                extension_filter:
                  name: envoy.access_loggers.extension_filters.cel
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter
                    expression: "'content-type' in response.headers && response.headers['content-type'].startsWith('application/json')"
            # gRPC callers get the reply as grpc-status/grpc-message: keep the plain text.
            # (A transcoded REST call also carries application/grpc by now, but it has
            # x-envoy-original-path, set by the transcoder.)
            - filter:
                and_filter:
                  filters:
                  - header_filter: { header: { name: content-type, string_match: { prefix: application/grpc } } }
                  - header_filter: { header: { name: x-envoy-original-path, present_match: true, invert_match: true } }
            - filter: { status_code_filter: { comparison: { op: EQ, value: { default_value: 400, runtime_key: bulwark.local_reply.400 } } } }
              body_format_override: { json_format: { code: 3, message: "%LOCAL_REPLY_BODY%" } }
            - filter: { status_code_filter: { comparison: { op: EQ, value: { default_value: 401, runtime_key: bulwark.local_reply.401 } } } }
              body_format_override: { json_format: { code: 16, message: "%LOCAL_REPLY_BODY%" } }
            - filter: { status_code_filter: { comparison: { op: EQ, value: { default_value: 403, runtime_key: bulwark.local_reply.403 } } } }
              body_format_override: { json_format: { code: 7, message: "%LOCAL_REPLY_BODY%" } }
            - filter: { status_code_filter: { comparison: { op: EQ, value: { default_value: 404, runtime_key: bulwark.local_reply.404 } } } }
              body_format_override: { json_format: { code: 5, message: "%LOCAL_REPLY_BODY%" } }
            - filter: { status_code_filter: { comparison: { op: EQ, value: { default_value: 413, runtime_key: bulwark.local_reply.413 } } } }
              body: { inline_string: "request body exceeds 1 MiB" }
              body_format_override: { json_format: { code: 8, message: "%LOCAL_REPLY_BODY%" } }
            - filter: { status_code_filter: { comparison: { op: EQ, value: { default_value: 429, runtime_key: bulwark.local_reply.429 } } } }
              body_format_override: { json_format: { code: 8, message: "%LOCAL_REPLY_BODY%" } }
            - filter: { status_code_filter: { comparison: { op: EQ, value: { default_value: 503, runtime_key: bulwark.local_reply.503 } } } }
              body: { inline_string: "service unavailable" }
              body_format_override: { json_format: { code: 14, message: "%LOCAL_REPLY_BODY%" } }
            - filter: { status_code_filter: { comparison: { op: EQ, value: { default_value: 504, runtime_key: bulwark.local_reply.504 } } } }
              body: { inline_string: "upstream timeout" }
              body_format_override: { json_format: { code: 4, message: "%LOCAL_REPLY_BODY%" } }
            - filter: { status_code_filter: { comparison: { op: GE, value: { default_value: 500, runtime_key: bulwark.local_reply.5xx } } } }
              body: { inline_string: "internal error" }
              body_format_override: { json_format: { code: 13, message: "%LOCAL_REPLY_BODY%" } }
            - filter: { status_code_filter: { comparison: { op: GE, value: { default_value: 400, runtime_key: bulwark.local_reply.4xx } } } }
              body_format_override: { json_format: { code: 2, message: "%LOCAL_REPLY_BODY%" } }
          route_config:
            name: edge
            virtual_hosts:
            - name: bulwark
              domains: ["*"]
              typed_per_filter_config:
                envoy.filters.http.cors:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
                  allow_origin_string_match:
                  - safe_regex: { regex: 'https?://(localhost|127\.0\.0\.1)(:[0-9]+)?' }
                  allow_methods: "GET, POST, PUT, PATCH, DELETE, OPTIONS"
                  allow_headers: "authorization, content-type, traceparent, tracestate, x-grpc-web, grpc-timeout"
                  expose_headers: "x-request-id, www-authenticate, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset, grpc-status, grpc-message"
                  max_age: "600"
                  allow_credentials: false
                  # Every preflight is answered here, allowed origin or not; none reaches a service.
                  forward_not_matching_preflights: false
              routes:
              # Edge liveness, answered by Envoy itself.
              - name: edge_healthz
                match:
                  path: /healthz
                  headers:
                  - name: ":method"
                    string_match: { safe_regex: { regex: "GET|HEAD" } }
                direct_response:
                  status: 200
                  body: { inline_string: "{\"status\":\"ok\"}" }
                response_headers_to_add:
                - header: { key: content-type, value: application/json }
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
              # Internal (service-to-service) RPCs never come from outside: callers inside
              # the mesh reach them directly (through their Connect sidecar in production),
              # with a service token. Refused here for every method and content type.
              - name: internal_verify_credentials
                match: { path: /bulwark.identity.v1.IdentityService/VerifyCredentials }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
                typed_per_filter_config:
                  # Answered here whoever asks: the gateway filter does not run.
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - name: internal_find_user_by_email
                match: { path: /bulwark.identity.v1.IdentityService/FindUserByEmail }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
                typed_per_filter_config:
                  # Answered here whoever asks: the gateway filter does not run.
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - name: internal_set_password
                match: { path: /bulwark.identity.v1.IdentityService/SetPassword }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
                typed_per_filter_config:
                  # Answered here whoever asks: the gateway filter does not run.
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - name: internal_mark_email_verified
                match: { path: /bulwark.identity.v1.IdentityService/MarkEmailVerified }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
                typed_per_filter_config:
                  # Answered here whoever asks: the gateway filter does not run.
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - name: internal_set_mfa_enabled
                match: { path: /bulwark.identity.v1.IdentityService/SetMfaEnabled }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
                typed_per_filter_config:
                  # Answered here whoever asks: the gateway filter does not run.
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - name: internal_list_user_roles
                match: { path: /bulwark.authz.v1.AuthzService/ListUserRoles }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
                typed_per_filter_config:
                  # Answered here whoever asks: the gateway filter does not run.
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - name: internal_resolve_roles
                match: { path: /bulwark.authz.v1.AuthzService/ResolveRoles }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
                typed_per_filter_config:
                  # Answered here whoever asks: the gateway filter does not run.
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - name: internal_append_events
                match: { path: /bulwark.audit.v1.AuditService/AppendEvents }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
                typed_per_filter_config:
                  # Answered here whoever asks: the gateway filter does not run.
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - name: internal_list_revoked_sessions
                match: { path: /bulwark.auth.v1.AuthService/ListRevokedSessions }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
                typed_per_filter_config:
                  # Answered here whoever asks: the gateway filter does not run.
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              # gRPC routes. REST calls reach them too: the transcoder turns them into gRPC
              # (method POST, gRPC content type) first. A service routes on the path alone,
              # whatever the method, so only what a gRPC call is gets through: POST, a gRPC
              # content type, and a path that is exactly /<package>.<Service>/<Method> (no
              # trailing slash, `;`, escape or lower-case method name that some reader
              # might take for another route). Everything else on a gRPC path is answered
              # by the refusal routes below and never reaches a service nor the filter.
              # Retries, on another replica (never the one that just failed), with a
              # short back-off. Every call is retried when it never reached a replica
              # (connection refused, stream refused by a draining replica, reset before
              # the request went out). Calls without side effects, the methods marked
              # `idempotency_level = NO_SIDE_EFFECTS` in proto/ (a test keeps each list
              # in step), also when the connection is reset or the replica answers
              # UNAVAILABLE. The retry budget is each cluster's max_retries.
              - name: identity
                match:
                  safe_regex: { regex: '/bulwark\.identity\.v1\.IdentityService/(FindUserByEmail|GetMe|GetUser)' }
                  grpc: {}
                  headers:
                  - name: ":method"
                    string_match: { exact: POST }
                route:
                  cluster: identity
                  timeout: 15s
                  retry_policy: &retry_reads
                    retry_on: connect-failure,refused-stream,reset-before-request,reset,unavailable
                    num_retries: 2
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 3
                    retry_back_off: { base_interval: 0.025s, max_interval: 0.25s }
              - name: identity
                match:
                  safe_regex: { regex: '/bulwark\.identity\.v1\.IdentityService/[A-Z][A-Za-z0-9]*' }
                  grpc: {}
                  headers:
                  - name: ":method"
                    string_match: { exact: POST }
                route:
                  cluster: identity
                  timeout: 15s
                  retry_policy: &retry_unsent
                    retry_on: connect-failure,refused-stream,reset-before-request
                    num_retries: 2
                    retry_host_predicate:
                    - name: envoy.retry_host_predicates.previous_hosts
                      typed_config:
                        "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                    host_selection_retry_max_attempts: 3
                    retry_back_off: { base_interval: 0.025s, max_interval: 0.25s }
              - name: auth
                match:
                  safe_regex: { regex: '/bulwark\.auth\.v1\.AuthService/(GetJwks|ListRevokedSessions|ListSessions)' }
                  grpc: {}
                  headers:
                  - name: ":method"
                    string_match: { exact: POST }
                route:
                  cluster: auth
                  timeout: 15s
                  retry_policy: *retry_reads
              - name: auth
                match:
                  safe_regex: { regex: '/bulwark\.auth\.v1\.AuthService/[A-Z][A-Za-z0-9]*' }
                  grpc: {}
                  headers:
                  - name: ":method"
                    string_match: { exact: POST }
                route:
                  cluster: auth
                  timeout: 15s
                  retry_policy: *retry_unsent
              - name: authz
                match:
                  safe_regex: { regex: '/bulwark\.authz\.v1\.AuthzService/(Check|ListUserRoles|ResolveRoles)' }
                  grpc: {}
                  headers:
                  - name: ":method"
                    string_match: { exact: POST }
                route:
                  cluster: authz
                  timeout: 15s
                  retry_policy: *retry_reads
              - name: authz
                match:
                  safe_regex: { regex: '/bulwark\.authz\.v1\.AuthzService/[A-Z][A-Za-z0-9]*' }
                  grpc: {}
                  headers:
                  - name: ":method"
                    string_match: { exact: POST }
                route:
                  cluster: authz
                  timeout: 15s
                  retry_policy: *retry_unsent
              - name: audit
                match:
                  safe_regex: { regex: '/bulwark\.audit\.v1\.AuditService/(ListCheckpoints|ListEvents)' }
                  grpc: {}
                  headers:
                  - name: ":method"
                    string_match: { exact: POST }
                route:
                  cluster: audit
                  timeout: 15s
                  retry_policy: *retry_reads
              - name: audit
                match:
                  safe_regex: { regex: '/bulwark\.audit\.v1\.AuditService/[A-Z][A-Za-z0-9]*' }
                  grpc: {}
                  headers:
                  - name: ":method"
                    string_match: { exact: POST }
                route:
                  cluster: audit
                  timeout: 15s
                  retry_policy: *retry_unsent
              # A CORS preflight (OPTIONS with a non-empty Origin and
              # Access-Control-Request-Method, exactly what the cors filter takes for one)
              # must land on a route that is not a direct_response (the cors filter skips
              # those). The cors filter answers every preflight
              # (forward_not_matching_preflights: false); the cluster has no endpoint, so
              # nothing on this route could reach a service even if it were not answered.
              # Any other OPTIONS request is an ordinary request of its route below.
              - name: cors_preflight
                match:
                  prefix: /
                  headers:
                  - name: ":method"
                    string_match: { exact: OPTIONS }
                  - name: origin
                    string_match: { safe_regex: { regex: ".+" } }
                  - name: access-control-request-method
                    string_match: { safe_regex: { regex: ".+" } }
                route: { cluster: cors_preflight, timeout: 1s }
              # A gRPC path not taken by the routes above: another method than POST, or a
              # path that is not exactly a method's. A gRPC client gets UNIMPLEMENTED
              # (Envoy turns a 404 into that gRPC status); any other client 405 (below).
              - name: grpc_refused_grpc
                match:
                  safe_regex: { regex: '(?i)/bulwark\..*' }
                  grpc: {}
                direct_response:
                  status: 404
                  body: { inline_string: "no such gRPC method: gRPC calls are POST /<package>.<Service>/<Method>" }
                typed_per_filter_config:
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              - name: grpc_refused_method
                match:
                  safe_regex: { regex: '(?i)/bulwark\..*' }
                  headers:
                  - name: ":method"
                    string_match: { exact: POST }
                    invert_match: true
                direct_response:
                  status: 405
                  body: { inline_string: "method not allowed: gRPC calls are POST" }
                response_headers_to_add:
                - header: { key: allow, value: POST }
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
                typed_per_filter_config:
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
              # The OAuth 2.0 token endpoint: like rest_api below (404 if the transcoder
              # does not take the call), plus the filter instance that makes its answers
              # RFC 6749's (bulwark_oauth_token_errors, disabled everywhere else).
              - name: oauth2_token
                match: { path_separated_prefix: /v1/oauth2/token }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
                typed_per_filter_config:
                  # An empty `config` enables a filter that is disabled by default.
                  bulwark.oauth_token_errors:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    config: {}
              # REST paths (every google.api.http binding is under /v1/ or /.well-known/).
              # Envoy decides which filters run from the route a request matches when it
              # arrives, before the transcoder turns it into gRPC and reroutes it: a REST
              # call falling through to `not_found` below would run without the gateway
              # filter for its whole life, unauthenticated. So REST paths land here, where
              # the filter stays enabled; one the transcoder does not know is answered 404
              # after the filter has had its say.
              - name: rest_api
                match: { prefix: /v1/ }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
              - name: well_known
                match: { prefix: /.well-known/ }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
              - name: not_found
                match: { prefix: / }
                direct_response:
                  status: 404
                  body: { inline_string: "no route for this path" }
                typed_per_filter_config:
                  # Answered here whoever asks: the gateway filter does not run.
                  envoy.filters.http.wasm:
                    "@type": type.googleapis.com/envoy.config.route.v3.FilterConfig
                    disabled: true
          http_filters:
          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                # The identity headers the gateway filter forwards (its defaults) are
                # dropped from the client's request before any filter runs; the filter
                # sets them again from a verified token. So are the headers it records its
                # decision in for the span and the access log (see tracing below).
                request_mutations:
                - remove: x-bulwark-user-id
                - remove: x-bulwark-roles
                - remove: x-bulwark-decision
                - remove: x-bulwark-reason
                - remove: x-bulwark-token-cache
                response_mutations:
                - append:
                    header: { key: strict-transport-security, value: "max-age=63072000; includeSubDomains" }
                    append_action: OVERWRITE_IF_EXISTS_OR_ADD
                - append:
                    header: { key: x-content-type-options, value: nosniff }
                    append_action: OVERWRITE_IF_EXISTS_OR_ADD
                - append:
                    header: { key: x-frame-options, value: DENY }
                    append_action: OVERWRITE_IF_EXISTS_OR_ADD
                - append:
                    header: { key: referrer-policy, value: no-referrer }
                    append_action: OVERWRITE_IF_EXISTS_OR_ADD
                - append:
                    header: { key: content-security-policy, value: "default-src 'none'; frame-ancestors 'none'" }
                    append_action: OVERWRITE_IF_EXISTS_OR_ADD
                # Whatever an upstream says about its software stays inside.
                - remove: server
          - name: envoy.filters.http.compressor
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor
              response_direction_config:
                # Default content types include application/json and text/plain;
                # gRPC (application/grpc) is never compressed here.
                common_config:
                  min_content_length: 30
              compressor_library:
                name: gzip
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.compression.gzip.compressor.v3.Gzip
          - name: envoy.filters.http.buffer
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer
              max_request_bytes: 1048576
          # The same Wasm module, second instance: rewrites the token endpoint's error
          # answers into RFC 6749 §5.2 {"error", "error_description"} (+ the Basic
          # challenge on 401, Cache-Control: no-store on every answer). It must sit
          # before the transcoder, so that on the way back (filters run in reverse) it
          # sees the JSON the transcoder made; the gateway instance after the transcoder
          # sees the gRPC answer. Disabled except on the oauth2_token route.
          - name: bulwark.oauth_token_errors
            disabled: true
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: bulwark_oauth_token_errors
                root_id: bulwark_oauth_token_errors
                fail_open: false
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '{"oauth_token_errors": {"realm": "bulwark"}}'
                vm_config:
                  vm_id: bulwark_gateway
                  runtime: envoy.wasm.runtime.v8
                  code:
                    local: { filename: "/opt/bulwark/bulwark_gateway_filter.wasm" }
          - name: envoy.filters.http.grpc_json_transcoder
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder
              proto_descriptor: "/opt/bulwark/bulwark.pb"
              services:
              - bulwark.identity.v1.IdentityService
              - bulwark.auth.v1.AuthService
              - bulwark.authz.v1.AuthzService
              - bulwark.audit.v1.AuditService
              print_options:
                add_whitespace: false
                always_print_primitive_fields: true
                always_print_enums_as_ints: false
                preserve_proto_field_names: true
              # gRPC errors become {"code": .., "message": ..} with the matching HTTP status,
              # taken from grpc-status-details-bin (google.rpc.Status) when the service sends it.
              convert_grpc_status: true
              # Only the google.api.http bindings are public; no POST /<pkg>.<Svc>/<Method> JSON.
              auto_mapping: false
              # Route on the gRPC path after transcoding (the gRPC routes above).
              match_incoming_request_route: false
          - name: envoy.filters.http.cors
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors
          # The Wasm gateway filter: JWT verification, identity headers, rate limits. After
          # cors (preflights never need a token) and after the transcoder: it sees the gRPC
          # path /<pkg>.<Svc>/<Method> for REST and gRPC clients alike (its default public
          # and rate-limited routes list both forms; the REST path is in
          # x-envoy-original-path). Its JWKS comes from this listener itself (edge_self:
          # GET /.well-known/jwks.json, transcoded to Auth's GetJwks); revoked sessions
          # from Auth's ListRevokedSessions every second (refused from outside above), so a
          # revoked session's tokens answer 401 here within seconds; its rate limits from
          # the rate-limit service. Limits: 50 ms a call, fail-closed for login and the token
          # endpoint, open elsewhere. Public and limited routes are paths, whatever the
          # method; a non-preflight OPTIONS is an ordinary request.
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: bulwark_gateway
                root_id: bulwark_gateway
                fail_open: false
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
                    {
                      "issuer": "bulwark",
                      "audiences": ["bulwark-api"],
                      "clock_skew_seconds": 30,
                      "jwks": {
                        "cluster": "edge_self",
                        "authority": "bulwark-edge",
                        "path": "/.well-known/jwks.json",
                        "timeout_ms": 2000,
                        "refresh_interval_seconds": 60,
                        "min_refetch_interval_seconds": 5
                      },
                      "revocation": {
                        "cluster": "auth",
                        "interval_ms": 1000,
                        "timeout_ms": 2000
                      },
                      "rate_limit": {
                        "cluster": "ratelimit",
                        "domain": "bulwark-edge",
                        "timeout_ms": 50,
                        "per_user": { "enabled": true, "failure_mode": "open" }
                      }
                    }
                vm_config:
                  vm_id: bulwark_gateway
                  runtime: envoy.wasm.runtime.v8
                  code:
                    local: { filename: "/opt/bulwark/bulwark_gateway_filter.wasm" }
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
              # No x-envoy-* response headers (x-envoy-upstream-service-time) leave the edge.
              suppress_envoy_headers: true

  clusters:
  # The edge itself, for the gateway filter's JWKS callout (plain HTTP/1.1 on loopback).
  - name: edge_self
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: edge_self
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 8080 } } }
  # Target of the cors_preflight route, which the cors filter always answers: no
  # endpoint, so that route can never reach a service.
  - name: cors_preflight
    type: STATIC
    connect_timeout: 0.25s
    load_assignment:
      cluster_name: cors_preflight
  # The OTLP/gRPC trace collector the edge's spans go to (Jaeger, an OpenTelemetry
  # Collector): the same endpoint as the services' telemetry.otlp_endpoint.
  - name: otlp_collector
    type: STRICT_DNS
    dns_lookup_family: V4_ONLY
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    load_assignment:
      cluster_name: otlp_collector
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 4317 } } }
  # The rate-limit service (envoy.service.ratelimit.v3 over HTTP/2).
  - name: ratelimit
    type: STATIC
    connect_timeout: 0.25s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    # Ready for replicas (an endpoint per replica: `mesh up --replicas N`, the tests'
    # replica meshes): an active gRPC health check (grpc.health.v1, the service's overall
    # status, which follows /ready and turns NOT_SERVING the moment a replica starts
    # draining, grpc.drain_delay_ms = 3 s before it stops accepting) takes a replica out
    # after two failed checks a second apart; outlier detection
    # ejects one whose calls keep failing (5 errors in a row, or 3 gateway failures:
    # refused, reset, UNAVAILABLE); the circuit breakers bound what this Envoy asks of the
    # cluster at once (an edge worker serves thousands of requests a second; a service
    # answers in milliseconds, so 1,024 calls in flight is far past normal load) and the
    # retries in flight. With every replica out, Envoy's panic threshold still sends
    # requests to all of them rather than none.
    health_checks: &service_health_checks
    - timeout: 1s
      interval: 1s
      no_traffic_interval: 5s
      unhealthy_threshold: 2
      healthy_threshold: 1
      grpc_health_check: {}
    outlier_detection: &service_outlier_detection
      consecutive_5xx: 5
      consecutive_gateway_failure: 3
      interval: 2s
      base_ejection_time: 10s
      max_ejection_percent: 50
    circuit_breakers: &service_circuit_breakers
      thresholds:
      - priority: DEFAULT
        max_connections: 64
        max_pending_requests: 256
        max_requests: 1024
        max_retries: 16
    load_assignment:
      cluster_name: ratelimit
      endpoints:
      - lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 18955 } } } }]
  - name: identity
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    health_checks: *service_health_checks
    outlier_detection: *service_outlier_detection
    circuit_breakers: *service_circuit_breakers
    load_assignment:
      cluster_name: identity
      endpoints:
      - lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 18951 } } } }]
  - name: auth
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    health_checks: *service_health_checks
    outlier_detection: *service_outlier_detection
    circuit_breakers: *service_circuit_breakers
    load_assignment:
      cluster_name: auth
      endpoints:
      - lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 18952 } } } }]
  - name: authz
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    health_checks: *service_health_checks
    outlier_detection: *service_outlier_detection
    circuit_breakers: *service_circuit_breakers
    load_assignment:
      cluster_name: authz
      endpoints:
      - lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 18953 } } } }]
  - name: audit
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: { http2_protocol_options: {} }
    health_checks: *service_health_checks
    outlier_detection: *service_outlier_detection
    circuit_breakers: *service_circuit_breakers
    load_assignment:
      cluster_name: audit
      endpoints:
      - lb_endpoints: [{ endpoint: { address: { socket_address: { address: "127.0.0.1", port_value: 18954 } } } }]
EDGE_MESH_YAML
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
