# Bulwark on Nomad with Consul Connect: one group per service, each with its sidecar,
# its upstreams bound on loopback, and a readiness check on the admin port.
#   nomad job run -var image=registry.example/bulwark:0.1.0 deploy/nomad/bulwark.nomad.hcl
# Database URLs come from Nomad variables (nomad/jobs/bulwark/<service>: database_url).

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
      }

      template {
        destination = "secrets/db.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/identity" }}BULWARK_DATABASE__URL={{ .database_url }}{{ end }}
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
      }

      template {
        destination = "secrets/db.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/auth" }}BULWARK_DATABASE__URL={{ .database_url }}{{ end }}
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
      }

      template {
        destination = "secrets/db.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/authz" }}BULWARK_DATABASE__URL={{ .database_url }}{{ end }}
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
      }

      template {
        destination = "secrets/db.env"
        env         = true
        data        = <<EOT
{{ with nomadVar "nomad/jobs/bulwark/audit" }}BULWARK_DATABASE__URL={{ .database_url }}{{ end }}
EOT
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
